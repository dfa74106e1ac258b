"""Measure this CPU's numbers for the host profile (targets/devices/host_x86_64.toml).

    OPENBLAS_NUM_THREADS=1 python bench/calibrate_host.py [--litert] [--write-cache]

--write-cache stores them as this CPU's calibration ($EDGEQ_CACHE_DIR/host/<cpu key>.toml,
default ~/.cache/edgeq; edgeq/host_numbers.py), which edgeq then uses for the host
profile on this CPU instead of the shipped numbers (measured on another CPU). The key is the
CPU's model name, family/part ids and throughput features (edgeq/hostcpu.py), printed first.

What it measures, single-threaded (edgeq's default --threads 1):
  peak fp32      numpy float32 matmul 256^3 (OpenBLAS sgemm)            -> GOPS (1 MAC = 2 ops)
  peak int8      onnxruntime MatMulInteger 256^3 (MLAS u8s8 kernel)     -> GOPS
  bandwidth      numpy copy of 48 MiB (read + write bytes / time)       -> DRAM GB/s
  onchip bw      numpy copies of 128 KiB .. 32 MiB: the fastest rate     -> GB/s
  onchip bytes   the largest working set (source + copy) still copied at half that rate or more:
                 the caches a core reaches (L2, and the L3 share it gets), measured, not read
  op overhead    onnxruntime: a chain of 41 Neg ops on 16 floats minus a chain of 1
  kernel overhead  per conv class and precision: a chain of 21 tiny convs (8 channels, 4x4)
                 minus a chain of 1, per conv (int8 convs carry requantization setup)
  call overhead  that 1-op model through edgeq's OrtRunner.run (the path compile times)
  efficiency     fraction of peak that onnxruntime's conv kernels reach on shapes typical of
                 small mobile CNNs: chains of 6 Conv+ReLU (dense 1x1, depthwise 3x3) run as
                 the float model and as edgeq's own int8 ORT artifact of it (QDQ, which
                 onnxruntime fuses into QLinearConv), work / time pooled over three shapes;
                 GlobalAveragePool for elementwise ops; an LSTM (32 steps, 256 hidden, batch 1)
                 for recurrent ops, whose steps are small matrix-vector products.
  gemm half rows per precision: 1-D chains of 256-channel 1x1 convs at 4 and 49 positions:
                 the rows per GEMM call at which a dense kernel runs at half rate
                 (profile/cost.narrow_gemm: a 1-D model's convs have a few positions per frame).
  --litert       the same kernel overheads and efficiencies for LiteRT (XNNPACK), int8 and float,
                 through edgeq's tflite target, plus its call overhead (the 1-conv chain minus its kernel).
Each time is the fastest of many timed runs (contention on a shared machine only adds time);
still, run it when the machine is as idle as it gets.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from edgeq.hostcpu import cache_key, cpu_info, describe, l2_bytes  # noqa: E402


def fastest_seconds(fn, runs: int = 50, warmup: int = 5) -> float:
    """The fastest of `runs` timed calls: other jobs on a shared machine only ever add time."""
    for _ in range(warmup):
        fn()
    t = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        t.append(time.perf_counter() - t0)
    return float(np.min(t))


def session(model: onnx.ModelProto) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def make_model(nodes, inputs, outputs, inits=(), opset=17) -> onnx.ModelProto:
    g = helper.make_graph(nodes, "calib", inputs, outputs, list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


N_MATMUL = 256  # small enough that one product (~1 ms) fits in a scheduler slice on a busy machine


def peak_fp32() -> float:
    n = N_MATMUL
    a = np.random.rand(n, n).astype(np.float32)
    b = np.random.rand(n, n).astype(np.float32)
    return 2 * n**3 / fastest_seconds(lambda: a @ b, runs=300)


def peak_int8() -> float:
    n = N_MATMUL
    m = make_model([helper.make_node("MatMulInteger", ["a", "b"], ["y"])],
                   [helper.make_tensor_value_info("a", TensorProto.UINT8, [n, n])],
                   [helper.make_tensor_value_info("y", TensorProto.INT32, [n, n])],
                   [numpy_helper.from_array(np.random.randint(-127, 127, (n, n)).astype(np.int8), "b")])
    s = session(m)
    a = np.random.randint(0, 255, (n, n)).astype(np.uint8)
    return 2 * n**3 / fastest_seconds(lambda: s.run(None, {"a": a}), runs=300)


def copy_bandwidth(nbytes: int, runs: int) -> float:
    src = np.ones(nbytes // 4, np.float32)
    dst = np.empty_like(src)
    reps = max(1, (4 << 20) // nbytes)

    def copy():
        for _ in range(reps):
            np.copyto(dst, src)

    return 2 * nbytes * reps / fastest_seconds(copy, runs=runs)


def onchip_capacity() -> tuple[float, int]:
    """(fastest copy rate, the largest working set copied at half of it or more): cache a core
    reaches. An activation that fits moves at cache speed (a server's 32 MiB L3 holds a
    detector's feature maps that the 1 MiB L2 does not)."""
    sizes = [128 << 10, 1 << 20, 2 << 20, 4 << 20, 8 << 20, 16 << 20, 32 << 20]
    rates = [copy_bandwidth(n, runs=20) for n in sizes]
    best = max(rates)
    fits = [2 * n for n, r in zip(sizes, rates) if r >= best / 2]
    return best, max(fits)


def overheads() -> tuple[float, float]:
    from edgeq.runners import OrtRunner

    def chain(k: int) -> float:
        names = ["x"] + [f"t{i}" for i in range(k - 1)] + ["y"]
        nodes = [helper.make_node("Neg", [names[i]], [names[i + 1]]) for i in range(k)]
        m = make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16])])
        runner = OrtRunner(m.SerializeToString(), threads=1)  # the path edgeq times artifacts through
        x = {"x": np.ones((1, 16), np.float32)}
        return fastest_seconds(lambda: runner.run(x), runs=2000, warmup=50)

    t1, t41 = chain(1), chain(41)
    per_op = (t41 - t1) / 40
    return per_op, t1 - per_op


