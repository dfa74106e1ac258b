"""Cost model: per-op MACs and bytes from the Graph and plan, latency by a roofline per unit.

An op's time on a compute unit is  overhead + max(work / (peak × efficiency), bytes / bandwidth),
where work counts 2 ops per MAC, `efficiency` is the fraction of peak that real kernels of
the op's class (dense, depthwise, elementwise) reach, and bytes are charged to DRAM or
on-chip memory by whether they fit on chip. Activations that follow a conv/matmul are fused
into it (every runtime edgeq targets does this); shape-only ops cost their launch overhead.
Ops a unit cannot run fall back to another unit, paying a transfer for each tensor that
crosses.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from edgeq.graph import Graph, get_attr, node_name
from edgeq.profile.devices import ComputeUnit, Device
from edgeq.quant.plan import QuantPlan

# activations a conv/matmul kernel applies itself: float kernels take several (ORT's FusedConv,
# XNNPACK), integer kernels only clamps (they fold into the requantization's min/max)
FUSABLE = {"fp32": {"Relu", "Clip", "LeakyRelu", "Sigmoid", "HardSigmoid", "Tanh"}, "int8": {"Relu", "Clip"}}
VIEWS = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout"}
WEIGHTED = {"Conv", "ConvTranspose", "Gemm", "MatMul"}
UNIT_ALIASES = {"neural_engine": "npu", "ane": "ane", "neuralengine": "npu", "tpu": "npu", "dsp": "npu", "hexagon": "npu",
                "cpu_or_gpu": "cpu"}  # coreml's residency estimate: off the Neural Engine -> the CPU fallback
BYTES = {"float32": 4, "float16": 2, "float64": 8, "int8": 1, "uint8": 1, "int16": 2, "int32": 4, "int64": 8, "bool": 1}


@dataclass
class OpCost:
    name: str
    op: str
    kind: str  # dense | depthwise | elementwise | view | fused | boundary
    precision: str  # int8 | int16 | fp32
    macs: int
    other_ops: int  # arithmetic that is not a MAC (adds, compares, pooling)
    weight_bytes: int
    in_bytes: int  # activation bytes read
    out_bytes: int  # activation bytes written
    inputs: tuple[str, ...]  # activation tensors read
    outputs: tuple[str, ...]

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


def _macs(graph: Graph, node, b: int) -> tuple[int, int, str]:
    """(MACs, other ops, kind) of one node."""
    out = _numel(graph.shape(node.output[0]), b)
    op = node.op_type
    if op == "Conv":
        w = graph.shape(node.input[1]) or ()
        group = get_attr(node, "group", 1)
        cin = _dims(graph.shape(node.input[0]), b)[1] if graph.shape(node.input[0]) else 0
        k = int(np.prod(w[1:])) if w else 0
        kind = "depthwise" if group > 1 and group == cin else "dense"
        return out * k, 0, kind
    if op == "ConvTranspose":
        w = graph.shape(node.input[1]) or ()
        return _numel(graph.shape(node.input[0]), b) * (int(np.prod(w[1:])) if w else 0), 0, "dense"
    if op in ("Gemm", "MatMul"):
        a = _dims(graph.shape(node.input[0]), b)
        k = (a[0] if get_attr(node, "transA", 0) else a[-1]) if a else 0
        return out * k, 0, "dense"
    if op in ("MaxPool", "AveragePool"):
        return 0, out * int(np.prod(get_attr(node, "kernel_shape", [1]))), "elementwise"
    if op in ("GlobalAveragePool", "GlobalMaxPool", "ReduceMean", "ReduceSum", "ReduceMax"):
        return 0, _numel(graph.shape(node.input[0]), b), "elementwise"
    if op == "Softmax":
        return 0, 5 * out, "elementwise"
    return 0, out, "elementwise"


def _precision(sz: Sizer, node, acts: list[str]) -> str:
    if not sz.static:
        return "fp32"
    weights = [i for i in node.input[1:2] if sz.graph.is_const(i)] if node.op_type in WEIGHTED else []
    w_ok = all((wp := sz.plan.weights.get(w)) is not None and wp.bits is not None and wp.bits <= 8 for w in weights)
    bits = [sz.act_bits(a) for a in acts]
    if not w_ok or not bits or any(x is None for x in bits):
        return "fp32"
    return "int16" if 16 in bits else "int8"


def op_costs(graph: Graph, plan: QuantPlan | None = None, batch: int = 1, int8_kernels: frozenset | None = None,
             stored: dict | None = None) -> list[OpCost]:
    """Per-op costs in execution order (the graph's topological node order).

    int8_kernels: op types the runtime has integer kernels for (None: all); a quantized op
    without one runs in float between a dequantize and a quantize kernel. stored: the target's
    storage rule's bytes per weight (Target.storage); without it, bits / 8 per element."""
    sz = Sizer(graph, plan, batch, stored)
    nodes = graph.nodes
    costs: list[OpCost] = []
    for i, node in enumerate(nodes):
        acts = [x for x in node.input if x and not graph.is_const(x)]
        outs = [o for o in node.output if o]
        name = node_name(node, i)
        precision = _precision(sz, node, acts)
        if node.op_type in VIEWS:
            costs.append(OpCost(name, node.op_type, "view", precision, 0, 0, 0, 0, 0, tuple(acts), tuple(outs)))
            continue
        producer = graph.producer.get(acts[0]) if acts else None
        producer_precision = next((c.precision for c in reversed(costs) if acts and acts[0] in c.outputs), precision)
        fused = (producer is not None and producer.op_type in WEIGHTED and len(graph.consumers.get(acts[0], [])) == 1
                 and node.op_type in FUSABLE["fp32" if producer_precision == "fp32" else "int8"])
        if fused:  # runs inside its producer's kernel, at its precision
            costs.append(OpCost(name, node.op_type, "fused", producer_precision, 0, 0, 0, 0, 0, tuple(acts), tuple(outs)))
            continue
        macs, other, kind = _macs(graph, node, batch)
        wbytes = sum(sz.weight_bytes(x) for x in node.input if x and graph.is_const(x))
        in_b, out_b = sum(sz.act_bytes(a) for a in acts), sum(sz.act_bytes(o) for o in outs)
        if precision != "fp32" and int8_kernels is not None and node.op_type not in int8_kernels:
            n_in, n_out = sum(sz.numel(a) for a in acts), sum(sz.numel(o) for o in outs)
            costs.append(OpCost(f"dequantize:{name}", "DequantizeLinear", "boundary", precision, 0, n_in, 0, in_b, 4 * n_in,
                                tuple(acts), tuple(f"{a}:float" for a in acts)))
            costs.append(OpCost(name, node.op_type, kind, "fp32", macs, other, wbytes, 4 * n_in, 4 * n_out,
                                tuple(f"{a}:float" for a in acts), tuple(f"{o}:float" for o in outs)))
            costs.append(OpCost(f"quantize:{name}", "QuantizeLinear", "boundary", precision, 0, n_out, 0, 4 * n_out, out_b,
                                tuple(f"{o}:float" for o in outs), tuple(outs)))
            continue
        costs.append(OpCost(name, node.op_type, kind, precision, macs, other, wbytes, in_b, out_b, tuple(acts), tuple(outs)))
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


# -- latency on a device ---------------------------------------------------------------------------

def assign_units(costs: list[OpCost], device: Device, target: str, residency: dict | None = None) -> list[str]:
    """Unit per op: the backend's residency table if it gave one, else the target's unit,
    with ops the unit cannot run falling back."""
    default = device.targets.get(target) or device.targets.get("onnx") or next(iter(device.units))
    kinds = {u.kind: n for n, u in device.units.items()}
    out = []
    for c in costs:
        unit = default
        if residency and c.name in residency:
            r = UNIT_ALIASES.get(str(residency[c.name]).lower(), str(residency[c.name]).lower())
            unit = r if r in device.units else kinds.get(r, kinds.get("npu", default) if r == "ane" else default)
        u = device.units[unit]
        if c.op in u.unsupported_ops and u.fallback:
            unit = u.fallback
        out.append(unit)
    return out


def _memory_split(c: OpCost, unit: ComputeUnit, weights_total: int) -> tuple[int, int]:
    """(DRAM bytes, on-chip bytes) an op moves: weights stay on chip if all of them fit,
    an activation stays on chip if the op's activations fit."""
    onchip = unit.onchip_bytes.si
    acts = c.in_bytes + c.out_bytes
    w_dram = c.weight_bytes if weights_total > onchip else 0
    a_dram = acts if acts > onchip else 0
    return w_dram + a_dram, (c.weight_bytes - w_dram) + (acts - a_dram)


@dataclass
class OpTime:
    unit: str
    precision: str  # the precision the unit computes it in
    seconds: float
    bound: str  # compute | memory | overhead | free
    dram_bytes: int
    onchip_bytes: int


def op_time(c: OpCost, unit: ComputeUnit, weights_total: int) -> OpTime:
    prec = unit.precision_for(c.precision if c.precision in unit.peak_ops else ("int8" if c.precision == "int16" else c.precision))
    if c.kind == "fused":
        return OpTime(unit.name, prec, 0.0, "free", 0, 0)
    if c.kind == "view":
        return OpTime(unit.name, prec, unit.op_overhead.si, "overhead", 0, 0)
    # a kernel class's own fixed cost where the profile measured one (setup, requantization tables)
    overhead = (unit.kernel_overhead.get(f"{c.kind}_{prec}") or unit.kernel_overhead.get(c.kind) or unit.op_overhead).si
    eff_q = unit.efficiency.get(f"{c.kind}_{prec}") or unit.efficiency.get(c.kind)
    eff = eff_q.si if eff_q is not None else 1.0
    slow = 2.0 if c.precision == "int16" else 1.0  # 16x8 kernels run at about half the int8 rate
    compute = slow * (2 * c.macs + c.other_ops) / (unit.peak_ops[prec].si * eff)
    dram, onchip = _memory_split(c, unit, weights_total)
    memory = dram / unit.bandwidth.si + onchip / unit.onchip_bandwidth.si
    bound = "compute" if compute >= memory else "memory"
    return OpTime(unit.name, prec, overhead + max(compute, memory), bound, dram, onchip)


def estimate_latency(costs: list[OpCost], device: Device, target: str, residency: dict | None = None) -> dict:
    """Seconds per inference on `device`: per-op roofline times, transfers and call overhead."""
    units = assign_units(costs, device, target, residency)
    weights_total = sum(c.weight_bytes for c in costs)
    times = [op_time(c, device.units[u], weights_total) for c, u in zip(costs, units)]
    where = {o: u for c, u in zip(costs, units) for o in c.outputs}
    transfers = []
    for c, u in zip(costs, units):
        for t in c.inputs:
            if t in where and where[t] != u and c.kind not in ("fused",):
                transfers.append((t, where[t], u, c.in_bytes))
    t_transfer = 0.0
    if transfers:
        if device.transfer_bandwidth is None or device.transfer_overhead is None:
            raise ValueError(f"device '{device.name}' has ops on several units but no [transfer] numbers")
        t_transfer = sum(device.transfer_overhead.si + b / device.transfer_bandwidth.si for *_, b in transfers)
    main = device.units[device.targets.get(target) or units[0]] if units else next(iter(device.units.values()))
    call = main.call_overhead.si if main.call_overhead else 0.0
    return {
        "seconds": call + sum(t.seconds for t in times) + t_transfer,
        "call_seconds": call, "transfer_seconds": t_transfer, "transfers": len(transfers),
        "units": units, "times": times, "main_unit": main.name,
    }
