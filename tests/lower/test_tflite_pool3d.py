"""TFLite target: 3-D MaxPool / AveragePool as two 2-D pools, checked against onnxruntime."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from edgeq.errors import UnsupportedOpError
from edgeq.graph import Graph
from edgeq.lower import get_target
from edgeq.lower.tflite.schema import op_names, read_model
from edgeq.quant.plan import QuantPlan
from edgeq.runners import OrtRunner, make_runner

tflite = get_target("tflite")
SHAPE = [2, 3, 5, 6, 7]  # N, C, D, H, W


def _model(op: str, out_shape, **attrs):
    node = helper.make_node(op, ["x"], ["y"], **attrs)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, SHAPE)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return Graph(m, "pool3d")


def _lower(tmp_path, graph):
    plan = QuantPlan(model_sha256=graph.sha256(), target="tflite", mode="static")
    return tflite.lower(graph, plan, tmp_path, "m", {})


@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
@pytest.mark.parametrize("attrs,out_dhw", [
    (dict(kernel_shape=[2, 2, 2]), [4, 5, 6]),
    (dict(kernel_shape=[3, 2, 3], strides=[2, 2, 1]), [2, 3, 5]),
    (dict(kernel_shape=[2, 3, 2], strides=[1, 3, 2], pads=[0] * 6, auto_pad="NOTSET"), [4, 2, 3]),
])
def test_pool_3d(tmp_path, op, attrs, out_dhw):
    graph = _model(op, SHAPE[:2] + out_dhw, **attrs)
    x = np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32)
    art = _lower(tmp_path, graph)
    got = make_runner(art).run({"x": x})["y"]
    want = OrtRunner(graph.serialize()).run({"x": x})["y"]
    assert got.shape == want.shape
    if op == "MaxPool":  # max only selects: bit exact
        np.testing.assert_array_equal(got, want)
    else:  # mean of equal-size means: exact up to float summation order
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    pool = "MAX_POOL_2D" if op == "MaxPool" else "AVERAGE_POOL_2D"
    assert op_names(read_model(art.path.read_bytes())).count(pool) == 2


@pytest.mark.parametrize("attrs,out_dhw,match", [
    (dict(kernel_shape=[2, 2, 2], pads=[1, 0, 0, 1, 0, 0]), [6, 5, 6], "pads"),
    (dict(kernel_shape=[2, 2, 2], auto_pad="SAME_UPPER"), [5, 6, 7], "pads"),
    (dict(kernel_shape=[2, 2, 2], strides=[2, 2, 2], ceil_mode=1), [3, 3, 4], "ceil_mode"),
    (dict(kernel_shape=[2, 2, 2], dilations=[2, 1, 1]), [3, 5, 6], "dilated"),
])
def test_pool_3d_refused(tmp_path, attrs, out_dhw, match):
    """Padded, ceil-mode and dilated 3-D windows are not equal-size 2-D windows: one-line refusal."""
    with pytest.raises(UnsupportedOpError, match=match):
        _lower(tmp_path, _model("MaxPool", SHAPE[:2] + out_dhw, **attrs))