def conv_chain(c: int, k: int, hw: int, group: int, depth: int = 6, dims: int = 2) -> onnx.ModelProto:
    """`depth` identical convs (c -> c channels) with ReLU, as in a small mobile CNN; dims=1: a 1-D
    chain over hw positions (as audio and sequence models have)."""
    rng = np.random.default_rng(0)
    nodes, inits, x = [], [], "x"
    space = [hw] * dims if dims == 2 else [hw]
    for i in range(depth):
        w, b = f"w{i}", f"b{i}"
        inits += [numpy_helper.from_array((rng.normal(0, 1, (c, c // group, *[k] * dims)) / np.sqrt(c // group * k ** dims)).astype(np.float32), w),
                  numpy_helper.from_array(rng.normal(0, 0.1, c).astype(np.float32), b)]
        nodes += [helper.make_node("Conv", [x, w, b], [f"c{i}"], group=group, pads=[k // 2] * 2 * dims),
                  helper.make_node("Relu", [f"c{i}"], [f"r{i}"])]
        x = f"r{i}"
    nodes.append(helper.make_node("Identity", [x], ["y"]))
    return make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", c, *space])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", c, *space])], inits)


def float_artifact_runner(path: Path, target: str, folder: Path):
    """The model lowered by `target` with every weight and activation float (what compile times
    a slower-than-float artifact against), through edgeq's runner for it."""
    from edgeq.frontend import load
    from edgeq.lower import get_target
    from edgeq.passes import run_passes
    from edgeq.pipeline import float_artifact
    from edgeq.runners import make_runner

    return make_runner(float_artifact(get_target(target), run_passes(load(str(path))), folder), 1)


def chain_seconds(c: int, k: int, hw: int, group: int, int8: bool, depth: int = 6, target: str = "ort",
                  dims: int = 2) -> tuple[float, int]:
    """Time of the float chain (onnxruntime, or `target`'s own float artifact of it), or of edgeq's
    own int8 artifact of it for `target` (ort or tflite), run through edgeq's runner for that target
    as compile times it."""
    import tempfile
    from pathlib import Path

    from edgeq.artifact import Artifact
    from edgeq.pipeline import compile as edgeq_compile
    from edgeq.runners import OrtRunner, make_runner

    model = conv_chain(c, k, hw, group, depth, dims)
    macs = depth * c * hw ** dims * (c // group) * k ** dims
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "chain.onnx"
        onnx.save(model, path)
        if int8:
            report = edgeq_compile(str(path), target, calib="random", out=str(Path(d) / "out"), latency_runs=5)
            runner = make_runner(Artifact(target, Path(report["targets"][0]["artifact"])), 1)
        elif target != "ort":
            runner = float_artifact_runner(path, target, Path(d))
        else:
            runner = OrtRunner(path.read_bytes(), threads=1)
        x = {"x": np.random.default_rng(1).normal(0, 1, (1, c, *[hw] * dims)).astype(np.float32)}
        return fastest_seconds(lambda: runner.run(x), runs=300, warmup=20), macs


def conv_numbers(peak: float, int8: bool, per_op: float, call: float | None, target: str = "ort") -> dict:
    """Per conv class: the fixed cost of one kernel, and the efficiency of the rest.
    call=None: derive the runtime's call overhead from the 1-conv chain (LiteRT)."""
    out = {}
    for kind, shapes in SHAPES.items():
        key = f"{kind}_{'int8' if int8 else 'fp32'}"
        # fixed cost of one kernel of this class: 21 tiny convs minus 1, per conv
        tiny = (8, 1, 4, 1) if kind == "dense" else (8, 3, 4, 8)
        t1, _ = chain_seconds(*tiny, int8=int8, depth=1, target=target)
        t21, _ = chain_seconds(*tiny, int8=int8, depth=21, target=target)
        kernel = max((t21 - t1) / 20, per_op)
        base = call if call is not None else max(t1 - kernel - (2 * per_op if int8 else 0), 0.0)
        out.setdefault("call", base)
        work = busy = 0.0  # pooled over the shapes, so the largest weighs most
        for shape in shapes:
            t, macs = chain_seconds(*shape, int8=int8, target=target)
            # the int8 artifact adds a quantize and a dequantize kernel at its ends
            work, busy = work + 2 * macs, busy + max(t - base - 6 * kernel - (2 * per_op if int8 else 0), 1e-9)
        out[key] = (kernel, work / (peak * busy))
    return out


SHAPES = {  # (channels, kernel, hw, group) of 6-conv chains typical of small mobile CNNs
    "dense": [(64, 1, 14, 1), (128, 1, 7, 1), (256, 1, 7, 1)],
    "depthwise": [(64, 3, 14, 64), (128, 3, 7, 128), (256, 3, 7, 256)],
}


def elementwise_seconds(target: str = "ort") -> tuple[float, int]:
    """onnxruntime: GlobalAveragePool over 256x14x14 floats (one add per element read). Another
    target: its float artifact of a chain of 6 Mul/Add of two activations (64x28x28) ending in a
    Relu, one op per element each: LiteRT's binary kernels (XNNPACK) are what elementwise ops
    between its convs are; its MEAN is a slow reference kernel, unlike onnxruntime's pool."""
    import tempfile

    if target == "ort":
        m = make_model([helper.make_node("GlobalAveragePool", ["x"], ["y"])],
                       [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 256, 14, 14])],
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 256, 1, 1])])
        x = {"x": np.ones((1, 256, 14, 14), np.float32)}
        s = session(m)
        return fastest_seconds(lambda: s.run(["y"], x), runs=300, warmup=20), 256 * 14 * 14
    shape = [1, 64, 28, 28]
    nodes, a, b = [], "x", "x"
    for i in range(6):
        nodes.append(helper.make_node("Mul" if i % 2 else "Add", [a, b], [f"e{i}"]))
        a, b = f"e{i}", a
    nodes.append(helper.make_node("Relu", [a], ["y"]))
    m = make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)])
    x = {"x": np.random.default_rng(1).uniform(0.5, 1.0, shape).astype(np.float32)}
    with tempfile.TemporaryDirectory() as d:
        onnx.save(m, Path(d) / "chain.onnx")
        runner = float_artifact_runner(Path(d) / "chain.onnx", target, Path(d))
        return fastest_seconds(lambda: runner.run(x), runs=300, warmup=20) / 7, int(np.prod(shape))


