"""Lowering of Resize: LiteRT's kernels where their coordinate maps equal ONNX's, exact rewrites elsewhere.

Nearest: RESIZE_NEAREST_NEIGHBOR when its index map is ONNX's, else two GATHERs with the
ONNX index map. Linear: RESIZE_BILINEAR when its coordinates are ONNX's. Anything else
separable (cubic, antialias, scales LiteRT rounds differently): two constant matmuls.
"""

from __future__ import annotations

import numpy as np

from edgeq.lower.tflite.context import Ctx
from edgeq.lower.tflite.ops_nn import _attr, _write_same_grid, unsupported
from edgeq.lower.tflite.schema import fb


def _resize_scales(ctx: Ctx, node, xs, ys) -> list[float]:
    """Per-axis scale ONNX maps coordinates with: the `scales` input when given, else out/in."""
    idx = 2 if ctx.graph.opset >= 11 else 1
    sc = ctx.const(node.input[idx]) if len(node.input) > idx and node.input[idx] else None
    if sc is not None and sc.size:
        return [float(v) for v in np.asarray(sc, np.float64).ravel()]
    return [o / i for o, i in zip(ys, xs)]


def source_coords(out: int, size: int, scale: float, ct: str) -> np.ndarray:
    """ONNX Resize: the input coordinate of each output index (onnx/reference/ops/op_resize.py)."""
    x = np.arange(out, dtype=np.float64)
    if ct == "align_corners":  # with scales given ONNX divides by size*scale - 1, not out - 1
        length = size * scale
        return x * (size - 1) / (length - 1) if length > 1 else np.zeros(out)
    if ct == "asymmetric":
        return x / scale
    if ct == "tf_half_pixel_for_nn":
        return (x + 0.5) / scale
    if ct == "pytorch_half_pixel" and out == 1:
        return np.zeros(out)
    return (x + 0.5) / scale - 0.5


def nearest_indices(out: int, size: int, scale: float, ct: str, mode: str) -> np.ndarray:
    c = source_coords(out, size, scale, ct)
    r = {"round_prefer_floor": np.ceil(c - 0.5), "round_prefer_ceil": np.floor(c + 0.5), "floor": np.floor(c), "ceil": np.ceil(c)}[mode]
    return np.clip(r, 0, size - 1).astype(np.int32)


def lower_resize(ctx: Ctx, node) -> None:
    """Nearest: LiteRT's kernel when its index map equals ONNX's, else two exact GATHERs.
    Linear: RESIZE_BILINEAR when its coordinate map equals ONNX's (else refused)."""
    x, out = node.input[0], node.output[0]
    xs, ys = ctx.shape(x), ctx.shape(out)
    if len(xs) != 4 or xs[:2] != ys[:2]:
        unsupported(node, "LiteRT resizes the spatial dims of 4-D tensors only")
    mode = _attr(node, "mode", "nearest")
    ct = _attr(node, "coordinate_transformation_mode", "half_pixel" if ctx.graph.opset >= 11 else "asymmetric")
    if ct == "tf_crop_and_resize":
        unsupported(node, "Resize with tf_crop_and_resize (extrapolation outside the crop box)")
    scales = _resize_scales(ctx, node, xs, ys)[2:]
    kind = ctx.kind(node)
    if mode == "cubic" or _attr(node, "antialias", 0):
        return _resize_by_matrices(ctx, node, kind)
    t = ctx.get(x, "nhwc", kind)
    if mode == "nearest":
        nm = _attr(node, "nearest_mode", "round_prefer_floor")
        want = [nearest_indices(o, i, s, ct, nm) for o, i, s in zip(ys[2:], xs[2:], scales)]
        for align, half in ((False, True), (False, False), (True, False)):
            native = [_litert_nearest(o, i, align, half) for o, i in zip(ys[2:], xs[2:])]
            if all(np.array_equal(a, b) for a, b in zip(want, native)):
                opts = fb.ResizeNearestNeighborOptionsT()
                opts.alignCorners, opts.halfPixelCenters = align, half
                return _write_same_grid(ctx, "RESIZE_NEAREST_NEIGHBOR", [t, ctx.int32(f"{out}/size", ys[2:])], out, "nhwc", kind, opts, x)
        n, h, w, c = ctx.w.tensor_shape(t)
        rows = ctx.temp(out, "rows", [n, ys[2], w, c], kind, ctx.w.tensor_quant(t))
        opts = fb.GatherOptionsT()
        opts.axis = 1
        ctx.w.add_op("GATHER", [t, ctx.int32(f"{out}/rows_idx", want[0])], [rows], opts)
        opts = fb.GatherOptionsT()
        opts.axis = 2
        return _write_same_grid(ctx, "GATHER", [rows, ctx.int32(f"{out}/cols_idx", want[1])], out, "nhwc", kind, opts, x)
    for align, half in ((False, True), (True, False), (False, False)):
        if all(np.allclose(source_coords(o, i, s, ct), _litert_linear(o, i, align, half), atol=1e-6)
               for o, i, s in zip(ys[2:], xs[2:], scales)):
            opts = fb.ResizeBilinearOptionsT()
            opts.alignCorners, opts.halfPixelCenters = align, half
            return _write_same_grid(ctx, "RESIZE_BILINEAR", [t, ctx.int32(f"{out}/size", ys[2:])], out, "nhwc", kind, opts, x)
    return _resize_by_matrices(ctx, node, kind)


