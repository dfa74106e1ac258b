"""Report: report.json (the contract build scripts read) and the terminal table."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeq.fileio import dumps_json, write_text
from edgeq.profile.text import device_lines


def write_report(report: dict, out_dir: Path, root: Path | None = None) -> Path:
    """report.json in out_dir; with root (the output folder the files end up in), every artifact path
    in it is written relative to root, so the folder can be moved and a build script joins it with its own path."""
    path = Path(out_dir) / "report.json"
    report, _ = finite_copy(relative_paths(report, root) if root is not None else report)  # run_compile warned
    write_text(path, dumps_json(report))
    return path


def finite_copy(report):
    """A copy of report with every NaN/inf replaced by None, and one warning per replaced number (at most
    ten, then a count). A metric that overflowed (values near float32's limit) is written as null rather
    than breaking the JSON."""
    import math

    replaced: list[str] = []

    def walk(v, path: str):
        if isinstance(v, dict):
            return {k: walk(x, f"{path}.{k}" if path else str(k)) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [walk(x, f"{path}[{i}]") for i, x in enumerate(v)]
        if isinstance(v, float | np.floating) and not math.isfinite(v):
            replaced.append(f"{path} was {v}")
            return None
        return v

    clean = walk(report, "")
    warnings = [f"report: {p}, written as null (the value overflowed float32)" for p in replaced[:10]]
    if len(replaced) > 10:
        warnings.append(f"report: {len(replaced) - 10} more non-finite numbers written as null")
    return clean, warnings


def relative_paths(report: dict, root: Path) -> dict:
    """A copy of report whose per-target paths under root (artifact, files, ort_file, tflm_manifest,
    plan_file, ...) are relative to root, in POSIX form."""
    root = Path(root)

    def rel(v):
        if isinstance(v, dict):
            return {k: rel(x) for k, x in v.items()}
        if isinstance(v, list):
            return [rel(x) for x in v]
        if isinstance(v, str) and v.startswith(str(root)) and Path(v).is_relative_to(root):
            return Path(v).relative_to(root).as_posix()
        return v

    return {**report, "targets": rel(report.get("targets", []))}


def _kib(n) -> str:
    return f"{n / 1024:,.1f} KiB" if n is not None else "-"


def _pct(x) -> str:
    return f"{100 * x:.2f} %" if x is not None else "-"


def cross_check_text(c: dict) -> str:
    if "skipped" in c or "error" in c:
        return f"not run: {c.get('skipped') or c['error']}"[:100]
    if "vs_reference_executor" in c:  # Core ML itself: fidelity to float, then distance from the executor
        return f"SQNR {c['sqnr_db']:.1f} dB; {cross_check_text(c['vs_reference_executor'])} from the executor"
    if c.get("max_lsb") is not None:
        return f"max {c['max_lsb']:.2f} LSB, {100 * c['within_1_lsb']:.2f} % within 1 LSB ({c['samples']} samples)"
    return f"max abs diff {c['max_abs_diff']:.3g} ({c['samples']} samples)"


def table(report: dict) -> str:
    """A float-vs-quantized table per target, plus warnings and notes."""
    lines = [f"edgeq {report['edgeq_version']}  model {report['model']['path']}  "
             f"({report['model']['params']:,} params)"]
    for t in report["targets"]:
        v, lat = t["verify"], t["latency_ms"]
        rows = [
            ("", "float", t["target"]),
            ("bytes", _kib(t["float_bytes"]), f"{_kib(t['bytes'])} ({100 * t['bytes'] / t['float_bytes']:.1f} %)"),
            ("avg weight bits", "32", f"{t['avg_weight_bits']:.2f}"),
            ("SQNR", "-", f"{v['sqnr_db']:.1f} dB  (cosine {v['cosine']:.4f})"),
        ]
        if v.get("top1_agreement") is not None:
            rows.append(("top-1 agreement", "-", _pct(v["top1_agreement"])))
        if v.get("accuracy_float") is not None:
            rows.append(("top-1 accuracy", _pct(v["accuracy_float"]), _pct(v["accuracy_quant"])))
        for name, c in (v.get("cross_checks") or {}).items():
            rows.append((f"vs {name.replace('_', ' ')}", "-", cross_check_text(c)))
        rows.append(("latency p50 (host)", f"{lat['float_p50']:.3f} ms", f"{lat['quant_p50']:.3f} ms  ({lat['float_p50'] / lat['quant_p50']:.2f}x)"))
        w0 = max(len(r[0]) for r in rows)
        w1 = max(len(r[1]) for r in rows)
        lines.append("")
        lines += [f"  {a:<{w0}}  {b:>{w1}}  {c}" for a, b, c in rows]
        lines.append(f"  -> {t['artifact']}")
        lines += device_lines(t.get("profile"))
        notes = t.get("notes", [])
        lines += [f"  note: {n}" for n in notes[:3]]
        if len(notes) > 3:
            lines.append(f"  (+{len(notes) - 3} more notes in report.json)")
    if report["validation"].get("note"):
        lines.append(f"\nnote: {report['validation']['note']}")
    lines += [f"WARNING: {w}" for w in report.get("warnings", [])]
    return "\n".join(lines)
