"""int8 vs float latency on onnxruntime, side by side in one run.

    python bench/ort_latency.py [MODEL CALIB VAL]

Compiles the model for the ort target, then times the float graph and the int8 artifact
under the same session options, interleaved, at batch 1 and a larger batch, for 1 and 2
threads. Prints p50 latencies and the float/int8 ratio (>1 means int8 is faster).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from edgeq.pipeline import Options, prepare, run_compile
from edgeq.quant.data import load_dataset
from edgeq.runners import OrtRunner

ROOT = Path(__file__).resolve().parents[1]


def p50_interleaved(runners: list, feeds: dict, rounds: int = 30, inner: int = 5) -> list[float]:
    """Alternate between runners so machine noise hits both alike; ms per run."""
    times = [[] for _ in runners]
    for r in runners:
        for _ in range(5):
            r.run(feeds)
    for _ in range(rounds):
        for k, r in enumerate(runners):
            t0 = time.perf_counter()
            for _ in range(inner):
                r.run(feeds)
            times[k].append((time.perf_counter() - t0) * 1e3 / inner)
    return [float(np.median(t)) for t in times]


def main(model: str, calib: str, val: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        opts = Options(targets=["ort"], calib=calib, val=val, out=Path(d), latency_runs=5, ort_format=False)
        report = run_compile(model, opts)
        artifact = report["targets"][0]["artifact"]
        graph = prepare(model, Options())
        data = load_dataset(val, graph, "--val")
        print(f"model {model}: float {report['targets'][0]['float_bytes']:,} B, int8 {report['targets'][0]['bytes']:,} B")
        print(f"{'batch':>5} {'threads':>7} {'float p50 ms':>13} {'int8 p50 ms':>12} {'float/int8':>10}")
        for threads in (1, 2):
            f = OrtRunner(graph.serialize(), threads=threads)
            q = OrtRunner(artifact, threads=threads)
            for batch in (1, 32):
                feeds = {k: v[:batch] for k, v in data.arrays.items()}
                tf, tq = p50_interleaved([f, q], feeds)
                print(f"{batch:>5} {threads:>7} {tf:>13.3f} {tq:>12.3f} {tf / tq:>10.2f}")


if __name__ == "__main__":
    args = sys.argv[1:] or [str(ROOT / "samples" / f) for f in ("fashion_cnn.onnx", "fashion_calib.npz", "fashion_val.npz")]
    main(*args)
