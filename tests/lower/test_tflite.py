"""TFLite target: the flatbuffer, full-integer int8, layout, modes, run in ai-edge-litert."""

from __future__ import annotations

import numpy as np
import pytest

from edgeq.graph import Graph
from edgeq.lower import get_target
from edgeq.lower.tflite.schema import fb, op_names, read_model
from edgeq.passes import run_passes
from edgeq.quant.build import int8_plan
from edgeq.quant.calibrate import observe
from edgeq.quant.data import load_dataset
from edgeq.runners import OrtRunner, make_runner
from tests.models import small_cnn, small_cnn_data

tflite = get_target("tflite")


@pytest.fixture(scope="module")
def cnn():
    g = run_passes(Graph(small_cnn(), "small_cnn"))
    x = small_cnn_data(64)
    ranges = observe(g, load_dataset({"input": x}, g))
    ref = OrtRunner(g.serialize()).run({"input": x})["logits"]
    return g, x, ranges, ref


def _plan(g, ranges, **kw):
    plan = int8_plan(g, ranges, target="tflite", **kw)
    plan = tflite.plan_for(g, plan, {})
    return plan


def _run(tmp_path, g, plan, x, options=None, name="m"):
    art = tflite.lower(g, plan, tmp_path, name, options or {})
    return art, make_runner(art).run({"input": x})["logits"]


def test_int8_flatbuffer_facts_and_layout(tmp_path, cnn):
    g, x, ranges, ref = cnn
    art, got = _run(tmp_path, g, _plan(g, ranges), x)
    data = art.path.read_bytes()
    assert data[4:8] == b"TFL3"
    m = read_model(data)
    assert m.version == 3 and not m.buffers[0].data
    ops = op_names(m)
    # float I/O: QUANTIZE first, DEQUANTIZE last; Relu fused; no transposes inside
    assert ops[0] == "QUANTIZE" and ops[-1] == "DEQUANTIZE"
    assert "RELU" not in ops and "TRANSPOSE" not in ops and art.extra["transpose_ops"] == 0
    tensors = m.subgraphs[0].tensors
    conv = next(o for o in m.subgraphs[0].operators if ops[m.subgraphs[0].operators.index(o)] == "CONV_2D")
    assert conv.builtinOptions.fusedActivationFunction == fb.ActivationFunctionType.RELU
    w, b = tensors[conv.inputs[1]], tensors[conv.inputs[2]]
    assert w.type == fb.TensorType.INT8 and list(w.quantization.zeroPoint) == [0] * 8
    assert b.type == fb.TensorType.INT32
    s_in = tensors[conv.inputs[0]].quantization.scale[0]
    np.testing.assert_allclose(b.quantization.scale, np.float32(s_in) * np.asarray(w.quantization.scale, np.float32), rtol=1e-6)
    assert (got.argmax(1) == ref.argmax(1)).mean() >= 0.95


def test_int8_matches_the_plans_integer_simulation(tmp_path, cnn):
    """Same plan, the QDQ model run without fusion (exact fake-quant math): within 1 LSB of the output grid."""
    g, x, ranges, _ = cnn
    plan = _plan(g, ranges)
    _, got = _run(tmp_path, g, plan, x)
    ort = get_target("ort").lower(g, plan, tmp_path, "sim", {"ort_format": False})
    sim = OrtRunner(str(ort.path), optimize=False).run({"input": x})["logits"]
    assert np.abs(got - sim).max() <= plan.activations["logits"].scale * 1.001


def test_int8_io_and_nhwc_io(tmp_path, cnn):
    g, x, ranges, _ = cnn
    plan = _plan(g, ranges)
    _, base = _run(tmp_path, g, plan, x)
    art, got = _run(tmp_path, g, plan, x, {"io_dtype": "int8"}, "io8")
    assert art.inputs[0].dtype == "int8" and art.inputs[0].scale == pytest.approx(plan.activations["input"].scale)
    assert "QUANTIZE" not in art.extra["tflite_ops"] and "DEQUANTIZE" not in art.extra["tflite_ops"]
    np.testing.assert_array_equal(got, base)
    art, got = _run(tmp_path, g, plan, x, {"io_layout": "nhwc"}, "nhwc")
    assert art.inputs[0].shape == [1, 12, 12, 1] and art.extra["transpose_ops"] == 0
    np.testing.assert_array_equal(got, base)


