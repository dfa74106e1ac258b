"""Weight quantizers, 2-8 bits: the math every target applies to a WeightPlan.

    linear   symmetric (narrow signed grid, zero point 0) or asymmetric (signed grid + zero point),
             per tensor, per output channel, or per block along the input dim (GGUF-style);
             low-bit ranges are clipped where that lowers the weight MSE.
    palette  2^bits values per tensor or per group of channels: k-means, or the NF4 codebook
             scaled by the group's absmax (QLoRA's NormalFloat4).
    double quantization: the scales themselves on an unsigned 8-bit grid (bitsandbytes).

`derive(wp, w)` fills a plan's parameters; `grid(wp, shape)` expands them elementwise (what
GPTQ and lowerings use); `fake_quant_weight(wp, w)` is what the target computes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgeq import schemes
from edgeq.errors import PlanError
from edgeq.quant.linear import MIN_SCALE, qrange, symmetric_params
from edgeq.quant.plan import WeightPlan

# NF4 levels (QLoRA, Dettmers et al. 2023; bitsandbytes functional.py), for a group scaled to [-1, 1].
NF4 = np.array([-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
                -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
                0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
                0.7229568362236023, 1.0], np.float32)
DOUBLE_QUANT_CHUNK = 256  # scales share one second-level scale per chunk (bitsandbytes)
CLIP_SEARCH_BELOW = 7  # search a clipped range for linear weights under this many bits


def settings(wp: WeightPlan) -> dict:
    """What the parameters depend on; a plan edit that changes one of these re-derives them."""
    return {"bits": wp.bits, "scheme": wp.scheme, "granularity": wp.granularity, "axis": wp.axis,
            "block_size": wp.block_size, "codebook": wp.codebook, "scale_bits": wp.scale_bits}


def needs_derive(wp: WeightPlan) -> bool:
    """Settings changed since the parameters were derived, or a parameter the grid needs was deleted."""
    missing = wp.bits is not None and (not wp.palette if schemes.of(wp).palette else not wp.scale or wp.zero_point is None)
    return wp.derived is None or missing or {k: wp.derived.get(k) for k in settings(wp)} != settings(wp)


def group_view(w: np.ndarray, wp: WeightPlan) -> tuple[np.ndarray, tuple]:
    """w as [groups, members] for the plan's granularity, plus the shape of the param array."""
    pshape = wp.param_shape(w.shape)
    if wp.per_tensor:
        return w.reshape(1, -1), pshape
    ax = wp.axis
    if wp.per_channel:  # groups of g channels (palettes); the last one padded by repetition
        g = wp.channels_per_group
        flat = np.moveaxis(w, ax, 0).reshape(w.shape[ax], -1)
        pad = pshape[0] * g - len(flat)
        if pad:
            flat = np.concatenate([flat, np.repeat(flat[-1:], pad, 0)])
        return flat.reshape(pshape[0], -1), pshape
    # per_block: blocks of block_size along `ax`, zero-padded; param shape = shape with ax -> n_blocks
    b, d = wp.block_size, w.shape[ax]
    nb = pshape[ax]
    moved = np.moveaxis(w, ax, -1)
    if nb * b != d:
        moved = np.concatenate([moved, np.zeros((*moved.shape[:-1], nb * b - d), w.dtype)], -1)
    blocks = moved.reshape(*moved.shape[:-1], nb, b)
    return np.moveaxis(blocks, w.ndim - 1, ax).reshape(-1, b), pshape


def expand(params: np.ndarray, wp: WeightPlan, shape: tuple) -> np.ndarray:
    """Per-group values -> one value per weight element (same layout as the weight)."""
    params = np.asarray(params)
    if wp.per_tensor:
        return np.broadcast_to(params.reshape(()), shape)
    ax = wp.axis
    if wp.per_channel:
        per_ch = np.repeat(params, wp.channels_per_group)[: shape[ax]]
        bshape = [1] * len(shape)
        bshape[ax] = -1
        return np.broadcast_to(per_ch.reshape(bshape), shape)
    return np.take(np.repeat(params.reshape(wp.param_shape(shape)), wp.block_size, ax), range(shape[ax]), axis=ax)


