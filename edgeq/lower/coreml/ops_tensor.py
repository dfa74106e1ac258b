"""Shape-moving ONNX ops -> MIL ops. Every shape is static here (the batch is bound to 1), so
shapes, axes and pads are resolved at compile time and handed to MIL as constants."""

from __future__ import annotations

import numpy as np
import onnx
from coremltools.converters.mil.mil import Builder as mb

from edgeq.lower.coreml.context import LoweringContext, is_float, mil_name, to_ints


def _axes_input(ctx: LoweringContext, k: int, attr: str = "axes") -> list[int] | None:
    if ctx.inp(k):
        return to_ints(ctx.need_const(ctx.inp(k), attr))
    v = ctx.attr(attr)
    return None if v is None else list(v)


def reshape_target(in_shape: tuple, target: list[int], allowzero: bool = False) -> list[int]:
    out = [in_shape[k] if d == 0 and not allowzero else d for k, d in enumerate(target)]
    if -1 in out:
        known = int(np.prod([d for d in out if d != -1]))
        out[out.index(-1)] = int(np.prod(in_shape)) // max(known, 1)
    return out


def lower_reshape(ctx: LoweringContext):
    target = to_ints(ctx.need_const(ctx.inp(1), "Reshape shape")) if ctx.inp(1) else list(ctx.attr("shape"))
    shape = reshape_target(ctx.shape(ctx.inp(0)), target, bool(ctx.attr("allowzero", 0)))
    return mb.reshape(x=ctx.var(ctx.inp(0)), shape=np.asarray(shape, np.int32), name=ctx.out_name())


def lower_flatten(ctx: LoweringContext):
    shape = ctx.shape(ctx.inp(0))
    axis = ctx.attr("axis", 1)
    axis = axis + len(shape) if axis < 0 else axis  # ONNX axis is in [-r, r]
    target = [int(np.prod(shape[:axis])), int(np.prod(shape[axis:]))]
    return mb.reshape(x=ctx.var(ctx.inp(0)), shape=np.asarray(target, np.int32), name=ctx.out_name())


def lower_squeeze(ctx: LoweringContext):
    shape = ctx.shape(ctx.inp(0))
    axes = _axes_input(ctx, 1)
    axes = [a % len(shape) for a in axes] if axes else [k for k, d in enumerate(shape) if d == 1]
    if not axes:
        return mb.identity(x=ctx.var(ctx.inp(0)), name=ctx.out_name())
    if len(axes) == len(shape):  # rank-0 results: Core ML keeps rank >= 1
        return mb.reshape(x=ctx.var(ctx.inp(0)), shape=np.asarray([1], np.int32), name=ctx.out_name())
    return mb.squeeze(x=ctx.var(ctx.inp(0)), axes=axes, name=ctx.out_name())


def lower_unsqueeze(ctx: LoweringContext):
    axes = _axes_input(ctx, 1)
    rank = ctx.rank(ctx.inp(0)) + len(axes)
    return mb.expand_dims(x=ctx.var(ctx.inp(0)), axes=sorted(a % rank for a in axes), name=ctx.out_name())


def lower_transpose(ctx: LoweringContext):
    perm = ctx.attr("perm") or list(reversed(range(ctx.rank(ctx.inp(0)))))
    return mb.transpose(x=ctx.var(ctx.inp(0)), perm=list(perm), name=ctx.out_name())


def lower_concat(ctx: LoweringContext):
    rank = ctx.rank(next(i for i in ctx.node.input if i))
    values = [ctx.var(i) for i in ctx.node.input if i and int(np.prod(ctx.shape(i))) > 0]
    return mb.concat(values=values, axis=ctx.attr("axis") % rank, name=ctx.out_name())


