"""Static calibration: run the float graph in onnxruntime, observe every activation.

Observers see every float tensor the graph computes, batch by batch; each reduces what it
saw to a (min, max) range. Min-max is the foundation; other observers plug into OBSERVERS.
"""

from __future__ import annotations

import numpy as np
import onnx

from edgeq.graph import Graph
from edgeq.runners import OrtRunner, batch_size_for


class MinMaxObserver:
    name = "minmax"

    def __init__(self):
        self.lo, self.hi = np.inf, -np.inf

    def update(self, x: np.ndarray) -> None:
        if x.size:
            self.lo = min(self.lo, float(x.min()))
            self.hi = max(self.hi, float(x.max()))

    def range(self) -> tuple[float, float]:
        if self.lo > self.hi:
            return 0.0, 0.0
        return self.lo, self.hi


OBSERVERS = {"minmax": MinMaxObserver}


def float_tensors(graph: Graph) -> list[str]:
    """Every float activation the graph computes or takes in, in execution order."""
    names = [i.name for i in graph.inputs if i.dtype == "float32"]
    for n in graph.nodes:
        names += [o for o in n.output if o and graph.dtype(o) == "float32"]
    return names


def with_all_outputs(graph: Graph, names: list[str]) -> onnx.ModelProto:
    m = onnx.ModelProto()
    m.CopyFrom(graph.model)
    present = {o.name for o in m.graph.output}
    vis = {vi.name: vi for vi in m.graph.value_info}
    for name in names:
        if name in present or name in {i.name for i in graph.inputs}:
            continue
        m.graph.output.append(vis[name] if name in vis else onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    return m


def observe(graph: Graph, dataset, method: str = "minmax", progress=None) -> dict[str, tuple[float, float]]:
    """Ranges of every float activation over the dataset: {tensor: (min, max)}."""
    names = float_tensors(graph)
    runner = OrtRunner(with_all_outputs(graph, names).SerializeToString(), threads=2, optimize=False,
                       source=graph.source)
    observers = {n: OBSERVERS[method]() for n in names}
    bs = batch_size_for(graph)
    for feeds in dataset.batches(bs):
        outs = runner.run(feeds)
        for n in names:
            observers[n].update(feeds[n] if n in feeds else outs[n])
        if progress:
            progress(len(next(iter(feeds.values()))))
    return {n: observers[n].range() for n in names}
