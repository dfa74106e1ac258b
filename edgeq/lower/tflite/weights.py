"""Weights and biases as LiteRT constants, exactly as the plan says.

int8 per channel (zero point 0) for integer and hybrid kernels, packed INT4 where LiteRT
runs it (FULLY_CONNECTED, CONV_2D), other widths below 8 on the int8 grid (noted), and
float32 / float16 (+ DEQUANTIZE) for weights the plan keeps float. Biases of integer
kernels are int32 (int64 with int16 activations) with scale = input_scale * weight_scale[c].
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edgeq.lower.tflite.context import Ctx
from edgeq.lower.tflite.schema import Quant, pack_int4
from edgeq.lower.tflite.storage import int4_storable
from edgeq.quant.linear import bias_codes, quantize
from edgeq.schemes import of as scheme_of

HYBRID_OPS = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D")


def weight(ctx: Ctx, name: str, to_tfl: Callable[[np.ndarray], np.ndarray], tfl_axis: int, kind: str, op: str,
           value: np.ndarray | None = None, rows: slice | None = None) -> int:
    """The weight `name` (ONNX layout) as a LiteRT tensor in the kernel's layout.

    `to_tfl` moves an ONNX-layout array into the kernel's layout; `tfl_axis` is where the
    plan's channel axis lands there. `value` overrides the initializer (e.g. alpha-scaled);
    `rows` takes one group of output channels (ONNX axis 0) after quantizing.
    """
    w = ctx.graph.initializer(name) if value is None else value
    wp = ctx.plan.weights.get(name)
    integer = wp is not None and wp.bits is not None
    hybrid = kind == "float" and integer and ctx.plan.mode == "dynamic" and op in HYBRID_OPS
    label = name if rows is None else f"{name}[{rows.start}:{rows.stop}]"
    if not integer:
        return float_weight(ctx, label, to_tfl(w.astype(np.float32)[rows if rows is not None else slice(None)]))
    axis = wp.axis if wp.per_channel else None
    q = quantize(w, wp.scale, wp.zero_point, wp.bits, signed=True, axis=axis, narrow=scheme_of(wp).narrow)
    scales = list(wp.scale)
    if rows is not None:
        q = q[rows]
        scales = scales[rows] if axis == 0 else scales
    q = to_tfl(q)
    name = label
    quant = Quant(scales, [0] * len(scales), tfl_axis if axis is not None else 0)
    a = ctx.act(wp.input)
    if int4_storable(wp, op, kind, a.bits if a is not None else None, ctx.opts.int4):  # storage.py: the one rule
        t = ctx.new(f"{name}_int4", q.shape, "int4", quant, pack_int4(q))
        ctx.extra_counts["int4_weights"] += 1
        return t
    if wp.bits < 8:
        ctx.notes.append(f"{wp.node}: {wp.bits}-bit weights stored on the int8 grid (|q| <= {2 ** (wp.bits - 1) - 1}); "
                         f"LiteRT has no native {wp.bits}-bit {op}")
    t = ctx.new(f"{name}_int8", q.shape, "int8", quant, q.astype(np.int8))
    if kind == "q" or hybrid:
        return t
    # Float kernels (weight-only plans, activations the plan keeps float, ops without a hybrid
    # kernel): int8 in the file, float at run time, as the plan and its simulation assume.
    f = ctx.new(f"{name}_dequantized", q.shape, "float32")
    ctx.w.add_op("DEQUANTIZE", [t], [f])
    return f


def float_weight(ctx: Ctx, name: str, w: np.ndarray) -> int:
    if ctx.opts.weights == "float16":
        h = ctx.new(f"{name}_fp16", w.shape, "float16", None, w.astype(np.float16))
        f = ctx.new(f"{name}_fp32", w.shape, "float32")
        ctx.w.add_op("DEQUANTIZE", [h], [f])
        return f
    return ctx.new(name, w.shape, "float32", None, w.astype(np.float32))


def bias(ctx: Ctx, node, wname: str, channels: int, kind: str, input_name: str, rows: slice | None = None) -> int:
    """The bias (zeros when the node has none) matching the kernel's accumulator; `rows`: one group."""
    b = ctx.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    b = np.zeros(channels, np.float32) if b is None else np.broadcast_to(np.asarray(b, np.float32).ravel(), (channels,))
    label = node.input[2] if len(node.input) > 2 and node.input[2] else f"{node.name or node.op_type}_bias"
    rows = rows if rows is not None else slice(None)
    b = b[rows]
    if kind != "q":
        return ctx.new(label, b.shape, "float32", None, b.astype(np.float32))
    wp = ctx.plan.weights[wname]
    a = ctx.act(input_name)
    w_scale = np.asarray(wp.scale, np.float64)
    w_scale = w_scale[rows] if w_scale.size > 1 else w_scale
    q, scale = bias_codes(b, a.scale, w_scale, wide=a.bits == 16)
    return ctx.new(f"{label}_{q.dtype.name}", q.shape, q.dtype.name, Quant([float(s) for s in scale.ravel()], [0] * scale.size, 0), q)