def lower_pad(ctx: LoweringContext):
    rank = ctx.rank(ctx.inp(0))
    mode = ctx.attr("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if ctx.graph.opset < 11:
        pads, value = list(ctx.attr("pads")), float(ctx.attr("value", 0.0))
    else:
        pads = to_ints(ctx.need_const(ctx.inp(1), "Pad pads"))
        value = float(ctx.need_const(ctx.inp(2), "Pad constant_value").ravel()[0]) if ctx.inp(2) else 0.0
    axes = _axes_input(ctx, 3) or list(range(rank))
    full = [0] * (2 * rank)
    for k, a in enumerate(axes):
        a %= rank
        full[2 * a], full[2 * a + 1] = pads[k], pads[k + len(axes)]
    if any(p < 0 for p in full) or mode not in ("constant", "reflect", "edge"):
        raise ctx.unsupported(f"Pad mode '{mode}' / negative pads")
    mil_mode = {"constant": "constant", "reflect": "reflect", "edge": "replicate"}[mode]
    x = ctx.var(ctx.inp(0))
    if is_float(x):
        return mb.pad(x=x, pad=np.asarray(full, np.int32), mode=mil_mode, constant_val=np.float32(value), name=ctx.out_name())
    y = mb.pad(x=mb.cast(x=x, dtype="fp32"), pad=np.asarray(full, np.int32), mode=mil_mode, constant_val=np.float32(value))
    return mb.cast(x=y, dtype="int32", name=ctx.out_name())  # MIL pads float tensors only


def lower_slice(ctx: LoweringContext):
    shape = ctx.shape(ctx.inp(0))
    rank = len(shape)
    if ctx.graph.opset < 10:
        starts, ends, axes, steps = ctx.attr("starts"), ctx.attr("ends"), ctx.attr("axes"), None
    else:
        starts, ends = to_ints(ctx.need_const(ctx.inp(1), "starts")), to_ints(ctx.need_const(ctx.inp(2), "ends"))
        axes = to_ints(ctx.need_const(ctx.inp(3), "axes")) if ctx.inp(3) else None
        steps = to_ints(ctx.need_const(ctx.inp(4), "steps")) if ctx.inp(4) else None
    axes = axes or list(range(len(starts)))
    steps = steps or [1] * len(starts)
    begin, end, stride = [0] * rank, list(shape), [1] * rank
    begin_mask, end_mask = [True] * rank, [True] * rank
    for s, e, a, st in zip(starts, ends, axes, steps):
        a %= rank
        b_, e_, _ = slice(s, e, st).indices(shape[a])
        begin[a], stride[a], begin_mask[a] = b_, st, False
        if not (st < 0 and e_ < 0):
            end[a], end_mask[a] = e_, False
    return mb.slice_by_index(x=ctx.var(ctx.inp(0)), begin=begin, end=end, stride=stride, begin_mask=begin_mask,
                             end_mask=end_mask, name=ctx.out_name())


def lower_split(ctx: LoweringContext):
    shape = ctx.shape(ctx.inp(0))
    axis = ctx.attr("axis", 0) % len(shape)
    n = len(ctx.node.output)
    sizes = to_ints(ctx.need_const(ctx.inp(1), "split")) if ctx.inp(1) else ctx.attr("split")
    if not sizes:
        chunk = -(-shape[axis] // n)
        sizes = [min(chunk, shape[axis] - k * chunk) for k in range(n)]
    outs = mb.split(x=ctx.var(ctx.inp(0)), split_sizes=np.asarray(sizes, np.int32), axis=axis)
    return list(outs)


def lower_gather(ctx: LoweringContext):
    x = ctx.var(ctx.inp(0))
    boolean = not isinstance(x, np.ndarray) and x.dtype.__name__ == "bool"
    if boolean:  # MIL gathers numbers only: a bool mask goes through int32
        x = mb.cast(x=x, dtype="int32")
    name = mil_name(f"{ctx.node.output[0]}_int") if boolean else ctx.out_name()
    shape = ctx.shape(ctx.inp(0))
    axis = ctx.attr("axis", 0) % len(shape)
    idx = ctx.const(ctx.inp(1))
    if idx is None:
        y = mb.gather(x=x, indices=ctx.var(ctx.inp(1)), axis=axis, name=name)
    else:
        idx = np.where(idx < 0, idx + shape[axis], idx).astype(np.int32)
        if idx.ndim == 0:  # scalar index: gather one, then drop the axis
            y = mb.gather(x=x, indices=idx.reshape(1), axis=axis)
            y = mb.identity(x=y, name=name) if len(shape) == 1 else mb.squeeze(x=y, axes=[axis], name=name)
        else:
            y = mb.gather(x=x, indices=idx, axis=axis, name=name)
    return mb.cast(x=y, dtype="bool", name=ctx.out_name()) if boolean else y


def _text(v, default: str) -> str:
    v = default if v is None else v
    return v.decode() if isinstance(v, bytes) else v


def lower_resize(ctx: LoweringContext):
    """Core ML's upsample ops where their semantics are ONNX's; otherwise the exact resampling
    matrices (ONNX's reference applied to an identity, per spatial axis) as two matmuls."""
    shape = ctx.shape(ctx.inp(0))
    mode, coord = _text(ctx.attr("mode"), "nearest"), _text(ctx.attr("coordinate_transformation_mode"), "half_pixel")
    scale_in = 1 if ctx.graph.opset < 11 else 2
    scales = ctx.const(ctx.inp(scale_in)) if ctx.inp(scale_in) else None
    sizes = ctx.const(ctx.inp(3)) if ctx.inp(3) else None
    if scales is not None and scales.size:
        factors = [float(s) for s in scales]
    elif sizes is not None and sizes.size:
        factors = [float(o) / float(i) for o, i in zip(to_ints(sizes), shape)]
    else:
        raise ctx.unsupported("Resize needs constant scales or sizes")
    if len(shape) != 4 or factors[0] != 1 or factors[1] != 1 or ctx.attr("axes") is not None or \
            _text(ctx.attr("keep_aspect_ratio_policy"), "stretch") != "stretch":
        raise ctx.unsupported("Resize of the two spatial dims of a 4-D tensor only")
    sh, sw = factors[2], factors[3]
    x = ctx.var(ctx.inp(0))
    nearest = _text(ctx.attr("nearest_mode"), "round_prefer_floor")
    integer = sh == int(sh) and sw == int(sw) and sh >= 1 and sw >= 1
    if mode == "nearest" and integer and ((coord == "asymmetric" and nearest == "floor") or
                                          (nearest == "round_prefer_floor" and coord in ("half_pixel", "asymmetric"))):
        return mb.upsample_nearest_neighbor(x=x, scale_factor_height=np.float32(sh), scale_factor_width=np.float32(sw),
                                            name=ctx.out_name())
    if mode == "linear" and integer and coord in ("half_pixel", "align_corners", "asymmetric") and not ctx.attr("antialias", 0):
        return mb.upsample_bilinear(x=x, scale_factor_height=np.float32(sh), scale_factor_width=np.float32(sw),
                                    align_corners=coord == "align_corners", half_pixel_centers=coord == "half_pixel",
                                    name=ctx.out_name())
    if _text(ctx.attr("coordinate_transformation_mode"), "") == "tf_crop_and_resize" and ctx.attr("extrapolation_value", 0.0):
        raise ctx.unsupported("tf_crop_and_resize with a non-zero extrapolation_value")
    m_h, m_w = (_resize_matrix(ctx, shape, axis, scales, sizes) for axis in (2, 3))
    y = mb.matmul(x=m_h, y=x)  # [out_h, H] @ [N, C, H, W]
    return mb.matmul(x=y, y=np.ascontiguousarray(m_w.T), name=ctx.out_name())


def _resize_matrix(ctx: LoweringContext, shape: tuple, axis: int, scales, sizes) -> np.ndarray:
    """[out, in] matrix of the node's resampling along `axis`: the node applied to an identity."""
    from edgeq.lower.coreml.program import fold_constant

    n = shape[axis]
    probe = np.eye(n, dtype=np.float32).reshape(1, 1, n, n)
    roi = ctx.const(ctx.inp(1)) if ctx.graph.opset >= 11 and ctx.inp(1) else None
    if roi is not None and roi.size:
        roi = np.array([0, 0, roi[axis], 0, 1, 1, roi[axis + 4], 1], roi.dtype)
    if scales is not None and scales.size:
        scales = np.array([1, 1, scales[axis], 1], np.float32)
    if sizes is not None and sizes.size:
        sizes = np.array([1, 1, sizes[axis], n], np.int64)
    inputs = [probe, scales] if ctx.graph.opset < 11 else [probe, roi, scales, sizes]
    return fold_constant(ctx.node, inputs[: len(ctx.node.input)], ctx.graph.opset)[0][0, 0].astype(np.float32)


def lower_shape(ctx: LoweringContext):
    shape = np.asarray(ctx.shape(ctx.inp(0)), np.int64)
    start, end = ctx.attr("start", 0), ctx.attr("end")
    return shape[start:end]


def lower_identity(ctx: LoweringContext):
    return ctx.value(ctx.inp(0))


CAST_TO = {1: "fp32", 10: "fp16", 6: "int32", 7: "int32", 9: "bool", 11: "fp32"}


def lower_cast(ctx: LoweringContext):
    to = ctx.attr("to")
    if to not in CAST_TO:
        raise ctx.unsupported(f"Cast to ONNX type {to}")
    return mb.cast(x=ctx.var(ctx.inp(0)), dtype=CAST_TO[to], name=ctx.out_name())


def lower_expand(ctx: LoweringContext):
    """ONNX's two-way broadcast to a constant shape: leading 1s (expand_dims), then tile the 1-dims."""
    in_shape = ctx.shape(ctx.inp(0))
    out_shape = tuple(np.broadcast_shapes(in_shape, tuple(to_ints(ctx.need_const(ctx.inp(1), "Expand shape")))))
    x = ctx.var(ctx.inp(0))
    if out_shape == in_shape:
        return mb.identity(x=x, name=ctx.out_name())
    lead = len(out_shape) - len(in_shape)
    full = (1,) * lead + tuple(in_shape)
    if lead:
        x = mb.reshape(x=x, shape=np.asarray(full, np.int32))
    reps = [o // i for o, i in zip(out_shape, full)]
    return mb.tile(x=x, reps=np.asarray(reps, np.int32), name=ctx.out_name())


def lower_constant_of_shape(ctx: LoweringContext):
    """Folded at compile time whenever the shape is known (always, once the batch is bound);
    a shape computed from an input becomes MIL's fill."""
    value = ctx.attr("value")
    fill = onnx.numpy_helper.to_array(value).ravel() if value is not None else np.zeros(1, np.float32)
    v = fill[0].astype(np.float32) if fill.dtype.kind == "f" else fill[0].astype(np.bool_ if fill.dtype == np.bool_ else np.int32)
    return mb.fill(shape=ctx.var(ctx.inp(0)), value=v, name=ctx.out_name())


def lower_range(ctx: LoweringContext):
    start, limit, delta = (ctx.var(ctx.inp(k)) for k in range(3))
    dtype = np.float32 if any(is_float(v) for v in (start, limit, delta)) else np.int32
    start, limit, delta = (np.asarray(v, dtype).reshape(()) if isinstance(v, np.ndarray) else v for v in (start, limit, delta))
    return mb.range_1d(start=start, end=limit, step=delta, name=ctx.out_name())


def lower_gather_elements(ctx: LoweringContext):
    shape = ctx.shape(ctx.inp(0))
    axis = ctx.attr("axis", 0) % len(shape)
    idx = ctx.var(ctx.inp(1))
    if isinstance(idx, np.ndarray):
        idx = np.where(idx < 0, idx + shape[axis], idx).astype(np.int32)
    else:  # negative indices count from the end in ONNX
        idx = mb.select(cond=mb.less(x=idx, y=np.int32(0)), a=mb.add(x=idx, y=np.int32(shape[axis])), b=idx)
    return mb.gather_along_axis(x=ctx.var(ctx.inp(0)), indices=idx, axis=axis, name=ctx.out_name())


TENSOR_OPS = {
    "Reshape": lower_reshape,
    "Flatten": lower_flatten,
    "Squeeze": lower_squeeze,
    "Unsqueeze": lower_unsqueeze,
    "Transpose": lower_transpose,
    "Concat": lower_concat,
    "Pad": lower_pad,
    "Slice": lower_slice,
    "Split": lower_split,
    "Gather": lower_gather,
    "Resize": lower_resize,
    "Shape": lower_shape,
    "Identity": lower_identity,
    "Cast": lower_cast,
    "Expand": lower_expand,
    "ConstantOfShape": lower_constant_of_shape,
    "Range": lower_range,
    "GatherElements": lower_gather_elements,
}
