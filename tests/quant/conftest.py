"""Shared fixtures: the bundled sample CNN when it exists, else the small test CNN."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from edgeq.graph import Graph
from edgeq.passes import run_passes
from edgeq.quant.data import Dataset
from tests.models import small_cnn, small_cnn_data

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEQ_CACHE_DIR", str(tmp_path / "cache"))


def smooth_images(n: int, size: int, seed: int = 0) -> np.ndarray:
    """Spatially correlated inputs (blurred noise): what real images look like to a conv layer."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (n, 1, size + 4, size + 4))
    k = np.ones(5) / 5
    x = np.apply_along_axis(lambda r: np.convolve(r, k, "valid"), 2, x)
    x = np.apply_along_axis(lambda r: np.convolve(r, k, "valid"), 3, x)
    return (x * 2).astype(np.float32)


@pytest.fixture(scope="session")
def sample():
    """(graph, calibration Dataset, model path or proto) of the sample model."""
    model = SAMPLES / "fashion_cnn.onnx"
    calib = SAMPLES / "fashion_calib.npz"
    if model.is_file() and calib.is_file():
        with np.load(calib) as z:
            x = z["input"][:32]
        return run_passes(Graph(onnx.load(str(model)), str(model))), Dataset({"input": x}), str(model)
    proto = small_cnn(seed=3)
    return run_passes(Graph(proto)), Dataset({"input": smooth_images(64, 12)}), proto


@pytest.fixture(scope="session")
def small():
    return run_passes(Graph(small_cnn())), Dataset({"input": small_cnn_data(48)})
