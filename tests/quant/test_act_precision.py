"""--act-bits auto (edgeq/quant/act_precision.py): per-tensor activation sensitivity decides
int8, int16 or float; SmoothQuant folds outlier channels exactly; logits never tie."""

from __future__ import annotations

import numpy as np
import onnx
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from edgeq.cli import main
from edgeq.compare import sqnr_db
from edgeq.graph import Graph
from edgeq.passes import run_passes
from edgeq.pipeline import compile as edgeq_compile
from edgeq.quant.act_precision import smooth_layernorms, wide_bits
from edgeq.quant.act_search import choose, tie_rate
from edgeq.quant.build import int8_plan
from edgeq.quant.calibrate import observe
from edgeq.quant.data import Dataset
from edgeq.quant.simulate import simulate
from edgeq.runners import OrtRunner
from tests.passes.test_sentinel import attention_model, cosine, feeds

T, D = 6, 16


def residual_layernorm_stack(outlier: float = 40.0, stream_outlier: float = 40.0) -> onnx.ModelProto:
    """x -> (x W0 + x) -> LayerNorm (one channel of scale `outlier`) -> W1 -> Relu -> W2 -> + residual -> y.
    The residual stream carries an outlier channel too, as trained transformers do."""
    rng = np.random.default_rng(0)
    gamma = np.ones(D, np.float32)
    gamma[3] = outlier
    boost = np.ones(D, np.float32)
    boost[5] = stream_outlier
    inits = [numpy_helper.from_array(rng.normal(0, 0.3, (D, D)).astype(np.float32), "w0"),
             numpy_helper.from_array(boost, "boost"),
             numpy_helper.from_array(gamma, "ln_scale"), numpy_helper.from_array(rng.normal(0, 0.1, D).astype(np.float32), "ln_bias"),
             numpy_helper.from_array(rng.normal(0, 0.3, (D, 2 * D)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.normal(0, 0.3, (2 * D, D)).astype(np.float32), "w2")]
    nodes = [helper.make_node("Mul", ["x", "boost"], ["xb"]),
             helper.make_node("MatMul", ["xb", "w0"], ["h0"]), helper.make_node("Add", ["h0", "xb"], ["stream"]),
             helper.make_node("LayerNormalization", ["stream", "ln_scale", "ln_bias"], ["ln"], axis=-1),
             helper.make_node("MatMul", ["ln", "w1"], ["h1"]), helper.make_node("Relu", ["h1"], ["r1"]),
             helper.make_node("MatMul", ["r1", "w2"], ["h2"]), helper.make_node("Add", ["h2", "stream"], ["y"])]
    g = helper.make_graph(nodes, "residual_ln", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", T, D])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", T, D])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def stack_data(n: int = 96, seed: int = 0) -> Dataset:
    return Dataset({"x": np.random.default_rng(seed).normal(0, 1, (n, T, D)).astype(np.float32)})


