"""Cross-checks: the artifact's outputs against a second way of running the same artifact or plan.

Verify compares the artifact with the float model; that says how much quantization costs, not
whether the runtime computes what the plan says. A target adds checks here (`cross_checks` in
its module): LiteRT's built-in kernels beside XNNPACK, the plan's QDQ simulation beside the
integer kernels, Core ML itself beside the MIL reference executor. Differences are given in
the output's LSB (its quantization step in the plan) where the output has one (edgeq/compare.py
lsb_agreement, which the targets call).
"""

from __future__ import annotations

SAMPLES = 64  # cross-checks run on the first samples of the validation data: a second runtime is slow


def first(arrays: dict, n: int = SAMPLES) -> dict:
    return {k: v[:n] for k, v in arrays.items()}
