"""ONNX op -> MIL ops, one function per ONNX op (the `OPS` table of the coreml target).

Each function reads the current node from `ctx` and returns its output value(s): MIL vars
built with coremltools' MIL builder, or numpy arrays when the result is a constant. Weights
of Conv/ConvTranspose/Gemm/MatMul go through `weights.weight_var`, which applies the plan.
Shape-moving ops live in ops_tensor.py.
"""

from __future__ import annotations

import numpy as np
from coremltools.converters.mil.mil import Builder as mb

from edgeq.lower.coreml.context import LoweringContext, is_float, mil_name, to_ints
from edgeq.lower.coreml.weights import weight_var


def _weight(ctx: LoweringContext, k: int, perm: tuple | None = None):
    """The node's k-th input as a weight: compressed per the plan when it is a planned initializer."""
    name = ctx.inp(k)
    w = ctx.const(name)
    if w is None:
        return ctx.var(name)
    wp = ctx.plan.weights.get(name)
    if wp is not None and wp.bits is not None and w.dtype == np.float32:
        return weight_var(ctx, wp, w, mil_name(f"{name}_{'_'.join(map(str, perm)) if perm else 'w'}"), perm)
    return np.transpose(w, perm).astype(np.float32) if perm else w.astype(np.float32)


def _conv_pads(ctx: LoweringContext, spatial: int) -> dict:
    auto = ctx.attr("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto == "VALID":
        return {"pad_type": "valid"}
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        return {"pad_type": "same" if auto == "SAME_UPPER" else "same_lower"}
    pads = ctx.attr("pads", [0] * 2 * spatial)
    return {"pad_type": "custom", "pad": [p for k in range(spatial) for p in (pads[k], pads[k + spatial])]}


def lower_conv(ctx: LoweringContext):
    spatial = ctx.rank(ctx.inp(0)) - 2
    kw = _conv_pads(ctx, spatial)
    bias = ctx.var(ctx.inp(2)) if ctx.inp(2) else None
    weight = _weight(ctx, 1)
    if bias is not None and not isinstance(bias, np.ndarray):
        y = mb.conv(x=ctx.var(ctx.inp(0)), weight=weight, strides=ctx.attr("strides", [1] * spatial),
                    dilations=ctx.attr("dilations", [1] * spatial), groups=ctx.attr("group", 1), **kw)
        return mb.add(x=y, y=mb.reshape(x=bias, shape=[1, -1] + [1] * spatial), name=ctx.out_name())
    return mb.conv(x=ctx.var(ctx.inp(0)), weight=weight, bias=bias, strides=ctx.attr("strides", [1] * spatial),
                   dilations=ctx.attr("dilations", [1] * spatial), groups=ctx.attr("group", 1), name=ctx.out_name(), **kw)


def lower_conv_transpose(ctx: LoweringContext):
    """Full (valid) transposed conv, then the ONNX pads / output_padding / output_shape as a crop."""
    x_shape = ctx.shape(ctx.inp(0))
    spatial = len(x_shape) - 2
    w_shape = ctx.shape(ctx.inp(1))
    strides = ctx.attr("strides", [1] * spatial)
    dil = ctx.attr("dilations", [1] * spatial)
    out_pad = ctx.attr("output_padding", [0] * spatial)
    full = [strides[k] * (x_shape[2 + k] - 1) + (w_shape[2 + k] - 1) * dil[k] + 1 for k in range(spatial)]
    pads = list(ctx.attr("pads", [0] * 2 * spatial))
    out_shape = ctx.attr("output_shape")
    auto = ctx.attr("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if out_shape is not None or auto in ("SAME_UPPER", "SAME_LOWER"):
        target = list(out_shape)[-spatial:] if out_shape is not None else [x_shape[2 + k] * strides[k] for k in range(spatial)]
        out_pad = list(out_pad)
        for k in range(spatial):
            total = full[k] + out_pad[k] - target[k]
            if total < 0:  # a larger output than the full transposed conv: zeros at the end
                out_pad[k], total = out_pad[k] - total, 0
            first = total // 2 if auto != "SAME_LOWER" else total - total // 2
            pads[k], pads[k + spatial] = first, total - first
    y = mb.conv_transpose(x=ctx.var(ctx.inp(0)), weight=_weight(ctx, 1), pad_type="valid", strides=strides,
                          dilations=dil, groups=ctx.attr("group", 1))
    begin = [0, 0] + [pads[k] for k in range(spatial)]
    end = [0, 0] + [min(full[k], full[k] + out_pad[k] - pads[k + spatial]) for k in range(spatial)]
    mask = [True, True] + [False] * spatial
    if any(b for b in begin) or any(e != f for e, f in zip(end[2:], full)):
        y = mb.slice_by_index(x=y, begin=begin, end=end, begin_mask=mask, end_mask=mask)
    extra = [max(0, full[k] + out_pad[k] - pads[k + spatial] - full[k]) for k in range(spatial)]
    if any(extra):
        y = mb.pad(x=y, pad=[0, 0, 0, 0] + [p for e in extra for p in (0, e)], mode="constant")
    if ctx.inp(2):
        b, bshape = ctx.const(ctx.inp(2)), [1, -1] + [1] * spatial
        bias = b.astype(np.float32).reshape(bshape) if b is not None else mb.reshape(x=ctx.var(ctx.inp(2)), shape=bshape)
        return mb.add(x=y, y=bias, name=ctx.out_name())
    return mb.identity(x=y, name=ctx.out_name())


def lower_gemm(ctx: LoweringContext):
    alpha, beta = ctx.attr("alpha", 1.0), ctx.attr("beta", 1.0)
    trans_a, trans_b = ctx.attr("transA", 0), ctx.attr("transB", 0)
    a = ctx.var(ctx.inp(0))
    c = ctx.const(ctx.inp(2)) if ctx.inp(2) else None
    b_const = ctx.const(ctx.inp(1)) is not None
    if b_const and not trans_a and alpha == 1.0 and (c is None or c.ndim <= 1):
        bias = None if c is None else np.broadcast_to(np.float32(beta) * c.astype(np.float32), (ctx.shape(ctx.inp(1))[0 if trans_b else 1],))
        weight = _weight(ctx, 1, None if trans_b else (1, 0))  # linear wants [out, in]
        bias = None if bias is None else np.ascontiguousarray(bias)
        return mb.linear(x=a, weight=weight, bias=bias, name=ctx.out_name())
    y = mb.matmul(x=a, y=_weight(ctx, 1), transpose_x=bool(trans_a), transpose_y=bool(trans_b))
    if alpha != 1.0:
        y = mb.mul(x=y, y=np.float32(alpha))
    if ctx.inp(2):
        cv = ctx.var(ctx.inp(2))
        y = mb.add(x=y, y=mb.mul(x=cv, y=np.float32(beta)) if beta != 1.0 else cv)
    return mb.identity(x=y, name=ctx.out_name())


def lower_matmul(ctx: LoweringContext):
    b = ctx.const(ctx.inp(1))
    if b is not None and b.ndim == 2 and b.dtype == np.float32 and ctx.rank(ctx.inp(0)) >= 2:
        return mb.linear(x=ctx.var(ctx.inp(0)), weight=_weight(ctx, 1, (1, 0)), name=ctx.out_name())
    return mb.matmul(x=ctx.var(ctx.inp(0)), y=_weight(ctx, 1) if b is not None else ctx.var(ctx.inp(1)), name=ctx.out_name())


def _binary(mil_op):
    def lower(ctx: LoweringContext):
        x, y = ctx.var(ctx.inp(0)), ctx.var(ctx.inp(1))
        if isinstance(y, np.ndarray) and not isinstance(x, np.ndarray):  # a constant takes the var's dtype
            y = y.astype(np.float32 if is_float(x) else np.int32)
        elif isinstance(x, np.ndarray) and not isinstance(y, np.ndarray):
            x = x.astype(np.float32 if is_float(y) else np.int32)
        return mil_op(x=x, y=y, name=ctx.out_name())

    lower.__name__ = f"lower_{mil_op.__name__}"
    return lower


def lower_pow(ctx: LoweringContext):
    """ONNX lets base and exponent differ in type; MIL's pow is float: compute in fp32, cast back."""
    x, y = ctx.var(ctx.inp(0)), ctx.var(ctx.inp(1))
    if is_float(x) and is_float(y) and not isinstance(x, np.ndarray) and (isinstance(y, np.ndarray) or y.dtype == x.dtype):
        return mb.pow(x=x, y=y.astype(np.float32) if isinstance(y, np.ndarray) else y, name=ctx.out_name())
    xf = x.astype(np.float32) if isinstance(x, np.ndarray) else mb.cast(x=x, dtype="fp32")
    yf = y.astype(np.float32) if isinstance(y, np.ndarray) else mb.cast(x=y, dtype="fp32")
    if is_float(x):
        return mb.pow(x=xf, y=yf, name=ctx.out_name())
    return mb.cast(x=mb.pow(x=xf, y=yf), dtype="int32", name=ctx.out_name())


def _unary(mil_op, **fixed):
    def lower(ctx: LoweringContext):
        return mil_op(x=ctx.var(ctx.inp(0)), name=ctx.out_name(), **fixed)

    lower.__name__ = f"lower_{mil_op.__name__}"
    return lower


def lower_clip(ctx: LoweringContext):
    lo = ctx.attr("min") if ctx.node.attribute and ctx.attr("min") is not None else None
    hi = ctx.attr("max") if ctx.node.attribute and ctx.attr("max") is not None else None
    if ctx.inp(1):
        lo = float(ctx.need_const(ctx.inp(1), "Clip min"))
    if ctx.inp(2):
        hi = float(ctx.need_const(ctx.inp(2), "Clip max"))
    x = ctx.var(ctx.inp(0))
    if not is_float(x):  # MIL's clip is float-only; integer bounds stay exact as int32 max/min
        y = x if lo is None else mb.maximum(x=x, y=np.int32(lo))
        return mb.minimum(x=y, y=np.int32(hi), name=ctx.out_name()) if hi is not None else mb.identity(x=y, name=ctx.out_name())
    if lo is not None and hi is not None:
        return mb.clip(x=x, alpha=np.float32(lo), beta=np.float32(hi), name=ctx.out_name())
    if lo is not None:
        return mb.maximum(x=x, y=np.float32(lo), name=ctx.out_name())
    if hi is not None:
        return mb.minimum(x=x, y=np.float32(hi), name=ctx.out_name())
    return mb.identity(x=x, name=ctx.out_name())


def lower_leaky_relu(ctx: LoweringContext):
    return mb.leaky_relu(x=ctx.var(ctx.inp(0)), alpha=np.float32(ctx.attr("alpha", 0.01)), name=ctx.out_name())


def lower_prelu(ctx: LoweringContext):
    x, slope = ctx.var(ctx.inp(0)), ctx.const(ctx.inp(1))
    rank = ctx.rank(ctx.inp(0))
    if slope is not None and 3 <= rank <= 5 and slope.size == ctx.shape(ctx.inp(0))[1] and slope.size > 1 and \
            slope.shape[-(rank - 1):][1:] == (1,) * (min(slope.ndim, rank - 1) - 1):
        return mb.prelu(x=x, alpha=slope.astype(np.float32).ravel(), name=ctx.out_name())
    neg = mb.mul(x=mb.minimum(x=x, y=np.float32(0)), y=ctx.var(ctx.inp(1)))
    return mb.add(x=mb.relu(x=x), y=neg, name=ctx.out_name())


def lower_hard_sigmoid(ctx: LoweringContext):
    return mb.sigmoid_hard(x=ctx.var(ctx.inp(0)), alpha=np.float32(ctx.attr("alpha", 0.2)),
                           beta=np.float32(ctx.attr("beta", 0.5)), name=ctx.out_name())


def lower_hard_swish(ctx: LoweringContext):
    x = ctx.var(ctx.inp(0))
    return mb.mul(x=x, y=mb.sigmoid_hard(x=x, alpha=np.float32(1 / 6), beta=np.float32(0.5)), name=ctx.out_name())


def lower_gelu(ctx: LoweringContext):
    approx = ctx.attr("approximate", b"none")
    mode = "TANH_APPROXIMATION" if approx in (b"tanh", "tanh") else "EXACT"
    return mb.gelu(x=ctx.var(ctx.inp(0)), mode=mode, name=ctx.out_name())


def _softmax_axis(ctx: LoweringContext) -> tuple[int, bool]:
    """(axis, coerce_2d): before opset 13 Softmax works on the input flattened to 2-D at `axis`."""
    rank = ctx.rank(ctx.inp(0))
    if ctx.graph.opset >= 13:
        return ctx.attr("axis", -1) % rank, False
    axis = ctx.attr("axis", 1) % rank
    return axis, axis != rank - 1


def _softmax_like(ctx: LoweringContext, log: bool):
    axis, coerce = _softmax_axis(ctx)
    x, shape = ctx.var(ctx.inp(0)), ctx.shape(ctx.inp(0))
    if coerce:
        x = mb.reshape(x=x, shape=[int(np.prod(shape[:axis])), -1])
    ax = -1 if coerce else axis
    y = mb.sub(x=x, y=mb.reduce_log_sum_exp(x=x, axes=[ax], keep_dims=True)) if log else mb.softmax(x=x, axis=ax)
    if coerce:
        y = mb.reshape(x=y, shape=list(shape))
    return mb.identity(x=y, name=ctx.out_name())


def lower_softmax(ctx: LoweringContext):
    return _softmax_like(ctx, log=False)


def lower_log_softmax(ctx: LoweringContext):
    return _softmax_like(ctx, log=True)


def _pool(ctx: LoweringContext, kind: str):
    spatial = ctx.rank(ctx.inp(0)) - 2
    if any(d != 1 for d in ctx.attr("dilations", [1] * spatial)):
        raise ctx.unsupported("dilated pooling")
    kw = _conv_pads(ctx, spatial)
    args = dict(x=ctx.var(ctx.inp(0)), kernel_sizes=ctx.attr("kernel_shape"), strides=ctx.attr("strides", [1] * spatial),
                ceil_mode=bool(ctx.attr("ceil_mode", 0)), name=ctx.out_name(), **kw)
    if kind == "max":
        if len(ctx.node.output) > 1 and ctx.node.output[1]:
            raise ctx.unsupported("MaxPool's Indices output")
        if not is_float(args["x"]) and _exact_in_float(ctx, ctx.inp(0)):  # MIL pools floats only
            args["x"], name = mb.cast(x=args["x"], dtype="fp32"), args.pop("name")
            return mb.cast(x=mb.max_pool(**args), dtype="int32", name=name)
        return mb.max_pool(**args)
    return mb.avg_pool(exclude_padding_from_average=not ctx.attr("count_include_pad", 0), **args)


def _exact_in_float(ctx: LoweringContext, name: str) -> bool:
    """An integer tensor every value of which the compute precision holds exactly: 8-bit always
    (fp16 has 11 mantissa bits), 16-bit in fp32 programs only."""
    return {"int8": True, "uint8": True, "int16": ctx.precision == "fp32", "uint16": ctx.precision == "fp32"}.get(
        ctx.graph.dtype(name), False)


def lower_max_pool(ctx: LoweringContext):
    return _pool(ctx, "max")


def lower_average_pool(ctx: LoweringContext):
    return _pool(ctx, "avg")


def lower_global_average_pool(ctx: LoweringContext):
    axes = list(range(2, ctx.rank(ctx.inp(0))))
    return mb.reduce_mean(x=ctx.var(ctx.inp(0)), axes=axes, keep_dims=True, name=ctx.out_name())


def lower_global_max_pool(ctx: LoweringContext):
    axes = list(range(2, ctx.rank(ctx.inp(0))))
    return mb.reduce_max(x=ctx.var(ctx.inp(0)), axes=axes, keep_dims=True, name=ctx.out_name())


def _reduce(mil_op):
    def lower(ctx: LoweringContext):
        rank = ctx.rank(ctx.inp(0))
        axes = ctx.attr("axes")
        if ctx.inp(1):
            axes = to_ints(ctx.need_const(ctx.inp(1), "reduction axes"))
        if not axes:
            if ctx.attr("noop_with_empty_axes", 0):
                return mb.identity(x=ctx.var(ctx.inp(0)), name=ctx.out_name())
            axes = list(range(rank))
        return mil_op(x=ctx.var(ctx.inp(0)), axes=[a % rank for a in axes], keep_dims=bool(ctx.attr("keepdims", 1)),
                      name=ctx.out_name())

    lower.__name__ = f"lower_{mil_op.__name__}"
    return lower


def lower_layer_norm(ctx: LoweringContext):
    shape = ctx.shape(ctx.inp(0))
    axis = ctx.attr("axis", -1) % len(shape)
    norm_shape = shape[axis:]
    gamma, beta = ctx.const(ctx.inp(1)), ctx.const(ctx.inp(2)) if ctx.inp(2) else None
    fits = gamma is not None and gamma.shape == norm_shape and (not ctx.inp(2) or (beta is not None and beta.shape == norm_shape))
    x = ctx.var(ctx.inp(0))
    eps = np.float32(ctx.attr("epsilon", 1e-5))
    axes = list(range(axis, len(shape)))
    stats = len(ctx.node.output) > 1 and any(ctx.node.output[1:])
    if fits and not stats:
        return mb.layer_norm(x=x, axes=axes, gamma=gamma.astype(np.float32), beta=None if beta is None else beta.astype(np.float32),
                             epsilon=eps, name=ctx.out_name())
    # the Mean / InvStdDev outputs (or a broadcast scale): the normalization spelled out
    mean = mb.reduce_mean(x=x, axes=axes, keep_dims=True)
    centered = mb.sub(x=x, y=mean)
    inv_std = mb.rsqrt(x=mb.add(x=mb.reduce_mean(x=mb.mul(x=centered, y=centered), axes=axes, keep_dims=True), y=eps))
    y = mb.mul(x=mb.mul(x=centered, y=inv_std), y=ctx.var(ctx.inp(1)))
    y = mb.add(x=y, y=ctx.var(ctx.inp(2)), name=ctx.out_name()) if ctx.inp(2) else mb.identity(x=y, name=ctx.out_name())
    return [y, mean, inv_std][: len(ctx.node.output)]


def lower_log(ctx: LoweringContext):
    return mb.log(x=ctx.var(ctx.inp(0)), epsilon=np.float32(0), name=ctx.out_name())


def lower_neg(ctx: LoweringContext):
    return mb.mul(x=ctx.var(ctx.inp(0)), y=np.float32(-1), name=ctx.out_name())


def _variadic(mil_op):
    """Sum / Max / Min over any number of inputs, folded pairwise."""
    def lower(ctx: LoweringContext):
        y = ctx.var(ctx.inp(0))
        for k in range(1, len(ctx.node.input)):
            y = mil_op(x=y, y=ctx.var(ctx.inp(k)))
        return mb.identity(x=y, name=ctx.out_name())

    lower.__name__ = f"lower_variadic_{mil_op.__name__}"
    return lower


NN_OPS = {
    "Conv": lower_conv,
    "ConvTranspose": lower_conv_transpose,
    "Gemm": lower_gemm,
    "MatMul": lower_matmul,
    "Add": _binary(mb.add),
    "Sub": _binary(mb.sub),
    "Mul": _binary(mb.mul),
    "Div": _binary(mb.real_div),
    "Pow": lower_pow,
    "Max": _variadic(mb.maximum),
    "Min": _variadic(mb.minimum),
    "Sum": _variadic(mb.add),
    "Relu": _unary(mb.relu),
    "Sigmoid": _unary(mb.sigmoid),
    "Tanh": _unary(mb.tanh),
    "Erf": _unary(mb.erf),
    "Sqrt": _unary(mb.sqrt),
    "Exp": _unary(mb.exp),
    "Log": lower_log,
    "Abs": _unary(mb.abs),
    "Neg": lower_neg,
    "Reciprocal": _unary(mb.inverse, epsilon=np.float32(0)),
    "Floor": _unary(mb.floor),
    "Ceil": _unary(mb.ceil),
    "Clip": lower_clip,
    "LeakyRelu": lower_leaky_relu,
    "PRelu": lower_prelu,
    "HardSigmoid": lower_hard_sigmoid,
    "HardSwish": lower_hard_swish,
    "Gelu": lower_gelu,
    "Softmax": lower_softmax,
    "LogSoftmax": lower_log_softmax,
    "MaxPool": lower_max_pool,
    "AveragePool": lower_average_pool,
    "GlobalAveragePool": lower_global_average_pool,
    "GlobalMaxPool": lower_global_max_pool,
    "ReduceMean": _reduce(mb.reduce_mean),
    "ReduceMax": _reduce(mb.reduce_max),
    "ReduceSum": _reduce(mb.reduce_sum),
    "LayerNormalization": lower_layer_norm,
}