def _linear_group_params(rows: np.ndarray, bits: int, symmetric: bool, clip: float | np.ndarray = 1.0):
    if symmetric:
        return symmetric_params(np.abs(rows).max(1) * clip, bits)
    qmin, qmax = qrange(bits, signed=True)
    lo = np.minimum(rows.min(1), 0.0) * clip
    hi = np.maximum(rows.max(1), 0.0) * clip
    scale = np.maximum((hi - lo) / (qmax - qmin), MIN_SCALE).astype(np.float32)
    zp = np.clip(np.rint(qmin - lo / scale), qmin, qmax).astype(np.int64)
    return scale, zp


def _fq_rows(rows, scale, zp, bits, symmetric):
    qmin, qmax = qrange(bits, signed=True, narrow=symmetric)
    q = np.clip(np.rint(rows / scale[:, None]) + zp[:, None], qmin, qmax)
    return ((q - zp[:, None]) * scale[:, None]).astype(np.float32)


def linear_params(rows: np.ndarray, bits: int, symmetric: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per-row scale/zero point; below CLIP_SEARCH_BELOW bits each row's range is shrunk to its best MSE."""
    scale, zp = _linear_group_params(rows, bits, symmetric)
    if bits >= CLIP_SEARCH_BELOW:
        return scale, zp
    best = ((_fq_rows(rows, scale, zp, bits, symmetric) - rows) ** 2).sum(1)
    for f in np.linspace(0.95, 0.5, 10):
        s, z = _linear_group_params(rows, bits, symmetric, f)
        err = ((_fq_rows(rows, s, z, bits, symmetric) - rows) ** 2).sum(1)
        better = err < best
        scale, zp, best = np.where(better, s, scale), np.where(better, z, zp), np.where(better, err, best)
    return scale.astype(np.float32), zp.astype(np.int64)


def kmeans_1d(values: np.ndarray, k: int, iters: int = 30) -> np.ndarray:
    """Lloyd's k-means on scalars (deterministic): started at the quantiles and at a quantile/linear
    blend (better in the tails when k is large); the lower-error result, sorted."""
    v = np.sort(values.astype(np.float64).ravel())
    if v.size > 1 << 16:
        v = v[:: v.size // (1 << 16)]
    q = np.quantile(v, (np.arange(k) + 0.5) / k)
    best, best_err = None, np.inf
    for centers in (q, 0.5 * q + 0.5 * np.linspace(v[0], v[-1], k)):
        for _ in range(iters):
            idx = np.searchsorted((centers[1:] + centers[:-1]) / 2, v)
            sums, counts = np.bincount(idx, v, k), np.bincount(idx, minlength=k)
            new = np.where(counts > 0, sums / np.maximum(counts, 1), centers)
            if np.allclose(new, centers):
                break
            centers = np.sort(new)
        err = float(np.sum((centers[np.searchsorted((centers[1:] + centers[:-1]) / 2, v)] - v) ** 2))
        if err < best_err:
            best, best_err = centers, err
    return np.sort(best).astype(np.float32)


def palette_params(rows: np.ndarray, bits: int, codebook: str) -> np.ndarray:
    """[groups, 2^bits] palettes."""
    if codebook == "nf4":
        if bits != 4:
            raise PlanError(f"the NF4 codebook has 16 entries (4 bits), not {bits} bits; use codebook kmeans")
        return (np.abs(rows).max(1, keepdims=True) * NF4[None]).astype(np.float32)
    return np.stack([kmeans_1d(r, 2**bits) for r in rows])


def double_quantize(scale: np.ndarray, bits: int) -> tuple[np.ndarray, list[float]]:
    """Scales on an unsigned `bits` grid, one step per DOUBLE_QUANT_CHUNK scales (never 0)."""
    qmax = 2**bits - 1
    out, steps = np.empty_like(scale), []
    for start in range(0, scale.size, DOUBLE_QUANT_CHUNK):
        chunk = scale[start : start + DOUBLE_QUANT_CHUNK]
        step = float(np.float32(max(float(chunk.max()) / qmax, MIN_SCALE)))
        out[start : start + DOUBLE_QUANT_CHUNK] = np.clip(np.rint(chunk / step), 1, qmax) * np.float32(step)
        steps.append(step)
    return out.astype(np.float32), steps


def derive(wp: WeightPlan, w: np.ndarray) -> WeightPlan:
    """Fill the plan's parameters (scale, zero_point, palette) from the float weight, in place."""
    wp.scale = wp.zero_point = wp.palette = wp.scale_scale = None
    if wp.bits is not None:
        sch = schemes.of(wp)
        if wp.granularity == "per_block" and (wp.axis is None or sch.palette):
            raise PlanError(f"weight '{wp.tensor}' (node '{wp.node}'): per_block needs a linear scheme and an axis")
        rows, pshape = group_view(np.asarray(w, np.float32), wp)
        if sch.palette:
            wp.codebook = wp.codebook or "kmeans"
            wp.palette = [[float(v) for v in p] for p in palette_params(rows, wp.bits, wp.codebook)]
        else:
            scale, zp = linear_params(rows, wp.bits, not sch.zero_points)
            if wp.scale_bits:
                scale, wp.scale_scale = double_quantize(scale, wp.scale_bits)
                if sch.zero_points:  # re-place zero points for the rounded scales
                    qmin, qmax = qrange(wp.bits, signed=True)
                    zp = np.clip(np.rint(qmin - np.minimum(rows.min(1), 0) / scale), qmin, qmax).astype(np.int64)
            wp.scale = [float(s) for s in scale.reshape(pshape).ravel()]
            wp.zero_point = [int(z) for z in zp.reshape(pshape).ravel()]
    wp.derived = settings(wp)
    return wp


@dataclass
class Grid:
    """A weight's quantization grid, elementwise in the weight's layout (or any reshaping of it)."""

    bits: int
    narrow: bool
    scale: np.ndarray | None = None  # linear: per element
    zero_point: np.ndarray | None = None
    group: np.ndarray | None = None  # palette: per element, index into palettes
    palettes: np.ndarray | None = None  # [groups, 2^bits]

    def reshape(self, f) -> Grid:
        """Apply the same layout transform `f` the caller applies to the weight."""
        def pick(a):
            return None if a is None else np.ascontiguousarray(f(a))

        return Grid(self.bits, self.narrow, pick(self.scale), pick(self.zero_point), pick(self.group), self.palettes)

    def codes(self, x: np.ndarray, index=...) -> np.ndarray:
        """Integer codes (linear) or palette indices of x, elements at `index` of the grid."""
        if self.palettes is not None:
            pal = self.palettes[self.group[index]]
            return np.abs(x[..., None] - pal).argmin(-1)
        qmin, qmax = qrange(self.bits, signed=True, narrow=self.narrow)
        return np.clip(np.rint(x / self.scale[index]) + self.zero_point[index], qmin, qmax).astype(np.int64)

    def values(self, codes: np.ndarray, index=...) -> np.ndarray:
        if self.palettes is not None:
            return np.take_along_axis(self.palettes[self.group[index]], codes[..., None], -1)[..., 0]
        return ((codes - self.zero_point[index]) * self.scale[index]).astype(np.float32)

    def round(self, x: np.ndarray, index=...) -> np.ndarray:
        return self.values(self.codes(x, index), index)


def grid(wp: WeightPlan, shape: tuple) -> Grid:
    shape = tuple(shape)
    if schemes.of(wp).palette:
        pals = np.asarray(wp.palette, np.float32)
        group = expand(np.arange(len(pals)), wp, shape).astype(np.int64)
        return Grid(wp.bits, False, group=np.ascontiguousarray(group), palettes=pals)
    scale = expand(np.asarray(wp.scale, np.float32), wp, shape).astype(np.float32)
    zp = expand(np.asarray(wp.zero_point, np.int64), wp, shape).astype(np.int64)
    return Grid(wp.bits, schemes.of(wp).narrow, scale, zp)


def fake_quant_weight(wp: WeightPlan, w: np.ndarray) -> np.ndarray:
    """The float values the target computes with (the weight itself when bits is None)."""
    w = np.asarray(w, np.float32)
    return w if wp.bits is None else grid(wp, w.shape).round(w).astype(np.float32)


def storage_bits(wp: WeightPlan) -> int:
    """Bits to store the weight packed: codes + scales (32 or scale_bits) + zero points + palettes (16)."""
    n = int(np.prod(wp.shape))
    if wp.bits is None:
        return 32 * n
    if schemes.of(wp).palette:
        return wp.bits * n + 16 * sum(len(p) for p in wp.palette or [])
    k = len(wp.scale or [])
    scale_bits = wp.scale_bits * k + 32 * len(wp.scale_scale or []) if wp.scale_bits else 32 * k
    zp_bits = wp.bits * k if schemes.of(wp).zero_points else 0
    return wp.bits * n + scale_bits + zp_bits
