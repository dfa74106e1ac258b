"""Pools LiteRT's 2-D kernels do not take directly: dilated MaxPool and 3-D Max/AveragePool.

Dilated MaxPool: MAX_POOL_2D has no dilation, so the window is taken tap by tap.
Each of the kh * kw taps is a STRIDED_SLICE of the (-inf / lowest-code padded) NHWC input,
and the taps are folded with MAXIMUM. Max only selects values, so an integer input keeps its
grid through every step and the result is exact in float and integer alike.

3-D pools: see `_pool_3d`.
"""

from __future__ import annotations

from edgeq.lower.tflite.context import Ctx
from edgeq.lower.tflite.ops_nn import _attr, _write_same_grid, pad_input, unsupported
from edgeq.lower.tflite.ops_nn import lower_average_pool as _plain_average_pool
from edgeq.lower.tflite.ops_nn import lower_max_pool as _plain_max_pool
from edgeq.lower.tflite.schema import fb


def _explicit_pads(node, in_hw, k, strides, dil) -> list[int]:
    """[top, left, bottom, right] the ONNX attributes ask for (auto_pad resolved)."""
    auto = _attr(node, "auto_pad", "NOTSET")
    if auto == "VALID":
        return [0, 0, 0, 0]
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        totals = [max((-(-size // s) - 1) * s + (kk - 1) * d + 1 - size, 0) for size, kk, s, d in zip(in_hw, k, strides, dil)]
        small, big = [t // 2 for t in totals], [t - t // 2 for t in totals]
        return small + big if auto == "SAME_UPPER" else big + small
    return list(_attr(node, "pads", [0, 0, 0, 0]))


def lower_max_pool(ctx: Ctx, node) -> None:
    if len(ctx.shape(node.input[0])) == 5:
        return _pool_3d(ctx, node, "MAX_POOL_2D")
    dil = list(_attr(node, "dilations", [1, 1]))
    if all(d == 1 for d in dil):
        return _plain_max_pool(ctx, node)
    x, out = node.input[0], node.output[0]
    if len(ctx.shape(x)) != 4:
        unsupported(node, "LiteRT pools 2-D windows (NHWC)")
    if len(node.output) > 1 and node.output[1]:
        unsupported(node, "MaxPool with an Indices output")
    k = list(_attr(node, "kernel_shape", [1, 1]))
    strides = list(_attr(node, "strides", [1, 1]))
    kind = ctx.kind(node)
    t = ctx.get(x, "nhwc", kind)
    n, ih, iw, c = ctx.w.tensor_shape(t)
    oh, ow = ctx.shape(out)[2:]
    pads = _explicit_pads(node, [ih, iw], k, strides, dil)
    # ceil_mode: the last window may reach past the pads; pad the end out to it.
    need_h, need_w = (oh - 1) * strides[0] + (k[0] - 1) * dil[0] + 1, (ow - 1) * strides[1] + (k[1] - 1) * dil[1] + 1
    pads[2] += max(need_h - (ih + pads[0] + pads[2]), 0)
    pads[3] += max(need_w - (iw + pads[1] + pads[3]), 0)
    if any(pads):
        t = pad_input(ctx, out, t, pads, kind, value=-3.4e38)
    dtype, quant = ctx.w.tensor_dtype(t), ctx.w.tensor_quant(t)
    opts = fb.StridedSliceOptionsT()
    taps = []
    for i in range(k[0]):
        for j in range(k[1]):
            h0, w0 = i * dil[0], j * dil[1]
            params = [ctx.int32(f"{out}/tap{i}_{j}/{label}", v) for label, v in (
                ("begin", [0, h0, w0, 0]), ("end", [n, h0 + (oh - 1) * strides[0] + 1, w0 + (ow - 1) * strides[1] + 1, c]),
                ("strides", [1, strides[0], strides[1], 1]))]
            tap = ctx.new(f"{out}/tap{i}_{j}", [n, oh, ow, c], dtype, quant)
            ctx.w.add_op("STRIDED_SLICE", [t, *params], [tap], opts)
            taps.append(tap)
    acc = taps[0]
    for k_, tap in enumerate(taps[1:-1], 1):
        m = ctx.new(f"{out}/max{k_}", [n, oh, ow, c], dtype, quant)
        ctx.w.add_op("MAXIMUM", [acc, tap], [m], fb.MaximumMinimumOptionsT())
        acc = m
    if len(taps) == 1:
        _write_same_grid(ctx, "RESHAPE", [acc, ctx.int32(f"{out}/shape", [n, oh, ow, c])], out, "nhwc", kind, None, x)
    else:
        _write_same_grid(ctx, "MAXIMUM", [acc, taps[-1]], out, "nhwc", kind, fb.MaximumMinimumOptionsT(), x)


def lower_average_pool(ctx: Ctx, node) -> None:
    if len(ctx.shape(node.input[0])) == 5:
        return _pool_3d(ctx, node, "AVERAGE_POOL_2D")
    return _plain_average_pool(ctx, node)


def _pool_3d(ctx: Ctx, node, op: str) -> None:
    """[N, C, D, H, W] pooled as two 2-D pools, with only free RESHAPEs (rank 5 stays in ONNX order).

    The input is read as [N*C*D, H, W, 1] (one channel) and pooled over (H, W); the result is
    read as [N*C, D, OH*OW, 1] and pooled with window (kd, 1) over D. Max of maxes is the max;
    without padding every window has kd * kh * kw cells, so the mean of equal-size means is the
    mean. Pads, ceil_mode and dilations would break that, so they are refused.
    """
    x, out = node.input[0], node.output[0]
    if len(node.output) > 1 and node.output[1]:
        unsupported(node, "MaxPool with an Indices output")
    k = list(_attr(node, "kernel_shape", [1, 1, 1]))
    strides = list(_attr(node, "strides", [1, 1, 1]))
    if any(d != 1 for d in _attr(node, "dilations", [1, 1, 1])):
        unsupported(node, "dilated 3-D pooling")
    if _attr(node, "auto_pad", "NOTSET") not in ("NOTSET", "VALID") or any(_attr(node, "pads", [0] * 6)):
        unsupported(node, "3-D pooling with pads (only unpadded 3-D windows lower exactly)")
    n, c, d, h, w = ctx.shape(x)
    od, oh, ow = ((size - kk) // s + 1 for size, kk, s in zip((d, h, w), k, strides))
    if ctx.shape(out) != [n, c, od, oh, ow]:
        unsupported(node, "3-D pooling with ceil_mode windows past the input")
    kind = ctx.kind(node)
    if kind == "q" and op == "AVERAGE_POOL_2D":  # two rounded means can differ from one by a code
        unsupported(node, "integer 3-D AveragePool (two rounded 2-D means are not exact)")
    t = ctx.get(x, "onnx", kind)
    dtype, quant = ctx.w.tensor_dtype(t), ctx.w.tensor_quant(t)

    def step(name: str, src: int, in_shape: list[int], out_shape: list[int], window, stride) -> int:
        flat = ctx.new(f"{out}/{name}_in", in_shape, dtype, quant)
        ctx.w.add_op("RESHAPE", [src, ctx.int32(f"{out}/{name}_shape", in_shape)], [flat])
        opts = fb.Pool2DOptionsT()
        opts.padding, opts.strideH, opts.strideW = fb.Padding.VALID, stride[0], stride[1]
        opts.filterHeight, opts.filterWidth = window
        pooled = ctx.new(f"{out}/{name}", out_shape, dtype, quant)
        ctx.w.add_op(op, [flat], [pooled], opts)
        return pooled

    hw = step("pool_hw", t, [n * c * d, h, w, 1], [n * c * d, oh, ow, 1], k[1:], strides[1:])
    dd = step("pool_d", hw, [n * c, d, oh * ow, 1], [n * c, od, oh * ow, 1], (k[0], 1), (strides[0], 1))
    _write_same_grid(ctx, "RESHAPE", [dd, ctx.int32(f"{out}/shape", [n, c, od, oh, ow])], out, "onnx", kind, None, x)
