"""Lowerings of ops that move values: reshape family, transpose, concat, split, slice, gather, pad, reduce.

Integer versions keep the input's grid (the plan shares it); a plan that says otherwise
gets a requantizing QUANTIZE after the op.
"""

from __future__ import annotations

import numpy as np

from edgeq.graph import get_attr
from edgeq.lower.tflite import layout as L
from edgeq.lower.tflite.context import Ctx
from edgeq.lower.tflite.ops_nn import _attr, _write_same_grid, unsupported
from edgeq.lower.tflite.schema import Quant, fb
from edgeq.quant.linear import quantize


def _const_input(ctx: Ctx, node, index: int, attr: str | None = None, default=None):
    """An ONNX parameter given as a constant input (new opsets) or an attribute (old ones)."""
    if len(node.input) > index and node.input[index]:
        v = ctx.const(node.input[index])
        if v is None:
            unsupported(node, f"input {index} ('{node.input[index]}') must be a constant for LiteRT")
        return [int(a) for a in np.asarray(v).ravel()]
    return list(get_attr(node, attr, default)) if attr and get_attr(node, attr) is not None else default


def lower_reshape(ctx: Ctx, node) -> None:
    """Reshape, Flatten, Squeeze, Unsqueeze: a RESHAPE to the (static) ONNX output shape."""
    x, out = node.input[0], node.output[0]
    kind = ctx.kind(node)
    t = ctx.get(x, "onnx", kind)
    _write_same_grid(ctx, "RESHAPE", [t, ctx.int32(f"{out}/shape", ctx.shape(out))], out, "onnx", kind, None, x)


def lower_transpose(ctx: Ctx, node) -> None:
    x, out = node.input[0], node.output[0]
    rank = len(ctx.shape(x))
    perm = list(get_attr(node, "perm", list(range(rank))[::-1]))
    kind = ctx.kind(node)
    t, layout = ctx.get_any(x, kind)
    stored = L.perm_to(layout, rank)
    q = [stored.index(p) for p in perm]  # stored axes -> ONNX output order
    if L.is_free_transpose(ctx.w.tensor_shape(t), q):
        return _write_same_grid(ctx, "RESHAPE", [t, ctx.int32(f"{out}/shape", ctx.shape(out))], out, "onnx", kind, None, x)
    _write_same_grid(ctx, "TRANSPOSE", [t, ctx.int32(f"{out}/perm", q)], out, "onnx", kind, None, x)


def lower_concat(ctx: Ctx, node) -> None:
    out = node.output[0]
    names = [i for i in node.input if i and int(np.prod(ctx.shape(i) or [1])) > 0]
    rank = len(ctx.shape(out))
    axis = get_attr(node, "axis", 0) % rank
    kind = ctx.kind(node)
    live = [n for n in names if ctx.const(n) is None]
    layout = "nhwc" if rank == 4 and live and any("nhwc" in ctx.layouts(n) for n in live) else "onnx"
    quant = ctx.act_quant(out) if kind == "q" else None
    tensors = []
    for n in names:
        c = ctx.const(n)
        if c is not None and kind == "q":  # a constant part goes straight onto the output grid
            v = c.transpose(L.perm_to(layout, rank)) if c.ndim == 4 else c
            q = quantize(v, quant.scale[0], quant.zero_point[0], ctx.act(out).bits)
            dt = ctx.qtype(out)
            tensors.append(ctx.const_tensor(f"{out}/{n}", q.astype(np.int16 if dt == "int16" else np.int8), dt, quant))
            continue
        t = ctx.get(n, layout, kind)
        if kind == "q" and _differs(ctx.w.tensor_quant(t), quant):
            r = ctx.new(f"{n}/on_{out}_grid", ctx.w.tensor_shape(t), ctx.qtype(out), quant)
            ctx.w.add_op("QUANTIZE", [t], [r])
            t = r
        tensors.append(t)
    opts = fb.ConcatenationOptionsT()
    opts.axis = L.axis_in(layout, axis, rank)
    ctx.w.add_op("CONCATENATION", tensors, [ctx.output(out, layout, kind)], opts)


