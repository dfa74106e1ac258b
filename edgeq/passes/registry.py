"""The pass table and shape re-inference: what every pass module imports (the package imports them)."""

from __future__ import annotations

from collections.abc import Callable

import onnx

from edgeq.graph import Graph

PASSES: dict[str, Callable[[Graph], Graph]] = {}
# Passes that need calibration data (run by quant/act_precision.py once data is loaded): each takes
# (graph, dataset) and returns (a new graph, what it did); the graph it was given is left as it was.
DATA_PASSES: dict[str, Callable] = {}

def register(name: str):
    def deco(fn):
        PASSES[name] = fn
        return fn

    return deco


def register_data(name: str):
    def deco(fn):
        DATA_PASSES[name] = fn
        return fn

    return deco


def infer(graph: Graph) -> Graph:
    """Re-run shape inference after edits (value_info is dropped and rebuilt).

    Declared output shapes are inferred afresh too: exporters leave stale ones (ddddocr's
    recognizer declares [1, 'seqlen'] for a [T, 1, C] output), and a bound input makes the
    real one static. A declared shape is kept only where inference finds none."""
    del graph.model.graph.value_info[:]
    declared = {}
    for o in graph.model.graph.output:
        if o.type.HasField("tensor_type") and o.type.tensor_type.HasField("shape"):
            declared[o.name] = onnx.TypeProto()
            declared[o.name].CopyFrom(o.type)
            o.type.tensor_type.ClearField("shape")
    graph.model = onnx.shape_inference.infer_shapes(graph.model, data_prop=True)
    for o in graph.model.graph.output:
        if o.name in declared and not o.type.tensor_type.HasField("shape"):
            o.type.CopyFrom(declared[o.name])
    graph.refresh()
    return graph
