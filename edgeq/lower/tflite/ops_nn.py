"""Lowerings of the layers: convolutions, fully connected, pooling, resize (NHWC inside)."""

from __future__ import annotations

import numpy as np

from edgeq.errors import UnsupportedOpError
from edgeq.graph import get_attr
from edgeq.lower.tflite import layout as L
from edgeq.lower.tflite import weights as W
from edgeq.lower.tflite.context import Ctx
from edgeq.lower.tflite.schema import fb


def _attr(node, name, default):
    v = get_attr(node, name, default)
    return v.decode() if isinstance(v, bytes) else v


def unsupported(node, why: str):
    raise UnsupportedOpError(node.name or node.op_type, node.op_type, "tflite", why)


def padding(node, in_hw, k_hw, strides, dilations) -> tuple[int, list[int] | None]:
    """(Padding enum, explicit [top, left, bottom, right] or None) for a 2-D window op."""
    auto = _attr(node, "auto_pad", "NOTSET")
    if auto == "VALID":
        return fb.Padding.VALID, None
    totals = []
    for size, k, s, d in zip(in_hw, k_hw, strides, dilations):
        out = -(-size // s)
        totals.append(max((out - 1) * s + (k - 1) * d + 1 - size, 0))
    same = [totals[0] // 2, totals[1] // 2, totals[0] - totals[0] // 2, totals[1] - totals[1] // 2]
    if auto == "SAME_UPPER":
        return fb.Padding.SAME, None
    if auto == "SAME_LOWER":
        return fb.Padding.VALID, [same[2], same[3], same[0], same[1]]
    pads = list(_attr(node, "pads", [0, 0, 0, 0]))
    if not any(pads):
        return fb.Padding.VALID, None
    if pads == same:
        return fb.Padding.SAME, None
    return fb.Padding.VALID, pads


def pad_input(ctx: Ctx, name: str, t: int, pads: list[int], kind: str, value: float | None = None) -> int:
    """An explicit PAD (PADV2 with `value`) of the NHWC tensor `t`; int8 pads with the zero point."""
    n, h, w, c = ctx.w.tensor_shape(t)
    top, left, bottom, right = pads
    paddings = ctx.int32(f"{name}/paddings", [[0, 0], [top, bottom], [left, right], [0, 0]])
    quant = ctx.w.tensor_quant(t)
    out = ctx.new(f"{name}/padded", [n, h + top + bottom, w + left + right, c], ctx.w.tensor_dtype(t), quant)
    if value is None:
        ctx.w.add_op("PAD", [t, paddings], [out])
    else:
        if kind == "q":
            lo = -(2 ** 15) if ctx.w.tensor_dtype(t) == "int16" else -128
            v = ctx.const_tensor(f"{name}/pad_value", np.asarray([lo], np.int16 if lo < -128 else np.int8), None, quant)
        else:
            v = ctx.const_tensor(f"{name}/pad_value", np.asarray([value], np.float32))
        ctx.w.add_op("PADV2", [t, paddings, v], [out])
    return out


def lower_conv(ctx: Ctx, node) -> None:
    x, wname = node.input[0], node.input[1]
    w = ctx.const(wname)
    if w is None or w.ndim != 4:
        unsupported(node, "LiteRT lowering takes 2-D convolutions with a constant weight")
    group = _attr(node, "group", 1)
    c_in = ctx.shape(x)[1]
    c_out, _, kh, kw = w.shape
    depthwise = group == c_in and group > 1 and c_out % c_in == 0
    strides = list(_attr(node, "strides", [1, 1]))
    dil = list(_attr(node, "dilations", [1, 1]))
    out, act = ctx.fused(node)
    kind = ctx.kind(node, outs=[out], weight=wname)
    t = ctx.get(x, "nhwc", kind)
    pad_mode, pads = padding(node, ctx.shape(x)[2:], (kh, kw), strides, dil)
    if pads is not None:
        t = pad_input(ctx, out, t, pads, kind)
    if group > 1 and not depthwise:
        return _grouped_conv(ctx, node, t, group, pad_mode, strides, dil, out, act, kind)
    if depthwise:  # [C*M, 1, kh, kw] -> [1, kh, kw, C*M]
        tw = W.weight(ctx, wname, lambda a: a.transpose(1, 2, 3, 0), 3, kind, "DEPTHWISE_CONV_2D")
        opts = fb.DepthwiseConv2DOptionsT()
        opts.depthMultiplier = c_out // c_in
        op = "DEPTHWISE_CONV_2D"
    else:  # [O, I, kh, kw] -> [O, kh, kw, I]
        tw = W.weight(ctx, wname, lambda a: a.transpose(0, 2, 3, 1), 0, kind, "CONV_2D")
        opts = fb.Conv2DOptionsT()
        op = "CONV_2D"
    opts.padding, opts.strideH, opts.strideW = pad_mode, strides[0], strides[1]
    opts.dilationHFactor, opts.dilationWFactor = dil[0], dil[1]
    opts.fusedActivationFunction = act
    tb = W.bias(ctx, node, wname, c_out, kind, x)
    ctx.w.add_op(op, [t, tw, tb], [ctx.output(out, "nhwc", kind)], opts)


def _grouped_conv(ctx: Ctx, node, t: int, group: int, pad_mode, strides, dil, out: str, act, kind: str) -> None:
    """SPLIT the channels into groups, one CONV_2D per group, CONCATENATION (LiteRT's CONV_2D has no groups)."""
    x, wname = node.input[0], node.input[1]
    c_out = ctx.const(wname).shape[0]
    per = c_out // group
    n, h, w, c = ctx.w.tensor_shape(t)
    parts = [ctx.new(f"{out}/group{g}_in", [n, h, w, c // group], ctx.w.tensor_dtype(t), ctx.w.tensor_quant(t)) for g in range(group)]
    opts = fb.SplitOptionsT()
    opts.numSplits = group
    ctx.w.add_op("SPLIT", [ctx.int32(f"{out}/split_axis", [3]), t], parts, opts)
    oshape = L.stored_shape(ctx.shape(out), "nhwc")
    quant = ctx.act_quant(out) if kind == "q" else None
    convs = []
    for g, part in enumerate(parts):
        rows = slice(g * per, (g + 1) * per)
        tw = W.weight(ctx, wname, lambda a: a.transpose(0, 2, 3, 1), 0, kind, "CONV_2D", rows=rows)
        tb = W.bias(ctx, node, wname, c_out, kind, x, rows=rows)
        y = ctx.temp(out, f"group{g}", oshape[:3] + [per], kind, quant)
        o = fb.Conv2DOptionsT()
        o.padding, o.strideH, o.strideW, o.dilationHFactor, o.dilationWFactor = pad_mode, strides[0], strides[1], dil[0], dil[1]
        o.fusedActivationFunction = act
        ctx.w.add_op("CONV_2D", [part, tw, tb], [y], o)
        convs.append(y)
    opts = fb.ConcatenationOptionsT()
    opts.axis = 3
    ctx.w.add_op("CONCATENATION", convs, [ctx.output(out, "nhwc", kind)], opts)


def lower_conv_transpose(ctx: Ctx, node) -> None:
    x, wname = node.input[0], node.input[1]
    w = ctx.const(wname)
    if w is None or w.ndim != 4 or _attr(node, "group", 1) != 1:
        unsupported(node, "LiteRT lowering takes 2-D, ungrouped ConvTranspose with a constant weight")
    out = node.output[0]
    kind = ctx.kind(node, weight=wname)
    dil = list(_attr(node, "dilations", [1, 1]))
    value = None
    if dil != [1, 1]:  # a dilated kernel is the kernel with zeros between its taps
        if kind == "q":
            unsupported(node, "integer dilated ConvTranspose")
        ci, co, kh0, kw0 = w.shape
        value = np.zeros((ci, co, (kh0 - 1) * dil[0] + 1, (kw0 - 1) * dil[1] + 1), np.float32)
        value[:, :, :: dil[0], :: dil[1]] = w
        w = value
    strides = list(_attr(node, "strides", [1, 1]))
    n, _, h, wd = ctx.shape(x)
    _, c_out, kh, kw = w.shape
    full = [(h - 1) * strides[0] + kh, (wd - 1) * strides[1] + kw]
    oshape = ctx.shape(out)
    pads = list(_attr(node, "pads", [0, 0, 0, 0]))
    # VALID over the whole output (plus output_padding), then crop the begin pads
    full = [max(full[0], oshape[2] + pads[0]), max(full[1], oshape[3] + pads[1])]
    t = ctx.get(x, "nhwc", kind)
    tw = W.weight(ctx, wname, lambda a: a.transpose(1, 2, 3, 0), 0, kind, "TRANSPOSE_CONV", value=value)
    tb = W.bias(ctx, node, wname, c_out, kind, x)
    opts = fb.TransposeConvOptionsT()
    opts.padding, opts.strideH, opts.strideW = fb.Padding.VALID, strides[0], strides[1]
    shape_t = ctx.int32(f"{out}/output_shape", [n, full[0], full[1], c_out])
    if full == oshape[2:]:
        ctx.w.add_op("TRANSPOSE_CONV", [shape_t, tw, t, tb], [ctx.output(out, "nhwc", kind)], opts, version=3)
        return
    quant = ctx.act_quant(out) if kind == "q" else None
    tmp = ctx.temp(out, "uncropped", [n, full[0], full[1], c_out], kind, quant)
    ctx.w.add_op("TRANSPOSE_CONV", [shape_t, tw, t, tb], [tmp], opts, version=3)
    begin = ctx.int32(f"{out}/crop_begin", [0, pads[0], pads[1], 0])
    size = ctx.int32(f"{out}/crop_size", [n, oshape[2], oshape[3], c_out])
    ctx.w.add_op("SLICE", [tmp, begin, size], [ctx.output(out, "nhwc", kind)])


def _fully_connected(ctx: Ctx, node, x: str, wname: str, w_value, onnx_to_nk, kind: str, out: str, act: int,
                     bias_node=None, keep_dims: bool = False, x_tensor: int | None = None) -> None:
    tw = W.weight(ctx, wname, onnx_to_nk, 0, kind, "FULLY_CONNECTED", value=w_value)
    n_out = ctx.w.tensor_shape(tw)[0]
    tb = W.bias(ctx, bias_node if bias_node is not None else node, wname, n_out, kind, x)
    opts = fb.FullyConnectedOptionsT()
    opts.fusedActivationFunction, opts.keepNumDims = act, keep_dims
    opts.asymmetricQuantizeInputs = ctx.plan.mode == "dynamic"
    t = x_tensor if x_tensor is not None else ctx.get(x, "onnx", kind)
    ctx.w.add_op("FULLY_CONNECTED", [t, tw, tb], [ctx.output(out, "onnx", kind)], opts)


def lower_gemm(ctx: Ctx, node) -> None:
    a, b = node.input[0], node.input[1]
    bw = ctx.const(b)
    if bw is None or bw.ndim != 2:
        return _lower_gemm_general(ctx, node)
    alpha, beta = _attr(node, "alpha", 1.0), _attr(node, "beta", 1.0)
    c = ctx.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    n = bw.shape[0] if _attr(node, "transB", 0) else bw.shape[1]
    bias_is_vector = c is None or c.size == n and (c.ndim == 1 or c.shape[0] == 1)
    if not bias_is_vector or len(node.input) > 2 and node.input[2] and c is None:
        return _lower_gemm_general(ctx, node)
    out, act = ctx.fused(node)
    kind = ctx.kind(node, outs=[out], weight=b)
    if kind == "q" and (alpha != 1.0 or beta != 1.0):
        kind = "float"
    value = bw * np.float32(alpha) if alpha != 1.0 else None
    to_nk = (lambda q: q) if _attr(node, "transB", 0) else (lambda q: q.T)
    x_t = None
    if _attr(node, "transA", 0):
        src = ctx.get(a, "onnx", kind)
        m, k = ctx.shape(a)
        x_t = ctx.new(f"{a}/transposed", [k, m], ctx.w.tensor_dtype(src), ctx.w.tensor_quant(src))
        ctx.w.add_op("TRANSPOSE", [src, ctx.int32(f"{a}/perm_T", [1, 0])], [x_t])
    bias_node = node
    if c is not None and beta != 1.0:
        bias_node = _with_bias(ctx, node, (c * np.float32(beta)).ravel())
    _fully_connected(ctx, node, a, b, value, to_nk, kind, out, act, bias_node, x_tensor=x_t)


def _with_bias(ctx: Ctx, node, value: np.ndarray):
    """A stand-in node whose input[2] is a new constant (beta-scaled bias)."""
    from onnx import helper, numpy_helper

    name = f"{node.input[2]}_beta"
    ctx.graph.model.graph.initializer.append(numpy_helper.from_array(value.astype(np.float32), name))
    ctx.graph.init_names.add(name)
    return helper.make_node(node.op_type, [node.input[0], node.input[1], name], list(node.output), name=node.name)


def _lower_gemm_general(ctx: Ctx, node) -> None:
    """Gemm with a non-constant B or a matrix C: BATCH_MATMUL (+ MUL alpha, ADD beta*C), float."""
    a, b, out = node.input[0], node.input[1], node.output[0]
    kind = ctx.kind(node, int_ok=False)
    ta, tb = ctx.get(a, "onnx", kind), ctx.get(b, "onnx", kind)
    opts = fb.BatchMatMulOptionsT()
    opts.adjX, opts.adjY = bool(_attr(node, "transA", 0)), bool(_attr(node, "transB", 0))
    alpha, beta = _attr(node, "alpha", 1.0), _attr(node, "beta", 1.0)
    has_c = len(node.input) > 2 and node.input[2]
    if alpha == 1.0 and not has_c:
        ctx.w.add_op("BATCH_MATMUL", [ta, tb], [ctx.output(out, "onnx", kind)], opts)
        return
    shape = ctx.shape(out)
    y = ctx.temp(out, "matmul", shape, kind)
    ctx.w.add_op("BATCH_MATMUL", [ta, tb], [y], opts)
    if alpha != 1.0:
        y2 = ctx.temp(out, "alpha", shape, kind)
        ctx.w.add_op("MUL", [y, ctx.const_tensor(f"{out}/alpha", np.asarray([alpha], np.float32))], [y2], fb.MulOptionsT())
        y = y2
    if has_c:
        c = ctx.const(node.input[2])
        tc = ctx.const_tensor(f"{out}/beta_c", (c * np.float32(beta)).astype(np.float32)) if c is not None else ctx.get(node.input[2])
        if c is None and beta != 1.0:
            unsupported(node, "Gemm with a non-constant C and beta != 1")
        ctx.w.add_op("ADD", [y, tc], [ctx.output(out, "onnx", kind)], fb.AddOptionsT())
    else:
        ctx.w.add_op("RESHAPE", [y, ctx.int32(f"{out}/shape", shape)], [ctx.output(out, "onnx", kind)])


def lower_matmul(ctx: Ctx, node) -> None:
    a, b = node.input[0], node.input[1]
    bw = ctx.const(b)
    if bw is not None and bw.ndim == 2 and len(ctx.shape(a)) >= 2:
        out, act = ctx.fused(node)
        kind = ctx.kind(node, outs=[out], weight=b)
        _fully_connected(ctx, node, a, b, None, lambda q: q.T, kind, out, act, keep_dims=len(ctx.shape(a)) > 2)
        return
    out = node.output[0]
    kind = ctx.kind(node, int_ok=False)
    ta, tb = ctx.get(a, "onnx", kind), ctx.get(b, "onnx", kind)
    if len(ctx.shape(a)) < 2 or len(ctx.shape(b)) < 2:
        unsupported(node, "MatMul with a 1-D operand has no LiteRT lowering here")
    ctx.w.add_op("BATCH_MATMUL", [ta, tb], [ctx.output(out, "onnx", kind)], fb.BatchMatMulOptionsT())


def _pool(ctx: Ctx, node, op: str) -> None:
    x, out = node.input[0], node.output[0]
    if len(ctx.shape(x)) != 4:
        unsupported(node, "LiteRT pools 2-D windows (NHWC)")
    k = list(_attr(node, "kernel_shape", [1, 1]))
    strides = list(_attr(node, "strides", [1, 1]))
    dil = list(_attr(node, "dilations", [1, 1]))
    if any(d != 1 for d in dil):
        unsupported(node, "dilated pooling")
    kind = ctx.kind(node)
    t = ctx.get(x, "nhwc", kind)
    pad_mode, pads = padding(node, ctx.shape(x)[2:], k, strides, dil)
    oh, ow = ctx.shape(out)[2:]
    ih, iw = ctx.shape(x)[2:]
    if pad_mode == fb.Padding.VALID:  # ceil_mode: extra rows/cols at the end
        p = pads or [0, 0, 0, 0]
        extra_h = max((oh - 1) * strides[0] + k[0] - (ih + p[0] + p[2]), 0)
        extra_w = max((ow - 1) * strides[1] + k[1] - (iw + p[1] + p[3]), 0)
        if extra_h or extra_w:
            pads = [p[0], p[1], p[2] + extra_h, p[3] + extra_w]
    if op == "AVERAGE_POOL_2D" and pad_mode == fb.Padding.SAME and _attr(node, "count_include_pad", 0):
        pad_mode, pads = fb.Padding.VALID, list(_attr(node, "pads", [0, 0, 0, 0]))  # SAME would not count the pads
    opts = fb.Pool2DOptionsT()
    opts.padding, opts.strideH, opts.strideW, opts.filterHeight, opts.filterWidth = pad_mode, strides[0], strides[1], k[0], k[1]
    if pads is not None and op == "AVERAGE_POOL_2D":
        return _average_pool_padded(ctx, node, t, pads, k, strides, kind, opts)
    if pads is not None:
        t = pad_input(ctx, out, t, pads, kind, value=-3.4e38 if op == "MAX_POOL_2D" else None)
    _write_same_grid(ctx, op, [t], out, "nhwc", kind, opts, x)


def _average_pool_padded(ctx: Ctx, node, t: int, pads, k, strides, kind: str, opts) -> None:
    """Zero-pad, average over whole windows, then rescale each output by window / counted cells."""
    x, out = node.input[0], node.output[0]
    if kind == "q":
        unsupported(node, "integer AveragePool with explicit pads (LiteRT's kernel pads SAME only)")
    ih, iw = ctx.shape(x)[2:]
    oh, ow = ctx.shape(out)[2:]
    explicit = list(_attr(node, "pads", [0, 0, 0, 0]))
    mask = np.zeros((ih + pads[0] + pads[2], iw + pads[1] + pads[3]))
    if _attr(node, "count_include_pad", 0):  # the explicit pads count, ceil-mode extra cells do not
        mask[: ih + explicit[0] + explicit[2], : iw + explicit[1] + explicit[3]] = 1
    else:
        mask[pads[0]: pads[0] + ih, pads[1]: pads[1] + iw] = 1
    count = np.array([[mask[i * strides[0]: i * strides[0] + k[0], j * strides[1]: j * strides[1] + k[1]].sum()
                       for j in range(ow)] for i in range(oh)])
    padded = pad_input(ctx, out, t, pads, kind)
    n, _, _, c = ctx.w.tensor_shape(t)
    avg = ctx.temp(out, "window_mean", [n, oh, ow, c], kind)
    opts.padding = fb.Padding.VALID
    ctx.w.add_op("AVERAGE_POOL_2D", [padded], [avg], opts)
    factor = (k[0] * k[1] / np.maximum(count, 1)).astype(np.float32).reshape(1, oh, ow, 1)
    ctx.w.add_op("MUL", [avg, ctx.const_tensor(f"{out}/count_rescale", factor)], [ctx.output(out, "nhwc", kind)], fb.MulOptionsT())


def _write_same_grid(ctx: Ctx, op: str, inputs: list[int], out: str, layout: str, kind: str, opts, x: str) -> None:
    """Ops whose integer kernel needs the output on the input's grid (requantized after if the plan differs)."""
    if kind != "q":
        ctx.w.add_op(op, inputs, [ctx.output(out, layout, kind)], opts)
        return
    dst, requant = ctx.q_output(out, layout, ctx.w.tensor_quant(inputs[0]))
    ctx.w.add_op(op, inputs, [dst], opts)
    if requant:
        ctx.write_requantized(out, layout, dst)


def lower_max_pool(ctx: Ctx, node) -> None:
    if len(node.output) > 1 and node.output[1]:
        unsupported(node, "MaxPool with an Indices output")
    _pool(ctx, node, "MAX_POOL_2D")


def lower_average_pool(ctx: Ctx, node) -> None:
    _pool(ctx, node, "AVERAGE_POOL_2D")


def _global(ctx: Ctx, node, op: str) -> None:
    x, out = node.input[0], node.output[0]
    rank = len(ctx.shape(x))
    kind = ctx.kind(node)
    layout = "nhwc" if rank == 4 else "onnx"
    t = ctx.get(x, layout, kind)
    axes = [1, 2] if rank == 4 else list(range(2, rank))
    opts = fb.ReducerOptionsT()
    opts.keepDims = True
    axes_t = ctx.int32(f"{out}/axes", axes)
    if op == "MEAN":
        ctx.w.add_op(op, [t, axes_t], [ctx.output(out, layout, kind)], opts)
    else:
        _write_same_grid(ctx, op, [t, axes_t], out, layout, kind, opts, x)


def lower_global_average_pool(ctx: Ctx, node) -> None:
    _global(ctx, node, "MEAN")


def lower_global_max_pool(ctx: Ctx, node) -> None:
    _global(ctx, node, "REDUCE_MAX")
