"""Lowerings of the ops transformer exports carry around masks and GELU: Cast, And, Expand, Where, Erf.

Masks are bool / integer tensors (no grid); Where's float output takes the plan's grid with
its value operands moved onto it (SELECT_V2 copies raw values). LiteRT has no ERF builtin:
the Erf-GELU pattern is fused into GELU before lowering (layout.fuse_erf_gelu), and a lone
Erf is the Abramowitz-Stegun 7.1.26 polynomial (|error| <= 1.5e-7) in float.
"""

from __future__ import annotations

import numpy as np

from edgeq.lower.tflite.context import Ctx
from edgeq.lower.tflite.ops_nn import _write_same_grid, unsupported
from edgeq.lower.tflite.ops_shape import _differs
from edgeq.lower.tflite.schema import fb
from edgeq.quant.linear import quantize

# Element types LiteRT's CAST kernel converts between (tensorflow/lite/kernels/cast.cc;
# float64 checked both ways against float32 / float16 in tests/lower/test_tflite_dtypes.py).
CAST_TYPES = ("float32", "float16", "float64", "int32", "int64", "int16", "int8", "uint8", "bool")
# Abramowitz & Stegun 7.1.26: erf(x) = 1 - (a1 t + ... + a5 t^5) exp(-x^2), t = 1 / (1 + p |x|), x >= 0.
ERF_P = 0.3275911
ERF_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)


def lower_cast(ctx: Ctx, node) -> None:
    """CAST between element types (a RESHAPE when they already match); always on real values."""
    x, out = node.input[0], node.output[0]
    src, dst = ctx.graph.dtype(x) or "float32", ctx.graph.dtype(out) or "float32"
    if src not in CAST_TYPES or dst not in CAST_TYPES:
        unsupported(node, f"Cast from {src} to {dst}")
    t = ctx.get(x, "onnx", "float")
    if ctx.w.tensor_dtype(t) == dst:
        ctx.w.add_op("RESHAPE", [t, ctx.int32(f"{out}/shape", ctx.shape(out))], [ctx.output(out, "onnx", "float")])
    else:
        ctx.w.add_op("CAST", [t], [ctx.output(out, "onnx", "float")])


def lower_and(ctx: Ctx, node) -> None:
    a, b, out = node.input[0], node.input[1], node.output[0]
    ctx.w.add_op("LOGICAL_AND", [ctx.get(a, "onnx", "float"), ctx.get(b, "onnx", "float")],
                 [ctx.output(out, "onnx", "float")], fb.LogicalAndOptionsT())


def lower_expand(ctx: Ctx, node) -> None:
    """BROADCAST_TO the (static) ONNX output shape; integer data keeps its grid."""
    x, out = node.input[0], node.output[0]
    kind = ctx.kind(node)
    t = ctx.get(x, "onnx", kind)
    shape = ctx.shape(out)
    op = "RESHAPE" if list(ctx.w.tensor_shape(t)) == shape else "BROADCAST_TO"
    _write_same_grid(ctx, op, [t, ctx.int32(f"{out}/shape", shape)], out, "onnx", kind, None, x)


def lower_where(ctx: Ctx, node) -> None:
    """SELECT_V2(cond, x, y), broadcasting; integer x / y first moved onto the output's grid."""
    cond, out = node.input[0], node.output[0]
    kind = ctx.kind(node)
    tc = ctx.get(cond, "onnx", "float")
    if ctx.w.tensor_dtype(tc) != "bool":
        unsupported(node, f"Where with a {ctx.w.tensor_dtype(tc)} condition")
    values = []
    for name in node.input[1:3]:
        c = ctx.const(name)
        if kind == "q" and c is not None and c.dtype == np.float32:  # straight onto the output grid
            a, dt = ctx.act(out), ctx.qtype(out)
            q = quantize(c, a.scale, a.zero_point, a.bits).astype(np.int16 if dt == "int16" else np.int8)
            values.append(ctx.const_tensor(f"{out}/{name}_q", q, dt, ctx.act_quant(out)))
            continue
        t = ctx.get(name, "onnx", kind)
        if kind == "q" and _differs(ctx.w.tensor_quant(t), ctx.act_quant(out)):
            r = ctx.new(f"{name}/on_{out}_grid", ctx.w.tensor_shape(t), ctx.qtype(out), ctx.act_quant(out))
            ctx.w.add_op("QUANTIZE", [t], [r])
            t = r
        values.append(t)
    ctx.w.add_op("SELECT_V2", [tc, *values], [ctx.output(out, "onnx", kind)], fb.SelectV2OptionsT())


def lower_erf(ctx: Ctx, node) -> None:
    """Float erf as ABS, MUL, ADD, DIV, EXP, SIGN (LiteRT has no ERF); integer plans need fallback=float."""
    x, out = node.input[0], node.output[0]
    kind = ctx.kind(node, int_ok=False)
    t, layout = ctx.get_any(x, kind)
    shape = ctx.w.tensor_shape(t)
    k = iter(range(100))

    def op(name: str, inputs: list, opts=None) -> int:
        y = ctx.new(f"{out}/{name}{next(k)}", shape, "float32")
        ctx.w.add_op(name.upper(), inputs, [y], opts)
        return y

    def c(v: float) -> int:
        return ctx.const_tensor(f"{out}/c{next(k)}", np.asarray([v], np.float32))

    ax = op("abs", [t])
    den = op("add", [op("mul", [ax, c(ERF_P)], fb.MulOptionsT()), c(1.0)], fb.AddOptionsT())
    tt = op("div", [c(1.0), den], fb.DivOptionsT())
    acc = c(ERF_A[-1])
    for a in ERF_A[-2::-1]:  # Horner: ((a5 t + a4) t + a3) t ...
        acc = op("add", [op("mul", [acc, tt], fb.MulOptionsT()), c(a)], fb.AddOptionsT())
    acc = op("mul", [acc, tt], fb.MulOptionsT())
    gauss = op("exp", [op("mul", [op("mul", [t, t], fb.MulOptionsT()), c(-1.0)], fb.MulOptionsT())])
    mag = op("sub", [c(1.0), op("mul", [acc, gauss], fb.MulOptionsT())], fb.SubOptionsT())
    ctx.w.add_op("MUL", [op("sign", [t]), mag], [ctx.output(out, layout, kind)], fb.MulOptionsT())
