"""Sentinel masks: attention masks made of -inf / float32 min, made quantization-safe.

An attention mask is usually applied as `Softmax(scores + mask)` with mask values of 0 and
-inf, float32 min (-3.4e38) or -1e4, through Add, Where or Mul ((1 - m) * min). Calibrated
into one int8 range, such a value stretches the grid so far that every real score rounds
to the same code and attention collapses. Two steps fix it:

1. `sentinel_masks` (a pass, no data): each sentinel constant on a path into a Softmax
   gets a finite copy at PLACEHOLDER (exp(-1e4) == 0 in float32, so outputs are unchanged);
   a float graph input on such a path gets a `Max(input, PLACEHOLDER)` guard.
2. `scale_masks` (calibration data): the placeholder becomes -(score range + MARGIN), the
   smallest value that still zeroes the masked weights (e^-MARGIN), so the masked logits
   share a grid with the real ones. If the float outputs moved, the placeholder stays and
   act_precision keeps that region wide.

What was rewritten is recorded on the graph (`graph.records["sentinel_rewrites"]`) for the report.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgeq.graph import Graph, node_name, with_all_outputs
from edgeq.passes.registry import register, register_data

PLACEHOLDER = 1e4  # magnitude of the finite stand-in
MARGIN = 20.0  # masked weights end up <= e^-20 of the row maximum
RATIO = 1e3  # "orders of magnitude beyond the rest"
HUGE = 1e30  # float32 min/max and friends, whatever the rest holds
# Ops a mask flows through on its way to a Softmax (value ops and shape ops).
MASK_PATH_OPS = {"Add", "Sub", "Mul", "Div", "Where", "Neg", "Min", "Max", "Cast", "Reshape", "Transpose", "Unsqueeze",
                 "Squeeze", "Expand", "Tile", "Concat", "Slice"}
DATA_INPUTS = {"Reshape": 1, "Unsqueeze": 1, "Squeeze": 1, "Expand": 1, "Tile": 1, "Slice": 1}  # only input 0 carries values


def sentinel_entries(a: np.ndarray) -> np.ndarray:
    """Boolean mask of the entries that are sentinels: non-finite, |x| >= 1e30, or >= 1e3 x the rest."""
    a = np.asarray(a, np.float64)
    with np.errstate(invalid="ignore"):
        huge = ~np.isfinite(a) | (np.abs(a) >= HUGE)
        rest = np.abs(a[~huge])
        normal = rest[rest < RATIO]
        limit = RATIO * max(1.0, float(normal.max()) if normal.size else 1.0)
        return huge | (np.abs(a) >= limit)


def rewrites(graph: Graph) -> list[dict]:
    return graph.records.setdefault("sentinel_rewrites", [])


def mask_sources(graph: Graph, softmax: onnx.NodeProto) -> list[tuple[str, onnx.NodeProto]]:
    """(tensor, consumer) for every constant or graph input on a mask path into this Softmax."""
    graph_inputs = {i.name for i in graph.inputs}
    found, seen, stack = [], set(), [softmax.input[0]]
    while stack:
        t = stack.pop()
        if t in seen:
            continue
        seen.add(t)
        p = graph.producer.get(t)
        if p is None or p.op_type not in MASK_PATH_OPS:
            continue
        ins = list(p.input[:DATA_INPUTS.get(p.op_type, len(p.input))])
        for k, i in enumerate(ins):
            if not i or (p.op_type == "Where" and k == 0):
                continue
            if graph.is_const(i) or i in graph_inputs:
                found.append((i, p))
            else:
                stack.append(i)
    return found


@register("sentinel_masks")
def sentinel_masks(graph: Graph) -> Graph:
    g = graph.model.graph
    inputs = {i.name: i for i in graph.inputs}
    done: dict[tuple[str, str], dict] = {}
    for k, sm in enumerate(graph.nodes):
        if sm.op_type != "Softmax":
            continue
        mine = {r["rewritten"]: r for r in rewrites(graph)} | {r["tensor"]: r for r in rewrites(graph) if r["kind"] == "input"}
        for name, user in mask_sources(graph, sm):
            key = (name, user.output[0])
            rec = done.get(key) or mine.get(name)  # met again from another Softmax (or our own guard)
            if rec is not None:
                if sm.input[0] not in rec["softmax_inputs"]:
                    rec["softmax_inputs"].append(sm.input[0])
                continue
            if name in inputs:
                if inputs[name].dtype != "float32":
                    continue
                rec = _guard_input(graph, name, user)
            else:
                a = graph.initializer(name)
                if a.dtype != np.float32 or not sentinel_entries(a).any():
                    continue
                rec = _finite_copy(graph, name, user, a)
            rec["softmax"] = node_name(sm, k)
            rec["softmax_inputs"] = [sm.input[0]]
            done[key] = rec
            rewrites(graph).append(rec)
    del g.value_info[:]
    return graph


def _finite_copy(graph: Graph, name: str, user: onnx.NodeProto, a: np.ndarray) -> dict:
    bad = sentinel_entries(a)
    out = a.copy()
    out[bad] = np.where(a[bad] < 0, -PLACEHOLDER, PLACEHOLDER).astype(np.float32)
    new = f"{name}__finite"
    graph.model.graph.initializer.append(numpy_helper.from_array(out.astype(np.float32), new))
    for k, i in enumerate(user.input):
        if i == name:
            user.input[k] = new
    orig = a[bad].ravel()[0]
    graph.refresh()
    return {"kind": "constant", "tensor": name, "rewritten": new, "node": user.name or user.op_type, "op": user.op_type,
            "original": str(orig) if not np.isfinite(orig) else float(orig), "entries": int(bad.sum()),
            "value": -PLACEHOLDER if orig < 0 else PLACEHOLDER, "confirmed": True}


def _guard_input(graph: Graph, name: str, user: onnx.NodeProto) -> dict:
    """Max(input, -PLACEHOLDER) in front of this consumer: -inf / float min in the data become finite."""
    g = graph.model.graph
    floor, out = f"{name}__sentinel_floor", f"{name}__finite"
    if out not in graph.producer:
        g.initializer.append(numpy_helper.from_array(np.asarray(-PLACEHOLDER, np.float32), floor))
        g.node.insert(0, helper.make_node("Max", [name, floor], [out], name=f"{name}__sentinel_guard"))
    for k, i in enumerate(user.input):
        if i == name:
            user.input[k] = out
    graph.refresh()
    # An input is only reported once calibration data shows sentinels in it (scale_masks).
    return {"kind": "input", "tensor": name, "rewritten": floor, "node": user.name or user.op_type, "op": user.op_type,
            "original": None, "entries": None, "value": -PLACEHOLDER, "confirmed": False}


def _set_value(graph: Graph, rec: dict, value: float) -> None:
    """Every ±PLACEHOLDER entry of the rewritten constant becomes ±value."""
    for t in graph.model.graph.initializer:
        if t.name == rec["rewritten"]:
            a = numpy_helper.to_array(t).copy()
            a[np.abs(np.abs(a) - abs(rec["value"])) <= 1e-3 * abs(rec["value"])] *= np.float32(value / abs(rec["value"]))
            t.CopyFrom(numpy_helper.from_array(a.astype(np.float32), t.name))
    rec["value"] = float(np.copysign(value, rec["value"]))


@register_data("scale_masks")
def scale_masks(graph: Graph, calib, tolerance: float = 1e-4) -> tuple[Graph, list[dict]]:
    """Second step, with calibration data: placeholders become -(unmasked score range + MARGIN).

    Returns a new graph and the records in effect there (inputs only when the data held sentinels)."""
    if not [r for r in rewrites(graph) if "scaled_to" not in r] or calib is None:
        return graph, [r for r in rewrites(graph) if r["confirmed"]]
    graph = graph.copy()
    recs = [r for r in rewrites(graph) if "scaled_to" not in r]
    data = calib.take(slice(0, min(len(calib), 64)))
    watch = sorted({t for r in recs for t in r["softmax_inputs"]} | {r["tensor"] for r in recs if r["kind"] == "input"})
    values = _run(graph, data, watch)
    ref = {o.name: v for o, v in zip(graph.outputs, [values[o.name] for o in graph.outputs])}
    spans = {}
    for t in watch:
        v = values[t]
        real = v[v > -PLACEHOLDER / 2] if v.size else v
        spans[t] = float(real.max() - real.min()) if real.size else 0.0
    for r in recs:
        if r["kind"] == "input":
            v = values[r["tensor"]]
            r["confirmed"] = bool(v.size and sentinel_entries(v).any())
            if r["confirmed"]:
                lo = v[sentinel_entries(v)]
                r["original"] = str(lo.ravel()[0]) if not np.isfinite(lo.ravel()[0]) else float(lo.ravel()[0])
        c = float(np.ceil(max(spans[t] for t in r["softmax_inputs"]) + MARGIN))
        if c < PLACEHOLDER and r["confirmed"]:  # an input without sentinels keeps its harmless -1e4 floor
            r["placeholder"] = PLACEHOLDER
            _set_value(graph, r, c)
    got = _run(graph, data, [])
    moved = max(float(np.max(np.abs(got[k] - ref[k]))) / max(float(np.max(np.abs(ref[k]))), 1e-12) for k in ref)
    for r in recs:
        r["scaled_to"] = r["value"] if moved <= tolerance else None
        if moved > tolerance and "placeholder" in r:  # outputs moved: keep the placeholder, act_precision widens
            _set_value(graph, r, PLACEHOLDER)
        r["output_change"] = float(f"{moved:.3g}")
    return graph, [r for r in rewrites(graph) if r["confirmed"]]


def _run(graph, data, names) -> dict[str, np.ndarray]:
    from edgeq.runners import OrtRunner, batch_size_for  # onnxruntime only when a mask needs data

    model = with_all_outputs(graph, names) if names else graph.model
    runner = OrtRunner(model.SerializeToString(), threads=2, optimize=False, source=graph.source)
    parts: dict[str, list] = {}
    for feeds in data.batches(batch_size_for(graph)):
        for k, v in runner.run(feeds).items():
            parts.setdefault(k, []).append(v)
        for n in names:
            if n in feeds:
                parts.setdefault(n, []).append(feeds[n])
    return {k: np.concatenate([np.asarray(x).reshape(-1) if k in names else x for x in v]) for k, v in parts.items()}


def describe(rec: dict) -> str:
    """One line for the report's warnings."""
    what = f"input '{rec['tensor']}'" if rec["kind"] == "input" else f"constant '{rec['tensor']}'"
    to = rec.get("scaled_to")
    where = f"-{abs(to):g} (score range + {MARGIN:g})" if to else f"-{PLACEHOLDER:g}, that region kept wide"
    return f"sentinel mask: {what} ({rec['original']}) into {rec['op']} before Softmax '{rec['softmax']}' rewritten to {where}"
