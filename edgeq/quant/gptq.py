"""GPTQ: round a layer's weights column by column, pushing each rounding error onto the
columns not yet rounded, weighted by H = XᵀX of the layer's calibration inputs
(Frantar et al. 2022, "GPTQ", Algorithm 1: damping, act-order, lazy block updates).

Layers as matrices: a Conv weight [O, I/g, *k] is g groups of [O/g, (I/g)·prod(k)] against
im2col patches of the input; Gemm/MatMul weights are [out, in] against the input rows.
Groups with the same K run batched (a depthwise conv is O groups of 9 columns).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from edgeq.graph import Graph, get_attr, with_all_outputs
from edgeq.quant.plan import WeightPlan
from edgeq.quant.weights import grid
from edgeq.runners import OrtRunner, batch_size_for

ROWS_PER_BATCH = 8192  # im2col rows kept per batch (strided): H converges long before
DAMP = 0.01
BLOCK = 128


@dataclass
class LayerStats:
    """H per group [G, K, K] (mean over rows) and the mean |x| per input column [G, K]."""

    h: np.ndarray
    absmean: np.ndarray
    rows: int = 0


def conv_groups(node: onnx.NodeProto) -> int:
    return int(get_attr(node, "group", 1))


def supported(graph: Graph, node: onnx.NodeProto) -> bool:
    if node.op_type == "Conv":
        return get_attr(node, "auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET")
    if node.op_type == "Gemm":
        return not get_attr(node, "transA", 0)
    return node.op_type == "MatMul" and graph.initializer(node.input[1]).ndim == 2


def to_matrix(node: onnx.NodeProto, w: np.ndarray) -> np.ndarray:
    """Weight -> [G, rows, K] (the layout H is computed in)."""
    if node.op_type == "Conv":
        g = conv_groups(node)
        return w.reshape(g, w.shape[0] // g, -1)
    if node.op_type == "Gemm" and get_attr(node, "transB", 0):
        return w[None]
    return w.T[None]


def from_matrix(node: onnx.NodeProto, m: np.ndarray, shape: tuple) -> np.ndarray:
    if node.op_type == "Conv":
        return m.reshape(shape)
    if node.op_type == "Gemm" and get_attr(node, "transB", 0):
        return m[0].reshape(shape)
    return m[0].T.reshape(shape)


def im2col(node: onnx.NodeProto, x: np.ndarray, kshape: tuple) -> np.ndarray:
    """Conv input [N, C, *sp] -> patches [M, G, (C/g)·prod(k)] in the weight's (c, *k) order."""
    nd = len(kshape)
    pads = list(get_attr(node, "pads", [0] * 2 * nd))
    strides = list(get_attr(node, "strides", [1] * nd))
    dil = list(get_attr(node, "dilations", [1] * nd))
    x = np.pad(x, [(0, 0), (0, 0), *[(pads[i], pads[i + nd]) for i in range(nd)]])
    span = [(k - 1) * d + 1 for k, d in zip(kshape, dil)]
    win = np.lib.stride_tricks.sliding_window_view(x, span, axis=tuple(range(2, 2 + nd)))
    sl = (slice(None), slice(None), *[slice(None, None, s) for s in strides], *[slice(None, None, d) for d in dil])
    win = win[sl]  # [N, C, *out, *k]
    g = conv_groups(node)
    n, c = win.shape[:2]
    out = win.shape[2 : 2 + nd]
    win = win.reshape(n, g, c // g, int(np.prod(out)), *kshape)
    win = np.moveaxis(win, 3, 1)  # [N, L, G, C/g, *k]
    return win.reshape(-1, g, (c // g) * int(np.prod(kshape)))


def layer_rows(graph: Graph, node: onnx.NodeProto, x: np.ndarray) -> np.ndarray:
    if node.op_type == "Conv":
        kshape = graph.initializer(node.input[1]).shape[2:]
        rows = im2col(node, x.astype(np.float32), tuple(kshape))
    else:
        rows = x.reshape(-1, 1, x.shape[-1])
    return rows[:: max(1, len(rows) // ROWS_PER_BATCH)]


def layer_stats(graph: Graph, nodes: list[onnx.NodeProto], dataset, progress=None) -> dict[str, LayerStats]:
    """{weight name: LayerStats} for the given layers, from one pass over the dataset."""
    inputs = sorted({n.input[0] for n in nodes})
    graph_inputs = {i.name for i in graph.inputs}
    runner = OrtRunner(with_all_outputs(graph, [i for i in inputs if i not in graph_inputs]).SerializeToString(),
                       threads=2, optimize=False, source=graph.source)
    acc: dict[str, list] = {}
    for feeds in dataset.batches(batch_size_for(graph)):
        outs = runner.run(feeds)
        for n in nodes:
            x = feeds[n.input[0]] if n.input[0] in feeds else outs[n.input[0]]
            r = layer_rows(graph, n, x).astype(np.float64)
            h = np.einsum("mgk,mgl->gkl", r, r)
            a = np.abs(r).sum(0)
            if n.input[1] in acc:
                acc[n.input[1]][0] += h
                acc[n.input[1]][1] += a
                acc[n.input[1]][2] += len(r)
            else:
                acc[n.input[1]] = [h, a, len(r)]
        if progress:
            progress(len(next(iter(feeds.values()))))
    return {k: LayerStats(h / max(m, 1), a / max(m, 1), m) for k, (h, a, m) in acc.items()}


def output_error(w: np.ndarray, wq: np.ndarray, h: np.ndarray) -> float:
    """Σ_g tr((W-Ŵ) H (W-Ŵ)ᵀ): the layer's mean squared output error on the calibration rows."""
    e = (w - wq).astype(np.float64)
    return float(np.einsum("grk,gkl,grl->", e, h, e))


def gptq_matrix(w: np.ndarray, h: np.ndarray, rnd, damp: float = DAMP, act_order: bool = True) -> np.ndarray:
    """GPTQ on [G, R, K] weights with [G, K, K] Hessians; `rnd(values, cols)` rounds [G, R, n] at
    grid columns `cols` [G, n] (original column indices). Returns the rounded [G, R, K]."""
    w = w.astype(np.float64).copy()
    h = h.astype(np.float64).copy()
    g_, r_, k_ = w.shape
    diag = np.einsum("gkk->gk", h)
    dead = diag == 0
    for gi, ki in zip(*np.nonzero(dead)):
        h[gi, ki, ki] = 1.0
        w[gi, :, ki] = 0.0
    perm = np.argsort(-np.einsum("gkk->gk", h), axis=1, kind="stable") if act_order else np.tile(np.arange(k_), (g_, 1))
    w = np.take_along_axis(w, perm[:, None, :], 2)
    h = np.take_along_axis(np.take_along_axis(h, perm[:, :, None], 1), perm[:, None, :], 2)
    h += damp * np.einsum("gkk->g", h)[:, None, None] / k_ * np.eye(k_)[None]
    hinv = np.linalg.cholesky(np.linalg.inv(h)).transpose(0, 2, 1)  # upper Cholesky factor of H^-1
    q = np.zeros_like(w)
    for i1 in range(0, k_, BLOCK):
        i2 = min(i1 + BLOCK, k_)
        w1, err1 = w[:, :, i1:i2].copy(), np.zeros((g_, r_, i2 - i1))
        hb = hinv[:, i1:i2, i1:i2]
        for i in range(i2 - i1):
            col = w1[:, :, i]
            qc = rnd(col[:, :, None], perm[:, i1 + i : i1 + i + 1])[:, :, 0]
            q[:, :, i1 + i] = qc
            e = (col - qc) / hb[:, i, i][:, None]
            w1[:, :, i:] -= e[:, :, None] * hb[:, i, None, i:]
            err1[:, :, i] = e
        w[:, :, i2:] -= np.einsum("grb,gbk->grk", err1, hinv[:, i1:i2, i2:])
    out = np.empty_like(q)
    np.put_along_axis(out, np.broadcast_to(perm[:, None, :], q.shape), q, 2)
    return out


def gptq_weight(node: onnx.NodeProto, wp: WeightPlan, w: np.ndarray, stats: LayerStats) -> tuple[np.ndarray, float, float]:
    """(GPTQ-rounded weight in the model's layout, its output error, round-to-nearest's error)."""
    g = grid(wp, w.shape)
    gm = g.reshape(lambda a: to_matrix(node, a))  # elementwise params in [G, R, K]
    wm = to_matrix(node, np.asarray(w, np.float32))
    rows = np.arange(wm.shape[1])[None, :, None]

    def rnd(vals, cols):
        idx = (np.arange(wm.shape[0])[:, None, None], rows, cols[:, None, :])
        return gm.round(vals.astype(np.float32), idx)

    qm = gptq_matrix(wm, stats.h, rnd).astype(np.float32)
    rtn = gm.round(wm)
    return from_matrix(node, qm, w.shape), output_error(wm, qm, stats.h), output_error(wm, rtn, stats.h)
