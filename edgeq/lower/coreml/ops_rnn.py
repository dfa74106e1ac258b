"""ONNX LSTM -> MIL lstm: gates reordered from ONNX's (i, o, f, c) to MIL's (i, f, o, z)."""

from __future__ import annotations

import numpy as np
from coremltools.converters.mil.mil import Builder as mb

from edgeq.lower.coreml.context import LoweringContext

DEFAULT_ACTIVATIONS = [b"Sigmoid", b"Tanh", b"Tanh"]


def _ifoz(a: np.ndarray, hidden: int) -> np.ndarray:
    """Rows in ONNX gate order (i, o, f, c) -> MIL's (i, f, o, z), along the first axis."""
    i, o, f, c = (a[k * hidden : (k + 1) * hidden] for k in range(4))
    return np.concatenate([i, f, o, c]).astype(np.float32)


def lower_lstm(ctx: LoweringContext):
    if ctx.attr("input_forget", 0):
        raise ctx.unsupported("LSTM with input_forget")
    batch_first = bool(ctx.attr("layout", 0))  # layout 1: X [b, s, I], states [b, D, H], Y [b, s, D, H]
    direction = ctx.attr("direction", b"forward")
    direction = direction.decode() if isinstance(direction, bytes) else direction
    n_dir = 2 if direction == "bidirectional" else 1
    acts = ctx.attr("activations") or DEFAULT_ACTIVATIONS * n_dir
    if [a if isinstance(a, bytes) else a.encode() for a in acts] != DEFAULT_ACTIVATIONS * n_dir:
        raise ctx.unsupported(f"LSTM activations {acts}")
    seq, batch = ctx.shape(ctx.inp(0))[:2][::-1] if batch_first else ctx.shape(ctx.inp(0))[:2]
    if ctx.inp(4):
        lens = ctx.need_const(ctx.inp(4), "LSTM sequence_lens")
        if np.any(lens != seq):
            raise ctx.unsupported("LSTM with per-sample sequence lengths")
    W, R = ctx.need_const(ctx.inp(1), "LSTM W"), ctx.need_const(ctx.inp(2), "LSTM R")
    hidden = int(ctx.attr("hidden_size", R.shape[-1]))
    B = ctx.need_const(ctx.inp(3), "LSTM B") if ctx.inp(3) else np.zeros((n_dir, 8 * hidden), np.float32)
    P = ctx.need_const(ctx.inp(7), "LSTM P") if ctx.inp(7) else None
    kw = {}
    for d, suffix in enumerate(["", "_back"][:n_dir]):
        kw[f"weight_ih{suffix}"] = _ifoz(W[d], hidden)
        kw[f"weight_hh{suffix}"] = _ifoz(R[d], hidden)
        kw[f"bias{suffix}"] = _ifoz(B[d][: 4 * hidden] + B[d][4 * hidden :], hidden)
        if P is not None:  # ONNX (i, o, f) -> MIL (i, f, o)
            p = P[d]
            kw[f"peephole{suffix}"] = np.concatenate([p[:hidden], p[2 * hidden :], p[hidden : 2 * hidden]]).astype(np.float32)
    if ctx.attr("clip") is not None:
        kw["clip"] = np.float32(ctx.attr("clip"))
    states = []
    for k in (5, 6):  # initial_h / initial_c: ONNX [D, b, H] -> MIL [b, D*H]
        if ctx.inp(k):
            s = ctx.var(ctx.inp(k)) if batch_first else mb.transpose(x=ctx.var(ctx.inp(k)), perm=[1, 0, 2])
            states.append(mb.reshape(x=s, shape=[batch, n_dir * hidden]))
        else:
            states.append(np.zeros((batch, n_dir * hidden), np.float32))
    x = mb.transpose(x=ctx.var(ctx.inp(0)), perm=[1, 0, 2]) if batch_first else ctx.var(ctx.inp(0))
    y, h, c = mb.lstm(x=x, initial_h=states[0], initial_c=states[1], direction=direction, output_sequence=True, **kw)
    y = mb.reshape(x=y, shape=[seq, batch, n_dir, hidden])
    outs = [mb.transpose(x=y, perm=[1, 0, 2, 3] if batch_first else [0, 2, 1, 3], name=ctx.out_name(0))]
    for k, s in ((1, h), (2, c)):
        if len(ctx.node.output) > k and ctx.node.output[k]:
            s = mb.reshape(x=s, shape=[batch, n_dir, hidden])
            outs.append(mb.identity(x=s, name=ctx.out_name(k)) if batch_first else
                        mb.transpose(x=s, perm=[1, 0, 2], name=ctx.out_name(k)))
        elif len(ctx.node.output) > k:
            outs.append(None)
    return outs


RNN_OPS = {"LSTM": lower_lstm}
