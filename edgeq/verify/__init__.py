"""Verify: run the float graph and the artifact on the same inputs and compare.

Per output: SQNR (dB), cosine similarity, max abs error; top-1 agreement when an output
looks like class scores; top-1 accuracy of both when the data holds labels.
"""

from __future__ import annotations

import numpy as np

from edgeq.quant.linear import sqnr_db


def looks_like_scores(ref: np.ndarray) -> bool:
    """[N, C] with C > 1 (or [N, C, 1, 1]): class scores, so argmax means something."""
    squeezed = ref.reshape(ref.shape[0], -1) if ref.ndim >= 2 else None
    return squeezed is not None and squeezed.shape[1] > 1 and all(d == 1 for d in ref.shape[2:])


def compare_output(ref: np.ndarray, got: np.ndarray) -> dict:
    ref64, got64 = ref.astype(np.float64).ravel(), got.astype(np.float64).ravel()
    denom = np.linalg.norm(ref64) * np.linalg.norm(got64)
    cos = float(ref64 @ got64 / denom) if denom > 0 else float(np.array_equal(ref64, got64))
    sq = sqnr_db(ref64, got64)
    return {
        "sqnr_db": round(sq, 3) if np.isfinite(sq) else 999.0,
        "cosine": round(cos, 6),
        "max_abs_err": float(np.max(np.abs(ref64 - got64))) if ref64.size else 0.0,
    }


def compare(ref_outputs: dict, quant_outputs: dict, labels: np.ndarray | None = None) -> dict:
    """The verify block of the report: worst output first-class, every output listed."""
    per_output = {}
    result: dict = {}
    for name, ref in ref_outputs.items():
        got = quant_outputs[name]
        entry = compare_output(ref, got)
        if looks_like_scores(ref):
            r, q = ref.reshape(len(ref), -1).argmax(1), got.reshape(len(got), -1).argmax(1)
            entry["top1_agreement"] = float(np.mean(r == q))
            if labels is not None and len(labels) == len(r):
                entry["accuracy_float"] = float(np.mean(r == labels))
                entry["accuracy_quant"] = float(np.mean(q == labels))
        per_output[name] = entry
    worst = min(per_output.values(), key=lambda e: e["sqnr_db"])
    result.update({k: worst[k] for k in ("sqnr_db", "cosine", "max_abs_err")})
    first_scores = next((e for e in per_output.values() if "top1_agreement" in e), None)
    result["top1_agreement"] = first_scores["top1_agreement"] if first_scores else None
    if first_scores and "accuracy_float" in first_scores:
        result["accuracy_float"] = first_scores["accuracy_float"]
        result["accuracy_quant"] = first_scores["accuracy_quant"]
    result["outputs"] = per_output
    return result


SQNR_WARN_DB = 20.0  # output SQNR below this: the artifact differs visibly from float
METRIC_DROP_WARN = 0.02  # accuracy (or top-1 agreement) lost beyond this: 2 points
SLOWER_WARN = 1.10  # int8 p50 above float p50 by more than this (timing noise stays below)


def quality_warnings(target: str, verify: dict, float_p50: float, quant_p50: float, timed: bool = True) -> list[str]:
    """What a build script must not miss: a poor artifact, or one slower than float, and what to try.
    `timed` is False where the host runs a reference executor, not the target's runtime."""
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
        out.append(f"{target}: the quantized artifact runs {quant_p50 / float_p50:.2f}x slower than float on this host "
                   f"({quant_p50:.3g} vs {float_p50:.3g} ms p50): Q/DQ around ops without integer kernels or wide "
                   "activations cost more than int8 saves; try --act-bits 8, or profile it on the device it is for")
    return out
