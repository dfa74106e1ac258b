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


def _lstm_graph(steps=8, hidden=16, inp=12, direction="forward"):
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    dirs = 2 if direction == "bidirectional" else 1
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(0, 0.3, s).astype(np.float32), n)
             for n, s in (("W", (dirs, 4 * hidden, inp)), ("R", (dirs, 4 * hidden, hidden)))]
    nodes = [helper.make_node("LSTM", ["x", "W", "R"], ["y"], name="lstm", hidden_size=hidden, direction=direction),
             helper.make_node("Relu", ["y"], ["out"], name="relu")]
    m = helper.make_model(helper.make_graph(nodes, "lstm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [steps, 1, inp])],
                                            [helper.make_tensor_value_info("out", TensorProto.FLOAT, [steps, dirs, 1, hidden])], inits),
                          opset_imports=[helper.make_opsetid("", 17)])
    return Graph(onnx.shape_inference.infer_shapes(m), "lstm")


@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
def test_recurrent_ops_count_their_step_macs(direction):
    """An LSTM's work is its gate GEMMs over every step (it was priced as an elementwise op with no
    MACs: silero-vad and ddddocr were predicted 4-9x too fast); the recurrent class has its own
    efficiency, measured on an LSTM (bench/calibrate_host.py)."""
    g = _lstm_graph(direction=direction)
    dirs = 2 if direction == "bidirectional" else 1
    c = next(c for c in op_costs(g) if c.name == "lstm")
    assert c.kind == "recurrent" and c.macs == 8 * dirs * 4 * 16 * (12 + 16)
    cpu = load_device("host_x86_64").units["cpu"]
    t = op_time(c, cpu, 0)
    eff = cpu.efficiency["recurrent_fp32"].si
    assert eff < cpu.efficiency["dense_fp32"].si  # small per-step GEMMs: below the dense kernels' rate
    assert t.seconds >= 2 * c.macs / (cpu.peak_ops["fp32"].si * eff)


def test_a_float_op_in_an_integer_model_pays_its_crossings():
    """An op the plan keeps float (its output's grid is null) runs in float on every runtime, with
    a dequantize per integer input and a quantize per integer output (it was counted as int8)."""
    from edgeq.quant.plan import ActivationPlan, QuantPlan, WeightPlan

    g = _lstm_graph()
    plan = QuantPlan("x", mode="static",
                     weights={"W": WeightPlan("W", "lstm", "LSTM", [1, 64, 12])},
                     activations={"x": ActivationPlan("x", 8, scale=0.1), "y": ActivationPlan("y", None),
                                  "out": ActivationPlan("out", 8, scale=0.1)})
    costs = op_costs(g, plan)
    ops = [(c.op, c.precision) for c in costs]
    lstm = ops.index(("LSTM", "fp32"))
    assert ops[lstm - 1] == ("DequantizeLinear", "int8") and costs[lstm].inputs == ("x:float",)
    relu = next(c for c in costs if c.name == "relu")
    assert relu.precision == "fp32"  # reads the float y: its crossing is a quantize of its own output
    assert sum(c.op == "QuantizeLinear" for c in costs) == 2  # the model input, and relu's integer output


def test_narrow_gemms_run_below_the_measured_rate(graph):
    """Few rows per GEMM call (a 1-D model's frames: a conv's output positions per image) waste
    the kernel's register tiles; gemm_half_rows (measured on 1-D conv chains) scales the rate."""
    from edgeq.profile.cost import REFERENCE_ROWS, narrow_gemm

    cpu = load_device("host_x86_64").units["cpu"]
    conv = next(c for c in op_costs(graph) if c.name == "conv1")
    assert conv.rows == 12 * 12  # output positions per image
    h = cpu.gemm_half_rows["fp32"].si
    assert narrow_gemm(conv, cpu, "fp32") == 1.0  # more rows than measured: the measured rate
    few = dataclasses.replace(conv, rows=4)
    expect = (4 / (4 + h)) / (REFERENCE_ROWS / (REFERENCE_ROWS + h))
    assert narrow_gemm(few, cpu, "fp32") == pytest.approx(expect)
    assert h == 0 or op_time(few, cpu, 0).seconds > op_time(conv, cpu, 0).seconds * few.macs / conv.macs