def coarse_logits_model() -> onnx.ModelProto:
    """A classifier whose class 0 sits at -1000: an int8 output grid then has a 4.0 step and ties argmax."""
    rng = np.random.default_rng(0)
    bias = np.zeros(10, np.float32)
    bias[0] = -1000.0
    inits = [numpy_helper.from_array(rng.normal(0, 0.5, (8, 10)).astype(np.float32), "w"), numpy_helper.from_array(bias, "b")]
    g = helper.make_graph([helper.make_node("Gemm", ["x", "w", "b"], ["logits"])], "coarse",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def float_out(graph: Graph, data: Dataset) -> dict:
    return OrtRunner(graph.serialize(), optimize=False).run_batches(data, 32)


def test_smoothquant_folds_exactly_and_helps_int8():
    data = stack_data()
    g = run_passes(Graph(residual_layernorm_stack(stream_outlier=1.0)))
    ref = float_out(g, data)
    before = sqnr_db(ref["y"], simulate(g, only(int8_plan(g, observe(g, data)), "ln"), data)["y"])
    given, orig = g.serialize(), g
    g, facts = smooth_layernorms(orig, data)
    done, tensors = facts["smoothquant"], facts["tensors"]
    assert [d["consumers"] for d in done] and done[0]["outlier_ratio"] > 6 > done[0]["outlier_ratio_after"]
    assert set(tensors) == {"ln_scale", "ln_bias", "w1"}
    np.testing.assert_allclose(float_out(g, data)["y"], ref["y"], rtol=1e-4, atol=1e-4)  # exact up to float rounding
    assert g.serialize() != given and orig.serialize() == given  # a new graph; the given one is as it was
    after = sqnr_db(ref["y"], simulate(g, only(int8_plan(g, observe(g, data)), "ln"), data)["y"])
    assert after > before + 6, (before, after)  # the LayerNorm output's int8 noise, before and after


def only(plan, name: str):
    """The plan with every activation but `name` float (weights as planned)."""
    for t, a in plan.activations.items():
        if t != name:
            a.bits = None
    return plan


def test_auto_widens_the_sensitive_stream_and_reaches_the_goal():
    data = stack_data()
    g = run_passes(Graph(residual_layernorm_stack()))
    plan = int8_plan(g, observe(g, data))
    ref = float_out(g, data)
    all8 = sqnr_db(ref["y"], simulate(g, plan, data)["y"])
    d = choose(g, plan, data, ["ort"])
    assert d.wide and all(w["bits"] is None for w in d.wide) and len(d.wide) <= d.max_wide  # float: faster than int16 QDQ
    ranked = [w["sensitivity"] for w in d.wide]
    assert ranked == sorted(ranked, reverse=True)  # the most sensitive first
    widened = {t for w in d.wide for t in w["members"]}
    assert all(plan.activations[t].bits is None for t in widened)
    assert all(a.bits == 8 for t, a in plan.activations.items() if t not in widened)
    chosen = sqnr_db(ref["y"], simulate(g, plan, data)["y"])
    assert chosen > all8 + 6, (all8, chosen)
    assert chosen >= 30 or len(d.wide) == d.max_wide  # the goal, or the cost limit stopped it


def test_wide_means_float_where_int16_is_not_faster():
    assert wide_bits(["ort"]) is None  # ORT runs int16 QDQ as DQ -> float -> Q (targets/ort.toml)
    assert wide_bits(["coreml"]) is None and wide_bits(["tflite"]) is None and wide_bits(["ort", "coreml"]) is None
    data = stack_data(64)
    g = run_passes(Graph(residual_layernorm_stack()))
    plan = int8_plan(g, observe(g, data))
    d = choose(g, plan, data, ["coreml"])
    assert d.wide and all(plan.activations[w["tensor"]].bits is None for w in d.wide)


def test_logits_that_would_tie_are_kept_precise():
    rng = np.random.default_rng(1)
    data = Dataset({"x": rng.normal(0, 1, (128, 8)).astype(np.float32)})
    g = run_passes(Graph(coarse_logits_model()))
    plan = int8_plan(g, observe(g, data))
    ref = float_out(g, data)["logits"]
    assert tie_rate(ref, simulate(g, plan, data)["logits"]) > 0.2  # int8 logits tie
    d = choose(g, plan, data, ["ort"])
    (entry,) = d.logits
    assert entry["tie_rate"] > 0.2 and entry["tie_rate_after"] == 0.0
    assert entry["bits"] in (16, None) and plan.activations["logits"].bits == entry["bits"]


def test_compile_reports_wide_activations_and_keeps_them_float(tmp_path):
    data = stack_data(80)
    report = edgeq_compile(residual_layernorm_stack(), "ort", calib=data.arrays, out=tmp_path / "o", latency_runs=3,
                           quant=_auto())
    ap = report["act_precision"]
    assert ap["mode"] == "auto" and ap["kept_wide"] == len(ap["wide"]) >= 1
    assert all("sensitivity" in w and w["bits"] is None for w in ap["wide"])
    assert any("kept float" in w for w in report["warnings"])
    m = onnx.load(report["targets"][0]["artifact"])
    zps = {t.name for t in m.graph.initializer if t.name.endswith("_act_zero_point")}
    assert zps and not any(f"{w['tensor']}_act_zero_point" in zps for w in ap["wide"])  # no Q/DQ on float ones
    assert report["targets"][0]["verify"]["sqnr_db"] >= 28


def test_float_min_mask_compiles_to_int8_without_collapse(tmp_path):
    d = feeds("bert", 96)
    report = edgeq_compile(attention_model("bert"), "ort", calib=d, out=tmp_path / "o", latency_runs=3, quant=_auto())
    (rec,) = report["act_precision"]["sentinel_rewrites"]
    assert rec["tensor"] == "fmin" and rec["scaled_to"] is not None
    assert any(w.startswith("sentinel mask: constant 'fmin'") for w in report["warnings"])
    assert report["targets"][0]["verify"]["cosine"] >= 0.99
    # The default int8 recipe gets the rewrite too (the pass runs on every compile).
    plain = edgeq_compile(attention_model("bert"), "ort", calib=d, out=tmp_path / "p", latency_runs=3)
    assert plain["act_precision"]["sentinel_rewrites"] and plain["targets"][0]["verify"]["cosine"] >= 0.97


def _auto():
    from edgeq.quant.mixed import QuantOptions

    return QuantOptions(act_bits="auto")


def test_bad_act_bits_are_one_line_errors(tmp_path):
    np.savez(tmp_path / "c.npz", x=stack_data(8).arrays["x"])
    onnx.save(residual_layernorm_stack(), tmp_path / "m.onnx")
    for args, match in ((["--act-bits", "4"], "--act-bits 4: activations are held at 8 or 16 bits"),
                        (["--act-bits", "16", "--target", "coreml"], "--act-bits 16: the coreml target holds [8]-bit")):
        out = tmp_path / "out"
        r = CliRunner().invoke(main, ["compile", str(tmp_path / "m.onnx"), "--calib", str(tmp_path / "c.npz"), "--out", str(out), *args])
        lines = [ln for ln in r.output.splitlines() if ln.strip()]
        assert r.exit_code == 2 and len(lines) == 1 and match in lines[0], r.output
        assert not out.exists()


def test_cosine_helper_agrees_with_identity():
    a = np.random.default_rng(0).normal(size=(4, 5))
    assert abs(cosine(a, a) - 1.0) < 1e-12
