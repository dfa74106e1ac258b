"""Weights exactly as the plan says, in Core ML's compressed-weight ops.

    palette, per tensor        constexpr_lut_to_dense (iOS 16: packed uint8 indices + lut [2^n];
                               iOS 18: uint-n indices + lut [1,..,1,2^n,1])
    palette, per channel group constexpr_lut_to_dense (iOS 18: lut [.., groups at axis, .., 2^n, 1])
    linear per tensor/channel  constexpr_affine_dequantize (iOS 16/17, int8 grid)
                               constexpr_blockwise_shift_scale (iOS 18, int4 data up to 4 bits)
                               constexpr_lut_to_dense (iOS 18, 1-3 and 5-6 bits: the linear grid's
                               levels as a per-channel LUT, exact, when smaller than int4/int8 data)
    linear per block           constexpr_blockwise_shift_scale (iOS 18)

Codes come from the plan's own grid (`edgeq.quant.weights.grid`): the nearest palette entry, or
round(w / scale) + zero_point clamped to the plan's range. Nothing is re-derived here.
"""

from __future__ import annotations

import numpy as np
from coremltools.converters.mil.mil import Builder as mb
from coremltools.converters.mil.mil import types

from edgeq.errors import PlanError
from edgeq.lower.coreml.storage import linear_kind, lut_bits
from edgeq.quant.plan import WeightPlan
from edgeq.quant.weights import grid
from edgeq.schemes import of as scheme_of

UINT_DTYPES = {1: types.np_uint1_dtype, 2: types.np_uint2_dtype, 3: types.np_uint3_dtype,
               4: types.np_uint4_dtype, 6: types.np_uint6_dtype, 8: np.uint8}


def weight_var(ctx, wp: WeightPlan | None, w: np.ndarray, name: str, perm: tuple | None = None):
    """The MIL value for weight `w` (ONNX layout) under plan `wp`, optionally transposed by `perm`."""
    w = np.asarray(w, np.float32)
    if wp is None or wp.bits is None:
        return np.transpose(w, perm) if perm else w
    g = grid(wp, w.shape)
    codes = g.codes(w)
    if perm:  # the op wants another layout: move codes and their grid together
        w, codes = np.transpose(w, perm), np.transpose(codes, perm)
        g = g.reshape(lambda a: np.transpose(a, perm))
    axis = perm.index(wp.axis) if perm and wp.axis is not None else wp.axis
    dt = np.float32  # coremltools' fp16 pass stores lut/scale in fp16 for fp16 programs
    if scheme_of(wp).palette:
        return _palette(ctx, wp, g, codes, axis, name, dt)
    return _linear(ctx, wp, g, codes, axis, name, dt)


def _record(ctx, wp: WeightPlan, op: str, bits: int, dtype: str, groups: int = 1) -> None:
    ctx.weight_ops.append({"tensor": wp.tensor, "node": wp.node, "mil_op": op, "bits": bits, "plan_bits": wp.bits,
                           "scheme": wp.scheme, "granularity": wp.granularity, "storage": dtype, "groups": groups})


