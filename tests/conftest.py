from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from tests.models import small_cnn, small_cnn_data

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"


@pytest.fixture
def small_model(tmp_path) -> Path:
    path = tmp_path / "small.onnx"
    onnx.save(small_cnn(), path)
    return path


@pytest.fixture
def small_calib(tmp_path) -> Path:
    path = tmp_path / "calib.npz"
    np.savez(path, input=small_cnn_data(64))
    return path


@pytest.fixture(scope="session")
def sample():
    """The bundled Fashion-MNIST CNN and its data."""
    paths = {k: SAMPLES / f for k, f in [("onnx", "fashion_cnn.onnx"), ("pt2", "fashion_cnn.pt2"),
                                         ("calib", "fashion_calib.npz"), ("val", "fashion_val.npz")]}
    missing = [str(p) for p in paths.values() if not p.exists()]
    if missing:
        pytest.fail(f"bundled sample missing: {missing}; run python samples/train_fashion.py")
    return paths
