"""Activation observers: reduce what a tensor took on during calibration to a (min, max) range.

Every observer sees the same `ValueSample` (exact min/max plus a deterministic strided
sample of the values), so `auto` can score each candidate range on the same data:

    minmax      exact extremes (no clipping, widest grid)
    percentile  the [100-p, p] percentiles (clips rare outliers), p = PERCENTILE
    entropy     TensorRT-style KL divergence between the histogram and its quantized copy
    mse         the clipped range with the lowest fake-quant mean squared error
    auto        per tensor, whichever of the above gives the lowest quantization error
"""

from __future__ import annotations

import numpy as np

from edgeq.quant.linear import affine_params, fake_quant

PERCENTILE = 99.99
SAMPLE_CAP = 1 << 17  # values kept per tensor: enough for stable percentiles, small in memory
SCORE_CAP = 1 << 15  # values the MSE searches score on (every method sees the same ones)
PER_BATCH = 1 << 14


class ValueSample:
    """Exact extremes and a bounded, deterministic sample of a tensor's values."""

    def __init__(self):
        self.lo, self.hi = np.inf, -np.inf
        self.parts: list[np.ndarray] = []
        self.count = 0

    def update(self, x: np.ndarray) -> tuple[float, float]:
        """Take in a batch; returns its extremes (NaN or inf when it holds one: min/max carry them)."""
        if not x.size:
            return (0.0, 0.0)
        flat = np.asarray(x, np.float32).ravel()
        lo, hi = float(flat.min()), float(flat.max())
        self.lo, self.hi = min(self.lo, lo), max(self.hi, hi)
        self.parts.append(flat[:: max(1, flat.size // PER_BATCH)].copy())
        self.count += flat.size
        if sum(p.size for p in self.parts) > 2 * SAMPLE_CAP:
            both = np.concatenate(self.parts)
            self.parts = [both[:: max(1, both.size // SAMPLE_CAP)]]
        return lo, hi

    def values(self) -> np.ndarray:
        return np.concatenate(self.parts) if self.parts else np.zeros(1, np.float32)

    def scoring(self) -> np.ndarray:
        v = self.values()
        return v[:: max(1, v.size // SCORE_CAP)]

    def extremes(self) -> tuple[float, float]:
        return (0.0, 0.0) if self.lo > self.hi else (self.lo, self.hi)


class MinMaxObserver:
    """Kept for callers that observe batch by batch without a ValueSample."""

    name = "minmax"

    def __init__(self):
        self.sample = ValueSample()

    def update(self, x: np.ndarray) -> None:
        self.sample.update(x)

    def range(self) -> tuple[float, float]:
        return self.sample.extremes()


def quant_mse(values: np.ndarray, lo: float, hi: float, bits: int = 8) -> float:
    """Mean squared error of fake-quantizing `values` on the affine grid of [lo, hi]."""
    scale, zp = affine_params(lo, hi, bits, signed=True)
    return float(np.mean((fake_quant(values, scale, zp, bits) - values) ** 2))


def minmax_range(s: ValueSample, bits: int = 8) -> tuple[float, float]:
    return s.extremes()


def percentile_range(s: ValueSample, bits: int = 8, p: float = PERCENTILE) -> tuple[float, float]:
    lo, hi = s.extremes()
    v = s.values()
    plo, phi = (float(x) for x in np.percentile(v, [100.0 - p, p]))
    return (lo if lo >= 0 else min(plo, 0.0)), (hi if hi <= 0 else max(phi, 0.0))


def mse_range(s: ValueSample, bits: int = 8, steps: int = 40) -> tuple[float, float]:
    """Shrink both ends together by a factor in (0.2, 1]; keep the lowest-MSE range."""
    lo, hi = s.extremes()
    v = s.scoring()
    best, best_err = (lo, hi), quant_mse(v, lo, hi, bits)
    for f in np.linspace(1.0, 0.2, steps)[1:]:
        cand = (lo * f, hi * f)
        err = quant_mse(v, *cand, bits)
        if err < best_err:
            best, best_err = cand, err
    return float(best[0]), float(best[1])


def entropy_range(s: ValueSample, bits: int = 8, bins: int = 2048) -> tuple[float, float]:
    """Threshold on |x| minimizing KL(P || Q), Q = P merged into 2^(bits-1) levels."""
    lo, hi = s.extremes()
    v = np.abs(s.values())
    amax = max(abs(lo), abs(hi))
    if amax == 0.0:
        return lo, hi
    hist, edges = np.histogram(v, bins=bins, range=(0.0, amax))
    hist = hist.astype(np.float64)
    levels = 2 ** (bits - 1) if lo < 0 else 2**bits
    best_t, best_kl = amax, np.inf
    for i in range(max(levels, 16), bins + 1, max(1, bins // 128)):
        p = hist[:i].copy()
        p[-1] += hist[i:].sum()  # outliers clipped into the last bin
        m = min(levels, i)  # np.array_split(range(i), m): the first i % m chunks one longer
        lengths = np.full(m, i // m)
        lengths[: i % m] += 1
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        nz = hist[:i] > 0
        sums, counts = np.add.reduceat(hist[:i], starts), np.add.reduceat(nz.astype(np.float64), starts)
        q = np.where(nz, np.repeat(sums / np.maximum(counts, 1), lengths), 0.0)  # spread over non-empty bins
        p, q = p / p.sum(), q / max(q.sum(), 1e-30)
        mask = p > 0
        kl = float(np.sum(p[mask] * np.log(p[mask] / np.maximum(q[mask], 1e-12))))
        if kl < best_kl:
            best_kl, best_t = kl, float(edges[i])
    return max(lo, -best_t), min(hi, best_t)


RANGE_METHODS = {"minmax": minmax_range, "percentile": percentile_range, "entropy": entropy_range, "mse": mse_range}


def auto_range(s: ValueSample, bits: int = 8) -> tuple[float, float, str]:
    """Every method's range, scored by quantization MSE on the sample; ties keep min-max."""
    v = s.scoring()
    scored = []
    for k, (name, fn) in enumerate(RANGE_METHODS.items()):
        lo, hi = fn(s, bits)
        scored.append((quant_mse(v, lo, hi, bits), k, name, lo, hi))
    err, _, name, lo, hi = min(scored)
    return lo, hi, name


def choose_range(s: ValueSample, method: str, bits: int = 8) -> tuple[float, float, str]:
    """(lo, hi, observer that produced it) for one tensor."""
    if method == "auto":
        return auto_range(s, bits)
    lo, hi = RANGE_METHODS[method](s, bits)
    return float(lo), float(hi), method


# Observer registry (name -> class with update()/range()); calibrate.observe() accepts these names
# and every RANGE_METHODS name plus "auto".
OBSERVERS = {"minmax": MinMaxObserver}
CALIB_METHODS = (*RANGE_METHODS, "auto")
