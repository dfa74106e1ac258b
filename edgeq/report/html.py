"""report.html: one self-contained page beside report.json, charts as inline SVG.

Per target: bytes / latency / energy / accuracy side by side, bits per layer (plan.json),
error per layer when the plan measured it, where each op runs on each device, and the
size-accuracy points of the bit allocation (report["tradeoff"]) when present. A few lines of
inline script only record errors into the page (#js-errors) and count the rendered charts,
so a headless browser's --dump-dom shows both.
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path

from edgeq.fileio import write_text
from edgeq.report.svg import PALETTE, hbars, scatter

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1100px;color:#222;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:15px;margin:18px 0 6px}table{border-collapse:collapse;margin:8px 0}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
.muted{color:#777}.warn{color:#a40}.est{background:#fff7e0;border:1px solid #f0d890;padding:6px 10px;border-radius:4px}
svg.chart{display:block;margin:10px 0;max-width:100%;height:auto}svg .title{font-weight:600;font-size:14px}
svg .label,svg .legend{font-size:12px;fill:#333}svg .value{font-size:11px;fill:#555}svg .note{font-size:11px;fill:#777}
svg .axis{stroke:#999}.unit-cpu{background:#e8f0fa}.unit-gpu{background:#fdeedd}.unit-ane,.unit-npu{background:#e4f3e1}
details{margin:6px 0}code{background:#f4f4f4;padding:0 3px}
"""
SCRIPT = """
window.addEventListener('error', function (e) {
  document.getElementById('js-errors').textContent += (e.message || 'error') + '\\n';
});
window.addEventListener('load', function () {
  var charts = document.querySelectorAll('svg.chart'), drawn = 0;
  for (var i = 0; i < charts.length; i++) { var b = charts[i].getBBox(); if (b.width > 0 && b.height > 0) drawn++; }
  document.body.setAttribute('data-charts', String(charts.length));
  document.body.setAttribute('data-charts-rendered', String(drawn));
});
"""
TERMS = ["mac", "other_ops", "dram", "onchip", "active_power"]


def _kib(n) -> str:
    return f"{n / 1024:,.1f} KiB" if isinstance(n, int | float) else "-"


def _pct(x) -> str:
    return f"{100 * x:.2f} %" if isinstance(x, int | float) else "-"


def _num(x, fmt="{:.3g}") -> str:
    return fmt.format(x) if isinstance(x, int | float) else "-"


def _table(head: list[str], rows: list[list[str]], raw_cells: bool = False) -> str:
    th = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c if raw_cells else escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


def _summary(report: dict) -> str:
    rows = []
    for t in report["targets"]:
        v, lat, prof = t.get("verify", {}), t.get("latency_ms", {}), t.get("profile", {})
        pred = prof.get("host_predicted_vs_measured", {}).get("quant", {})
        rows.append([t["target"], _kib(t.get("bytes")), _pct(t["bytes"] / t["float_bytes"]) if t.get("float_bytes") else "-",
                     _num(t.get("avg_weight_bits"), "{:.2f}"), _num(v.get("sqnr_db"), "{:.1f} dB"), _num(v.get("cosine"), "{:.4f}"),
                     _pct(v.get("top1_agreement")), _pct(v.get("accuracy_float")), _pct(v.get("accuracy_quant")),
                     _num(lat.get("float_p50"), "{:.3f}"), _num(lat.get("quant_p50"), "{:.3f}"), _num(pred.get("predicted_ms"), "{:.3f}"),
                     _num(lat.get("quant_load"), "{:.1f}")])
    return _table(["target", "bytes", "of float", "avg bits", "SQNR", "cosine", "top-1 agree", "acc float", "acc quant",
                   "host float p50 ms", "host quant p50 ms", "host predicted ms", "load ms"], rows)


def _overview_charts(report: dict) -> list[str]:
    ts = report["targets"]
    if not ts:
        return []
    charts = [hbars("size", "Bytes on disk (KiB)", [("float model", [ts[0]["float_bytes"] / 1024])]
                    + [(t["target"], [t["bytes"] / 1024]) for t in ts], "KiB")]
    rows = []
    for t in ts:
        lat = t.get("latency_ms", {})
        pred = t.get("profile", {}).get("host_predicted_vs_measured", {})
        rows.append((t["target"], [lat.get("float_p50"), lat.get("quant_p50"), pred.get("quant", {}).get("predicted_ms")]))
    charts.append(hbars("host-latency", "Host latency p50, batch 1 (ms): measured float, measured quantized, cost-model prediction",
                        rows, "ms", ["float measured", "quantized measured", "quantized predicted"]))
    if any(t.get("verify", {}).get("accuracy_float") is not None for t in ts):
        charts.append(hbars("accuracy", "Top-1 accuracy on the validation set (%)",
                            [(t["target"], [100 * (t["verify"].get("accuracy_float") or 0), 100 * (t["verify"].get("accuracy_quant") or 0)])
                             for t in ts], "%", ["float", "quantized"]))
    else:
        charts.append(hbars("fidelity", "SQNR of the quantized outputs vs float (dB, higher is closer)",
                            [(t["target"], [max(t.get("verify", {}).get("sqnr_db") or 0, 0)]) for t in ts], "dB"))
    return charts


