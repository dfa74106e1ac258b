"""Core ML program boundary: inputs of dtypes Core ML cannot take (uint8, int8, uint32, float64...)
enter as int32 / fp32, converted by the runner; narrow integer results wrap as in ONNX; outputs come
back in their ONNX dtype. Each model is checked against ONNX Runtime in the MIL reference executor."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeq.errors import CalibrationError, UnsupportedOpError
from edgeq.frontend import load
from edgeq.passes import run_passes
from edgeq.quant.plan import QuantPlan
from edgeq.runners import OrtRunner, make_runner

pytest.importorskip("coremltools")
coreml = pytest.importorskip("edgeq.lower.coreml")
vi = helper.make_tensor_value_info


def _model(nodes, inputs, outputs, inits=()) -> onnx.ModelProto:
    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _lower(model: onnx.ModelProto, tmp_path, precision: str = "fp32"):
    graph = run_passes(load(model))
    return coreml.lower(graph, QuantPlan(model_sha256=graph.sha256()), tmp_path, "m", {"coreml_precision": precision})


def _run_both(model: onnx.ModelProto, feeds: dict, tmp_path) -> tuple[dict, dict, object]:
    art = _lower(model, tmp_path)
    return make_runner(art).run(feeds), OrtRunner(model.SerializeToString()).run(feeds), art


def test_uint8_image_input_cast_and_scaled(tmp_path):
    model = _model([helper.make_node("Cast", ["img"], ["f"], to=TensorProto.FLOAT), helper.make_node("Mul", ["f", "scale"], ["y"])],
                   [vi("img", TensorProto.UINT8, [1, 3, 4, 4])], [vi("y", TensorProto.FLOAT, [1, 3, 4, 4])],
                   [numpy_helper.from_array(np.array(1 / 255, np.float32), "scale")])
    img = np.random.default_rng(0).integers(0, 256, (1, 3, 4, 4)).astype(np.uint8)
    got, ref, art = _run_both(model, {"img": img}, tmp_path)
    assert got["y"].dtype == np.float32
    np.testing.assert_allclose(got["y"], ref["y"], rtol=1e-6, atol=1e-7)
    assert [s.dtype for s in art.inputs] == ["int32"]
    assert any("uint8 input 'img' is int32 in the program" in n for n in art.notes)


def test_float64_input_runs_in_fp32_and_returns_float64(tmp_path):
    model = _model([helper.make_node("Mul", ["x", "k"], ["y"])], [vi("x", TensorProto.DOUBLE, [2, 3])],
                   [vi("y", TensorProto.DOUBLE, [2, 3])], [numpy_helper.from_array(np.array(1.5, np.float64), "k")])
    x = np.random.default_rng(1).standard_normal((2, 3))
    got, ref, art = _run_both(model, {"x": x}, tmp_path)
    assert got["y"].dtype == np.float64
    np.testing.assert_allclose(got["y"], ref["y"], rtol=1e-6)
    assert [s.dtype for s in art.inputs] == ["float32"]
    assert any("float64 input 'x' is float32 in the program" in n and "precision" in n for n in art.notes)


@pytest.mark.parametrize("op, dtype, a, b", [
    ("Add", TensorProto.UINT8, [200, 255, 7], [100, 1, 3]),
    ("Sub", TensorProto.UINT8, [3, 0, 9], [5, 1, 2]),
    ("Mul", TensorProto.UINT8, [20, 16, 3], [20, 16, 4]),
    ("Add", TensorProto.INT8, [100, -128, 5], [100, -1, -7]),
    ("Mul", TensorProto.INT16, [300, -200, 7], [300, 200, 9]),
])
def test_narrow_integer_results_wrap_as_in_onnx(tmp_path, op, dtype, a, b):
    """Computed in int32 inside the program, the result is wrapped back to its width there, so
    later ops and the output see ONNX's values (200 + 100 = 44 in uint8)."""
    np_dtype = helper.tensor_dtype_to_np_dtype(dtype)
    model = _model([helper.make_node(op, ["a", "b"], ["y"])], [vi("a", dtype, [3]), vi("b", dtype, [3])], [vi("y", dtype, [3])])
    feeds = {"a": np.array(a, np_dtype), "b": np.array(b, np_dtype)}
    got, ref, _ = _run_both(model, feeds, tmp_path)
    assert got["y"].dtype == np_dtype
    np.testing.assert_array_equal(got["y"], ref["y"])


def test_wrapped_value_feeds_the_next_op(tmp_path):
    """uint8 Add wraps before Cast to float: 250 + 10 is 4, not 260."""
    model = _model([helper.make_node("Add", ["a", "b"], ["s"]), helper.make_node("Cast", ["s"], ["y"], to=TensorProto.FLOAT)],
                   [vi("a", TensorProto.UINT8, [2]), vi("b", TensorProto.UINT8, [2])], [vi("y", TensorProto.FLOAT, [2])])
    feeds = {"a": np.array([250, 1], np.uint8), "b": np.array([10, 2], np.uint8)}
    got, ref, _ = _run_both(model, feeds, tmp_path)
    np.testing.assert_array_equal(got["y"], ref["y"])
    np.testing.assert_array_equal(got["y"], [4, 3])


def test_uint32_outside_int32_is_refused(tmp_path):
    model = _model([helper.make_node("Max", ["a", "b"], ["y"])], [vi("a", TensorProto.UINT32, [2]), vi("b", TensorProto.UINT32, [2])],
                   [vi("y", TensorProto.UINT32, [2])])
    got, ref, art = _run_both(model, {"a": np.array([1, 9], np.uint32), "b": np.array([4, 2], np.uint32)}, tmp_path)
    assert got["y"].dtype == np.uint32
    np.testing.assert_array_equal(got["y"], ref["y"])
    with pytest.raises(CalibrationError, match="outside int32"):
        make_runner(art).run({"a": np.array([1, 2**31 + 5], np.uint32), "b": np.array([4, 2], np.uint32)})


def test_bfloat16_input_is_refused(tmp_path):
    model = _model([helper.make_node("Cast", ["x"], ["y"], to=TensorProto.FLOAT)], [vi("x", TensorProto.BFLOAT16, [2])],
                   [vi("y", TensorProto.FLOAT, [2])])
    with pytest.raises(UnsupportedOpError, match="bfloat16"):
        _lower(model, tmp_path)