def test_nchw_boundary_transpose_only(tmp_path):
    """A 3-channel input crosses layouts once at the boundary; io_layout=nhwc removes it."""
    from tests.models import small_cnn as make

    m = make()
    m.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 3
    w = next(t for t in m.graph.initializer if t.name == "conv1.w")
    from onnx import numpy_helper

    w.CopyFrom(numpy_helper.from_array(np.random.default_rng(0).normal(0, 0.5, (8, 3, 3, 3)).astype(np.float32), "conv1.w"))
    g = run_passes(Graph(m, "rgb"))
    x = np.random.default_rng(2).normal(0, 1, (8, 3, 12, 12)).astype(np.float32)
    plan = _plan(g, observe(g, load_dataset({"input": x}, g)))
    art, got = _run(tmp_path, g, plan, x)
    assert art.extra["transpose_ops"] == 1
    art2, got2 = _run(tmp_path, g, plan, x, {"io_layout": "nhwc"}, "nhwc")
    assert art2.extra["transpose_ops"] == 0
    np.testing.assert_array_equal(got, got2)


def test_deterministic_bytes(tmp_path, cnn):
    g, _, ranges, _ = cnn
    a = tflite.lower(g, _plan(g, ranges), tmp_path / "a", "m").path.read_bytes()
    b = tflite.lower(g, _plan(g, ranges), tmp_path / "b", "m").path.read_bytes()
    assert a == b


@pytest.mark.parametrize("mode,kw,options,expect", [
    ("float32", {}, {}, "float32"),
    ("float16", {}, {"weights": "float16"}, "float16"),
    ("dynamic", {"mode": "dynamic"}, {}, "dynamic_int8"),
    ("weight_only", {"mode": "weight_only"}, {}, "weight_only_int8"),
    ("int16x8", {"act_bits": 16}, {}, "int16x8"),
    ("int4", {"bits": 4}, {}, "int8"),
])
def test_modes_run_in_litert(tmp_path, cnn, mode, kw, options, expect):
    g, x, ranges, ref = cnn
    plan = _plan(g, ranges, **kw)
    if mode.startswith("float"):
        plan.weights, plan.activations = {}, {}
    art, got = _run(tmp_path, g, plan, x, options, mode)
    assert art.extra["tflite_mode"] == expect
    types = {t.type for t in read_model(art.path.read_bytes()).subgraphs[0].tensors}
    tol = {"float32": 1e-5, "float16": 5e-3}.get(mode, 0.5)
    assert np.abs(got - ref).max() < tol
    if mode == "float16":
        assert fb.TensorType.FLOAT16 in types
    if mode == "int16x8":
        assert fb.TensorType.INT16 in types and fb.TensorType.INT64 in types  # int16 activations, int64 bias
    if mode == "int4":
        assert fb.TensorType.INT4 in types and art.extra["int4_weights"] == 2  # conv1 and fc; dw on the int8 grid
        assert any("4-bit weights stored on the int8 grid" in n for n in art.notes)
    if mode in ("dynamic", "weight_only"):
        assert fb.TensorType.INT8 in types and fb.TensorType.FLOAT32 in types


def test_mixed_plan_float_layer_and_int4_layer(tmp_path, cnn):
    """A mixed plan from the engine: conv1 at 4 bits (native INT4), fc kept float (DEQUANTIZE before it)."""
    from edgeq.quant.linear import symmetric_params

    g, x, ranges, ref = cnn
    plan = _plan(g, ranges)
    w = g.initializer("conv1.w")
    conv = plan.weights["conv1.w"]
    conv.bits, conv.scale = 4, [float(s) for s in symmetric_params(np.abs(w).reshape(8, -1).max(1), 4)[0]]
    plan.weights["fc.w"].bits = None
    plan.activations["logits"].bits = None
    art, got = _run(tmp_path, g, plan, x)
    m = read_model(art.path.read_bytes())
    ops = op_names(m)
    fc = m.subgraphs[0].operators[ops.index("FULLY_CONNECTED")]
    assert m.subgraphs[0].tensors[fc.inputs[1]].type == fb.TensorType.FLOAT32 and ops[ops.index("FULLY_CONNECTED") - 1] in ("DEQUANTIZE", "RESHAPE")
    assert art.extra["int4_weights"] == 1 and art.extra["tflite_mode"] == "mixed_int8"
    assert (got.argmax(1) == ref.argmax(1)).mean() >= 0.9


