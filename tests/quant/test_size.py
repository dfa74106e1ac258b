"""The payload a plan predicts matches what the target writes (issue 4's size goal)."""

from pathlib import Path

import pytest

import edgeq

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


@pytest.mark.parametrize("target,limit", [("tflite", 1.05), ("ort", 1.10)])
def test_artifact_bytes_close_to_predicted_payload(tmp_path, target, limit):
    report = edgeq.compile(str(SAMPLES / "fashion_cnn.onnx"), target=target, calib=str(SAMPLES / "fashion_calib.npz"),
                           val=str(SAMPLES / "fashion_val.npz"),
                           out=tmp_path / target, latency_runs=5)
    t = report["targets"][0]
    pred = t["predicted_bytes"]
    assert pred["total"] == pred["weights_packed"] + pred["quant_params"] + pred["other_params"]
    assert 1.0 <= t["bytes_vs_predicted"] <= limit, (t["bytes"], pred)
