"""Per-op work of an ONNX graph under a plan: MACs, other arithmetic and bytes (OpCost).

The one MAC counter (`work`) lives here, below every stage that counts: the profiler's roofline
(profile/cost.py), the artifact readers (lower/<target>/read.py) and the activation search's
sample budget (quant/act_search.py). The plan is read duck-typed (weights, activations, mode), so
this module needs nothing above the core.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from edgeq.graph import Graph, get_attr, node_name

if TYPE_CHECKING:  # annotations only: never imported at run time
    from edgeq.quant.plan import QuantPlan

# activations a conv/matmul kernel applies itself: float kernels take several (ORT's FusedConv,
# XNNPACK), integer kernels only clamps (they fold into the requantization's min/max)
FUSABLE = {"fp32": {"Relu", "Clip", "LeakyRelu", "Sigmoid", "HardSigmoid", "Tanh"}, "int8": {"Relu", "Clip"}}
VIEWS = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout"}
WEIGHTED = {"Conv", "ConvTranspose", "Gemm", "MatMul"}
RECURRENT = {"LSTM": 4, "GRU": 3, "RNN": 1}  # gates per hidden unit
BYTES = {"float32": 4, "float16": 2, "float64": 8, "int8": 1, "uint8": 1, "int16": 2, "int32": 4, "int64": 8, "bool": 1}


@dataclass
class OpCost:
    name: str
    op: str
    kind: str  # dense | depthwise | recurrent | elementwise | view | fused | boundary
    precision: str  # int8 | int16 | fp32
    macs: int
    other_ops: int  # arithmetic that is not a MAC (adds, compares, pooling)
    weight_bytes: int
    in_bytes: int  # activation bytes read
    out_bytes: int  # activation bytes written
    inputs: tuple[str, ...]  # activation tensors read
    outputs: tuple[str, ...]
    rows: int = 0  # dense kernels: GEMM rows per call (a conv's output positions per image); 0 = not known

    def to_json(self) -> dict:
        d = asdict(self)
        d["inputs"], d["outputs"] = list(self.inputs), list(self.outputs)
        return d


def _dims(shape, batch: int) -> list[int]:
    return [d if isinstance(d, int) and d > 0 else batch for d in (shape or ())]


def _numel(shape, batch: int) -> int:
    return int(np.prod(_dims(shape, batch))) if shape is not None else 0


class Sizer:
    """Element counts and byte widths of tensors under a plan."""

    def __init__(self, graph: Graph, plan: QuantPlan | None, batch: int, stored: dict | None = None):
        self.graph, self.plan, self.batch = graph, plan, batch
        self.static = plan is not None and plan.mode == "static"
        self.stored = stored or {}  # {tensor: quant.size.Stored}: the target's storage rule (Target.storage)

    def act_bits(self, name: str) -> int | None:
        a = self.plan.activations.get(name) if self.static else None
        return a.bits if a is not None else None

    def numel(self, name: str) -> int:
        return _numel(self.graph.shape(name), self.batch)

    def act_bytes(self, name: str) -> int:
        if name.endswith(":float"):  # the float copy around an op with no integer kernel
            return 4 * self.numel(name.removesuffix(":float"))
        bits = self.act_bits(name)
        return self.numel(name) * (bits // 8 if bits else BYTES.get(self.graph.dtype(name) or "float32", 4))

    def weight_bytes(self, name: str) -> int:
        if name in self.stored:  # what the artifact stores: codes, scales, zero points (one rule with the writer)
            return int(round(self.stored[name].total))
        n = self.numel(name)
        wp = self.plan.weights.get(name) if self.plan is not None else None
        if wp is not None and wp.bits is not None:
            return -(-n * wp.bits // 8)
        if self.plan is not None and any(w.bias == name and w.bits is not None for w in self.plan.weights.values()):
            return n * 4  # int32 bias
        return n * BYTES.get(str(self.graph.initializer(name).dtype), 4)


def work(op_class: str, out_elements: int, per_output: int = 0, in_elements: int = 0,
         window: int = 1) -> tuple[int, int, str]:
    """(MACs, other ops, kind) of one op: the one MAC counter. Readers of other formats map their
    ops onto these classes (ONNX here, LiteRT and MIL in lower/<target>/read.py).

    dense / depthwise: each output element sums `per_output` products (conv: the kernel's
    elements per output channel; matmul: the inner dim); recurrent: each hidden-state element of
    each step sums `per_output` products (gates x (input + hidden)), then updates its gates
    (a few ops per gate); transposed: each *input* element
    scatters `per_output` products; pool: `window` compares or adds per output; reduce: one per
    input element; softmax: 5 per output (max, sub, exp, sum, div); elementwise: one per output."""
    if op_class in ("dense", "depthwise"):
        return out_elements * per_output, 0, op_class
    if op_class == "recurrent":
        return out_elements * per_output, 4 * window * out_elements, "recurrent"
    if op_class == "transposed":
        return in_elements * per_output, 0, "dense"
    if op_class == "pool":
        return 0, out_elements * window, "elementwise"
    if op_class == "reduce":
        return 0, in_elements, "elementwise"
    if op_class == "softmax":
        return 0, 5 * out_elements, "elementwise"
    return 0, out_elements, "elementwise"


def node_work(graph: Graph, node, b: int) -> tuple[int, int, str]:
    """(MACs, other ops, kind) of one ONNX node."""
    out = _numel(graph.shape(node.output[0]), b)
    op = node.op_type
    if op == "Conv":
        w = graph.shape(node.input[1]) or ()
        group = get_attr(node, "group", 1)
        cin = _dims(graph.shape(node.input[0]), b)[1] if graph.shape(node.input[0]) else 0
        k = int(np.prod(w[1:])) if w else 0
        return work("depthwise" if group > 1 and group == cin else "dense", out, k)
    if op == "ConvTranspose":
        w = graph.shape(node.input[1]) or ()
        return work("transposed", out, int(np.prod(w[1:])) if w else 0, in_elements=_numel(graph.shape(node.input[0]), b))
    if op in ("Gemm", "MatMul"):
        a = _dims(graph.shape(node.input[0]), b)
        return work("dense", out, (a[0] if get_attr(node, "transA", 0) else a[-1]) if a else 0)
    if op in RECURRENT:  # Y: [steps, directions, batch, hidden]; W: [directions, gates x hidden, input]
        w = graph.shape(node.input[1]) or ()
        hidden = get_attr(node, "hidden_size", 0) or (w[1] // RECURRENT[op] if len(w) == 3 else 0)
        x = _dims(graph.shape(node.input[0]), b)
        steps_batch = x[0] * x[1] if len(x) == 3 else 0
        dirs = w[0] if len(w) == 3 else 1
        inp = w[2] if len(w) == 3 else 0
        return work("recurrent", steps_batch * dirs * hidden, RECURRENT[op] * (inp + hidden), window=RECURRENT[op])
    if op in ("MaxPool", "AveragePool"):
        return work("pool", out, window=int(np.prod(get_attr(node, "kernel_shape", [1]))))
    if op in ("GlobalAveragePool", "GlobalMaxPool", "ReduceMean", "ReduceSum", "ReduceMax"):
        return work("reduce", out, in_elements=_numel(graph.shape(node.input[0]), b))
    if op == "Softmax":
        return work("softmax", out)
    return work("elementwise", out)


def gemm_rows(graph: Graph, node, b: int) -> int:
    """Rows of one GEMM call of a dense op: runtimes run a conv image by image (its output
    positions), a matmul over all leading dims of its input."""
    if node.op_type == "Conv":
        return int(np.prod(_dims(graph.shape(node.output[0]), b)[2:]))
    if node.op_type == "ConvTranspose":
        return int(np.prod(_dims(graph.shape(node.input[0]), b)[2:]))
    if node.op_type in ("Gemm", "MatMul"):
        a = _dims(graph.shape(node.input[0]), b)
        return (a[-1] if node.op_type == "Gemm" and get_attr(node, "transA", 0) else int(np.prod(a[:-1]))) if a else 0
    return 0


def _precision(sz: Sizer, node, acts: list[str], outs: list[str]) -> str:
    """int8 / int16 when the op's weights and every activation it reads and writes are on integer
    grids; fp32 otherwise (an output the plan keeps float makes the runtime run the op in float)."""
    if not sz.static or any((a := sz.plan.activations.get(o)) is not None and a.bits is None for o in outs):
        return "fp32"
    weights = [i for i in node.input[1:2] if sz.graph.is_const(i)] if node.op_type in WEIGHTED else []
    w_ok = all((wp := sz.plan.weights.get(w)) is not None and wp.bits is not None and wp.bits <= 8 for w in weights)
    bits = [sz.act_bits(a) for a in acts]
    if not w_ok or not bits or any(x is None for x in bits):
        return "fp32"
    return "int16" if 16 in bits else "int8"


def _crossings(sz: Sizer, name: str, op: str, kind: str, macs: int, other: int, wbytes: int, acts: list[str],
               outs: list[str], rows: int) -> list[OpCost]:
    """A float op whose inputs or outputs the plan puts on integer grids (the plan keeps it float, or
    the runtime has no integer kernel for it): a dequantize kernel per integer input, the op on
    float copies, a quantize kernel per integer output."""
    qin, qout = [a for a in acts if sz.act_bits(a)], [o for o in outs if sz.act_bits(o)]
    fin = {a: f"{a}:float" for a in qin}
    fout = {o: f"{o}:float" for o in qout}

    def width(t: str) -> str:
        return "int16" if sz.act_bits(t) == 16 else "int8"

    out = [OpCost(f"dequantize:{name}:{a}", "DequantizeLinear", "boundary", width(a), 0, sz.numel(a), 0, sz.act_bytes(a),
                  4 * sz.numel(a), (a,), (fin[a],)) for a in qin]
    ins, res = [fin.get(a, a) for a in acts], [fout.get(o, o) for o in outs]
    out.append(OpCost(name, op, kind, "fp32", macs, other, wbytes, sum(sz.act_bytes(a) for a in ins),
                      sum(sz.act_bytes(o) for o in res), tuple(ins), tuple(res), rows))
    out += [OpCost(f"quantize:{name}:{o}", "QuantizeLinear", "boundary", width(o), 0, sz.numel(o), 0, 4 * sz.numel(o),
                   sz.act_bytes(o), (fout[o],), (o,)) for o in qout]
    return out


def op_costs(graph: Graph, plan: QuantPlan | None = None, batch: int = 1, int8_kernels: frozenset | None = None,
             stored: dict | None = None, fused_after: dict | None = None) -> list[OpCost]:
    """Per-op costs in execution order (the graph's topological node order).

    int8_kernels: op types the runtime has integer kernels for (None: all); a quantized op
    without one runs in float between a dequantize and a quantize kernel. stored: the target's
    storage rule's bytes per weight (Target.storage); without it, bits / 8 per element.
    fused_after: {op: activations its kernel applies itself} beyond conv/matmul (the target's
    FUSED_AFTER: LiteRT's ADD takes a fused Relu / Relu6)."""
    sz = Sizer(graph, plan, batch, stored)
    nodes = graph.nodes
    costs: list[OpCost] = []
    for i, node in enumerate(nodes):
        acts = [x for x in node.input if x and not graph.is_const(x)]
        outs = [o for o in node.output if o]
        name = node_name(node, i)
        precision = _precision(sz, node, acts, outs)
        if node.op_type in VIEWS:
            costs.append(OpCost(name, node.op_type, "view", precision, 0, 0, 0, 0, 0, tuple(acts), tuple(outs)))
            continue
        producer = graph.producer.get(acts[0]) if acts else None
        producer_precision = next((c.precision for c in reversed(costs) if acts and acts[0] in c.outputs), precision)
        sole = producer is not None and len(graph.consumers.get(acts[0], [])) == 1
        fused = sole and ((producer.op_type in WEIGHTED and node.op_type in FUSABLE["fp32" if producer_precision == "fp32" else "int8"])
                          or node.op_type in (fused_after or {}).get(producer.op_type, ()))
        if fused:  # runs inside its producer's kernel, at its precision
            costs.append(OpCost(name, node.op_type, "fused", producer_precision, 0, 0, 0, 0, 0, tuple(acts), tuple(outs)))
            continue
        macs, other, kind = node_work(graph, node, batch)
        rows = gemm_rows(graph, node, batch) if kind == "dense" else 0
        wbytes = sum(sz.weight_bytes(x) for x in node.input if x and graph.is_const(x))
        in_b, out_b = sum(sz.act_bytes(a) for a in acts), sum(sz.act_bytes(o) for o in outs)
        no_kernel = precision != "fp32" and int8_kernels is not None and node.op_type not in int8_kernels
        if sz.static and (precision == "fp32" or no_kernel):  # a float op inside an integer model: its grid crossings
            costs += _crossings(sz, name, node.op_type, kind, macs, other, wbytes, acts, outs, rows)
            continue
        costs.append(OpCost(name, node.op_type, kind, precision, macs, other, wbytes, in_b, out_b, tuple(acts), tuple(outs), rows))
    if sz.static:  # float I/O around an int8 model: quantize the inputs, dequantize the outputs
        for spec in graph.inputs:
            if sz.act_bits(spec.name):
                n = sz.numel(spec.name)
                costs.insert(0, OpCost(f"quantize:{spec.name}", "QuantizeLinear", "boundary", "int8", 0, n, 0, 4 * n,
                                       sz.act_bytes(spec.name), (), (spec.name,)))
        for spec in graph.outputs:
            if sz.act_bits(spec.name):
                n = sz.numel(spec.name)
                costs.append(OpCost(f"dequantize:{spec.name}", "DequantizeLinear", "boundary", "int8", 0, n, 0,
                                    sz.act_bytes(spec.name), 4 * n, (spec.name,), ()))
    return costs


def peak_activation_bytes(costs: list[OpCost], size_of: Callable[[str], int], graph_inputs: list[str],
                          graph_outputs: list[str]) -> dict:
    """The most activation bytes live at one op (profile/memory.py's model: a tensor is live from its
    writer to its last reader, views alias their input); also TFLite Micro's early arena bound."""
    alias: dict[str, str] = {}
    for c in costs:
        if c.kind == "view" and c.inputs:
            for o in c.outputs:
                alias[o] = alias.get(c.inputs[0], c.inputs[0])

    def root(t: str) -> str:
        return alias.get(t, t)

    first: dict[str, int] = {root(t): -1 for t in graph_inputs}
    last: dict[str, int] = {}
    for i, c in enumerate(costs):
        for t in c.outputs:
            first.setdefault(root(t), i)
        for t in c.inputs:
            last[root(t)] = i
    end = len(costs)
    for t in graph_outputs:
        last[root(t)] = end
    size = {t: size_of(t) for t in first}
    peak, at = 0, None
    for i in range(-1, end + 1):
        live = sum(size[t] for t in first if first[t] <= i <= last.get(t, first[t]))
        if live > peak:
            peak, at = live, i
    where = costs[at].name if at is not None and 0 <= at < end else ("inputs" if at == -1 else "outputs")
    return {"peak_activation_bytes": int(peak), "peak_at": where}