def half_rows(int8: bool, per_op: float, call: float | None, kernel: float, target: str = "ort") -> float:
    """Rows at which rows / (rows + h) halves, from 1-D chains of 256-channel 1x1 convs at 4 vs
    REFERENCE_ROWS (49, as efficiency.dense_* is measured) positions: r = rate(4) / rate(49).
    1-D, because a 1-D conv always takes the runtime's im2col + GEMM path (onnxruntime has no
    blocked-layout kernel for it), where few rows waste the GEMM's register tiles."""
    from edgeq.profile.cost import REFERENCE_ROWS

    rates = []
    for length in (4, REFERENCE_ROWS):
        t, macs = chain_seconds(256, 1, length, 1, int8=int8, target=target, dims=1)
        rates.append(macs / max(t - (call or 0.0) - 6 * kernel - (2 * per_op if int8 else 0), 1e-9))
    r, n, ref = rates[0] / rates[1], 4, REFERENCE_ROWS
    if r >= 1:
        return 0.0
    return n * ref * (1 - r) / (r * ref - n) if r * ref > n else 10.0 * ref


def lstm_model(steps: int = 32, hidden: int = 256) -> tuple[onnx.ModelProto, int]:
    """One forward LSTM, input size = hidden, batch 1 (as a streaming or OCR model runs it)."""
    rng = np.random.default_rng(0)
    w = [numpy_helper.from_array((rng.normal(0, 1, (1, 4 * hidden, hidden)) / np.sqrt(hidden)).astype(np.float32), n) for n in "WR"]
    m = make_model([helper.make_node("LSTM", ["x", "W", "R"], ["y"], hidden_size=hidden)],
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, [steps, 1, hidden])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [steps, 1, 1, hidden])], w)
    return m, steps * 4 * hidden * 2 * hidden


