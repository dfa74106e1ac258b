"""Lowering of LSTM (float): UNIDIRECTIONAL_SEQUENCE_LSTM per direction.

ONNX packs the gates i, o, f, c in W [dirs, 4H, I], R [dirs, 4H, H], B [dirs, 8H] (input
then recurrent biases) and peepholes P [dirs, 3H] as i, o, f; LiteRT takes one tensor per
gate in the order i, f, c, o, one bias per gate (the two ONNX biases summed), and keeps
the state in variable tensors that start at zero.
"""

from __future__ import annotations

import numpy as np

from edgeq.graph import get_attr
from edgeq.lower.tflite.context import Ctx
from edgeq.lower.tflite.ops_nn import _attr, unsupported
from edgeq.lower.tflite.schema import fb
from edgeq.passes.rnn import used

ONNX_GATES = {"i": 0, "o": 1, "f": 2, "c": 3}


def _const_or_none(ctx: Ctx, node, k: int):
    if len(node.input) <= k or not node.input[k]:
        return None
    v = ctx.const(node.input[k])
    if v is None:
        unsupported(node, f"LSTM input {k} ('{node.input[k]}') must be a constant for LiteRT")
    return v


def lower_lstm(ctx: Ctx, node) -> None:
    x = node.input[0]
    w, r = _const_or_none(ctx, node, 1), _const_or_none(ctx, node, 2)
    b, seq_lens = _const_or_none(ctx, node, 3), _const_or_none(ctx, node, 4)
    h0, c0, p = _const_or_none(ctx, node, 5), _const_or_none(ctx, node, 6), _const_or_none(ctx, node, 7)
    acts = [a.decode() if isinstance(a, bytes) else a for a in get_attr(node, "activations", [b"Sigmoid", b"Tanh", b"Tanh"])]
    if w is None or r is None:
        unsupported(node, "LSTM needs constant W and R")
    if [a.lower() for a in acts[:3]] != ["sigmoid", "tanh", "tanh"] or get_attr(node, "input_forget", 0):
        unsupported(node, "LSTM with non-default activations or input_forget")
    if any(v is not None and np.any(v) for v in (h0, c0)):
        unsupported(node, "LSTM with a non-zero initial state (LiteRT's state tensors start at zero)")
    if len(node.output) > 2 and node.output[2] and used(ctx.graph, node.output[2]):
        unsupported(node, "LSTM with the Y_c output")  # unrolled before lowering when it can be (passes/rnn.py)
    layout = get_attr(node, "layout", 0)
    shape = ctx.shape(x)
    seq, batch = (shape[0], shape[1]) if layout == 0 else (shape[1], shape[0])
    if seq_lens is not None and np.any(np.asarray(seq_lens) != seq):
        unsupported(node, "LSTM with per-sample sequence lengths")
    hidden = int(get_attr(node, "hidden_size", r.shape[-1]))
    direction = _attr(node, "direction", "forward")
    dirs = {"forward": [False], "reverse": [True], "bidirectional": [False, True]}[direction]
    kind = ctx.kind(node, int_ok=False)
    t = ctx.get(x, "onnx", kind)
    outs = []
    for d, reverse in enumerate(dirs):
        outs.append(_direction(ctx, node, t, d, reverse, w[d], r[d], None if b is None else b[d],
                               None if p is None else p[d], hidden, seq, batch, layout))
    _write_outputs(ctx, node, outs, hidden, seq, batch, layout)


