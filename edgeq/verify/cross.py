"""Cross-checks: the artifact's outputs against a second way of running the same artifact or plan.

Verify compares the artifact with the float model; that says how much quantization costs, not
whether the runtime computes what the plan says. A target adds checks here (`cross_checks` in
its module): LiteRT's built-in kernels beside XNNPACK, the plan's QDQ simulation beside the
integer kernels, Core ML itself beside the MIL reference executor. Differences are given in
the output's LSB (its quantization step in the plan) where the output has one.
"""

from __future__ import annotations

import numpy as np

SAMPLES = 64  # cross-checks run on the first samples of the validation data: a second runtime is slow


def output_lsb(plan, name: str) -> float | None:
    a = plan.activations.get(name) if plan is not None else None
    return float(a.scale) if a is not None and a.bits in (8, 16) and a.scale else None


def lsb_agreement(got: dict, other: dict, plan) -> dict:
    """Max abs difference over all outputs; with quantized outputs also in LSBs and the share of
    elements within 1 LSB (int8 kernels round differently, so 1 LSB is the expected ceiling)."""
    worst, worst_lsb, within, total = 0.0, None, 0, 0
    for name, a in got.items():
        diff = np.abs(np.asarray(a, np.float64) - np.asarray(other[name], np.float64))
        worst = max(worst, float(diff.max()) if diff.size else 0.0)
        lsb = output_lsb(plan, name)
        if lsb:
            steps = diff / lsb
            worst_lsb = max(worst_lsb or 0.0, float(steps.max()) if steps.size else 0.0)
            within += int(np.sum(steps <= 1.001))
            total += steps.size
    out = {"samples": len(next(iter(got.values()))) if got else 0, "max_abs_diff": worst}
    if worst_lsb is not None:
        out.update(max_lsb=round(worst_lsb, 3), within_1_lsb=round(within / max(total, 1), 6))
    return out


def run_check(fn) -> dict:
    """A check that cannot run says why in the report instead of failing the compile."""
    try:
        return fn()
    except Exception as e:  # noqa: BLE001 - reported, not hidden
        return {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"}


def first(arrays: dict, n: int = SAMPLES) -> dict:
    return {k: v[:n] for k, v in arrays.items()}