def _device_section(t: dict) -> str:
    prof = t.get("profile")
    if not prof:
        return ""
    devs = {d: e for d, e in prof.get("devices", {}).items() if "quant" in e}
    skipped = {d: e["skipped"] for d, e in prof.get("devices", {}).items() if "skipped" in e}
    name = t["target"]
    parts = [f"<h3>{escape(name)}: estimated on devices</h3>",
             f'<p class="est">{escape(prof.get("label", "estimate"))}. Rate for battery per hour: {_num(prof.get("rate_per_s"), "{:g}")}/s.</p>']
    if devs:
        parts.append(hbars(f"device-latency-{name}", f"{name}: estimated latency per inference (ms)",
                           [(d, [e["float"]["latency_ms"], e["quant"]["latency_ms"]]) for d, e in devs.items()], "ms", ["float", "quantized"]))
        rows = []
        for d, e in devs.items():
            for kind in ("float", "quant"):
                terms = e[kind]["energy_terms_mj"]
                rows.append((f"{d} {'float' if kind == 'float' else 'quantized'}", [1e3 * (terms.get(k) or 0) for k in TERMS]))
        parts.append(hbars(f"energy-{name}", f"{name}: estimated energy per inference (µJ), by term", rows, "µJ",
                           ["MACs", "other ops", "DRAM bytes", "on-chip bytes", "active power × time"], stacked=True))
        bat = [(d, [e["float"]["battery"].get("pct_per_hour"), e["quant"]["battery"].get("pct_per_hour")]) for d, e in devs.items()
               if e["quant"]["battery"].get("pct_per_hour") is not None]
        if bat:
            parts.append(hbars(f"battery-{name}", f"{name}: battery used per hour at {prof.get('rate_per_s'):g} inferences/s (% of battery)",
                               bat, "%", ["float", "quantized"]))
        rows = []
        for d, e in devs.items():
            q, f = e["quant"], e["float"]
            rows.append([d, q["unit"], _num(f["latency_ms"], "{:.4g}"), _num(q["latency_ms"], "{:.4g}"),
                         _num(1e3 * f["energy_mj"], "{:.4g}"), _num(1e3 * q["energy_mj"], "{:.4g}"),
                         _num(q["battery"].get("pct_per_1000"), "{:.3g}"), _num(q["battery"].get("pct_per_hour"), "{:.3g}"),
                         _num(q["battery"].get("duty_cycle"), "{:.3g}"), str(len(q.get("fallback_ops", [])))])
        parts.append(_table(["device", "unit", "float ms", "quant ms", "float µJ", "quant µJ", "% battery / 1000",
                             "% battery / hour", "duty cycle", "ops off main unit"], rows))
    if skipped:
        parts.append("<p class='muted'>" + "<br>".join(escape(f"{d}: {s}") for d, s in skipped.items()) + "</p>")
    mem = prof.get("memory", {})
    if mem:
        q, f = mem.get("quant", {}), mem.get("float", {})
        rows = [["peak activations", _kib(f.get("peak_activation_bytes")), _kib(q.get("peak_activation_bytes"))],
                ["weights", _kib(f.get("weight_bytes")), _kib(q.get("weight_bytes"))],
                ["peak total", _kib(f.get("peak_bytes")), _kib(q.get("peak_bytes"))]]
        if mem.get("measured_arena_bytes") is not None:
            rows.append(["measured arena (TFLM)", "-", _kib(mem["measured_arena_bytes"])])
        parts.append("<h3>Memory (tensor liveness over the execution order)</h3>" + _table(["", "float", "quantized"], rows))
    parts.append(_ops_section(name, prof))
    return "".join(parts)


def _ops_section(name: str, prof: dict) -> str:
    ops = prof.get("ops", [])
    if not ops:
        return ""
    devices = sorted({d for o in ops for d in o.get("unit", {})})
    host = "host_x86_64" if "host_x86_64" in devices else (devices[0] if devices else None)
    parts = []
    if host:
        top = sorted((o for o in ops if o["ms"].get(host)), key=lambda o: -o["ms"][host])[:16]
        parts.append(hbars(f"op-time-{name}", f"{name}: estimated time per op on {host} (ms, slowest 16)",
                           [(o["name"], [o["ms"][host]]) for o in top], "ms"))
    rows = []
    for o in ops:
        cells = [escape(o["name"]), escape(o["op"]), escape(o["kind"]), escape(o["precision"]), f"{o['macs']:,}", f"{o['weight_bytes']:,}"]
        cells += [f'<span class="unit-{escape(o["unit"][d])}">{escape(o["unit"][d])}</span>' if d in o["unit"] else "-" for d in devices]
        rows.append(cells)
    table = _table(["op", "type", "kind", "precision", "MACs", "weight bytes"] + [f"unit on {d}" for d in devices], rows, raw_cells=True)
    parts.append(f"<details open><summary>Where each op runs ({len(ops)} ops)</summary>{table}</details>")
    return "".join(parts)


