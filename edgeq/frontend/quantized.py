"""Models that are already quantized: edgeq refuses them in one line, naming the ops.

edgeq calibrates and verifies against a float reference. A dynamically or statically quantized
input has lost that reference (its weights are already rounded, its ranges already chosen), so
dequantizing and requantizing would stack two roundings and verify against the wrong model.
"""

from __future__ import annotations

from edgeq.errors import ModelError

QUANTIZED_OPS = {
    "ConvInteger", "MatMulInteger", "DynamicQuantizeLinear", "DynamicQuantizeLSTM", "DynamicQuantizeMatMul",
    "QLinearConv", "QLinearMatMul", "QuantizeLinear", "DequantizeLinear", "QGemm", "QLinearAdd",
    "QLinearMul", "QLinearConcat", "QLinearSigmoid", "QLinearLeakyRelu", "QLinearAveragePool",
    "QLinearGlobalAveragePool", "QLinearSoftmax", "QAttention", "MatMulNBits", "MatMulIntegerToFloat",
    "DequantizeBFP", "QuantizeBFP",
}


def quantized_ops(graph) -> dict[str, int]:
    """op -> count of the quantization ops the graph holds (empty for a float model)."""
    counts: dict[str, int] = {}
    for n in graph.nodes:
        if n.op_type in QUANTIZED_OPS:
            counts[n.op_type] = counts.get(n.op_type, 0) + 1
    return dict(sorted(counts.items()))


def check_not_quantized(graph, source: str = "the model") -> None:
    ops = quantized_ops(graph)
    if ops:
        listed = ", ".join(f"{op} x{n}" for op, n in ops.items())
        raise ModelError(f"{source} is already quantized ({listed}); edgeq quantizes float models and verifies "
                         "against float: compile the float model it was quantized from")
