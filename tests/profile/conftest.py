from __future__ import annotations

import numpy as np
import onnx
import pytest

from tests.models import small_cnn, small_cnn_data


@pytest.fixture(scope="session")
def small_compiled(tmp_path_factory):
    """small_cnn compiled for ort with two devices: (report, out folder, float model path)."""
    from edgeq.pipeline import compile as edgeq_compile

    d = tmp_path_factory.mktemp("small")
    model = d / "small.onnx"
    onnx.save(small_cnn(), model)
    np.savez(d / "calib.npz", input=small_cnn_data(64))
    report = edgeq_compile(str(model), "ort", calib=str(d / "calib.npz"), out=str(d / "out"),
                           devices=["pixel8", "iphone_a17pro", "rpi5"], latency_runs=10)
    return report, d / "out", model
