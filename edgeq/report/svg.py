"""Inline SVG charts for the HTML report: horizontal bars (plain, grouped or stacked) and scatter.

No JavaScript and nothing from the network: each chart is a string of SVG markup with its
numbers printed beside the bars, so a plot reads without the table next to it.
"""

from __future__ import annotations

import math
from html import escape

PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"]
ROW, LABEL_W, BAR_W, VALUE_W = 22, 230, 420, 120


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    a = abs(v)
    return f"{v:,.0f}" if a >= 100 else f"{v:.3g}" if a >= 0.01 else f"{v:.2e}"


def _legend(names: list[str], colors: list[str], y: int) -> str:
    parts, x = [], LABEL_W
    for name, c in zip(names, colors):
        parts.append(f'<rect x="{x}" y="{y}" width="12" height="12" fill="{c}"/>'
                     f'<text x="{x + 16}" y="{y + 11}" class="legend">{escape(name)}</text>')
        x += 24 + 7 * len(name)
    return "".join(parts)


def hbars(name: str, title: str, rows: list[tuple[str, list[float]]], unit: str, series: list[str] | None = None,
          stacked: bool = False, note: str = "", scale_max: float | None = None) -> str:
    """One row per label; several values per row are grouped bars, or one stacked bar if `stacked`.
    Values spanning more than 50x (e.g. a reference executor beside real runtimes) use a log scale."""
    series = series or [""]
    colors = PALETTE[: len(series)] if len(series) > 1 else [PALETTE[0]]
    totals = [sum(v for v in vals if v) if stacked else max((v for v in vals if v is not None), default=0) for _, vals in rows]
    vmax = scale_max or max(totals, default=0) or 1.0
    positive = [v for _, vals in rows for v in vals if v]
    vmin = min(positive, default=vmax)
    log = not stacked and scale_max is None and vmax / vmin > 50
    if log:
        title += " (log scale)"

    def length(v: float) -> float:
        if log:
            return BAR_W * math.log10(v / vmin * 10) / math.log10(vmax / vmin * 10)
        return BAR_W * v / vmax
    per_row = 1 if stacked else len(series)
    row_h = ROW * per_row + 6
    legend_h = 22 if len(series) > 1 else 0
    height = 34 + legend_h + row_h * len(rows) + (18 if note else 0)
    width = max(LABEL_W + BAR_W + VALUE_W, int(7.6 * len(title)) + 12)  # room for the title
    out = [f'<svg class="chart" data-chart="{escape(name)}" role="img" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">',
           f"<title>{escape(title)}</title>", f'<text x="4" y="18" class="title">{escape(title)}</text>']
    if legend_h:
        out.append(_legend(series, colors, 26))
    y0 = 30 + legend_h
    for i, (label, vals) in enumerate(rows):
        y = y0 + i * row_h
        out.append(f'<text x="{LABEL_W - 6}" y="{y + ROW * per_row / 2 + 4}" class="label" text-anchor="end">{escape(label[:34])}</text>')
        x = LABEL_W
        for k, v in enumerate(vals):
            if v is None:
                continue
            w = max(length(v), 1.0) if v > 0 else 0.0
            yy = y if stacked else y + k * ROW
            out.append(f'<rect class="bar" x="{x:.1f}" y="{yy}" width="{w:.1f}" height="{ROW - 4}" fill="{colors[k % len(colors)]}">'
                       f"<title>{escape(label)} {escape(series[k])}: {_fmt(v)} {escape(unit)}</title></rect>")
            if stacked:
                x += w
            else:
                out.append(f'<text x="{x + w + 4:.1f}" y="{yy + ROW - 8}" class="value">{_fmt(v)} {escape(unit)}</text>')
        if stacked:
            out.append(f'<text x="{x + 4:.1f}" y="{y + ROW - 8}" class="value">{_fmt(totals[i])} {escape(unit)}</text>')
    if note:
        out.append(f'<text x="4" y="{height - 6}" class="note">{escape(note)}</text>')
    out.append("</svg>")
    return "".join(out)


def scatter(name: str, title: str, points: list[tuple[float, float, str]], xlabel: str, ylabel: str) -> str:
    """Points (x, y, label) on linear axes with min/max ticks."""
    width, height, pad = 640, 320, 56
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)

    def px(x):
        return pad + (x - x0) / (x1 - x0) * (width - 2 * pad)

    def py(y):
        return height - pad + 10 - (y - y0) / (y1 - y0) * (height - 2 * pad)

    out = [f'<svg class="chart" data-chart="{escape(name)}" role="img" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">',
           f"<title>{escape(title)}</title>", f'<text x="4" y="18" class="title">{escape(title)}</text>',
           f'<line x1="{pad}" y1="{height - pad + 10}" x2="{width - pad}" y2="{height - pad + 10}" class="axis"/>',
           f'<line x1="{pad}" y1="{pad - 10}" x2="{pad}" y2="{height - pad + 10}" class="axis"/>',
           f'<text x="{width / 2}" y="{height - 8}" class="label" text-anchor="middle">{escape(xlabel)}</text>',
           f'<text x="12" y="{height / 2}" class="label" transform="rotate(-90 12 {height / 2})" text-anchor="middle">{escape(ylabel)}</text>',
           f'<text x="{pad}" y="{height - pad + 26}" class="value" text-anchor="middle">{_fmt(x0)}</text>',
           f'<text x="{width - pad}" y="{height - pad + 26}" class="value" text-anchor="middle">{_fmt(x1)}</text>',
           f'<text x="{pad - 4}" y="{height - pad + 10}" class="value" text-anchor="end">{_fmt(y0)}</text>',
           f'<text x="{pad - 4}" y="{pad - 6}" class="value" text-anchor="end">{_fmt(y1)}</text>']
    for x, y, label in points:
        out.append(f'<circle class="point" cx="{px(x):.1f}" cy="{py(y):.1f}" r="5" fill="{PALETTE[0]}">'
                   f"<title>{escape(label)}: {_fmt(x)}, {_fmt(y)}</title></circle>")
        if label:
            out.append(f'<text x="{px(x) + 7:.1f}" y="{py(y) - 6:.1f}" class="value">{escape(label[:20])}</text>')
    out.append("</svg>")
    return "".join(out)
