"""Cost model: MACs and bytes per op, roofline latency, fallback with transfer cost."""

from __future__ import annotations

import dataclasses

import onnx
import pytest

from edgeq.devices import load_device, parse_device
from edgeq.graph import Graph
from edgeq.op_cost import op_costs
from edgeq.passes import run_passes
from edgeq.profile.cost import estimate_latency, op_time
from edgeq.profile.read import read_artifact
from tests.models import small_cnn


@pytest.fixture(scope="module")
def graph():
    return run_passes(Graph(onnx.shape_inference.infer_shapes(small_cnn()), "small"))


def test_macs_and_bytes(graph):
    costs = {c.name: c for c in op_costs(graph)}
    assert costs["conv1"].macs == 8 * 12 * 12 * 1 * 3 * 3  # out elements x (cin/group x kh x kw)
    assert costs["dw"].macs == 8 * 6 * 6 * 9 and costs["dw"].kind == "depthwise"
    assert costs["fc"].macs == 10 * 8 and costs["fc"].kind == "dense"
    assert costs["conv1"].weight_bytes == 4 * (8 * 9 + 8)
    assert costs["conv1"].in_bytes == 4 * 144 and costs["conv1"].out_bytes == 4 * 8 * 144
    assert costs["relu2"].kind == "fused" and costs["flatten"].kind == "view"


def test_plan_bits_set_bytes_and_precision(small_compiled):
    report, out, _ = small_compiled
    art = read_artifact(report["targets"][0]["artifact"])
    q = {c.name: c for c in op_costs(art.graph, art.plan)}
    f = {c.name: c for c in op_costs(art.graph, None)}
    assert q["conv1"].precision == "int8" and f["conv1"].precision == "fp32"
    assert q["conv1"].macs == f["conv1"].macs
    # int8 weights (72 bytes) + int32 bias (32 bytes) vs float
    assert q["conv1"].weight_bytes == 8 * 9 + 4 * 8 and f["conv1"].weight_bytes == 4 * (8 * 9 + 8)
    art.plan.weights["conv1.w"].bits = 4
    assert {c.name: c for c in op_costs(art.graph, art.plan)}["conv1"].weight_bytes == 8 * 9 // 2 + 4 * 8
    assert [c.op for c in op_costs(art.graph, art.plan)][0] == "QuantizeLinear"  # float input quantized at the boundary


def test_roofline_compute_vs_memory_bound(graph):
    cpu = load_device("rpi4").units["cpu"]
    conv = next(c for c in op_costs(graph) if c.name == "conv1")
    t = op_time(conv, cpu, weights_total=0)
    compute = 2 * conv.macs / (cpu.peak_ops["fp32"].si * cpu.efficiency["dense"].si)
    memory = (conv.in_bytes + conv.out_bytes + conv.weight_bytes) / cpu.onchip_bandwidth.si
    assert t.seconds == pytest.approx(cpu.op_overhead.si + max(compute, memory))
    assert t.bound == ("compute" if compute >= memory else "memory")
    big = dataclasses.replace(conv, macs=1, in_bytes=10**9)  # a huge tensor: DRAM-bound
    t = op_time(big, cpu, 0)
    assert t.bound == "memory" and t.dram_bytes > 10**9 - 1
    assert t.seconds == pytest.approx(cpu.op_overhead.si + t.dram_bytes / cpu.bandwidth.si, rel=1e-6)


def test_fallback_pays_a_transfer(graph):
    dev = load_device("iphone_a17pro")
    costs = op_costs(graph)
    on_ane = estimate_latency(costs, dev, "coreml")
    assert set(on_ane["units"]) == {"ane"} and on_ane["transfers"] == 0
    residency = {"gap": "cpu"}  # the backend says GlobalAveragePool runs on the CPU
    mixed = estimate_latency(costs, dev, "coreml", residency)
    assert mixed["units"][[c.name for c in costs].index("gap")] == "cpu"
    assert mixed["transfers"] == 2  # onto the CPU and back
    assert mixed["transfer_seconds"] == pytest.approx(
        2 * dev.transfer_overhead.si + sum(c.in_bytes for c in costs if c.name in ("gap", "flatten")) / dev.transfer_bandwidth.si)
    alias = estimate_latency(costs, dev, "coreml", {"gap": "neural_engine"})
    assert alias["transfers"] == 0


def test_unsupported_op_falls_back():
    data = {"units": {"npu": {"kind": "npu", "unsupported_ops": ["Gemm"], "fallback": "cpu"}, "cpu": {"kind": "cpu"}}}
    base = load_device("pixel8")
    raw = {"targets": {"x": "npu"}, "transfer": {"bandwidth": base.transfer_bandwidth.to_json(),
                                                  "overhead": base.transfer_overhead.to_json()}, "units": {}}
    for name in ("npu", "cpu"):
        u = base.units[name]
        raw["units"][name] = {
            **data["units"][name], "peak_ops": {k: v.to_json() for k, v in u.peak_ops.items()},
            "bandwidth": u.bandwidth.to_json(), "onchip_bandwidth": u.onchip_bandwidth.to_json(),
            "onchip_bytes": u.onchip_bytes.to_json(), "op_overhead": u.op_overhead.to_json(),
            "energy_per_mac": {k: v.to_json() for k, v in u.energy_per_mac.items()},
            "energy_per_byte": {k: v.to_json() for k, v in u.energy_per_byte.items()},
            "active_power": u.active_power.to_json(), "idle_power": u.idle_power.to_json()}
    dev = parse_device("toy", raw)
    g = run_passes(Graph(onnx.shape_inference.infer_shapes(small_cnn()), "small"))
    lat = estimate_latency(op_costs(g), dev, "x")
    names = [c.name for c in op_costs(g)]
    assert lat["units"][names.index("fc")] == "cpu" and lat["units"][names.index("conv1")] == "npu"
    assert lat["transfers"] == 1 and lat["transfer_seconds"] > 0
