"""Unroll LSTM into the ops every target has: one MatMul over all steps for the input
projection, then per step MatMul + Split + Sigmoid/Tanh + Mul/Add.

LiteRT's UNIDIRECTIONAL_SEQUENCE_LSTM keeps its state in tensors that start at zero and
gives no final cell state, so a streaming model (silero-vad: state in, state out) cannot use
it. Unrolled, the state is ordinary tensors. The pass is exact up to float rounding.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgeq.graph import Graph, get_attr, node_name
from edgeq.passes.registry import register


def used(graph: Graph, name: str) -> bool:
    return bool(name) and (name in graph.consumers or name in {o.name for o in graph.outputs})


def stateful(graph: Graph, n: onnx.NodeProto) -> bool:
    """An LSTM that takes a state other than zeros or hands out its final cell state."""
    if len(n.output) > 2 and used(graph, n.output[2]):
        return True
    for k in (5, 6):
        if len(n.input) > k and n.input[k]:
            if not graph.is_const(n.input[k]) or np.any(graph.initializer(n.input[k])):
                return True
    return False


def unrollable(graph: Graph, n: onnx.NodeProto) -> bool:
    acts = [a.decode() if isinstance(a, bytes) else a for a in get_attr(n, "activations", [b"Sigmoid", b"Tanh", b"Tanh"])]
    shape = graph.shape(n.input[0]) or ()
    return (n.op_type == "LSTM" and get_attr(n, "direction", b"forward") in (b"forward", b"reverse", "forward", "reverse")
            and all(graph.is_const(n.input[k]) for k in (1, 2)) and (len(n.input) < 4 or not n.input[3] or graph.is_const(n.input[3]))
            and (len(n.input) < 5 or not n.input[4]) and (len(n.input) < 8 or not n.input[7])
            and [a.lower() for a in acts[:3]] == ["sigmoid", "tanh", "tanh"] and not get_attr(n, "input_forget", 0)
            and get_attr(n, "layout", 0) == 0  # onnxruntime runs layout 0 only: nothing to check a layout-1 unroll against
            and get_attr(n, "clip", None) is None and len(shape) == 3 and all(isinstance(d, int) for d in shape))


class _Emit:
    def __init__(self, graph: Graph, prefix: str):
        self.graph, self.prefix, self.nodes, self.inits, self.k = graph, prefix, [], [], 0
        self.new_axes = graph.opset >= 13  # Unsqueeze / Squeeze / Split take axes and sizes as inputs

    def name(self, what: str) -> str:
        self.k += 1
        return f"{self.prefix}/{what}_{self.k}"

    def const(self, what: str, value) -> str:
        name = self.name(what)
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op: str, inputs: list[str], out: str | None = None, **attrs) -> str:
        out = out or self.name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], name=self.name(op), **attrs))
        return out

    def unsqueeze(self, x: str, axis: int, out: str | None = None) -> str:
        if self.new_axes:
            return self.op("Unsqueeze", [x, self.const("axes", np.array([axis], np.int64))], out)
        return self.op("Unsqueeze", [x], out, axes=[axis])

    def squeeze(self, x: str, axis: int) -> str:
        if self.new_axes:
            return self.op("Squeeze", [x, self.const("axes", np.array([axis], np.int64))])
        return self.op("Squeeze", [x], axes=[axis])

    def split4(self, x: str, hidden: int) -> list[str]:
        outs = [self.name(g) for g in "iofc"]
        sizes = np.full(4, hidden, np.int64)
        if self.new_axes:
            self.nodes.append(helper.make_node("Split", [x, self.const("split", sizes)], outs, name=self.name("Split"), axis=-1))
        else:
            self.nodes.append(helper.make_node("Split", [x], outs, name=self.name("Split"), axis=-1, split=sizes.tolist()))
        return outs


def unroll(graph: Graph, n: onnx.NodeProto, k: int) -> tuple[list, list]:
    """The nodes and initializers that compute LSTM `n`'s outputs under the same names."""
    e = _Emit(graph, node_name(n, k))
    steps, batch, _ = graph.shape(n.input[0])
    w, r = graph.initializer(n.input[1])[0], graph.initializer(n.input[2])[0]  # [4H, I], [4H, H]
    hidden = r.shape[-1]
    b = graph.initializer(n.input[3])[0] if len(n.input) > 3 and n.input[3] else np.zeros(8 * hidden, np.float32)
    xw = e.op("Add", [e.op("MatMul", [n.input[0], e.const("w_t", np.ascontiguousarray(w.T))]),
                      e.const("bias", (b[: 4 * hidden] + b[4 * hidden:]).astype(np.float32))])  # [T, B, 4H]
    r_t = e.const("r_t", np.ascontiguousarray(r.T))

    def state(index: int) -> str:
        if len(n.input) > index and n.input[index]:
            return e.squeeze(n.input[index], 0)  # [B, H]
        return e.const("zeros", np.zeros((int(batch), hidden), np.float32))

    h, c = state(5), state(6)
    order = range(int(steps))
    reverse = get_attr(n, "direction", b"forward") in (b"reverse", "reverse")
    ys: dict[int, str] = {}
    for t in reversed(order) if reverse else order:
        gates = e.op("Add", [e.op("Gather", [xw, e.const("t", np.array(t, np.int64))], axis=0), e.op("MatMul", [h, r_t])])
        i, o, f, cc = e.split4(gates, hidden)
        i, o, f, cc = e.op("Sigmoid", [i]), e.op("Sigmoid", [o]), e.op("Sigmoid", [f]), e.op("Tanh", [cc])
        c = e.op("Add", [e.op("Mul", [f, c]), e.op("Mul", [i, cc])])
        h = e.op("Mul", [o, e.op("Tanh", [c])])
        ys[t] = e.unsqueeze(h, 0)  # [1, B, H]
    outs = list(n.output) + [""] * (3 - len(n.output))
    if outs[0]:
        e.unsqueeze(e.op("Concat", [ys[t] for t in order], axis=0), 1, outs[0])  # [T, B, H] -> [T, 1, B, H]
    for out, last in ((outs[1], h), (outs[2], c)):
        if out:
            e.unsqueeze(last, 0, out)  # [1, B, H]
    return e.nodes, e.inits


def unroll_lstms(graph: Graph, which=stateful) -> Graph:
    """Unroll the LSTMs `which(graph, node)` picks (and that can be unrolled: static shapes,
    constant weights, default activations, one direction)."""
    g = graph.model.graph
    nodes, changed = [], False
    for k, n in enumerate(list(g.node)):
        if n.op_type == "LSTM" and unrollable(graph, n) and which(graph, n):
            new_nodes, inits = unroll(graph, n, k)
            nodes += new_nodes
            g.initializer.extend(inits)
            changed = True
        else:
            nodes.append(n)
    if changed:
        del g.node[:]
        g.node.extend(nodes)
        graph.refresh()
    return graph


@register("unroll_lstm")
def unroll_lstm(graph: Graph) -> Graph:
    """Every unrollable LSTM (not in the default pipeline: targets that need it call it)."""
    return unroll_lstms(graph, lambda g, n: True)
