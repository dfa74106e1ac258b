"""How each weight sits in a Core ML package (weight.bin): the rule weights.py writes by, read by
the payload prediction and the profiler (Target.storage). It depends on the deployment target and
the compute precision, resolved exactly as lower() resolves them.

    float                 fp16 (fp32 with --coreml-precision fp32) values
    palette               lut_bits(bits, min_os)-bit indices + 2^n float entries per palette group
    linear, iOS 16/17     int8 data, a float scale and an int8 zero point per channel
    linear, iOS 18        int4 (<= 4 bits) or int8 data, a float scale (+ offset when a zero point
                          is not 0) per channel or block; or the grid's levels as a per-channel LUT
                          when that is smaller (quant.size.cheapest_linear)
Biases stay float at the program's precision.
"""

from __future__ import annotations

import numpy as np

from edgeq.graph import Graph
from edgeq.lower.coreml.deploy import resolve_options
from edgeq.quant.plan import QuantPlan, WeightPlan
from edgeq.quant.size import Stored, cheapest_linear
from edgeq.target import target_spec


def lut_bits(bits: int, min_os: str) -> int:
    """The smallest index width Core ML holds that fits a `bits`-bit palette."""
    return next(b for b in LUT_BITS[min_os] if b >= bits)


# Index widths constexpr_lut_to_dense holds, per deployment target (coremltools MIL op reference).
LUT_BITS = {"ios16": (1, 2, 4, 6, 8), "ios17": (1, 2, 4, 6, 8), "ios18": (1, 2, 3, 4, 6, 8)}


def linear_kind(wp: WeightPlan, shape, axis, zp_any: bool, float_bytes: int, min_os: str) -> str:
    """'lut', 'int4' or 'int8': the storage of a linear weight."""
    if min_os == "ios18" and wp.granularity in ("per_tensor", "per_channel") and not (wp.granularity == "per_channel" and axis is None):
        fmt = target_spec("coreml").storage_format()
        channels = shape[axis] if wp.granularity == "per_channel" else 1
        kind, _, _ = cheapest_linear(wp.bits, int(np.prod(shape)), channels, fmt["linear_code_containers"],
                                     fmt["linear_lut_bits"], float_bytes, zp_any)
        if kind == "lut":
            return "lut"
    return "int4" if min_os == "ios18" and wp.bits <= 4 else "int8"


def _stored(wp: WeightPlan, min_os: str, fb: int) -> Stored:
    n = int(np.prod(wp.shape))
    if wp.bits is None:
        return Stored(fb * n)
    if wp.scheme == "palette":
        nb = lut_bits(wp.bits, min_os)
        return Stored(nb * n / 8, len(wp.palette or [[]]) * 2**nb * fb)
    zp_any = any(z != 0 for z in (wp.zero_point or []))
    kind = linear_kind(wp, wp.shape, wp.axis, zp_any, fb, min_os)
    params = len(wp.scale or [1])
    if kind == "lut":
        nb = lut_bits(wp.bits, "ios18")
        return Stored(nb * n / 8, params * 2**nb * fb)
    width = 0.5 if kind == "int4" else 1
    if min_os == "ios18":  # blockwise_shift_scale: scale per channel/block, offset only when needed
        return Stored(width * n, params * fb + (int(np.ceil(width * params)) if zp_any else 0))
    return Stored(n, params * fb + params)  # affine_dequantize: scale and int8 zero point per channel


def weight_storage(graph: Graph, plan: QuantPlan, options: dict) -> dict[str, Stored]:
    min_os, precision = resolve_options(plan, options)
    fb = 2 if precision == "fp16" else 4
    out: dict[str, Stored] = {}
    for wp in plan.weights.values():
        out[wp.tensor] = _stored(wp, min_os, fb)
        if wp.bias and wp.bias not in out and graph.is_const(wp.bias):
            out[wp.bias] = Stored(fb * int(np.prod(graph.initializer(wp.bias).shape)), bias=True)
    return out


def stored_payload(artifact) -> int:
    """Size of the package's weight.bin (coremltools writes each constant past a few elements there)."""
    blobs = list(artifact.path.rglob("weight.bin"))
    return sum(b.stat().st_size for b in blobs)
