"""Fold inference-mode BatchNormalization into the Conv or Gemm that feeds it."""

from __future__ import annotations

import numpy as np
from onnx import numpy_helper

from edgeq.graph import Graph, get_attr
from edgeq.passes.basic import rename_input
from edgeq.passes.registry import register


def _set_init(graph: Graph, name: str, value: np.ndarray) -> str:
    g = graph.model.graph
    for k, t in enumerate(g.initializer):
        if t.name == name:
            g.initializer[k].CopyFrom(numpy_helper.from_array(value, name))
            return name
    g.initializer.append(numpy_helper.from_array(value, name))
    return name


@register("fold_batchnorm")
def fold_batchnorm(graph: Graph) -> Graph:
    g = graph.model.graph
    graph_outputs = {o.name for o in g.output}
    removed = set()
    for k, bn in enumerate(list(g.node)):
        if bn.op_type != "BatchNormalization" or len([o for o in bn.output if o]) != 1:
            continue
        prod = graph.producer.get(bn.input[0])
        if prod is None or prod.op_type not in ("Conv", "Gemm") or len(graph.consumers.get(bn.input[0], [])) != 1:
            continue
        if bn.input[0] in graph_outputs or not all(graph.is_const(i) for i in bn.input[1:5]):
            continue
        w_name = prod.input[1]
        if not graph.is_const(w_name) or len(graph.consumers.get(w_name, [])) != 1:
            continue
        if prod.op_type == "Gemm" and (get_attr(prod, "transA", 0) or get_attr(prod, "alpha", 1.0) != 1.0 or get_attr(prod, "beta", 1.0) != 1.0):
            continue
        scale, shift = bn_affine(graph, bn)
        w = graph.initializer(w_name)
        c_out = scale.shape[0]
        b = graph.initializer(prod.input[2]).astype(np.float64) if len(prod.input) > 2 and prod.input[2] else np.zeros(c_out)
        if prod.op_type == "Conv":
            w_new = w.astype(np.float64) * scale.reshape(-1, *([1] * (w.ndim - 1)))
        elif get_attr(prod, "transB", 0):
            w_new = w.astype(np.float64) * scale[:, None]
        else:
            w_new = w.astype(np.float64) * scale[None, :]
        b_new = b * scale + shift
        _set_init(graph, w_name, w_new.astype(np.float32))
        bias_name = prod.input[2] if len(prod.input) > 2 and prod.input[2] and len(graph.consumers.get(prod.input[2], [])) == 1 else f"{w_name}_bnbias"
        _set_init(graph, bias_name, b_new.astype(np.float32))
        if len(prod.input) > 2:
            prod.input[2] = bias_name
        else:
            prod.input.append(bias_name)
        # The Conv now produces what BN produced.
        if bn.output[0] in graph_outputs:
            prod.output[0] = bn.output[0]
        else:
            rename_input(graph, bn.output[0], prod.output[0])
        removed.add(k)
        graph.refresh()
    keep = [n for k, n in enumerate(g.node) if k not in removed]
    del g.node[:]
    g.node.extend(keep)
    return graph


def bn_affine(graph: Graph, bn) -> tuple[np.ndarray, np.ndarray]:
    """Inference BatchNormalization as y = x * scale + shift, per channel (float64)."""
    from edgeq.errors import ModelError
    from edgeq.graph import node_name

    gamma, beta, mean, var = (graph.initializer(i).astype(np.float64) for i in bn.input[1:5])
    with np.errstate(all="ignore"):
        scale = gamma / np.sqrt(var + get_attr(bn, "epsilon", 1e-5))
        shift = beta - mean * scale
    if not (np.all(np.isfinite(scale)) and np.all(np.isfinite(shift))):
        raise ModelError(f"{graph.source}: node '{node_name(bn)}' (BatchNormalization): variance + epsilon is not positive "
                         "or a parameter is not finite; fix the exported statistics")
    return scale, shift


@register("batchnorm_to_affine")
def batchnorm_to_affine(graph: Graph) -> Graph:
    """A BatchNormalization no Conv/Gemm absorbed (e.g. after an Add, as Paddle exports) becomes
    Mul + Add with per-channel constants: ops every target lowers, exact in float."""
    from onnx import helper

    g = graph.model.graph
    out = []
    for k, bn in enumerate(g.node):
        rank = len(graph.shape(bn.input[0]) or ()) if bn.op_type == "BatchNormalization" else 0  # other nodes may have no input
        if (rank < 2 or len([o for o in bn.output if o]) != 1
                or get_attr(bn, "training_mode", 0) or not all(graph.is_const(i) for i in bn.input[1:5])):
            out.append(bn)
            continue
        scale, shift = bn_affine(graph, bn)
        shape = (-1,) + (1,) * (rank - 2)
        base = f"{bn.output[0]}__bn"
        _set_init(graph, f"{base}_scale", scale.astype(np.float32).reshape(shape))
        _set_init(graph, f"{base}_shift", shift.astype(np.float32).reshape(shape))
        out.append(helper.make_node("Mul", [bn.input[0], f"{base}_scale"], [f"{base}_mul"], name=f"{bn.name or k}_scale"))
        out.append(helper.make_node("Add", [f"{base}_mul", f"{base}_shift"], [bn.output[0]], name=f"{bn.name or k}_shift"))
    del g.node[:]
    g.node.extend(out)
    return graph
