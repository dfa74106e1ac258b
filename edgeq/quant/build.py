"""The pieces every plan is built from, and `int8_plan`: a uniform plan from given ranges.

Weights symmetric per output channel (narrow int8 grid, zero point 0), activations
asymmetric per tensor, biases int32 with scale = input_scale * weight_scale[c].
The pipeline plans with the one recipe in `mixed.build_mixed_plan` (uniform int8 is its
default); `int8_plan` is for code that already has ranges (tests, benches). Both write
weight entries through `weight_entry` -> `weights.derive`, so every entry is complete
(`derived` included) and a plan edit re-derives exactly what changed.
"""

from __future__ import annotations

import numpy as np

from edgeq.errors import PlanError
from edgeq.graph import Graph, get_attr, node_name
from edgeq.quant.linear import affine_params
from edgeq.quant.plan import ActivationPlan, QuantPlan, WeightPlan
from edgeq.quant.weights import derive

# Ops whose second input is a weight edgeq quantizes, and the weight's output-channel axis.
WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
# An activation that only feeds one of these, from one of FUSES_ACTIVATION, is not
# quantized on its own: every target fuses the activation into the producer.
FUSED_ACTIVATIONS = ("Relu", "Clip")
FUSES_ACTIVATION = ("Conv", "ConvTranspose", "Gemm", "MatMul", "Add")
# Ops that move values without changing them: their output keeps the input's grid.
SAME_GRID_OPS = ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "MaxPool", "Identity", "Slice", "Gather",
                 "Split", "Expand", "Tile", "DepthToSpace", "SpaceToDepth")


def weight_axis(graph: Graph, node) -> int:
    if node.op_type == "Conv":
        return 0
    if node.op_type == "ConvTranspose":
        return 1
    if node.op_type == "Gemm":
        return 0 if get_attr(node, "transB", 0) else 1
    return len(graph.initializer(node.input[1]).shape) - 1  # MatMul: [.., K, N]


def weighted_nodes(graph: Graph):
    """(index, node) for every layer with a constant float weight."""
    for k, n in enumerate(graph.nodes):
        if n.op_type in WEIGHTED_OPS and len(n.input) > 1 and graph.is_const(n.input[1]):
            if graph.initializer(n.input[1]).dtype == np.float32 and graph.initializer(n.input[1]).ndim >= 2:
                yield k, n


def weight_entry(graph: Graph, k: int, node, bits: int = 8) -> WeightPlan:
    """A complete entry: symmetric per output channel (per tensor where there is no channel axis),
    its parameters and `derived` filled by `weights.derive`, the one function that computes them."""
    w = graph.initializer(node.input[1])
    axis = weight_axis(graph, node)
    if node.op_type == "ConvTranspose" and get_attr(node, "group", 1) != 1:
        axis = None
    bias = node.input[2] if len(node.input) > 2 and node.input[2] and graph.is_const(node.input[2]) else None
    if bias is not None and (node.op_type == "Gemm" and graph.initializer(bias).ndim != 1):
        bias = None
    wp = WeightPlan(
        tensor=node.input[1], node=node_name(node, k), op=node.op_type, shape=list(w.shape), bits=bits,
        scheme="symmetric", granularity="per_channel" if axis is not None else "per_tensor", axis=axis,
        bias=bias, input=node.input[0],
    )
    return derive(wp, w)


def grid_carrier(graph: Graph, node) -> str:
    """The tensor whose grid `node`'s output ends on: the Relu / Clip output when that alone
    follows a Conv / Gemm / MatMul / Add (targets fuse it), else the node's own output."""
    out = node.output[0]
    users = graph.consumers.get(out, [])
    if node.op_type in FUSES_ACTIVATION and len(users) == 1 and users[0].op_type in FUSED_ACTIVATIONS \
            and out not in {o.name for o in graph.model.graph.output}:
        return users[0].output[0]
    return out


def activations_to_quantize(graph: Graph, ranges: dict) -> list[str]:
    fused = {n.output[0] for n in graph.nodes if grid_carrier(graph, n) != n.output[0]}
    return [name for name in ranges if name not in fused]


def int8_plan(graph: Graph, ranges: dict, target: str | None = None, bits: int = 8, act_bits: int = 8,
              mode: str = "static", observer: str = "minmax") -> QuantPlan:
    plan = QuantPlan(model_sha256=graph.sha256(), target=target, mode=mode)
    for k, n in weighted_nodes(graph):
        if n.input[1] not in plan.weights:  # a shared weight is planned once
            plan.weights[n.input[1]] = weight_entry(graph, k, n, bits)
    if mode == "static":
        for name in activations_to_quantize(graph, ranges):
            lo, hi = ranges[name]
            scale, zp = affine_params(lo, hi, act_bits, signed=True)
            plan.activations[name] = ActivationPlan(name, act_bits, True, scale, zp, float(lo), float(hi), observer)
        share_grids(graph, plan)
    return plan


def share_grids(graph: Graph, plan: QuantPlan) -> None:
    """Shape-moving ops keep their input's scale and zero point (targets require it)."""
    for n in graph.nodes:
        if n.op_type in SAME_GRID_OPS and n.input and n.input[0] in plan.activations:
            src = plan.activations[n.input[0]]
            for out in n.output:
                if out in plan.activations:
                    a = plan.activations[out]
                    a.scale, a.zero_point, a.bits, a.signed = src.scale, src.zero_point, src.bits, src.signed
                    a.shared_with = src.shared_with or src.tensor


def check_channel_axes(graph: Graph, plan: QuantPlan, source: str = "plan") -> None:
    """A per-channel weight's axis is its layer's output-channel axis: targets store one scale per
    output channel (and its bias with it). An edited axis is refused in one line."""
    for k, n in weighted_nodes(graph):
        w = plan.weights.get(n.input[1])
        if w is None or w.bits is None or not w.per_channel:
            continue
        want = weight_axis(graph, n)
        if n.op_type == "ConvTranspose" and get_attr(n, "group", 1) != 1:
            continue
        if w.axis != want:
            raise PlanError(f"{source}: weight '{w.tensor}' (node '{node_name(n, k)}'): per-channel axis {w.axis}; a "
                            f"{n.op_type} weight is quantized per output channel, axis {want}: set \"axis\": {want}")
