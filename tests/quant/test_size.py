"""The payload a plan predicts matches what the target writes (issue 4's size goal)."""

import pytest

import edgeq


@pytest.mark.parametrize("target,limit", [("tflite", 1.05), ("ort", 1.10)])
def test_artifact_bytes_close_to_predicted_payload(sample, tmp_path, target, limit):
    report = edgeq.compile(str(sample["onnx"]), target=target, calib=str(sample["calib"]), val=str(sample["val"]),
                           out=tmp_path / target, latency_runs=5)
    t = report["targets"][0]
    pred = t["predicted_bytes"]
    assert pred["total"] == pred["weights_packed"] + pred["quant_params"] + pred["other_params"]
    assert 1.0 <= t["bytes_vs_predicted"] <= limit, (t["bytes"], pred)