def recurrent_efficiency(peak: float, call: float, target: str = "ort") -> float:
    """MAC rate of the LSTM vs the fp32 peak, float on both runtimes: edgeq keeps recurrent layers
    float (LiteRT: UNIDIRECTIONAL_SEQUENCE_LSTM with float weights between DEQUANTIZE/QUANTIZE).
    The float artifact, not a calibrated compile: a plan's choice must not change the number."""
    import tempfile

    model, macs = lstm_model()
    x = {"x": np.random.default_rng(1).normal(0, 1, (32, 1, 256)).astype(np.float32)}
    if target == "ort":
        s = session(model)
        t = fastest_seconds(lambda: s.run(None, x), runs=200, warmup=20)
    else:
        with tempfile.TemporaryDirectory() as d:
            onnx.save(model, Path(d) / "lstm.onnx")
            runner = float_artifact_runner(Path(d) / "lstm.onnx", target, Path(d))
            t = fastest_seconds(lambda: runner.run(x), runs=200, warmup=20)
    return 2 * macs / (peak * max(t - call, 1e-9))


def measure(litert: bool) -> dict:
    """Every number, printed as it is measured: {name: value in the unit its name ends with}."""
    n: dict = {}
    p32, p8 = peak_fp32(), peak_int8()
    dram = copy_bandwidth(48 << 20, runs=30)
    onchip, n["onchip_bytes"] = onchip_capacity()
    per_op, call = overheads()
    n.update(peak_fp32=p32, peak_int8=p8, dram=dram, onchip=onchip, per_op=per_op, call=call)
    print(f"peak fp32 {p32 / 1e9:.1f} GOPS   peak int8 {p8 / 1e9:.1f} GOPS")
    print(f"bandwidth {dram / 1e9:.1f} GB/s   on-chip {onchip / 1e9:.1f} GB/s up to {n['onchip_bytes'] / 2**20:.1f} MiB")
    print(f"op overhead {per_op * 1e6:.2f} us   call overhead {call * 1e6:.2f} us")
    for int8, peak in ((False, p32), (True, p8)):
        numbers = conv_numbers(peak, int8, per_op, call)
        numbers.pop("call")
        for key, (kernel, eff) in numbers.items():
            n[f"kernel_{key}"], n[f"eff_{key}"] = kernel, eff
            print(f"kernel overhead {key} {kernel * 1e6:.2f} us   efficiency {key} {eff:.3f}")
        prec = "int8" if int8 else "fp32"
        n[f"half_rows_{prec}"] = half_rows(int8, per_op, call, n[f"kernel_dense_{prec}"])
        print(f"gemm half rows {prec} {n[f'half_rows_{prec}']:.1f}")
    if litert:  # the LiteRT (XNNPACK) runtime, through edgeq's tflite target
        lite = conv_numbers(p8, True, per_op, None, target="tflite")
        n["litert_call"] = lite.pop("call")
        print(f"litert call overhead {n['litert_call'] * 1e6:.2f} us")
        for key, (kernel, eff) in lite.items():
            n[f"litert_kernel_{key}"], n[f"litert_eff_{key}"] = kernel, eff
            print(f"litert kernel overhead {key} {kernel * 1e6:.2f} us   efficiency {key} {eff:.3f}")
        n["litert_half_rows_int8"] = half_rows(True, per_op, n["litert_call"], n["litert_kernel_dense_int8"], "tflite")
        print(f"litert gemm half rows int8 {n['litert_half_rows_int8']:.1f}")
    n["eff_recurrent_fp32"] = recurrent_efficiency(p32, call)
    print(f"efficiency recurrent_fp32 {n['eff_recurrent_fp32']:.3f}")
    if litert:
        n["litert_eff_recurrent_fp32"] = recurrent_efficiency(p32, n["litert_call"], "tflite")
        print(f"litert efficiency recurrent_fp32 {n['litert_eff_recurrent_fp32']:.3f}")
        # LiteRT's float kernels (XNNPACK): what a plan keeps float runs on them
        lite_float = conv_numbers(p32, False, per_op, n["litert_call"], target="tflite")
        lite_float.pop("call")
        for key, (kernel, eff) in lite_float.items():
            n[f"litert_kernel_{key}"], n[f"litert_eff_{key}"] = kernel, eff
            print(f"litert kernel overhead {key} {kernel * 1e6:.2f} us   efficiency {key} {eff:.3f}")
        n["litert_half_rows_fp32"] = half_rows(False, per_op, n["litert_call"], n["litert_kernel_dense_fp32"], "tflite")
        print(f"litert gemm half rows fp32 {n['litert_half_rows_fp32']:.1f}")
        t, count = elementwise_seconds("tflite")  # per op of the chain
        n["litert_eff_elementwise"] = count / (p32 * max(t - n["litert_call"] / 7 - n["litert_kernel_dense_int8"], 1e-9))
        print(f"litert efficiency elementwise {n['litert_eff_elementwise']:.3f}")
    t, count = elementwise_seconds()
    n["eff_elementwise"] = count / (p32 * max(t - call - per_op, 1e-9))
    print(f"efficiency elementwise {n['eff_elementwise']:.3f}")
    return n