def test_where_it_runs(tmp_path, cnn):
    g, x, ranges, _ = cnn
    art = tflite.lower(g, _plan(g, ranges), tmp_path, "m", {"android_api": 29})
    where = art.extra["where_it_runs"]
    assert where["xnnpack_delegated"] == where["ops"] == len(read_model(art.path.read_bytes()).subgraphs[0].operators)
    assert where["per_op"]["CONV_2D"]["gpu"] and where["per_op"]["CONV_2D"]["nnapi_min_api"] == 27
    # signed int8 tensors need NNAPI 1.3 (API 30): at API 29 every op falls back to the CPU
    assert "CONV_2D" in where["nnapi"]["cpu_fallback_ops"]
    assert any("deprecated from Android 15" in n for n in art.notes)
    assert "nnapi" not in tflite.lower(g, _plan(g, ranges), tmp_path, "m2", {}).extra["where_it_runs"]


def test_xnnpack_and_builtin_kernels_agree(tmp_path, cnn):
    from edgeq.lower.tflite import LiteRTRunner

    g, x, ranges, _ = cnn
    plan = _plan(g, ranges)
    art = tflite.lower(g, plan, tmp_path, "m", {})
    outs = {k: LiteRTRunner(art, kernels=k).run({"input": x})["logits"] for k in ("auto", "builtin", "reference")}
    lsb = plan.activations["logits"].scale
    assert np.abs(outs["auto"] - outs["builtin"]).max() <= lsb * 1.001
    assert np.abs(outs["builtin"] - outs["reference"]).max() <= lsb * 1.001