def _differs(a: Quant | None, b: Quant | None) -> bool:
    if a is None or b is None:
        return a is not b
    return np.float32(a.scale[0]) != np.float32(b.scale[0]) or a.zero_point[0] != b.zero_point[0]


def lower_split(ctx: Ctx, node) -> None:
    x = node.input[0]
    rank = len(ctx.shape(x))
    axis = get_attr(node, "axis", 0) % rank
    sizes = [ctx.shape(o)[axis] for o in node.output]
    kind = ctx.kind(node)
    t, layout = ctx.get_any(x, kind)
    outs = []
    for o in node.output:
        if kind == "q" and _differs(ctx.w.tensor_quant(t), ctx.act_quant(o)):
            unsupported(node, "Split whose outputs are on different grids than its input")
        outs.append(ctx.output(o, layout, kind))
    opts = fb.SplitVOptionsT()
    opts.numSplits = len(outs)
    ctx.w.add_op("SPLIT_V", [t, ctx.int32(f"{node.output[0]}/sizes", sizes),
                             ctx.int32(f"{node.output[0]}/split_axis", [L.axis_in(layout, axis, rank)])], outs, opts)


def lower_slice(ctx: Ctx, node) -> None:
    x, out = node.input[0], node.output[0]
    shape = ctx.shape(x)
    rank = len(shape)
    if ctx.graph.opset >= 10:
        starts, ends = _const_input(ctx, node, 1), _const_input(ctx, node, 2)
        axes = _const_input(ctx, node, 3, default=list(range(len(starts))))
        steps = _const_input(ctx, node, 4, default=[1] * len(starts))
    else:
        starts, ends = list(get_attr(node, "starts")), list(get_attr(node, "ends"))
        axes = list(get_attr(node, "axes", list(range(len(starts)))))
        steps = [1] * len(starts)
    begin, end, stride = [0] * rank, list(shape), [1] * rank
    end_mask = 0
    for s, e, a, st in zip(starts, ends, axes, steps):
        a %= rank
        dim = shape[a]
        if st > 0:
            b_, e_ = min(max(s + dim if s < 0 else s, 0), dim), min(max(e + dim if e < 0 else e, 0), dim)
        else:
            b_, e_ = min(max(s + dim if s < 0 else s, 0), dim - 1), min(max(e + dim if e < 0 else e, -1), dim - 1)
        begin[a], end[a], stride[a] = b_, e_, st
        if st < 0 and e_ < 0:
            end_mask |= 1 << a  # "through index 0": LiteRT reads a negative end as from the back
    kind = ctx.kind(node)
    t, layout = ctx.get_any(x, kind)
    p = L.perm_to(layout, rank)
    mask = sum(1 << k for k, a in enumerate(p) if end_mask >> a & 1)
    opts = fb.StridedSliceOptionsT()
    opts.endMask = mask
    params = [ctx.int32(f"{out}/{label}", [v[a] for a in p]) for label, v in (("begin", begin), ("end", end), ("strides", stride))]
    _write_same_grid(ctx, "STRIDED_SLICE", [t, *params], out, layout, kind, opts, x)


def lower_gather(ctx: Ctx, node) -> None:
    x, idx, out = node.input[0], node.input[1], node.output[0]
    rank = len(ctx.shape(x))
    axis = get_attr(node, "axis", 0) % rank
    kind = ctx.kind(node)
    t = ctx.get(x, "onnx", kind)
    c = ctx.const(idx)
    if c is not None:
        c = np.where(c < 0, c + ctx.shape(x)[axis], c)
        ti = ctx.const_tensor(f"{out}/indices", c.astype(np.int32), "int32")
    else:  # negative indices count from the end: floor-mod by the axis length
        raw = ctx.get(idx, "onnx", "float")
        dt = ctx.w.tensor_dtype(raw)
        ti = ctx.new(f"{idx}/wrapped", ctx.w.tensor_shape(raw), dt)
        dim = ctx.const_tensor(f"{out}/axis_len", np.asarray([ctx.shape(x)[axis]], dt), dt)
        ctx.w.add_op("FLOOR_MOD", [raw, dim], [ti])
    opts = fb.GatherOptionsT()
    opts.axis = axis
    _write_same_grid(ctx, "GATHER", [t, ti], out, "onnx", kind, opts, x)


