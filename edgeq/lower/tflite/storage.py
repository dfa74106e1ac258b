"""How each weight sits in a LiteRT flatbuffer: the rule weights.py writes by, read by the payload
prediction and the profiler (Target.storage); tflm uses it with its own options (no INT4).

    float         float32, or float16 (+ DEQUANTIZE) with --weights-dtype float16
    int4          4-bit weights of an integer FULLY_CONNECTED / CONV_2D with 8-bit input, when the
                  options allow INT4 (int4_storable): two codes per byte
    int8          every other planned weight (integer, hybrid and float kernels alike)
Quantized tensors carry a float32 scale and an int64 zero point per channel (QuantizationParameters).
An integer kernel's bias is int32 (int64 with 16-bit activations) with its own scale and zero point
per entry; a float kernel's is float32. A weighted layer without a bias gets a zero one.
"""

from __future__ import annotations

import numpy as np

from edgeq.graph import Graph, get_attr
from edgeq.lower.tflite.context import TfliteOptions, on_integer_grids
from edgeq.quant.build import grid_carrier
from edgeq.quant.plan import QuantPlan, WeightPlan
from edgeq.quant.size import Stored
from edgeq.target import target_data, target_spec

INT4_OPS = tuple(target_data("tflite")["native_int4_ops"])  # LiteRT kernels that read packed INT4 filters


def param_widths() -> tuple[int, int]:
    """(scale, zero point) bytes per entry of QuantizationParameters: float32 and int64 (targets/tflite.toml)."""
    fmt = target_spec("tflite").storage_format()
    return 4 + fmt["weight_scale"], fmt["weight_zero_point"]


def int4_storable(wp: WeightPlan, op: str, kind: str, input_bits: int | None, int4: bool) -> bool:
    return wp.bits == 4 and op in INT4_OPS and kind == "q" and int4 and input_bits == 8


def tfl_op(graph: Graph, node) -> str:
    """The LiteRT op an ONNX weighted node becomes (ops_nn.py)."""
    if node.op_type == "Conv":
        c_in = (graph.shape(node.input[0]) or [0, 0])[1]
        group = get_attr(node, "group", 1)
        return "DEPTHWISE_CONV_2D" if group > 1 and group == c_in else "CONV_2D"
    return {"ConvTranspose": "TRANSPOSE_CONV"}.get(node.op_type, "FULLY_CONNECTED")


def integer_kernel(graph: Graph, plan: QuantPlan, node) -> bool:
    """Whether the writer gives this weighted node an integer kernel (ops_nn.py: Conv / Gemm / MatMul
    read their fused output's grid, ConvTranspose its own output's; Gemm with alpha or beta != 1 runs float)."""
    if node.op_type == "Gemm" and (get_attr(node, "alpha", 1.0) != 1.0 or get_attr(node, "beta", 1.0) != 1.0):
        return False
    out = node.output[0] if node.op_type == "ConvTranspose" else grid_carrier(graph, node)
    return on_integer_grids(graph, plan, [i for i in node.input if i and not graph.is_const(i)] + [out])


def weight_storage(graph: Graph, plan: QuantPlan, options: dict) -> dict[str, Stored]:
    opts = TfliteOptions.from_dict(options)
    float_width = 2 if opts.weights == "float16" else 4
    fmt = target_spec("tflite").storage_format()
    scale_b, zp_b = param_widths()
    out: dict[str, Stored] = {}
    for n in graph.nodes:
        if n.op_type not in ("Conv", "ConvTranspose", "Gemm", "MatMul") or len(n.input) < 2 or n.input[1] in out:
            continue
        wp = plan.weights.get(n.input[1])
        if wp is None:
            continue
        size = int(np.prod(wp.shape))
        a = plan.activations.get(n.input[0])
        scales = len(wp.scale or [1])  # one scale and zero point per channel, or one for the tensor
        if wp.bits is None:
            kind = "float"
            out[wp.tensor] = Stored(float_width * size)
        else:
            kind = "q" if integer_kernel(graph, plan, n) else "float"
            int4 = int4_storable(wp, tfl_op(graph, n), kind, a.bits if a is not None else None, opts.int4)
            out[wp.tensor] = Stored((0.5 if int4 else 1) * size, scales * (scale_b + zp_b))
        # every weighted layer gets a bias: its own, or zeros the writer adds (counted with the weight)
        bias = n.input[2] if n.op_type != "MatMul" and len(n.input) > 2 and n.input[2] else None
        entries = int(np.prod(graph.initializer(bias).shape)) if bias and graph.is_const(bias) else channels_out(graph, n, wp)
        if kind == "q":  # int32 (int64 under 16-bit activations) codes, a scale and zero point per weight scale
            codes = 2 * fmt["bias_bytes"] if a is not None and a.bits == 16 else fmt["bias_bytes"]
            stored_bias = Stored(codes * entries, scales * (fmt["bias_scale"] + fmt["bias_zero_point"]), bias=True)
        else:
            stored_bias = Stored(fmt["float_bytes"] * entries, bias=True)
        if bias and graph.is_const(bias):
            out[bias] = stored_bias
        else:
            out[wp.tensor] = Stored(out[wp.tensor].codes, out[wp.tensor].params + int(stored_bias.total))
    return out


def channels_out(graph: Graph, node, wp: WeightPlan) -> int:
    if node.op_type == "Conv":
        return wp.shape[0]
    if node.op_type == "ConvTranspose":
        return wp.shape[1] * get_attr(node, "group", 1)
    return wp.shape[0] if get_attr(node, "transB", 0) else wp.shape[-1]


def stored_payload(artifact) -> int:
    """Bytes of the written flatbuffer's constant buffers plus the scales and zero points of its
    quantized constants: what the rule predicts (activations' parameters are not payload)."""
    from edgeq.lower.tflite.schema import read_model

    model = read_model(artifact.path.read_bytes())
    scale_b, zp_b = param_widths()
    total = sum(len(b.data) for b in model.buffers if b.data is not None)
    for t in model.subgraphs[0].tensors:
        q, data = t.quantization, model.buffers[t.buffer].data if t.buffer < len(model.buffers) else None
        if q is not None and q.scale is not None and data is not None and len(data):  # a constant's parameters
            total += scale_b * len(q.scale) + zp_b * len(q.zeroPoint if q.zeroPoint is not None else [])
    return total
