"""Fold shape arithmetic once dims are bound: Shape -> Gather/Slice -> Concat -> Reshape chains.

Exporters (Paddle, older torch) compute reshape targets and LSTM initial states from the
runtime shape. Once `--input-shape` binds the dims, those values are constants, and targets
without dynamic shapes (LiteRT, TFLite Micro) can only lower the folded graph. Each shape
tensor is tracked as a list of dims, an int where shape inference knows it and the symbol
otherwise; a fully known one becomes an initializer. A symbolic dim that a Reshape takes
from its own data at the same position becomes 0 ("copy this dim"), so a flatten of
[batch, -1] folds while the batch stays symbolic.
"""

from __future__ import annotations

import numpy as np
from onnx import numpy_helper

from edgeq.graph import Graph, get_attr
from edgeq.passes.registry import PASSES, infer, register

Dims = list  # of int | str | None
INT_DTYPES = {"int64": np.int64, "int32": np.int32}


def _const_ints(graph: Graph, name: str) -> list[int] | None:
    if not name or not graph.is_const(name):
        return None
    a = graph.initializer(name)
    return [int(v) for v in a.reshape(-1)] if a.dtype.kind in "iu" else None


def _ranked(graph: Graph) -> set[str]:
    """Values whose rank shape inference knows (an unknown-rank value has no `shape` field)."""
    g = graph.model.graph
    return {vi.name for vi in [*g.value_info, *g.input, *g.output] if vi.type.tensor_type.HasField("shape")} | graph.init_names


def _shape_of(graph: Graph, node, ranked: set[str]) -> Dims | None:
    shape = graph.shape(node.input[0])
    if shape is None or node.input[0] not in ranked:
        return None
    dims = list(shape)
    start, end = get_attr(node, "start", 0), get_attr(node, "end", None)
    return dims[start:end]


def _partial(graph: Graph, node, known: dict[str, tuple[Dims, bool]], ranked: set[str]) -> tuple[Dims, bool] | None:
    """(dims, is_scalar) of the node's first output, or None when it is not shape arithmetic."""
    op = node.op_type

    def value(name: str) -> tuple[Dims, bool] | None:
        if name in known:
            return known[name]
        ints = _const_ints(graph, name)
        return None if ints is None else (ints, graph.initializer(name).ndim == 0)

    if op == "Shape":
        dims = _shape_of(graph, node, ranked)
        return None if dims is None else (dims, False)
    if node.input and node.input[0] not in known:
        if op != "Concat" or not any(i in known for i in node.input):
            return None
    if op in ("Cast", "Identity"):
        return known[node.input[0]] if op == "Identity" or get_attr(node, "to") in (6, 7) else None
    if op == "Gather" and get_attr(node, "axis", 0) == 0:
        dims, _ = known[node.input[0]]
        idx = _const_ints(graph, node.input[1])
        if idx is None:
            return None
        picked = [dims[i] for i in idx] if all(-len(dims) <= i < len(dims) for i in idx) else None
        return None if picked is None else (picked, graph.initializer(node.input[1]).ndim == 0)
    if op == "Slice":
        dims, _ = known[node.input[0]]
        starts, ends = _const_ints(graph, node.input[1]), _const_ints(graph, node.input[2])
        axes = _const_ints(graph, node.input[3]) if len(node.input) > 3 and node.input[3] else [0]
        steps = _const_ints(graph, node.input[4]) if len(node.input) > 4 and node.input[4] else [1]
        if None in (starts, ends, axes, steps) or axes not in ([0], [-1]) or steps[0] == 0:
            return None
        return dims[slice(starts[0], ends[0], steps[0])], False
    if op == "Concat":
        parts = [value(i) for i in node.input]
        if any(p is None for p in parts):
            return None
        return [d for p, _ in parts for d in p], False
    if op == "Unsqueeze":
        dims, scalar = known[node.input[0]]
        return (dims, False) if scalar else None
    if op == "Squeeze":
        dims, scalar = known[node.input[0]]
        return (dims, True) if len(dims) == 1 and not scalar else None
    return None


def _as_const(graph: Graph, name: str, dims: Dims, scalar: bool) -> np.ndarray | None:
    dtype = INT_DTYPES.get(graph.dtype(name) or "int64")
    if dtype is None or not all(isinstance(d, int) for d in dims):
        return None
    a = np.asarray(dims, dtype)
    return a.reshape(()) if scalar else a


def _reshape_target(graph: Graph, node, known) -> np.ndarray | None:
    """Reshape(data, shape) whose unknown entries are data's own dims at the same position -> 0s."""
    if node.op_type != "Reshape" or node.input[1] not in known or get_attr(node, "allowzero", 0):
        return None
    dims, _ = known[node.input[1]]
    data = graph.shape(node.input[0]) or ()
    out = []
    for j, d in enumerate(dims):
        if isinstance(d, int):
            out.append(d)
        elif isinstance(d, str) and j < len(data) and data[j] == d:
            out.append(0)
        else:
            return None
    return np.asarray(out, np.int64)


def _fold_once(graph: Graph) -> bool:
    known: dict[str, tuple[Dims, bool]] = {}
    ranked = _ranked(graph)
    for node in graph.nodes:
        if node.domain in ("", "ai.onnx") and node.output and node.output[0]:
            p = _partial(graph, node, known, ranked)
            if p is not None:
                known[node.output[0]] = p
    g = graph.model.graph
    new_inits, changed = [], False
    for name, (dims, scalar) in known.items():
        a = _as_const(graph, name, dims, scalar)
        if a is not None and not graph.is_const(name):
            new_inits.append(numpy_helper.from_array(a, name))
    folded = {t.name for t in new_inits}
    for node in graph.nodes:
        if node.input and len(node.input) > 1 and node.input[1] not in folded:
            target = _reshape_target(graph, node, known)
            if target is not None:
                name = f"{node.input[1]}__folded_{node.output[0]}"
                new_inits.append(numpy_helper.from_array(target, name))
                node.input[1] = name
                changed = True
    if folded:
        keep = [n for n in g.node if not (n.output and all(o in folded for o in n.output if o))]
        del g.node[:]
        g.node.extend(keep)
        changed = True
    g.initializer.extend(new_inits)
    graph.refresh()
    return changed


@register("fold_shapes")
def fold_shapes(graph: Graph) -> Graph:
    """Shape chains to constants (needs shapes: runs shape inference first), then constant folding."""
    for _ in range(8):  # each round may expose new static shapes (e.g. after a ConstantOfShape folds)
        graph = infer(graph)
        if not _fold_once(graph):
            break
        graph = PASSES["fold_constants"](graph)
        graph = PASSES["remove_dead_nodes"](graph)
        graph.refresh()
    return graph