def test_grouped_conv_float_and_int8(tmp_path):
    """group=2 (not depthwise): SPLIT, a CONV_2D per group, CONCATENATION; int8 equals the QDQ simulation."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)
    w = numpy_helper.from_array(rng.normal(0, 0.3, (6, 2, 3, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.normal(0, 0.1, 6).astype(np.float32), "b")
    nodes = [helper.make_node("Conv", ["input", "w", "b"], ["c"], group=2, pads=[1, 1, 1, 1], name="gconv"),
             helper.make_node("Relu", ["c"], ["out"], name="relu")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 4, 8, 8])],
                          [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 6, 8, 8])], [w, b])
    graph = run_passes(Graph(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), "gconv"))
    x = rng.normal(0, 1, (16, 4, 8, 8)).astype(np.float32)
    ref = OrtRunner(onnx.ModelProto.SerializeToString(graph.model)).run({"input": x})["out"]
    float_plan = int8_plan(graph, {}, mode="static")
    float_plan.weights = {}
    art = tflite.lower(graph, float_plan, tmp_path, "f", {})
    np.testing.assert_allclose(make_runner(art).run({"input": x})["out"], ref, atol=1e-5)
    assert art.extra["tflite_ops"]["CONV_2D"] == 2 and art.extra["tflite_ops"]["SPLIT"] == 1
    plan = _plan(graph, observe(graph, load_dataset({"input": x}, graph)))
    got = make_runner(tflite.lower(graph, plan, tmp_path, "q", {})).run({"input": x})["out"]
    sim_art = get_target("ort").lower(graph, plan, tmp_path, "sim", {"ort_format": False})
    sim = OrtRunner(str(sim_art.path), optimize=False).run({"input": x})["out"]
    assert np.abs(got - sim).max() <= plan.activations["out"].scale * 1.001


@pytest.mark.parametrize("direction", ["reverse", "bidirectional"])
def test_lstm_directions_match_onnxruntime(tmp_path, direction):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgeq.quant.plan import QuantPlan

    rng = np.random.default_rng(0)
    dirs, hidden, size = (2 if direction == "bidirectional" else 1), 5, 3
    inits = [numpy_helper.from_array(rng.normal(0, 0.5, s).astype(np.float32), n) for n, s in
             (("W", (dirs, 4 * hidden, size)), ("R", (dirs, 4 * hidden, hidden)), ("B", (dirs, 8 * hidden)))]
    node = helper.make_node("LSTM", ["X", "W", "R", "B"], ["Y", "Y_h"], hidden_size=hidden, direction=direction)
    g = helper.make_graph([node], "lstm", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [7, 2, size])],
                          [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [7, dirs, 2, hidden]),
                           helper.make_tensor_value_info("Y_h", TensorProto.FLOAT, [dirs, 2, hidden])], inits)
    graph = run_passes(Graph(helper.make_model(g, opset_imports=[helper.make_opsetid("", 14)]), "lstm"))
    art = tflite.lower(graph, QuantPlan(graph.sha256()), tmp_path, "lstm", {})
    runner = make_runner(art)
    for _ in range(2):  # a second call starts from zero state too (LiteRT keeps it in variable tensors)
        x = rng.normal(0, 1, (7, 2, size)).astype(np.float32)
        got, ref = runner.run({"X": x}), OrtRunner(onnx.ModelProto.SerializeToString(graph.model)).run({"X": x})
        for k in ("Y", "Y_h"):
            np.testing.assert_allclose(got[k], ref[k], atol=1e-5)
    assert any("reset" in n for n in art.notes)


def test_1d_convs_stay_integer_when_lifted_to_2d(tmp_path):
    """A 1-D Conv(+Relu) is lowered as a height-1 CONV_2D (LiteRT is 2-D): the lifted tensors keep
    the plan's grids and weights, so the kernel is int8 with its Relu fused (silero-vad's encoder
    ran float with float32 weights, 1.7x the predicted bytes, before), and matches the plan's
    integer simulation on onnxruntime."""
    from onnx import TensorProto, helper, numpy_helper

    from edgeq.pipeline import predicted_bytes

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(0, 0.3, s).astype(np.float32), n)
             for n, s in (("c1.w", (16, 4, 5)), ("c1.b", (16,)), ("c2.w", (8, 16, 3)), ("c2.b", (8,)))]
    nodes = [helper.make_node("Conv", ["input", "c1.w", "c1.b"], ["y1"], name="c1", pads=[2, 2]),
             helper.make_node("Relu", ["y1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "c2.w", "c2.b"], ["logits"], name="c2", strides=[2])]
    model = helper.make_model(helper.make_graph(nodes, "conv1d", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 4, 32])],
                                                [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 8, 16])], inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    g = run_passes(Graph(model, "conv1d"))
    x = rng.normal(0, 1, (16, 4, 32)).astype(np.float32)
    plan = _plan(g, observe(g, load_dataset({"input": x}, g)))
    art, got = _run(tmp_path, g, plan, x)
    m = read_model(art.path.read_bytes())
    ops, sg = op_names(m), m.subgraphs[0]
    convs = [o for o, name in zip(sg.operators, ops) if name == "CONV_2D"]
    assert len(convs) == 2 and "RELU" not in ops
    assert all(sg.tensors[c.inputs[1]].type == fb.TensorType.INT8 for c in convs)
    assert convs[0].builtinOptions.fusedActivationFunction == fb.ActivationFunctionType.RELU
    ort = get_target("ort").lower(g, plan, tmp_path, "sim", {"ort_format": False})
    sim = OrtRunner(str(ort.path), optimize=False).run({"input": x})["logits"]
    assert np.abs(got - sim).max() <= plan.activations["logits"].scale * 1.001
    # int8 weights as predicted (float32 ones were 2.3x); the rest is the lift's shape constants
    assert abs(tflite.payload(art) / predicted_bytes(g, plan, "tflite", {})["total"] - 1) < 0.1


def test_slower_than_float_is_judged_on_the_targets_own_runtime(tmp_path, cnn):
    """A LiteRT int8 artifact slower than float *onnxruntime* may still beat a float .tflite (ddddocr:
    1.15x vs onnxruntime, 0.83x vs LiteRT float): compile times the float model lowered by the same
    target beside it, and the warning names that baseline."""
    from edgeq.lower.tflite import LiteRTRunner
    from edgeq.pipeline import Options, float_on_target
    from edgeq.verify import quality_warnings

    g, x, ranges, _ = cnn
    plan = _plan(g, ranges)
    art = tflite.lower(g, plan, tmp_path, "q", {})
    got = float_on_target(tflite, g, plan, LiteRTRunner(art), {"input": x[:1]}, Options(latency_runs=5))
    assert got is not None and got[0]["p50"] > 0 and got[1]["p50"] > 0 and got[0]["runs"] >= 5
    assert not list(tmp_path.glob("float*"))  # timed from a temporary folder, nothing left beside the artifact
    (slow,) = quality_warnings("tflite", {"sqnr_db": 40.0, "max_abs_err": 0.0}, 1.0, 2.0, baseline="the float model on tflite's runtime")
    assert "2.00x slower than the float model on tflite's runtime" in slow