def cache_units(n: dict, how: str) -> dict:
    """The measured numbers as the host profile's units, each with its source (host_numbers.cache_text)."""
    def num(value, unit, what):
        return {"value": float(f"{value:.4g}"), "unit": unit, "source": f"{how}: {what}"}

    shared = {"peak_ops.fp32": num(n["peak_fp32"] / 1e9, "GOPS", "numpy float32 256^3 matmul (OpenBLAS), fastest of 300"),
              "peak_ops.int8": num(n["peak_int8"] / 1e9, "GOPS", "onnxruntime MatMulInteger 256^3 (MLAS u8s8), fastest of 300"),
              "bandwidth": num(n["dram"] / 1e9, "GB/s", "numpy copy of 48 MiB (read + write bytes / time)"),
              "onchip_bandwidth": num(n["onchip"] / 1e9, "GB/s", "numpy copies of 128 KiB .. 32 MiB, the fastest rate (in cache)")}
    if "onchip_bytes" in n:
        shared["onchip_bytes"] = num(n["onchip_bytes"] / 2**20, "MiB", "the largest source + copy working set numpy copies at "
                                     "half the fastest rate or more (L2 and the share of L3 this core gets)")
    elif l2 := l2_bytes():
        shared["onchip_bytes"] = {"value": l2 / 2**20, "unit": "MiB", "source": "this CPU's L2 per core, from /sys/devices/system/cpu/cpu0/cache"}
    cpu = {**shared, "op_overhead": num(n["per_op"] * 1e6, "us", "onnxruntime chain of 41 Neg ops minus a chain of 1, per op"),
           "call_overhead": num(n["call"] * 1e6, "us", "a 1-op onnxruntime model through edgeq's OrtRunner.run, fastest of 2000 calls"),
           "efficiency.elementwise": num(n["eff_elementwise"], "ratio", "onnxruntime GlobalAveragePool, elements / time vs the fp32 matmul rate")}
    for key in ("dense_fp32", "depthwise_fp32", "dense_int8", "depthwise_int8"):
        model = "edgeq int8 ORT artifact" if key.endswith("int8") else "float model"
        cpu[f"kernel_overhead.{key}"] = num(n[f"kernel_{key}"] * 1e6, "us", f"21 tiny convs minus 1, per conv ({model})")
        cpu[f"efficiency.{key}"] = num(n[f"eff_{key}"], "ratio", f"chains of 6 Conv+ReLU ({model}), work / busy time vs the peak rate")
    for prec in ("fp32", "int8"):
        model = "edgeq int8 ORT artifact" if prec == "int8" else "float model"
        cpu[f"gemm_half_rows.{prec}"] = num(n[f"half_rows_{prec}"], "rows", f"1-D chains of 256-channel 1x1 convs at 4 vs 49 positions ({model})")
    cpu["efficiency.recurrent_fp32"] = num(n["eff_recurrent_fp32"], "ratio", "onnxruntime LSTM, 32 steps, 256 hidden, batch 1, vs the fp32 matmul rate")
    litert = dict(shared)
    if "litert_call" in n:
        litert["call_overhead"] = num(n["litert_call"] * 1e6, "us", "LiteRT 1-conv int8 artifact through edgeq's tflite runner, minus its conv and boundary kernels")
        litert["op_overhead"] = num(n["litert_kernel_dense_int8"] * 1e6, "us", "LiteRT per-conv fixed cost (21 tiny int8 convs minus 1), used for every LiteRT kernel")
        for key in ("dense_int8", "depthwise_int8"):
            litert[f"kernel_overhead.{key}"] = num(n[f"litert_kernel_{key}"] * 1e6, "us", "21 tiny convs minus 1, per conv (edgeq int8 tflite artifact on LiteRT)")
            litert[f"efficiency.{key}"] = num(n[f"litert_eff_{key}"], "ratio", "chains of 6 Conv+ReLU as edgeq int8 tflite artifacts on LiteRT, vs the int8 matmul rate")
        litert["gemm_half_rows.int8"] = num(n["litert_half_rows_int8"], "rows",
                                            "1-D chains of 256-channel 1x1 convs at 4 vs 49 positions (edgeq int8 tflite artifacts on LiteRT)")
        litert["efficiency.recurrent_fp32"] = num(n["litert_eff_recurrent_fp32"], "ratio",
                                                  "LiteRT UNIDIRECTIONAL_SEQUENCE_LSTM (edgeq's tflite artifact of the same LSTM), vs the fp32 matmul rate")
        litert["gemm_half_rows.fp32"] = num(n["litert_half_rows_fp32"], "rows",
                                            "1-D chains of 256-channel 1x1 convs at 4 vs 49 positions (edgeq float tflite artifacts on LiteRT)")
        for key in ("dense_fp32", "depthwise_fp32"):
            litert[f"kernel_overhead.{key}"] = num(n[f"litert_kernel_{key}"] * 1e6, "us", "21 tiny convs minus 1, per conv (edgeq float tflite artifact on LiteRT)")
            litert[f"efficiency.{key}"] = num(n[f"litert_eff_{key}"], "ratio", "chains of 6 Conv+ReLU as edgeq float tflite artifacts on LiteRT, vs the fp32 matmul rate")
        litert["efficiency.elementwise"] = num(n["litert_eff_elementwise"], "ratio",
                                               "a chain of 6 Add/Mul + Relu as an edgeq float tflite artifact on LiteRT, elements / time per op vs the fp32 matmul rate")
    return {"cpu": cpu, "litert": litert}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--litert", action="store_true", help="also measure LiteRT (XNNPACK) through edgeq's tflite target")
    ap.add_argument("--write-cache", action="store_true", help="store the numbers as this CPU's host calibration")
    args = ap.parse_args()
    print(f"# measured on this CPU: {describe()}; onnxruntime {ort.__version__}, numpy {np.__version__}; 1 thread")
    print(f"# cache key: {cache_key()}")
    n = measure(args.litert)
    if args.write_cache:
        from edgeq.host_numbers import write_cache

        how = (f"measured on this CPU ({cpu_info()['model']}) with bench/calibrate_host.py"
               f"{' --litert' if args.litert else ''}, onnxruntime {ort.__version__}, 1 thread")
        path = write_cache(cache_units(n, how), measured=time.strftime("%Y-%m-%d %H:%M:%S %Z"))
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
