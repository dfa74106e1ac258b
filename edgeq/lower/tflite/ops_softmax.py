"""Lowering of Softmax / LogSoftmax: over the last stored axis, other axes moved there first.

Integer kernels fix the output grid (FIXED_GRIDS); adjust_plan puts it in the plan, and a
plan that says otherwise gets a requantizing QUANTIZE after the kernel.
"""

from __future__ import annotations

import numpy as np

from edgeq.graph import get_attr
from edgeq.lower.tflite.context import Ctx
from edgeq.lower.tflite.ops_math import FIXED_GRIDS
from edgeq.lower.tflite.ops_nn import unsupported
from edgeq.lower.tflite.schema import Quant, fb


def _softmax_like(ctx: Ctx, node, op: str, opts) -> None:
    """Softmax over the last stored axis; other axes are moved last (or flattened, opset < 13)."""
    x, out = node.input[0], node.output[0]
    shape = ctx.shape(x)
    rank = len(shape)
    opset = ctx.graph.opset
    axis = get_attr(node, "axis", -1 if opset >= 13 else 1) % max(rank, 1)
    kind = ctx.kind(node)
    fixed = None
    if kind == "q":
        bits = ctx.act(out).bits
        if bits not in FIXED_GRIDS[op]:
            unsupported(node, f"{op} has no {bits}-bit integer kernel in LiteRT")
        fixed = Quant([FIXED_GRIDS[op][bits][0]], [FIXED_GRIDS[op][bits][1]])

    def emit(src, dst_layout, dst_shape=None):
        if kind == "q":
            if dst_shape is None:
                dst, requant = ctx.q_output(out, dst_layout, fixed)
                ctx.w.add_op(op, [src], [dst], opts)
                if requant:
                    ctx.write_requantized(out, dst_layout, dst)
                return None
            tmp = ctx.temp(out, "kernel", dst_shape, kind, fixed)
            ctx.w.add_op(op, [src], [tmp], opts)
            return tmp
        if dst_shape is None:
            ctx.w.add_op(op, [src], [ctx.output(out, dst_layout, kind)], opts)
            return None
        tmp = ctx.temp(out, "kernel", dst_shape, kind)
        ctx.w.add_op(op, [src], [tmp], opts)
        return tmp

    if rank == 4 and "nhwc" in ctx.layouts(x) and axis == 1 and opset >= 13:
        return emit(ctx.get(x, "nhwc", kind), "nhwc")
    t = ctx.get(x, "onnx", kind)
    if axis == rank - 1:
        return emit(t, "onnx")
    if opset < 13:  # softmax over the flattened trailing dims
        flat = [int(np.prod(shape[:axis])), int(np.prod(shape[axis:]))]
        r = ctx.new(f"{out}/flat_in", flat, ctx.w.tensor_dtype(t), ctx.w.tensor_quant(t))
        ctx.w.add_op("RESHAPE", [t, ctx.int32(f"{out}/flat_shape", flat)], [r])
        y = emit(r, "onnx", flat)
        _finish(ctx, out, kind, "RESHAPE", y, ctx.int32(f"{out}/shape", ctx.shape(out)))
        return None
    perm = [a for a in range(rank) if a != axis] + [axis]
    moved = [shape[a] for a in perm]
    r = ctx.new(f"{out}/axis_last", moved, ctx.w.tensor_dtype(t), ctx.w.tensor_quant(t))
    ctx.w.add_op("TRANSPOSE", [t, ctx.int32(f"{out}/perm", perm)], [r])
    y = emit(r, "onnx", moved)
    _finish(ctx, out, kind, "TRANSPOSE", y, ctx.int32(f"{out}/perm_back", list(np.argsort(perm))))
    return None


def _finish(ctx: Ctx, out: str, kind: str, op: str, src: int, param: int) -> None:
    """The last shape op of an expansion, onto the plan's grid for `out`."""
    if kind == "q":
        dst, requant = ctx.q_output(out, "onnx", ctx.w.tensor_quant(src))
        ctx.w.add_op(op, [src, param], [dst])
        if requant:
            ctx.write_requantized(out, "onnx", dst)
    else:
        ctx.w.add_op(op, [src, param], [ctx.output(out, "onnx", kind)])


def lower_softmax(ctx, node):
    opts = fb.SoftmaxOptionsT()
    opts.beta = 1.0
    _softmax_like(ctx, node, "SOFTMAX", opts)


def lower_log_softmax(ctx, node):
    _softmax_like(ctx, node, "LOG_SOFTMAX", fb.LogSoftmaxOptionsT())
