"""Comparing two runs of a model's outputs: SQNR, cosine, max error, top-1, and agreement in LSBs.

Verify compares the artifact with the float model (`compare`); a target's cross-checks compare it
with a second runtime (`lsb_agreement`, in lower/<target>). Both stages use these, so they sit in
the core, below the lowerings.
"""

from __future__ import annotations

import numpy as np


def sqnr_db(ref: np.ndarray, approx: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio in dB (inf when exact)."""
    ref, approx = np.asarray(ref, np.float64), np.asarray(approx, np.float64)
    noise = float(np.sum((ref - approx) ** 2))
    signal = float(np.sum(ref**2))
    if noise == 0.0:
        return float("inf")
    return 10.0 * np.log10(max(signal, 1e-30) / noise)


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
