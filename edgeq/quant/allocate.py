"""Bit allocation: choose bits per layer under a budget, from per-layer sensitivities.

A multiple-choice knapsack: each layer picks one bit width (cost = its sensitivity, weight =
its size); minimize total cost with total size <= budget. Solved by the Lagrangian
relaxation (each layer minimizes cost + λ·size; bisection on λ) and a greedy fill of what
budget is left. `frontier` lists every plan the Lagrangian reaches, smallest first, which is
what `--max-drop` walks.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable

import numpy as np

from edgeq.errors import EdgeqError

Alloc = dict[str, int]


class BudgetError(EdgeqError):
    """A budget no plan can meet, or a budget/metric argument that cannot be read."""


def _pick(cost: dict, size: dict, lam: float, fixed: Alloc) -> Alloc:
    out = {}
    for n in cost:
        if n in fixed:
            out[n] = fixed[n]
            continue
        out[n] = min(cost[n], key=lambda b, n=n: (cost[n][b] + lam * size[n][b], size[n][b]))
    return out


def total(table: dict, alloc: Alloc) -> float:
    return sum(table[n][b] for n, b in alloc.items())


def smallest(size: dict, fixed: Alloc) -> Alloc:
    return {n: fixed.get(n, min(size[n], key=lambda b, n=n: size[n][b])) for n in size}


def allocate(cost: dict, size: dict, budget: float, fixed: Alloc | None = None, extra: float = 0.0) -> Alloc:
    """Bits per layer with Σ size + extra <= budget and the lowest Σ cost found."""
    fixed = fixed or {}
    low = smallest(size, fixed)
    if total(size, low) + extra > budget:
        raise BudgetError(f"the budget is smaller than the smallest plan the target can hold "
                          f"({(total(size, low) + extra) / 8:,.0f} bytes at the lowest bit widths); raise it")
    lo, hi = 0.0, 1.0
    while total(size, _pick(cost, size, hi, fixed)) + extra > budget and hi < 1e30:
        hi *= 4
    for _ in range(60):
        mid = (lo + hi) / 2
        if total(size, _pick(cost, size, mid, fixed)) + extra <= budget:
            hi = mid
        else:
            lo = mid
    alloc = _pick(cost, size, hi, fixed)
    return greedy_fill(cost, size, alloc, budget - extra, fixed)


def greedy_fill(cost: dict, size: dict, alloc: Alloc, budget: float, fixed: Alloc) -> Alloc:
    """Spend what budget is left on the upgrades with the best cost drop per bit."""
    alloc = dict(alloc)
    while True:
        room = budget - total(size, alloc)
        best = None
        for n, b in alloc.items():
            if n in fixed:
                continue
            for b2 in cost[n]:
                ds, dc = size[n][b2] - size[n][b], cost[n][b] - cost[n][b2]
                if 0 < ds <= room and dc > 0 and (best is None or dc / ds > best[0]):
                    best = (dc / ds, n, b2)
        if best is None:
            return alloc
        alloc[best[1]] = best[2]


def frontier(cost: dict, size: dict, fixed: Alloc | None = None) -> list[Alloc]:
    """Every allocation the Lagrangian reaches, from smallest to largest."""
    fixed = fixed or {}
    seen, out = set(), []
    for lam in np.geomspace(1e-18, 1e6, 400)[::-1]:
        a = _pick(cost, size, float(lam), fixed)
        key = tuple(sorted(a.items()))
        if key not in seen:
            seen.add(key)
            out.append(a)
    return sorted(out, key=lambda a: total(size, a))


# -- budget arguments ------------------------------------------------------------------------
_UNITS = {"": 1, "b": 1, "kb": 1000, "kib": 1024, "mb": 1000**2, "mib": 1024**2, "gb": 1000**3}


def parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    if not m or m.group(2).lower() not in _UNITS:
        raise BudgetError(f"--size-budget '{text}': expected a size like 300KB, 1.5MB or 250000")
    size = float(m.group(1)) * _UNITS[m.group(2).lower()]
    if not size < MAX_SIZE:  # also inf: 400 digits overflow float
        raise BudgetError(f"--size-budget '{text}': at most {MAX_SIZE:.0e} bytes; give the artifact's size, e.g. 300KB")
    return int(size)


MAX_SIZE = 1000**6  # an exabyte: no budget is larger; int(inf) would be an OverflowError


def parse_drop(text) -> float:
    s = str(text).strip()
    try:
        v = float(s[:-1]) / 100 if s.endswith("%") else float(s)
    except ValueError:
        raise BudgetError(f"--max-drop '{text}': expected a fraction like 1% or 0.01") from None
    if not 0 <= v < 1:
        raise BudgetError(f"--max-drop '{text}': must be between 0% and 100%")
    return v


def check_avg_bits(v: float, allowed: list[int]) -> float:
    if not min(allowed) <= v <= 32:
        raise BudgetError(f"--avg-bits {v}: the target holds weights of {min(allowed)}..{max(allowed)} bits; "
                          f"choose a value of at least {min(allowed)}")
    return float(v)


# -- metrics ---------------------------------------------------------------------------------
Metric = Callable[[dict, object], float]


def load_metric(spec: str) -> Metric:
    """`module:function`, called as function(outputs: {name: array}, labels or None) -> float."""
    mod, _, fn = str(spec).partition(":")
    if not mod or not fn:
        raise BudgetError(f"--metric '{spec}': expected module:function")
    try:
        f = getattr(importlib.import_module(mod), fn)
    except (ImportError, AttributeError) as e:
        raise BudgetError(f"--metric '{spec}': cannot import it ({e})") from None
    return f


def call_metric(metric: Metric, outputs: dict, labels, name: str) -> float:
    try:
        v = float(metric(outputs, labels))
    except Exception as e:  # the user's code: report it as one line, not a traceback
        raise BudgetError(f"--metric {name} raised {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".rstrip(": ")) from None
    if not np.isfinite(v):
        raise BudgetError(f"--metric {name} returned {v}; it must return a finite number (higher is better)")
    return v


def accuracy(outputs: dict, labels) -> float:
    first = next(iter(outputs.values()))
    return float(np.mean(first.reshape(len(first), -1).argmax(1) == labels))


def fidelity(ref: dict) -> Metric:
    """Mean cosine similarity to the float outputs (1.0 for the float model)."""
    def cosine(outputs: dict, labels) -> float:
        vals = []
        for k, r in ref.items():
            a, b = r.astype(np.float64).ravel(), outputs[k].astype(np.float64).ravel()
            d = np.linalg.norm(a) * np.linalg.norm(b)
            vals.append(a @ b / d if d > 0 else float(np.array_equal(a, b)))
        return float(np.mean(vals))

    return cosine