def _direction(ctx: Ctx, node, t: int, d: int, reverse: bool, w, r, b, p, hidden: int, seq: int, batch: int,
               layout: int) -> int:
    name = f"{node.output[0] or node.name}/dir{d}"
    time_axis = 0 if layout == 0 else 1
    if reverse:
        t = _reverse(ctx, t, time_axis, f"{name}/x_reversed")

    def gate(m, g):
        return m[ONNX_GATES[g] * hidden:(ONNX_GATES[g] + 1) * hidden]

    weights = [ctx.const_tensor(f"{name}/W_{g}", gate(w, g).astype(np.float32)) for g in "ifco"]
    recurrent = [ctx.const_tensor(f"{name}/R_{g}", gate(r, g).astype(np.float32)) for g in "ifco"]
    peep = [-1, -1, -1]
    if p is not None and np.any(p):
        pi, po, pf = (p[k * hidden:(k + 1) * hidden] for k in range(3))
        peep = [ctx.const_tensor(f"{name}/P_{g}", v.astype(np.float32)) for g, v in (("i", pi), ("f", pf), ("o", po))]
    bias = np.zeros(8 * hidden, np.float32) if b is None else np.asarray(b, np.float32)
    biases = [ctx.const_tensor(f"{name}/B_{g}", (gate(bias[:4 * hidden], g) + gate(bias[4 * hidden:], g)).astype(np.float32))
              for g in "ifco"]
    states = []
    for label in ("h", "c"):
        s = ctx.new(f"{name}/{label}_state", [batch, hidden], "float32")
        ctx.w.tensors[s].isVariable = True
        states.append(s)
    y_shape = [seq, batch, hidden] if layout == 0 else [batch, seq, hidden]
    y = ctx.new(f"{name}/Y", y_shape, "float32")
    opts = fb.UnidirectionalSequenceLSTMOptionsT()
    opts.fusedActivationFunction = fb.ActivationFunctionType.TANH
    opts.cellClip = float(get_attr(node, "clip", 0.0) or 0.0)
    opts.timeMajor = layout == 0
    inputs = [t, *weights, *recurrent, peep[0], peep[1], peep[2], *biases, -1, -1, *states, -1, -1, -1, -1]
    ctx.w.add_op("UNIDIRECTIONAL_SEQUENCE_LSTM", inputs, [y], opts)
    return _reverse(ctx, y, time_axis, f"{name}/Y_forward") if reverse else y


def _reverse(ctx: Ctx, t: int, axis: int, name: str) -> int:
    out = ctx.new(name, ctx.w.tensor_shape(t), "float32")
    ctx.w.add_op("REVERSE_V2", [t, ctx.int32(f"{name}/axis", [axis])], [out])
    return out


def _write_outputs(ctx: Ctx, node, outs: list[int], hidden: int, seq: int, batch: int, layout: int) -> None:
    """Y: [seq, dirs, batch, H] (layout 0) or [batch, seq, dirs, H]; Y_h: the last step of each direction."""
    dirs = len(outs)
    y_name = node.output[0] if node.output and node.output[0] else None
    yh_name = node.output[1] if len(node.output) > 1 and node.output[1] else None
    dir_axis = 1 if layout == 0 else 2
    if y_name:
        parts = []
        for d, y in enumerate(outs):
            shape = [seq, 1, batch, hidden] if layout == 0 else [batch, seq, 1, hidden]
            part = ctx.output(y_name, "onnx", "float") if dirs == 1 else ctx.new(f"{y_name}/dir{d}_4d", shape, "float32")
            ctx.w.add_op("RESHAPE", [y, ctx.int32(f"{y_name}/dir{d}_shape", shape)], [part])
            parts.append(part)
        if dirs > 1:
            opts = fb.ConcatenationOptionsT()
            opts.axis = dir_axis
            ctx.w.add_op("CONCATENATION", parts, [ctx.output(y_name, "onnx", "float")], opts)
    if yh_name:
        parts = []
        for d, (y, reverse) in enumerate(zip(outs, [False, True] if dirs == 2 else [_attr(node, "direction", "forward") == "reverse"])):
            step = 0 if reverse else seq - 1  # a reversed direction ends at time 0
            begin = [step, 0, 0] if layout == 0 else [0, step, 0]
            size = [1, batch, hidden] if layout == 0 else [batch, 1, hidden]
            last = ctx.new(f"{yh_name}/dir{d}_last", size, "float32")
            ctx.w.add_op("SLICE", [y, ctx.int32(f"{yh_name}/dir{d}_begin", begin), ctx.int32(f"{yh_name}/dir{d}_size", size)], [last])
            shape = [1, batch, hidden] if layout == 0 else [batch, 1, hidden]
            part = ctx.output(yh_name, "onnx", "float") if dirs == 1 else ctx.new(f"{yh_name}/dir{d}", shape, "float32")
            ctx.w.add_op("RESHAPE", [last, ctx.int32(f"{yh_name}/dir{d}_shape", shape)], [part])
            parts.append(part)
        if dirs > 1:
            opts = fb.ConcatenationOptionsT()
            opts.axis = 0 if layout == 0 else 1
            ctx.w.add_op("CONCATENATION", parts, [ctx.output(yh_name, "onnx", "float")], opts)