def lower_pad(ctx: Ctx, node) -> None:
    x, out = node.input[0], node.output[0]
    rank = len(ctx.shape(x))
    pads = _const_input(ctx, node, 1, "pads") if ctx.graph.opset >= 11 else list(get_attr(node, "pads"))
    if ctx.graph.opset >= 18 and len(node.input) > 3 and node.input[3]:
        axes = [a % rank for a in _const_input(ctx, node, 3)]
        full = [0] * (2 * rank)
        for k, a in enumerate(axes):
            full[a], full[a + rank] = pads[k], pads[k + len(axes)]
        pads = full
    mode = _attr(node, "mode", "constant")
    if any(p < 0 for p in pads):
        unsupported(node, "Pad with negative pads")
    value = 0.0
    if mode == "constant":
        if len(node.input) > 2 and node.input[2]:
            v = ctx.const(node.input[2])
            if v is None:
                unsupported(node, "Pad with a non-constant value")
            value = float(np.asarray(v).ravel()[0]) if v.size else 0.0
        elif ctx.graph.opset < 11:
            value = float(get_attr(node, "value", 0.0))
    elif mode == "edge":
        return _pad_edge(ctx, node, pads)
    elif mode != "reflect":
        unsupported(node, f"Pad mode '{mode}' (LiteRT pads constant, reflect or edge)")
    kind = ctx.kind(node)
    t, layout = ctx.get_any(x, kind)
    p = L.perm_to(layout, rank)
    paddings = ctx.int32(f"{out}/paddings", [[pads[a], pads[a + rank]] for a in p])
    if mode == "reflect":
        opts = fb.MirrorPadOptionsT()
        opts.mode = fb.MirrorPadMode.REFLECT
        return _write_same_grid(ctx, "MIRROR_PAD", [t, paddings], out, layout, kind, opts, x)
    if value == 0.0:
        return _write_same_grid(ctx, "PAD", [t, paddings], out, layout, kind, None, x)
    if kind == "q":
        qt = ctx.w.tensor_quant(t)
        qv = quantize(np.float32(value), qt.scale[0], qt.zero_point[0], ctx.act(x).bits)
        tv = ctx.const_tensor(f"{out}/value", np.asarray([qv], np.int8), "int8", qt)
    else:
        dt = ctx.w.tensor_dtype(t)
        tv = ctx.const_tensor(f"{out}/value", np.asarray([value], np.float32 if dt == "float32" else dt), dt)
    _write_same_grid(ctx, "PADV2", [t, paddings, tv], out, layout, kind, None, x)


def _pad_edge(ctx: Ctx, node, pads: list[int]) -> None:
    """Edge padding: a GATHER per padded axis with the clamped index map (exact, any pad size)."""
    x, out = node.input[0], node.output[0]
    shape = ctx.shape(x)
    rank = len(shape)
    kind = ctx.kind(node)
    t, layout = ctx.get_any(x, kind)
    p = L.perm_to(layout, rank)
    cur = list(ctx.w.tensor_shape(t))
    axes = [a for a in range(rank) if pads[a] or pads[a + rank]]
    for k, a in enumerate(axes):
        idx = np.clip(np.arange(-pads[a], shape[a] + pads[a + rank]), 0, shape[a] - 1).astype(np.int32)
        stored = p.index(a)
        cur[stored] = len(idx)
        opts = fb.GatherOptionsT()
        opts.axis = stored
        last = k == len(axes) - 1
        dst = ctx.output(out, layout, kind) if last else ctx.new(f"{out}/edge{a}", cur, ctx.w.tensor_dtype(t), ctx.w.tensor_quant(t))
        ctx.w.add_op("GATHER", [t, ctx.int32(f"{out}/edge_idx{a}", idx)], [dst], opts)
        t = dst
    if not axes:
        lower_reshape(ctx, node)


