"""Fake-quant simulation of a plan in onnxruntime: fast end-to-end checks without lowering.

The float graph runs with the planned weights' float values (what a target computes with)
fed as graph inputs, so one session serves every candidate plan; in static mode each
planned activation passes through round/clip arithmetic on its own grid (any bit width).
"""

from __future__ import annotations

import base64

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgeq.graph import Graph
from edgeq.quant.linear import qrange
from edgeq.quant.plan import QuantPlan
from edgeq.quant.weights import fake_quant_weight
from edgeq.runners import OrtRunner, batch_size_for, run_batches


def encode_tensor(a: np.ndarray) -> dict:
    a = np.ascontiguousarray(a, dtype="<f4")
    return {"shape": list(a.shape), "b64": base64.b64encode(a.tobytes()).decode()}


def decode_tensor(d: dict) -> np.ndarray:
    return np.frombuffer(base64.b64decode(d["b64"]), dtype="<f4").reshape(d["shape"]).astype(np.float32)


def with_tensors(graph: Graph, tensors: dict[str, np.ndarray]) -> Graph:
    """A copy of the graph with these initializers replaced (same names, shapes, dtypes)."""
    if not tensors:
        return graph
    g = graph.copy()
    for t in g.model.graph.initializer:
        if t.name in tensors:
            t.CopyFrom(numpy_helper.from_array(np.asarray(tensors[t.name], np.float32), t.name))
    g.refresh()
    return g


def plan_graph(graph: Graph, plan: QuantPlan) -> Graph:
    """The graph a lowering sees: the plan's rewritten tensors (GPTQ, AWQ) in place."""
    return with_tensors(graph, {k: decode_tensor(v) for k, v in plan.tensors.items()})


def fake_quant_nodes(src: str, dst: str, p: dict[str, str], prefix: str, switch: str | None = None) -> list:
    """dst = (clip(round(src / s) + z, lo, hi) - z) * s as ONNX nodes, with s, z, lo, hi the tensors
    named in `p` (float32). With `switch` (a float32 0/1 tensor): dst = src + on * (that - src), so one
    session turns each tensor's quantization on or off. The one fake-quant graph of every simulator."""
    x = [f"{prefix}{i}" for i in range(5)]
    last = dst if switch is None else x[4]
    nodes = [helper.make_node("Div", [src, p["s"]], [x[0]]), helper.make_node("Round", [x[0]], [x[1]]),
             helper.make_node("Add", [x[1], p["z"]], [x[2]]), helper.make_node("Clip", [x[2], p["lo"], p["hi"]], [x[3]]),
             helper.make_node("Sub", [x[3], p["z"]], [x[3] + "z"]), helper.make_node("Mul", [x[3] + "z", p["s"]], [last])]
    if switch is not None:
        nodes += [helper.make_node("Sub", [last, src], [x[4] + "d"]), helper.make_node("Mul", [x[4] + "d", switch], [x[4] + "o"]),
                  helper.make_node("Add", [src, x[4] + "o"], [dst])]
    return nodes


def _fake_quant_nodes(name: str, out: str, scale: float, zp: int, bits: int, signed: bool):
    qmin, qmax = qrange(bits, signed)
    c = {k: f"{name}__fq_{k}" for k in ("s", "z", "lo", "hi")}
    inits = [numpy_helper.from_array(np.asarray(v, np.float32), c[k])
             for k, v in (("s", scale), ("z", float(zp)), ("lo", float(qmin)), ("hi", float(qmax)))]
    return fake_quant_nodes(name, out, c, f"{name}__fq_"), inits


def wrap_tensors(g, names: set[str], build, out_fmt: str, pre_fmt: str) -> None:
    """Route every tensor in `names` through the nodes build(src, dst, name) returns.

    A node output NAME is renamed pre_fmt(NAME) and the built nodes write NAME after it, so
    readers are untouched; a graph input's readers read out_fmt(NAME) instead.
    """
    inputs = {i.name for i in g.input}
    ordered = []
    for name in [i.name for i in g.input if i.name in names]:
        ordered += build(name, out_fmt.format(name), name)
    for n in g.node:
        for k, i in enumerate(n.input):
            if i in inputs and i in names:
                n.input[k] = out_fmt.format(i)
        after = []
        for k, o in enumerate(n.output):
            if o in names:
                n.output[k] = pre_fmt.format(o)
                after += build(pre_fmt.format(o), o, o)
        ordered += [n, *after]
    del g.node[:]
    g.node.extend(ordered)


class Simulator:
    """One onnxruntime session of `graph` with the weights `names` as inputs (and activation
    fake-quant when `activations` is given); `run(weights)` returns the outputs on `dataset`."""

    def __init__(self, graph: Graph, names: list[str], dataset, activations: dict | None = None):
        self.graph, self.dataset, self.names = graph, dataset, list(names)
        m = onnx.ModelProto()
        m.CopyFrom(graph.model)
        g = m.graph
        keep = [t for t in g.initializer if t.name not in set(self.names)]
        self.base = {n: graph.initializer(n) for n in self.names}
        del g.initializer[:]
        g.initializer.extend(keep)
        for n in self.names:
            g.input.append(helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, list(self.base[n].shape)))
        if activations:
            self._insert_fake_quant(g, activations)
        self.runner = OrtRunner(m.SerializeToString(), threads=2, optimize=False, source=graph.source)
        self.batch = batch_size_for(graph, preferred=256)

    @staticmethod
    def _insert_fake_quant(g, activations: dict) -> None:
        """Producer writes NAME__pre, fake-quant writes NAME (a graph input: NAME -> NAME__fq)."""
        planned = {k: a for k, a in activations.items() if a.bits is not None}
        inits = []

        def build(src: str, dst: str, name: str) -> list:
            a = planned[name]
            nodes, fi = _fake_quant_nodes(src, dst, a.scale, a.zero_point, a.bits, a.signed)
            inits.extend(fi)
            return nodes

        wrap_tensors(g, set(planned), build, "{}__fq", "{}__pre")
        g.initializer.extend(inits)

    def run(self, weights: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        return run_batches(self.runner, self.dataset, self.batch, extra={**self.base, **(weights or {})})


def planned_weights(graph: Graph, plan: QuantPlan) -> dict[str, np.ndarray]:
    """The float values each planned weight takes on the target."""
    g = plan_graph(graph, plan)
    return {name: fake_quant_weight(wp, g.initializer(name)) for name, wp in plan.weights.items()}


def simulate(graph: Graph, plan: QuantPlan, dataset) -> dict[str, np.ndarray]:
    """The plan's outputs on the dataset, simulated (weights + static activations)."""
    weights = planned_weights(graph, plan)
    tensors = {k: decode_tensor(v) for k, v in plan.tensors.items() if k not in weights}
    g = with_tensors(graph, tensors)
    acts = plan.activations if plan.mode == "static" else None
    return Simulator(g, list(weights), dataset, acts).run(weights)