def _resize_by_matrices(ctx: Ctx, node, kind: str) -> None:
    """Any separable Resize as two constant matmuls, Y = A_h X A_w^T (float).

    The interpolation matrices come from ONNX's reference Resize run on the identity, so
    cubic coefficients, exclude_outside, roi and the coordinate modes are ONNX's own.
    """
    x, out = node.input[0], node.output[0]
    if kind == "q":
        unsupported(node, "integer Resize whose coordinate map LiteRT's kernels do not share")
    n, c, h, w = ctx.shape(x)
    oh, ow = ctx.shape(out)[2:]
    t = ctx.get(x, "onnx", kind)
    a_w, a_h = _interpolation_matrix(ctx, node, 3), _interpolation_matrix(ctx, node, 2)
    if not (a_w.shape == (ow, w) and np.array_equal(a_w, np.eye(w))):
        y = ctx.new(f"{out}/cols", [n, c, h, ow], "float32")
        _matmul_last(ctx, t, a_w, y, f"{out}/A_w")
        t = y
    if not (a_h.shape == (oh, h) and np.array_equal(a_h, np.eye(h))):
        tt = ctx.new(f"{out}/cols_T", [n, c, ow, h], "float32")
        ctx.w.add_op("TRANSPOSE", [t, ctx.int32(f"{out}/perm_hw", [0, 1, 3, 2])], [tt])
        y = ctx.new(f"{out}/rows_T", [n, c, ow, oh], "float32")
        _matmul_last(ctx, tt, a_h, y, f"{out}/A_h")
        ctx.w.add_op("TRANSPOSE", [y, ctx.int32(f"{out}/perm_wh", [0, 1, 3, 2])], [ctx.output(out, "onnx", kind)])
        return
    ctx.w.add_op("RESHAPE", [t, ctx.int32(f"{out}/shape", [n, c, oh, ow])], [ctx.output(out, "onnx", kind)])


def _matmul_last(ctx: Ctx, t: int, a: np.ndarray, y: int, name: str) -> None:
    opts = fb.FullyConnectedOptionsT()
    opts.keepNumDims = True
    ctx.w.add_op("FULLY_CONNECTED", [t, ctx.const_tensor(name, a.astype(np.float32)), -1], [y], opts)


def _interpolation_matrix(ctx: Ctx, node, axis: int) -> np.ndarray:
    """[out, in] along `axis` (2 or 3): ONNX's reference Resize applied to the identity."""
    from onnx import TensorProto, helper
    from onnx.reference import ReferenceEvaluator

    size, out = ctx.shape(node.input[0])[axis], ctx.shape(node.output[0])[axis]
    full = _resize_scales(ctx, node, ctx.shape(node.input[0]), ctx.shape(node.output[0]))
    roi = ctx.const(node.input[1]) if ctx.graph.opset >= 11 and len(node.input) > 1 and node.input[1] else None
    roi_axis = [0.0, 1.0] if roi is None or not roi.size else [float(roi.ravel()[axis]), float(roi.ravel()[axis + 4])]
    scales = np.ones(4, np.float32)
    scales[2] = np.float32(full[axis])
    sizes = np.asarray([size, 1, out, 1], np.int64)
    given_sizes = ctx.graph.opset >= 11 and len(node.input) > 3 and node.input[3]
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if ctx.graph.opset < 11:
        attrs.setdefault("coordinate_transformation_mode", "asymmetric")
    inputs = ["X", "roi", "" if given_sizes else "scales"] + (["sizes"] if given_sizes else [])
    r = helper.make_node("Resize", inputs, ["Y"], **attrs)
    graph = helper.make_graph([r], "resize_axis", [helper.make_tensor_value_info("X", TensorProto.FLOAT, None)],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
                              [helper.make_tensor("roi", TensorProto.FLOAT, [8], [0, 0, roi_axis[0], 0, 1, 1, roi_axis[1], 1]),
                               helper.make_tensor("scales", TensorProto.FLOAT, [4], scales),
                               helper.make_tensor("sizes", TensorProto.INT64, [4], sizes)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", max(ctx.graph.opset, 11))])
    eye = np.eye(size, dtype=np.float32).reshape(size, 1, size, 1)
    y = ReferenceEvaluator(model).run(None, {"X": eye})[0]  # [size, 1, out, 1]: row k = response to e_k
    return np.asarray(y, np.float64).reshape(size, out).T


def _litert_nearest(out: int, size: int, align: bool, half: bool) -> np.ndarray:
    """tensorflow/lite/kernels/internal/reference/resize_nearest_neighbor.h"""
    scale = (size - 1) / (out - 1) if align and out > 1 else size / out
    x = np.arange(out, dtype=np.float64)
    v = (x + (0.5 if half else 0.0)) * scale
    v = np.floor(v + 0.5) if align else np.floor(v)  # TfLiteRound: half away from zero
    return np.clip(v, 0, size - 1).astype(np.int32)


def _litert_linear(out: int, size: int, align: bool, half: bool) -> np.ndarray:
    """tensorflow/lite/kernels/internal/reference/resize_bilinear.h (before clamping)."""
    scale = (size - 1) / (out - 1) if align and out > 1 else size / out
    x = np.arange(out, dtype=np.float64)
    return (x + 0.5) * scale - 0.5 if half else x * scale
