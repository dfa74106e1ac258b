"""unroll_lstm (edgeq/passes/rnn.py): the unrolled graph computes what onnxruntime's LSTM does."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeq.graph import Graph
from edgeq.passes import PASSES, infer
from edgeq.passes.rnn import stateful
from edgeq.runners import OrtRunner

T, B, IN, H = 5, 2, 3, 4


def lstm_model(direction="forward", layout=0, state_inputs=True, opset=17):
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(0, 0.5, (1, 4 * H, IN)).astype(np.float32), "W"),
             numpy_helper.from_array(rng.normal(0, 0.5, (1, 4 * H, H)).astype(np.float32), "R"),
             numpy_helper.from_array(rng.normal(0, 0.5, (1, 8 * H)).astype(np.float32), "B")]
    xs = [T, B, IN] if layout == 0 else [B, T, IN]
    ss = [1, B, H] if layout == 0 else [B, 1, H]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, xs)]
    if state_inputs:
        inputs += [helper.make_tensor_value_info("h0", TensorProto.FLOAT, ss), helper.make_tensor_value_info("c0", TensorProto.FLOAT, ss)]
    node = helper.make_node("LSTM", ["x", "W", "R", "B", "", "h0" if state_inputs else "", "c0" if state_inputs else ""],
                            ["y", "yh", "yc"], name="lstm", hidden_size=H, direction=direction,
                            **({"layout": layout} if opset >= 14 else {}))
    ys = [T, 1, B, H] if layout == 0 else [B, T, 1, H]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ys), helper.make_tensor_value_info("yh", TensorProto.FLOAT, ss),
               helper.make_tensor_value_info("yc", TensorProto.FLOAT, ss)]
    g = helper.make_graph([node], "lstm", inputs, outputs, inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize("direction,layout,opset", [("forward", 0, 17), ("reverse", 0, 17), ("forward", 0, 11)])
def test_unrolled_lstm_matches_onnxruntime(direction, layout, opset):
    model = lstm_model(direction, layout, opset=opset)
    g = infer(Graph(model))
    assert stateful(g, g.nodes[0])
    rng = np.random.default_rng(1)
    xs = (T, B, IN) if layout == 0 else (B, T, IN)
    ss = (1, B, H) if layout == 0 else (B, 1, H)
    feeds = {"x": rng.normal(size=xs).astype(np.float32), "h0": rng.normal(size=ss).astype(np.float32),
             "c0": rng.normal(size=ss).astype(np.float32)}
    ref = OrtRunner(g.serialize(), optimize=False).run(feeds)
    u = infer(PASSES["unroll_lstm"](g.copy()))
    assert "LSTM" not in u.op_counts() and u.op_counts()["MatMul"] == T + 1
    onnx.checker.check_model(u.model)
    got = OrtRunner(u.serialize(), optimize=False).run(feeds)
    for k in ("y", "yh", "yc"):
        np.testing.assert_allclose(got[k], ref[k], rtol=1e-5, atol=1e-5)


def test_a_stateless_lstm_is_not_stateful():
    g = infer(Graph(lstm_model(state_inputs=False)))
    model = g.model
    model.graph.output.pop()  # no Y_c
    model.graph.node[0].output[2] = ""
    assert not stateful(Graph(model), Graph(model).nodes[0])


def test_layout_1_is_left_alone():
    g = infer(Graph(lstm_model(layout=1)))
    assert "LSTM" in PASSES["unroll_lstm"](g).op_counts()
