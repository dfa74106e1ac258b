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


def test_coreml_weights_close_to_predicted_payload(tmp_path):
    """Core ML: weight.bin against the payload a mixed 2-8 bit linear plan predicts (codes in the
    containers Core ML has, fp16 parameters). The program protobuf beside it is structure, not payload."""
    pytest.importorskip("coremltools")
    from edgeq.quant.mixed import QuantOptions

    report = edgeq.compile(str(SAMPLES / "fashion_cnn.onnx"), target="coreml", calib=str(SAMPLES / "fashion_calib.npz"),
                           val=str(SAMPLES / "fashion_val.npz"), out=tmp_path / "cm", latency_runs=2,
                           quant=QuantOptions(mode="weight_only", avg_bits=4))
    t = report["targets"][0]
    blob = next((tmp_path / "cm").rglob("weight.bin")).stat().st_size
    assert len({w["bits"] for w in t["weight_ops"]}) > 1  # a mixed plan
    assert 0.95 <= blob / t["predicted_bytes"]["total"] <= 1.05, (blob, t["predicted_bytes"])
