"""Terminal rendering of a profile (`edgeq profile` without --json)."""

from __future__ import annotations


def _f(x, fmt: str = "{:.4g}") -> str:
    return fmt.format(x) if isinstance(x, int | float) else "-"


def render_profile(prof: dict) -> str:
    lines = [f"{prof['artifact']}  ({prof['target']}, {'quantized' if prof['quantized'] else 'float'}, "
             f"{prof['bytes'] / 1024:,.1f} KiB, {prof['totals']['macs']:,} MACs)"]
    m = prof.get("host_measured")
    if m:
        lines.append(f"  host measured: p50 {_f(m['p50_ms'])} ms  p90 {_f(m['p90_ms'])} ms  p99 {_f(m['p99_ms'])} ms  "
                     f"({m['runs']} runs, {m['threads']} thread(s)); first load {_f(m['load_ms'])} ms")
        if m.get("note"):
            lines.append(f"    ({m['note']})")
    cmp = prof.get("host_predicted_vs_measured", {}).get("quant")
    if cmp:
        lines.append(f"  host predicted: {_f(cmp['predicted_ms'])} ms  (predicted/measured {_f(cmp['ratio'], '{:.2f}')})")
    mem = prof["memory"]["quant"]
    lines.append(f"  memory: peak activations {mem['peak_activation_bytes'] / 1024:,.1f} KiB + weights "
                 f"{mem['weight_bytes'] / 1024:,.1f} KiB = {mem['peak_bytes'] / 1024:,.1f} KiB")
    lines.append(f"  {prof['label']}")
    head = f"  {'device':<17} {'unit':<5} {'ms':>9} {'µJ':>10} {'%batt/1000':>11} {'%batt/h':>9}   energy terms µJ (MAC / other / DRAM / on-chip / active)"
    lines.append(head)
    for name, d in prof["devices"].items():
        if "skipped" in d:
            lines.append(f"  {name:<17} skipped: {d['skipped']}")
            continue
        q, b = d["quant"], d["quant"]["battery"]
        terms = " / ".join(_f(1e3 * v, "{:.3g}") for v in q["energy_terms_mj"].values())
        lines.append(f"  {name:<17} {q['unit']:<5} {_f(q['latency_ms']):>9} {_f(1e3 * q['energy_mj']):>10} "
                     f"{_f(b.get('pct_per_1000'), '{:.3g}'):>11} {_f(b.get('pct_per_hour'), '{:.3g}'):>9}   {terms}")
    for name, d in prof["devices"].items():
        if d.get("host_numbers"):
            lines.append(f"  {name}: {d['host_numbers']['note']}")
    n_assumed = {d: len(v) for d, v in prof.get("assumed", {}).items() if v}
    if n_assumed:
        lines.append("  assumed numbers used (no published source): "
                     + ", ".join(f"{d} {n}" for d, n in n_assumed.items()) + "  (--json lists them)")
    return "\n".join(lines)


def device_lines(prof: dict | None) -> list[str]:
    """Per-device estimate lines under a target in compile's table (host device omitted: measured above)."""
    if not prof:
        return []
    out = []
    for name, d in prof.get("devices", {}).items():
        if "quant" not in d or name == "host_x86_64":
            continue
        q, f = d["quant"], d["float"]
        pct = q["battery"].get("pct_per_hour")
        out.append(f"  estimate on {name} ({q['unit']}): {_f(q['latency_ms'])} ms (float {_f(f['latency_ms'])}), "
                   f"{_f(1e3 * q['energy_mj'])} µJ/inference (float {_f(1e3 * f['energy_mj'])})"
                   + (f", {_f(pct, '{:.3g}')} % battery/h at {prof['rate_per_s']:g}/s" if pct is not None else ""))
    return out
