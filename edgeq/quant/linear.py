"""The quantization math, in one place, used by every target.

    q = clamp(round(x / scale) + zero_point, qmin, qmax)      x ≈ (q - zero_point) * scale

Rounding is half-to-even (numpy's rint), the same as ONNX QuantizeLinear and TFLite.
"""

from __future__ import annotations

import numpy as np

from edgeq.errors import PlanError

# Smallest scale we emit: keeps an all-zero tensor representable without dividing by 0.
MIN_SCALE = float(np.finfo(np.float32).tiny) * 1e6


def qrange(bits: int, signed: bool = True, narrow: bool = False) -> tuple[int, int]:
    """Integer range of a `bits`-wide grid; narrow drops -2^(b-1) (symmetric weights)."""
    if signed:
        lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        return (lo + 1 if narrow else lo), hi
    return 0, 2**bits - 1


def _f32(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


def symmetric_params(absmax: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Scale per entry of absmax, zero point 0, on the narrow signed grid."""
    _, qmax = qrange(bits, signed=True, narrow=True)
    scale = np.maximum(_f32(absmax) / np.float32(qmax), np.float32(MIN_SCALE)).astype(np.float32)
    return scale, np.zeros(scale.shape, dtype=np.int64)


def affine_params(lo: float, hi: float, bits: int, signed: bool = True) -> tuple[float, int]:
    """Asymmetric per-tensor parameters for a range that is widened to include 0 (so 0 is exact)."""
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise PlanError(f"an activation range [{lo}, {hi}] is not finite; the float model overflows on the "
                        "calibration data or the plan holds a non-finite min/max")
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    qmin, qmax = qrange(bits, signed)
    scale = float(np.float32(max((hi - lo) / (qmax - qmin), MIN_SCALE)))
    zp = int(np.clip(np.rint(qmin - lo / scale), qmin, qmax))
    return scale, zp


def _bcast(v, ndim: int, axis: int | None) -> np.ndarray:
    v = np.asarray(v)
    if axis is None or v.ndim == 0 or v.size == 1:
        return v.reshape(()) if v.size == 1 else v
    shape = [1] * ndim
    shape[axis] = -1
    return v.reshape(shape)


def quantize(x, scale, zero_point, bits: int, signed: bool = True, axis: int | None = None, narrow: bool = False) -> np.ndarray:
    x = _f32(x)
    qmin, qmax = qrange(bits, signed, narrow)
    s = _bcast(_f32(scale), x.ndim, axis)
    z = _bcast(np.asarray(zero_point, dtype=np.int64), x.ndim, axis)
    q = np.rint(x / s).astype(np.int64) + z
    return np.clip(q, qmin, qmax)


def dequantize(q, scale, zero_point, axis: int | None = None) -> np.ndarray:
    q = np.asarray(q)
    s = _bcast(_f32(scale), q.ndim, axis)
    z = _bcast(np.asarray(zero_point, dtype=np.int64), q.ndim, axis)
    return ((q.astype(np.int64) - z).astype(np.float32) * s).astype(np.float32)


def fake_quant(x, scale, zero_point, bits: int, signed: bool = True, axis: int | None = None, narrow: bool = False) -> np.ndarray:
    return dequantize(quantize(x, scale, zero_point, bits, signed, axis, narrow), scale, zero_point, axis)


def storage_dtype(bits: int, signed: bool = True):
    """The numpy dtype that holds a `bits`-wide integer grid."""
    if bits <= 8:
        return np.int8 if signed else np.uint8
    if bits <= 16:
        return np.int16 if signed else np.uint16
    return np.int32




def bias_codes(bias, input_scale: float, weight_scale, wide: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(codes, scale) of an integer kernel's bias: scale = input_scale * weight_scale[c] in float32,
    codes = round(bias / scale) clamped to int32 (int64 for 16-bit activations, `wide`). Every
    target's writer calls this, so a bias means the same thing on every runtime."""
    b = np.asarray(bias, np.float64)
    scale = (np.float64(input_scale) * np.asarray(weight_scale, np.float64)).astype(np.float32)
    dtype = np.int64 if wide else np.int32
    info = np.iinfo(dtype)
    q = np.clip(np.rint(b / np.broadcast_to(scale, b.shape).astype(np.float64)), info.min, info.max).astype(dtype)
    return q, scale