def _plan_section(plan: dict | None) -> str:
    if not plan or not plan.get("weights"):
        return "<h2>Bits per layer</h2><p class='muted'>plan.json not found beside the report.</p>"
    weights = plan["weights"]
    rows = [(w.get("node") or k, [w["bits"] if w.get("bits") else 32]) for k, w in weights.items()]
    top = 32 if any(v[0] > 8 for _, v in rows) else 8
    parts = ["<h2>Bits per layer</h2>", hbars("bits-per-layer", "Weight bits per layer (32 = kept float)", rows, "bits", scale_max=top)]
    sens = (plan.get("budget") or {}).get("sensitivity") or {}
    if sens:
        rows = []
        for k, w in weights.items():
            per = sens.get(k, {})
            v = per.get(str(w.get("bits"))) if w.get("bits") else 0.0
            if v is not None:
                rows.append((w.get("node") or k, [float(v)]))
        parts += ["<h2>Error per layer</h2>", hbars("error-per-layer", "Measured output error of each layer at its chosen bits (sensitivity)", rows, "")]
    else:
        parts.append("<h2>Error per layer</h2><p class='muted'>Not measured for this plan (no bit allocation ran): compile "
                     "with a size or accuracy budget to measure each layer's sensitivity.</p>")
    return "".join(parts)


def _tradeoff_section(report: dict) -> str:
    pts = report.get("tradeoff")
    if isinstance(pts, dict):
        pts = pts.get("points")
    if not isinstance(pts, list) or not pts or not all(isinstance(p, dict) for p in pts):
        return ""
    keys = [k for k, v in pts[0].items() if isinstance(v, int | float) and not isinstance(v, bool)]
    xk = next((k for k in keys if "byte" in k or "bits" in k or "size" in k), keys[0] if keys else None)
    yk = next((k for k in keys if k != xk and any(s in k for s in ("acc", "sqnr", "err", "loss", "agree"))), None)
    if xk is None or yk is None:
        return ""
    points = [(float(p[xk]), float(p[yk]), str(p.get("label", p.get("name", "")))) for p in pts if xk in p and yk in p]
    return "<h2>Size and accuracy explored by the bit allocation</h2>" + scatter("tradeoff", f"{yk} vs {xk}", points, xk, yk)


def _assumed_section(report: dict) -> str:
    seen: dict[str, list] = {}
    for t in report["targets"]:
        for d, items in t.get("profile", {}).get("assumed", {}).items():
            seen.setdefault(d, items)
    if not seen:
        return ""
    parts = ["<h2>Assumed device numbers</h2><p>These numbers have no published source; the estimates above use them.</p>"]
    for d, items in seen.items():
        rows = [[i["number"].split(".", 1)[-1], f"{i['value']:g} {i['unit']}", i["reason"]] for i in items]
        parts.append(f"<details><summary>{escape(d)}: {len(items)} assumed</summary>{_table(['number', 'value', 'why'], rows)}</details>")
    return "".join(parts)


def render_html(report: dict, plan: dict | None = None) -> str:
    m = report.get("model", {})
    warnings = "".join(f"<p class='warn'>WARNING: {escape(w)}</p>" for w in report.get("warnings", []))
    note = report.get("validation", {}).get("note")
    body = [
        f"<h1>edgeq report: {escape(str(m.get('path', '')))}</h1>",
        f"<p class='muted'>edgeq {escape(str(report.get('edgeq_version', '')))} · {m.get('params', 0):,} params · "
        f"model sha256 {escape(str(m.get('sha256', ''))[:16])}…</p>",
        warnings, f"<p class='muted'>{escape(note)}</p>" if note else "",
        "<h2>Targets side by side</h2>", _summary(report), *_overview_charts(report),
        "<h2>Devices: latency, energy, battery (estimates)</h2>",
        *[_device_section(t) for t in report["targets"]],
        _plan_section(plan), _tradeoff_section(report), _assumed_section(report),
        '<pre id="js-errors" class="warn"></pre>',
    ]
    return (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>edgeq report</title>"
            f"<style>{CSS}</style><script>{SCRIPT}</script></head><body>{''.join(body)}</body></html>\n")


def write_html(report: dict, out_dir: Path) -> Path:
    """report.html beside report.json (plan.json, if already written there, adds bits per layer)."""
    out_dir = Path(out_dir)
    plan_path = out_dir / "plan.json"
    plan = json.loads(plan_path.read_text()) if plan_path.is_file() else None
    path = out_dir / "report.html"
    write_text(path, render_html(report, plan))
    return path


__all__ = ["render_html", "write_html", "PALETTE"]
