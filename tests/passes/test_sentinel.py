"""Sentinel masks (edgeq/passes/sentinel.py): float32-min / -inf attention masks become
quantization-safe without changing what the float model computes."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgeq.graph import Graph
from edgeq.passes import DEFAULT_PIPELINE, run_passes
from edgeq.passes.sentinel import PLACEHOLDER, scale_masks, sentinel_entries
from edgeq.quant.build import int8_plan
from edgeq.quant.calibrate import observe
from edgeq.quant.data import Dataset
from edgeq.quant.simulate import simulate
from edgeq.runners import OrtRunner

S, D = 8, 16
FMIN = float(np.finfo(np.float32).min)


def attention_model(mask: str) -> onnx.ModelProto:
    """One attention head, Softmax(QK^T / 4 + mask) V, with the mask as
    'causal': a [S,S] constant of 0 / float32 min;  'bert': an int64 [B,S] padding input
    applied as (1 - mask) * float32 min;  'input': a float [B,1,S] additive input (0 / -inf)."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array((rng.normal(0, 0.6, (D, D))).astype(np.float32), n) for n in ("wq", "wk", "wv")]
    inits.append(numpy_helper.from_array(np.asarray(0.25, np.float32), "temp"))
    nodes = [helper.make_node("MatMul", ["x", n], [n + "_out"]) for n in ("wq", "wk", "wv")]
    nodes += [helper.make_node("Transpose", ["wk_out"], ["kt"], perm=[0, 2, 1]),
              helper.make_node("MatMul", ["wq_out", "kt"], ["qk"]),
              helper.make_node("Mul", ["qk", "temp"], ["scores"])]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", S, D])]
    if mask == "causal":
        causal = np.where(np.triu(np.ones((S, S)), 1) > 0, FMIN, 0.0).astype(np.float32)
        inits.append(numpy_helper.from_array(causal, "causal_mask"))
        nodes.append(helper.make_node("Add", ["scores", "causal_mask"], ["masked"]))
    elif mask == "bert":
        inputs.append(helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", S]))
        inits += [numpy_helper.from_array(np.asarray([1], np.int64), "axis1"),
                  numpy_helper.from_array(np.asarray(1.0, np.float32), "one"),
                  numpy_helper.from_array(np.asarray(FMIN, np.float32), "fmin")]
        nodes += [helper.make_node("Unsqueeze", ["attention_mask", "axis1"], ["m3"]),
                  helper.make_node("Cast", ["m3"], ["mf"], to=TensorProto.FLOAT),
                  helper.make_node("Sub", ["one", "mf"], ["inv"]),
                  helper.make_node("Mul", ["inv", "fmin"], ["ext"]),
                  helper.make_node("Add", ["scores", "ext"], ["masked"])]
    else:
        inputs.append(helper.make_tensor_value_info("bias", TensorProto.FLOAT, ["batch", 1, S]))
        nodes.append(helper.make_node("Add", ["scores", "bias"], ["masked"]))
    nodes += [helper.make_node("Softmax", ["masked"], ["att"], axis=-1),
              helper.make_node("MatMul", ["att", "wv_out"], ["out"])]
    g = helper.make_graph(nodes, "attention", inputs, [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", S, D])],
                          inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def feeds(mask: str, n: int = 64, seed: int = 1) -> dict:
    rng = np.random.default_rng(seed)
    d = {"x": rng.normal(0, 1, (n, S, D)).astype(np.float32)}
    lengths = rng.integers(2, S + 1, n)
    keep = (np.arange(S)[None, :] < lengths[:, None])
    if mask == "bert":
        d["attention_mask"] = keep.astype(np.int64)
    elif mask == "input":
        d["bias"] = np.where(keep, 0.0, -np.inf).astype(np.float32)[:, None, :]
    return d


def run(graph: Graph, d: dict) -> np.ndarray:
    return OrtRunner(graph.serialize(), optimize=False).run(d)["out"]


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    return float(np.mean(np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-30)))


def int8_cosine(graph: Graph, data: Dataset) -> float:
    plan = int8_plan(graph, observe(graph, data))
    got = simulate(graph, plan, data)["out"]
    return cosine(np.nan_to_num(got), run(graph, data.arrays))


def prepared(mask: str, sentinel: bool = True) -> Graph:
    names = DEFAULT_PIPELINE if sentinel else tuple(p for p in DEFAULT_PIPELINE if p != "sentinel_masks")
    return run_passes(Graph(attention_model(mask)), names)


def test_detects_sentinels_orders_of_magnitude_beyond_the_rest():
    assert sentinel_entries(np.array([0.0, -np.inf, FMIN, -1e9, 3.0])).tolist() == [False, True, True, True, False]
    assert not sentinel_entries(np.array([0.5, -2.0, 40.0])).any()  # ordinary biases stay
    assert sentinel_entries(np.array([-10000.0, 0.0])).tolist() == [True, False]  # old BERT's -1e4
    assert not sentinel_entries(np.array([-10000.0, 300.0, 20.0])).any()  # not beyond the rest


def test_causal_float_min_mask_is_rewritten_and_float_outputs_hold():
    d = feeds("causal")
    ref = run(prepared("causal", sentinel=False), d)
    g = prepared("causal")
    (rec,) = g.records["sentinel_rewrites"]
    assert rec["kind"] == "constant" and rec["tensor"] == "causal_mask" and rec["entries"] == S * (S - 1) // 2
    assert float(g.initializer(rec["rewritten"]).min()) == -PLACEHOLDER
    np.testing.assert_allclose(run(g, d), ref, rtol=1e-5, atol=1e-5)
    before = g.serialize()
    g2, (done,) = scale_masks(g, Dataset(d))
    assert done["scaled_to"] is not None and -PLACEHOLDER < done["scaled_to"] < -20  # the score range + margin
    np.testing.assert_allclose(run(g2, d), ref, rtol=1e-4, atol=1e-5)
    assert g.serialize() == before and "scaled_to" not in g.records["sentinel_rewrites"][0]  # a new graph; the given one is as it was
    assert float(g.initializer(rec["rewritten"]).min()) == -PLACEHOLDER
    assert g2.records["sentinel_rewrites"][0]["scaled_to"] == done["scaled_to"]  # the new graph carries the records
    g3 = g2.copy()  # and any later pass's copy of it keeps them, as its own
    g3.records["sentinel_rewrites"][0]["scaled_to"] = 0.0
    assert g2.records["sentinel_rewrites"][0]["scaled_to"] == done["scaled_to"]


def test_float_min_mask_collapses_int8_without_the_rewrite_and_not_with_it():
    for mask in ("causal", "bert"):
        data = Dataset(feeds(mask, 96))
        broken = int8_cosine(prepared(mask, sentinel=False), data)
        g = prepared(mask)
        assert len(g.records["sentinel_rewrites"]) == 1
        g, _ = scale_masks(g, data)
        fixed = int8_cosine(g, data)
        assert broken < 0.9 and fixed > 0.97, (mask, broken, fixed)


def test_bert_padding_mask_through_mul_is_rewritten():
    g = prepared("bert")
    (rec,) = g.records["sentinel_rewrites"]
    assert rec["op"] == "Mul" and rec["tensor"] == "fmin" and rec["original"] == FMIN
    d = feeds("bert")
    np.testing.assert_allclose(run(g, d), run(prepared("bert", sentinel=False), d), rtol=1e-5, atol=1e-5)


def test_float_mask_input_is_guarded_and_reported_only_when_data_holds_sentinels():
    g = prepared("input")
    (rec,) = g.records["sentinel_rewrites"]
    assert rec["kind"] == "input" and not rec["confirmed"]
    d = feeds("input")
    ref = run(prepared("input", sentinel=False), d)
    g, (done,) = scale_masks(g, Dataset(d))
    assert done["confirmed"] and done["original"] == "-inf"
    np.testing.assert_allclose(run(g, d), ref, rtol=1e-4, atol=1e-5)
    assert np.isfinite(run(g, d)).all()
    g2 = prepared("input")
    clean = {**d, "bias": np.zeros_like(d["bias"])}
    assert scale_masks(g2, Dataset(clean))[1] == []  # an ordinary additive input is not a mask


def test_models_without_softmax_are_untouched():
    from tests.models import small_cnn

    g = run_passes(Graph(small_cnn()))
    assert g.records["sentinel_rewrites"] == [] if hasattr(g, "sentinel_rewrites") else True
