"""TFLite target: op versions, float64 / wide unsigned element types, dilated MaxPool, checked against onnxruntime."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

from edgeq.graph import Graph
from edgeq.lower import get_target
from edgeq.lower.tflite.schema import op_names, read_model
from edgeq.quant.plan import QuantPlan
from edgeq.runners import OrtRunner, make_runner

tflite = get_target("tflite")


def _model(node, inputs, outputs, opset=17, initializers=()):
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
                          [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs], list(initializers))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def _lower_and_compare(tmp_path, model, feeds, stem, ref=None):
    """Lower in float, run in LiteRT; outputs must equal onnxruntime's (or `ref`) bit for bit, dtype included."""
    graph = Graph(model, stem)
    plan = QuantPlan(model_sha256=graph.sha256(), target="tflite", mode="static")
    art = tflite.lower(graph, plan, tmp_path, stem, {})
    got = make_runner(art).run(feeds)
    ref = ref if ref is not None else OrtRunner(graph.serialize()).run(feeds)
    for name, want in ref.items():
        assert got[name].dtype == want.dtype, name
        np.testing.assert_array_equal(got[name], want)
    return read_model(art.path.read_bytes())


def test_expand_is_broadcast_to_v2(tmp_path):
    """LiteRT registers BROADCAST_TO from version 2: a version-1 opcode would not load."""
    shape = helper.make_tensor("shape", TensorProto.INT64, [3], [2, 3, 4])
    node = helper.make_node("Expand", ["x", "shape"], ["y"])
    m = _model(node, [("x", TensorProto.FLOAT, [3, 1])], [("y", TensorProto.FLOAT, [2, 3, 4])], initializers=[shape])
    x = np.arange(3, dtype=np.float32).reshape(3, 1)
    model = _lower_and_compare(tmp_path, m, {"x": x}, "expand")
    assert op_names(model) == ["BROADCAST_TO"]
    assert [c.version for c in model.operatorCodes] == [2]


@pytest.mark.parametrize("src,dst", [(TensorProto.DOUBLE, TensorProto.FLOAT), (TensorProto.FLOAT, TensorProto.DOUBLE),
                                     (TensorProto.DOUBLE, TensorProto.FLOAT16), (TensorProto.FLOAT16, TensorProto.DOUBLE)])
def test_cast_float64(tmp_path, src, dst):
    node = helper.make_node("Cast", ["x"], ["y"], to=dst)
    m = _model(node, [("x", src, [2, 5])], [("y", dst, [2, 5])])
    x = np.array([[0.5, -1.25, 3.0e-3, 6.0e4, 1.0e-7], [1 / 3, -2 / 3, 5e4, -60000.0, 0.0]])
    x = x.astype(helper.tensor_dtype_to_np_dtype(src))
    assert op_names(_lower_and_compare(tmp_path, m, {"x": x}, "cast")) == ["CAST"]


@pytest.mark.parametrize("op", ["Max", "Min"])
@pytest.mark.parametrize("elem,np_type", [(TensorProto.UINT16, np.uint16), (TensorProto.UINT32, np.uint32)])
def test_max_min_wide_unsigned(tmp_path, op, elem, np_type):
    """Compared in a wider signed type (values above the signed range included), cast back exactly.

    onnxruntime has no CPU kernel for these types, so numpy is the reference."""
    node = helper.make_node(op, ["a", "b"], ["y"])
    m = _model(node, [("a", elem, [4]), ("b", elem, [1])], [("y", elem, [4])], opset=13)
    top = np.iinfo(np_type).max
    a = np.array([0, 7, top, top - 5], np_type)
    b = np.array([top - 3], np_type)
    want = {"y": (np.maximum if op == "Max" else np.minimum)(a, b)}
    ops = op_names(_lower_and_compare(tmp_path, m, {"a": a, "b": b}, "maxmin", want))
    assert ("MAXIMUM" if op == "Max" else "MINIMUM") in ops and "CAST" in ops


def test_max_uint64_still_refused(tmp_path):
    from edgeq.errors import UnsupportedOpError

    node = helper.make_node("Max", ["a", "b"], ["y"])
    m = _model(node, [("a", TensorProto.UINT64, [4]), ("b", TensorProto.UINT64, [4])], [("y", TensorProto.UINT64, [4])], opset=13)
    graph = Graph(m, "u64")
    with pytest.raises(UnsupportedOpError, match="uint64"):
        tflite.lower(graph, QuantPlan(model_sha256=graph.sha256(), target="tflite", mode="static"), tmp_path, "u64", {})


@pytest.mark.parametrize("attrs,out_hw", [
    (dict(kernel_shape=[2, 2], dilations=[2, 2]), [5, 6]),
    (dict(kernel_shape=[3, 2], dilations=[2, 3], strides=[2, 1], pads=[1, 1, 0, 1]), [2, 7]),
    (dict(kernel_shape=[2, 2], dilations=[2, 2], auto_pad="SAME_UPPER"), [7, 8]),
    (dict(kernel_shape=[2, 3], dilations=[3, 2], strides=[2, 2], ceil_mode=1), [3, 3]),
])
def test_dilated_max_pool(tmp_path, attrs, out_hw):
    """MAX_POOL_2D has no dilation: strided-slice taps folded with MAXIMUM, equal to ONNX's reference.

    onnxruntime ignores the dilation when it sizes auto_pad SAME (6x7 here where the spec says 7x8),
    so onnx.reference is the judge."""
    node = helper.make_node("MaxPool", ["x"], ["y"], **attrs)
    m = _model(node, [("x", TensorProto.FLOAT, [1, 2, 7, 8])], [("y", TensorProto.FLOAT, [1, 2, *out_hw])])
    x = np.random.default_rng(0).standard_normal((1, 2, 7, 8)).astype(np.float32)
    want = {"y": ReferenceEvaluator(m).run(None, {"x": x})[0]}
    ops = op_names(_lower_and_compare(tmp_path, m, {"x": x}, "pool", want))
    assert "MAX_POOL_2D" not in ops and "STRIDED_SLICE" in ops