def _palette(ctx, wp, g, codes, axis, name, dt):
    pals = np.asarray(g.palettes, np.float32)
    n_bits = lut_bits(wp.bits, ctx.min_os)
    size = 2**n_bits
    if pals.shape[1] > size:
        raise PlanError(f"weight '{wp.tensor}' (node '{wp.node}'): a palette of {pals.shape[1]} entries for {wp.bits} bits")
    if pals.shape[1] < size:  # pad with the last entry: same values, an index width Core ML has
        pals = np.concatenate([pals, np.repeat(pals[:, -1:], size - pals.shape[1], 1)], 1)
        if n_bits != wp.bits:
            ctx.notes.append(f"{wp.node}: {wp.bits}-bit palette stored with {n_bits}-bit indices (Core ML has no {wp.bits}-bit LUT)")
    shape = codes.shape
    if len(pals) == 1 and ctx.min_os != "ios18":
        packed = pack_bits(codes.ravel().astype(np.uint8), n_bits)
        v = mb.constexpr_lut_to_dense(indices=packed, lut=pals[0].astype(dt), shape=np.asarray(shape, np.uint32), name=name)
        _record(ctx, wp, "constexpr_lut_to_dense", n_bits, f"uint{n_bits}")
        return v
    if ctx.min_os != "ios18":
        raise PlanError(f"weight '{wp.tensor}' (node '{wp.node}'): per-channel-group palettes need --min-os ios18")
    lut_shape = [1] * len(shape)
    if len(pals) > 1:
        # one palette per group of consecutive channels along `axis`; Core ML needs equal groups
        per_ch = np.moveaxis(g.group, axis, 0).reshape(shape[axis], -1)[:, 0]
        n_groups = len(pals)
        if shape[axis] % n_groups or not np.array_equal(per_ch, np.repeat(np.arange(n_groups), shape[axis] // n_groups)):
            pals, n_groups = pals[per_ch], shape[axis]  # one palette per channel: the same values
        lut_shape[axis] = n_groups
    lut = pals.reshape(*lut_shape, size, 1).astype(dt)
    v = mb.constexpr_lut_to_dense(indices=codes.astype(UINT_DTYPES[n_bits]), lut=lut, name=name)
    _record(ctx, wp, "constexpr_lut_to_dense", n_bits, f"uint{n_bits}", groups=int(np.prod(lut_shape)))
    return v


def _linear(ctx, wp, g, codes, axis, name, dt):
    zp_any = bool(np.any(g.zero_point != 0))
    kind = linear_kind(wp, codes.shape, axis, zp_any, 2 if ctx.precision == "fp16" else 4, ctx.min_os)  # storage.py
    if kind == "lut":
        return _linear_lut(ctx, wp, g, codes, axis, name, dt)
    if ctx.min_os == "ios18":
        int4 = kind == "int4"
        sdt = types.np_int4_dtype if int4 else np.int8
        pshape = param_shape(wp, codes.shape, axis)
        scale = _params(g.scale, pshape, codes.shape).astype(dt)
        kw = {"offset": _params(g.zero_point, pshape, codes.shape).astype(sdt)} if zp_any else {}
        v = mb.constexpr_blockwise_shift_scale(data=codes.astype(sdt), scale=scale, name=name, **kw)
        _record(ctx, wp, "constexpr_blockwise_shift_scale", 4 if int4 else 8, "int4" if int4 else "int8")
        return v
    if wp.per_block:
        raise PlanError(f"weight '{wp.tensor}' (node '{wp.node}'): per-block weights need --min-os ios18")
    if wp.bits < 8:
        ctx.notes.append(f"{wp.node}: {wp.bits}-bit linear weights stored on the int8 grid (int4 needs --min-os ios18)")
    if wp.per_tensor:
        scale, zp, ax = np.asarray(g.scale.ravel()[0], dt), np.int8(g.zero_point.ravel()[0]), 0
    else:
        pshape = param_shape(wp, codes.shape, axis)
        scale = _params(g.scale, pshape, codes.shape).ravel().astype(dt)
        zp, ax = _params(g.zero_point, pshape, codes.shape).ravel().astype(np.int8), axis
    v = mb.constexpr_affine_dequantize(quantized_data=codes.astype(np.int8), zero_point=zp, scale=scale, axis=ax, name=name)
    _record(ctx, wp, "constexpr_affine_dequantize", 8, "int8")
    return v


def _linear_lut(ctx, wp, g, codes, axis, name, dt):
    """Index = code - qmin; LUT entry k of a channel = (qmin + k - zero point) * scale: the same values."""
    from edgeq.quant.linear import qrange

    n_bits = lut_bits(wp.bits, "ios18")
    qmin, _ = qrange(wp.bits, signed=True, narrow=g.narrow)
    shape = codes.shape
    per_channel = wp.per_channel
    ch_axis = axis if per_channel else 0
    first = tuple(slice(None) if k == ch_axis else slice(0, 1) for k in range(len(shape)))
    scale = np.asarray(g.scale[first], np.float64).reshape(-1)[: shape[ch_axis] if per_channel else 1]
    zp = np.asarray(g.zero_point[first], np.float64).reshape(-1)[: len(scale)]
    levels = (qmin + np.arange(2**n_bits))[None, :] - zp[:, None]
    lut_shape = [1] * len(shape)
    if per_channel:
        lut_shape[axis] = len(scale)
    lut = (levels * scale[:, None]).reshape(*lut_shape, 2**n_bits, 1).astype(dt)
    v = mb.constexpr_lut_to_dense(indices=(codes - qmin).astype(UINT_DTYPES[n_bits]), lut=lut, name=name)
    _record(ctx, wp, "constexpr_lut_to_dense", n_bits, f"uint{n_bits}", groups=len(scale))
    return v


def param_shape(wp: WeightPlan, shape: tuple, axis: int | None) -> tuple:
    """Shape of the scale tensor Core ML's blockwise op takes (same rank as the weight)."""
    if wp.per_tensor:
        return (1,) * len(shape)
    if wp.per_channel:
        return tuple(d if k == axis else 1 for k, d in enumerate(shape))
    if shape[axis] % wp.block_size:
        raise PlanError(f"weight '{wp.tensor}' (node '{wp.node}'): block size {wp.block_size} does not divide "
                        f"dim {shape[axis]}; Core ML needs whole blocks, choose a block size that divides it")
    return tuple(d // wp.block_size if k == axis else d for k, d in enumerate(shape))


def _params(per_elem: np.ndarray, pshape: tuple, shape: tuple) -> np.ndarray:
    """Per-element params (the plan's grid) sampled at each block's first element."""
    idx = tuple(slice(0, d, d // p) for d, p in zip(shape, pshape))
    return np.ascontiguousarray(np.asarray(per_elem)[idx]).reshape(pshape)


def pack_bits(values: np.ndarray, nbits: int) -> np.ndarray:
    """Core ML's packing: each value's bits LSB first, values one after another, bytes LSB first."""
    bits = ((values[:, None].astype(np.uint16) >> np.arange(nbits, dtype=np.uint16)) & 1).astype(np.uint8).ravel()
    bits = np.concatenate([bits, np.zeros((-len(bits)) % 8, np.uint8)])
    return np.packbits(bits.reshape(-1, 8), axis=1, bitorder="little").ravel()

