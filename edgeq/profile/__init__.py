"""Profile: bytes, and latency measured on the real runtime (device estimates plug in here)."""

from __future__ import annotations

import time

import numpy as np


def measure_latency(runner, feeds: dict, warmup: int = 5, runs: int = 50, budget_s: float = 5.0) -> dict:
    """Milliseconds per run: warm-up first, then up to `runs` timed runs within a time budget."""
    for _ in range(warmup):
        runner.run(feeds)
    times = []
    deadline = time.perf_counter() + budget_s
    while len(times) < runs and (len(times) < 5 or time.perf_counter() < deadline):
        t0 = time.perf_counter()
        runner.run(feeds)
        times.append((time.perf_counter() - t0) * 1e3)
    t = np.asarray(times)
    return {"p50": float(np.percentile(t, 50)), "p90": float(np.percentile(t, 90)), "p99": float(np.percentile(t, 99)), "runs": len(t)}


def one_sample(dataset) -> dict:
    return {k: v[:1] for k, v in dataset.arrays.items()}
