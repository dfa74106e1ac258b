"""AWQ-style activation-aware scaling (Lin et al. 2023), folded exactly into the previous layer.

For a layer y = W x whose input channel c comes from a layer P through ops that commute
with a positive per-channel scale (ReLU, pooling, Flatten), y = (W·s)(x/s) exactly: P's
output channel c (weights and bias) is divided by s_c, W's input channel c multiplied by it.
s = mean|x_c|^α with α searched on the layer's output error under quantization (α = 0 is
round-to-nearest, so the search never does worse). P's own per-channel grid is unchanged.
"""

from __future__ import annotations

import copy

import numpy as np
import onnx

from edgeq.graph import Graph, get_attr
from edgeq.quant.gptq import LayerStats, conv_groups, output_error, to_matrix
from edgeq.quant.plan import WeightPlan
from edgeq.quant.weights import derive, fake_quant_weight

# Ops between producer and layer that commute with a positive per-channel scale.
COMMUTES = ("Relu", "MaxPool", "GlobalAveragePool", "AveragePool", "Flatten")
ALPHAS = np.linspace(0.0, 1.0, 11)


def in_axis(node: onnx.NodeProto, ndim: int) -> int:
    """The input-channel axis of a layer's weight."""
    if node.op_type == "Conv":
        return 1
    if node.op_type == "Gemm":
        return 1 if get_attr(node, "transB", 0) else 0
    return ndim - 2


def out_axis(node: onnx.NodeProto) -> int:
    if node.op_type == "Gemm":
        return 0 if get_attr(node, "transB", 0) else 1
    return 0 if node.op_type == "Conv" else 1


def foldable_producer(graph: Graph, node: onnx.NodeProto) -> onnx.NodeProto | None:
    """The layer that can absorb 1/s for `node`'s input channels, or None."""
    if node.op_type == "Conv" and conv_groups(node) != 1:
        return None
    outputs = {o.name for o in graph.model.graph.output}
    x = node.input[0]
    while True:
        if x in outputs or len(graph.consumers.get(x, [])) != 1:
            return None
        p = graph.producer.get(x)
        if p is None:
            return None
        if p.op_type in COMMUTES:
            x = p.input[0]
            continue
        if p.op_type in ("Conv", "Gemm", "MatMul") and len(p.input) > 1 and graph.is_const(p.input[1]):
            if p.op_type == "Gemm" and get_attr(p, "transA", 0):
                return None
            if len(p.input) > 2 and p.input[2] and not graph.is_const(p.input[2]):
                return None
            w = graph.initializer(p.input[1])
            if p.op_type == "MatMul" and w.ndim != 2:
                return None
            cin = graph.initializer(node.input[1]).shape[in_axis(node, graph.initializer(node.input[1]).ndim)]
            return p if w.shape[out_axis(p)] == cin else None
        return None


def channel_absmean(node: onnx.NodeProto, stats: LayerStats, channels: int) -> np.ndarray:
    """Mean |x| per input channel, from the per-column statistics (columns are (c, *k))."""
    return stats.absmean.reshape(channels, -1).mean(1)


def _bcast(v: np.ndarray, ndim: int, axis: int) -> np.ndarray:
    shape = [1] * ndim
    shape[axis] = -1
    return v.reshape(shape)


def search_scale(node: onnx.NodeProto, wp: WeightPlan, w: np.ndarray, stats: LayerStats) -> tuple[np.ndarray, float, float]:
    """(best per-channel s, its output error, round-to-nearest's error)."""
    ax = in_axis(node, w.ndim)
    mag = np.maximum(channel_absmean(node, stats, w.shape[ax]), 1e-8)
    wm = to_matrix(node, w)
    best_s, best_err, rtn_err = np.ones_like(mag), np.inf, np.inf
    for a in ALPHAS:
        s = (mag**a).astype(np.float32)
        s = s / np.sqrt(s.max() * s.min())
        trial = derive(copy.deepcopy(wp), w * _bcast(s, w.ndim, ax))
        wq = fake_quant_weight(trial, w * _bcast(s, w.ndim, ax)) / _bcast(s, w.ndim, ax)
        err = output_error(wm, to_matrix(node, wq), stats.h)
        if a == 0.0:
            rtn_err = err
        if err < best_err:
            best_s, best_err = s, err
    return best_s, best_err, rtn_err


def fold(graph: Graph, node: onnx.NodeProto, producer: onnx.NodeProto, s: np.ndarray) -> dict[str, np.ndarray]:
    """The rewritten tensors: layer weight · s (input channels), producer weight and bias / s."""
    w = graph.initializer(node.input[1])
    pw = graph.initializer(producer.input[1])
    out = {node.input[1]: (w * _bcast(s, w.ndim, in_axis(node, w.ndim))).astype(np.float32),
           producer.input[1]: (pw / _bcast(s, pw.ndim, out_axis(producer))).astype(np.float32)}
    if len(producer.input) > 2 and producer.input[2]:
        out[producer.input[2]] = (graph.initializer(producer.input[2]) / s).astype(np.float32)
    return out
