"""Cost model: latency by a roofline per unit, from per-op MACs and bytes (edgeq/op_cost.py).

An op's time on a compute unit is  overhead + max(work / (peak × efficiency), bytes / bandwidth),
where work counts 2 ops per MAC, `efficiency` is the fraction of peak that real kernels of
the op's class (dense, depthwise, elementwise) reach, and bytes are charged to DRAM or
on-chip memory by whether they fit on chip. Activations that follow a conv/matmul are fused
into it (every runtime edgeq targets does this); shape-only ops cost their launch overhead.
Ops a unit cannot run fall back to another unit, paying a transfer for each tensor that
crosses.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgeq.devices import ComputeUnit, Device
from edgeq.op_cost import OpCost

UNIT_ALIASES = {"neural_engine": "npu", "ane": "ane", "neuralengine": "npu", "tpu": "npu", "dsp": "npu", "hexagon": "npu",
                "cpu_or_gpu": "cpu"}  # coreml's residency estimate: off the Neural Engine -> the CPU fallback


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


REFERENCE_ROWS = 49  # output positions per image of the conv chains efficiency.dense_* is measured on (7x7..14x14)


def narrow_gemm(c: OpCost, unit: ComputeUnit, prec: str) -> float:
    """A dense kernel's rate relative to the measured one, by its rows per call: vector kernels fill
    whole register tiles of rows, so a conv with few output positions per image (a 1-D model's
    frames at batch 32) wastes most of each tile. rows / (rows + half), normalized at the
    measured shape's rows and capped at 1 (more rows than measured: no gain assumed)."""
    half = unit.gemm_half_rows.get(prec)
    if c.kind != "dense" or not c.rows or half is None:
        return 1.0
    h = half.si
    return min(1.0, (c.rows / (c.rows + h)) / (REFERENCE_ROWS / (REFERENCE_ROWS + h)))


def op_time(c: OpCost, unit: ComputeUnit, weights_total: int) -> OpTime:
    prec = unit.precision_for(c.precision if c.precision in unit.peak_ops else ("int8" if c.precision == "int16" else c.precision))
    if c.kind == "fused":
        return OpTime(unit.name, prec, 0.0, "free", 0, 0)
    if c.kind == "view":
        return OpTime(unit.name, prec, unit.op_overhead.si, "overhead", 0, 0)
    # a kernel class's own fixed cost where the profile measured one (setup, requantization tables)
    overhead = (unit.kernel_overhead.get(f"{c.kind}_{prec}") or unit.kernel_overhead.get(c.kind) or unit.op_overhead).si
    # a recurrent op's step GEMMs are dense kernels where a device file measured nothing for them
    classes = (c.kind, "dense") if c.kind == "recurrent" else (c.kind,)
    eff_q = next((e for k in classes for e in (unit.efficiency.get(f"{k}_{prec}"), unit.efficiency.get(k)) if e is not None), None)
    eff = (eff_q.si if eff_q is not None else 1.0) * narrow_gemm(c, unit, prec)
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
