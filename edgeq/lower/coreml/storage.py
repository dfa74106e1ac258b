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
import onnx

from edgeq.graph import Graph, get_attr
from edgeq.lower.coreml.deploy import resolve_options
from edgeq.quant.plan import QuantPlan, WeightPlan
from edgeq.quant.size import Stored, cheapest_linear
from edgeq.schemes import of as scheme_of
from edgeq.target import target_spec


def lut_bits(bits: int, min_os: str) -> int:
    """The smallest index width Core ML holds that fits a `bits`-bit palette."""
    return next(b for b in LUT_BITS[min_os] if b >= bits)


# Index widths constexpr_lut_to_dense holds, per deployment target (coremltools MIL op reference).
LUT_BITS = {"ios16": (1, 2, 4, 6, 8), "ios17": (1, 2, 4, 6, 8), "ios18": (1, 2, 3, 4, 6, 8)}


def linear_kind(wp: WeightPlan, shape, axis, zp_any: bool, float_bytes: int, min_os: str) -> str:
    """'lut', 'int4' or 'int8': the storage of a linear weight."""
    if min_os == "ios18" and not wp.per_block:  # `axis` is wp.axis in the program's layout
        fmt = target_spec("coreml").storage_format()
        channels = shape[axis] if wp.per_channel else 1
        kind, _, _ = cheapest_linear(wp.bits, int(np.prod(shape)), channels, fmt["linear_code_containers"],
                                     fmt["linear_lut_bits"], float_bytes, zp_any)
        if kind == "lut":
            return "lut"
    return "int4" if min_os == "ios18" and wp.bits <= 4 else "int8"


# weight.bin (coremltools' MILBlob file): a 64-byte file header, then per constant of 10+ elements
# a 64-byte metadata record and its data padded to 64 bytes; smaller constants stay in the program.
BLOB_HEADER, BLOB_ALIGN, BLOB_MIN_ELEMENTS = 64, 64, 10


def blob(nbytes: float, elements: int) -> float:
    """Bytes one constant takes in weight.bin: record + data + padding; 0 for a constant of under 10
    elements, which coremltools writes into the program text (structure, like a tensor's shape)."""
    if elements < BLOB_MIN_ELEMENTS:
        return 0.0
    nbytes = float(np.ceil(nbytes))
    return BLOB_HEADER + nbytes + (-nbytes % BLOB_ALIGN)


def _stored(wp: WeightPlan, min_os: str, fb: int) -> Stored:
    n = int(np.prod(wp.shape))
    if wp.bits is None:
        return Stored(blob(fb * n, n))
    if scheme_of(wp).palette:
        nb, groups = lut_bits(wp.bits, min_os), len(wp.palette or [[]])
        return Stored(blob(nb * n / 8, n), int(blob(groups * 2**nb * fb, groups * 2**nb)))
    zp_any = any(z != 0 for z in (wp.zero_point or []))
    kind = linear_kind(wp, wp.shape, wp.axis, zp_any, fb, min_os)
    params = len(wp.scale or [1])
    if kind == "lut":
        nb = lut_bits(wp.bits, "ios18")
        return Stored(blob(nb * n / 8, n), int(blob(params * 2**nb * fb, params * 2**nb)))
    width = 0.5 if kind == "int4" else 1
    if min_os == "ios18":  # blockwise_shift_scale: scale per channel/block, offset only when needed
        offset = blob(width * params, params) if zp_any else 0
        return Stored(blob(width * n, n), int(blob(params * fb, params) + offset))
    # affine_dequantize: a scale and an int8 zero point per channel
    return Stored(blob(n, n), int(blob(params * fb, params) + blob(params, params)))


def weight_storage(graph: Graph, plan: QuantPlan, options: dict) -> dict[str, Stored]:
    min_os, precision = resolve_options(plan, options)
    fb = 2 if precision == "fp16" else 4
    out: dict[str, Stored] = {"weight.bin": Stored(BLOB_HEADER, other=True)}  # not a tensor: the file's header
    for wp in plan.weights.values():
        out[wp.tensor] = _stored(wp, min_os, fb)
        if wp.bias and wp.bias not in out and graph.is_const(wp.bias):
            n = int(np.prod(graph.initializer(wp.bias).shape))
            out[wp.bias] = Stored(blob(fb * n, n), bias=True)
    for n in graph.nodes:  # MIL's linear fills in a zero bias (ops.py lowers these to linear)
        w = graph.initializer(n.input[1]) if len(n.input) > 1 and graph.is_const(n.input[1]) else None
        if w is None or w.ndim != 2 or n.input[1] not in out:
            continue
        linear_without_bias = (n.op_type == "MatMul" and len(graph.shape(n.input[0]) or ()) >= 2) or (
            n.op_type == "Gemm" and not get_attr(n, "transA", 0) and get_attr(n, "alpha", 1.0) == 1.0
            and not (len(n.input) > 2 and n.input[2]))
        if linear_without_bias:
            rows = w.shape[0] if n.op_type == "Gemm" and get_attr(n, "transB", 0) else w.shape[1]
            s0 = out[n.input[1]]
            out[n.input[1]] = Stored(s0.codes, s0.params + int(blob(fb * rows, rows)))
    for t in graph.model.graph.initializer:  # every other float constant, at the program's precision (fp32: 4 bytes)
        if t.name not in out and t.data_type == onnx.TensorProto.FLOAT:
            n = int(np.prod(t.dims))
            out[t.name] = Stored(blob(fb * n, n), other=True)
    return out


def stored_payload(artifact) -> int:
    """Size of the package's weight.bin (coremltools writes each constant of 10+ elements there), to its
    64-byte alignment."""
    blobs = list(artifact.path.rglob("weight.bin"))  # the last constant's padding is not written: counted as if it were
    return sum(-(-b.stat().st_size // BLOB_ALIGN) * BLOB_ALIGN for b in blobs)
