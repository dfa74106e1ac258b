"""Peak memory from tensor liveness over the execution order."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgeq.graph import Graph
from edgeq.op_cost import Sizer, op_costs
from edgeq.profile.memory import memory_summary


def residual_graph() -> Graph:
    """x[1,4,8,8] -> Relu a -> Relu b -> Add(a, b) -> Reshape -> y; plus a constant weight."""
    shape = [1, 4, 8, 8]
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="r1"), helper.make_node("Relu", ["a"], ["b"], name="r2"),
             helper.make_node("Mul", ["b", "w"], ["c"], name="mul"), helper.make_node("Add", ["a", "c"], ["d"], name="add"),
             helper.make_node("Reshape", ["d", "s"], ["y"], name="flat")]
    g = helper.make_graph(nodes, "res", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 256])],
                          [numpy_helper.from_array(np.ones(shape, np.float32), "w"),
                           numpy_helper.from_array(np.array([1, 256], np.int64), "s")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    return Graph(onnx.shape_inference.infer_shapes(m), "res")


def test_liveness_peak():
    g = residual_graph()
    costs = op_costs(g)
    mem = memory_summary(costs, Sizer(g, None, 1).act_bytes, ["x"], ["y"])
    t = 4 * 256  # bytes of one [1,4,8,8] float tensor
    # at `mul`: a (kept for the Add), b (read) and c (written) are live; x died after r1
    assert mem["peak_activation_bytes"] == 3 * t
    assert mem["peak_at"] in ("mul", "add")
    assert mem["weight_bytes"] == t  # w; a Reshape's shape constant is metadata, not a weight read
    assert mem["peak_bytes"] == 3 * t + t


def test_reshape_aliases_its_input():
    g = residual_graph()
    mem = memory_summary(op_costs(g), Sizer(g, None, 1).act_bytes, ["x"], ["y"])
    assert mem["peak_activation_bytes"] < 4 * 4 * 256  # y shares d's buffer, so never a 4th copy


def test_quantized_activations_are_smaller(small_compiled):
    report, _, _ = small_compiled
    mem = report["targets"][0]["profile"]["memory"]
    assert mem["quant"]["peak_activation_bytes"] < mem["float"]["peak_activation_bytes"]
    assert mem["quant"]["weight_bytes"] < mem["float"]["weight_bytes"]