def _reduce(ctx: Ctx, node, op: str, same_grid: bool) -> None:
    x, out = node.input[0], node.output[0]
    rank = len(ctx.shape(x))
    if ctx.graph.opset >= 18 or node.op_type == "ReduceSum" and ctx.graph.opset >= 13:
        axes = _const_input(ctx, node, 1, default=None)
    else:
        axes = get_attr(node, "axes")
        axes = list(axes) if axes is not None else None
    if not axes:
        if get_attr(node, "noop_with_empty_axes", 0):  # the identity
            return lower_reshape(ctx, node)
        axes = list(range(rank))
    axes = sorted(a % rank for a in axes)
    keep = bool(get_attr(node, "keepdims", 1))
    kind = ctx.kind(node)
    t, layout = ctx.get_any(x, kind) if keep else (ctx.get(x, "onnx", kind), "onnx")
    opts = fb.ReducerOptionsT()
    opts.keepDims = keep
    axes_t = ctx.int32(f"{out}/axes", [L.axis_in(layout, a, rank) for a in axes])
    if same_grid:
        return _write_same_grid(ctx, op, [t, axes_t], out, layout, kind, opts, x)
    ctx.w.add_op(op, [t, axes_t], [ctx.output(out, layout, kind)], opts)


def lower_reduce_mean(ctx, node):
    _reduce(ctx, node, "MEAN", same_grid=False)


def lower_reduce_max(ctx, node):
    _reduce(ctx, node, "REDUCE_MAX", same_grid=True)


def lower_reduce_min(ctx, node):
    _reduce(ctx, node, "REDUCE_MIN", same_grid=True)


def lower_reduce_sum(ctx, node):
    _reduce(ctx, node, "SUM", same_grid=False)


def lower_layer_normalization(ctx: Ctx, node) -> None:
    """(x - mean) * rsqrt(var + eps) * scale + bias over the trailing axes (float)."""
    x, out = node.input[0], node.output[0]
    shape = ctx.shape(x)
    rank = len(shape)
    axis = get_attr(node, "axis", -1) % rank
    eps = float(get_attr(node, "epsilon", 1e-5))
    kind = ctx.kind(node, int_ok=False)
    t = ctx.get(x, "onnx", kind)
    axes = ctx.int32(f"{out}/axes", list(range(axis, rank)))
    red = shape[:axis] + [1] * (rank - axis)
    keep = fb.ReducerOptionsT()
    keep.keepDims = True
    diff, sq, var, ve, y = (ctx.new(f"{out}/{n}", s, "float32") for n, s in (
        ("centered", shape), ("squared", shape), ("var", red), ("var_eps", red), ("normed", shape)))
    extra = list(node.output[1:]) + ["", ""]  # optional Mean and InvStdDev outputs
    mean = ctx.output(extra[0], "onnx", "float") if extra[0] else ctx.new(f"{out}/mean", red, "float32")
    inv = ctx.output(extra[1], "onnx", "float") if extra[1] else ctx.new(f"{out}/rstd", red, "float32")
    ctx.w.add_op("MEAN", [t, axes], [mean], keep)
    ctx.w.add_op("SUB", [t, mean], [diff], fb.SubOptionsT())
    ctx.w.add_op("MUL", [diff, diff], [sq], fb.MulOptionsT())
    ctx.w.add_op("MEAN", [sq, axes], [var], keep)
    ctx.w.add_op("ADD", [var, ctx.const_tensor(f"{out}/eps", np.asarray([eps], np.float32))], [ve], fb.AddOptionsT())
    ctx.w.add_op("RSQRT", [ve], [inv])
    ctx.w.add_op("MUL", [diff, inv], [y], fb.MulOptionsT())
    has_bias = len(node.input) > 2 and node.input[2]
    scaled = ctx.output(out, "onnx", kind) if not has_bias else ctx.new(f"{out}/scaled", shape, "float32")
    ctx.w.add_op("MUL", [y, ctx.get(node.input[1], "onnx", "float")], [scaled], fb.MulOptionsT())
    if has_bias:
        ctx.w.add_op("ADD", [scaled, ctx.get(node.input[2], "onnx", "float")], [ctx.output(out, "onnx", kind)], fb.AddOptionsT())
