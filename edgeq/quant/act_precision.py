"""Activation precision (`--act-bits auto`): int8, int16 or float per tensor, by measurement.

Weight-only int8 of real models stays within a point; full int8 collapses because of a few
activations (softmax inputs, residual / LayerNorm streams with outlier channels, logits).
The search that finds them (ranking by simulation, then the smallest set kept wide that
reaches the noise goal) is edgeq/quant/act_search.py. "Wide" is float on every target today
(`wide_bits`: int16 only where a target's toml says it runs faster than float; Core ML runs
float activations in fp16). Logits are widened when int8 makes argmax tie.

Before planning, `prepare_graph` runs the float-exact rewrites that need calibration data, each
a registered data pass that returns a new graph (passes/registry.py DATA_PASSES): sentinel masks
scaled to the score range (edgeq/passes/sentinel.py) and SmoothQuant-style migration of LayerNorm
outlier channels into the next layers' weights (here).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper

from edgeq.errors import PlanError
from edgeq.graph import Graph, get_attr, node_name
from edgeq.passes.registry import DATA_PASSES, register_data
from edgeq.quant.act_search import choose
from edgeq.quant.plan import QuantPlan
from edgeq.runners import OrtRunner, batch_size_for
from edgeq.target import target_data

SAMPLES = 128  # calibration samples the measurements use
SMOOTH_ALPHA = 0.5  # SmoothQuant's migration strength
OUTLIER_RATIO = 6.0  # LayerNorm outputs whose max channel is this far above the median get smoothed


def parse_act_bits(value) -> int | str:
    """--act-bits: 8, 16 or auto (one-line error otherwise)."""
    v = str(value).strip().lower()
    if v == "auto":
        return "auto"
    if v in ("8", "16"):
        return int(v)
    raise PlanError(f"--act-bits {value}: activations are held at 8 or 16 bits (or float); use 8, 16 or auto")


def wide_bits(targets: list[str]) -> int | None:
    """The width a kept-wide activation gets on every requested target: 16, or None (float).

    A target says `auto_wide_bits = 16` in its toml only where 16-bit activations run faster
    than float. None does today: ORT has no int16 conv/matmul kernels (int16 QDQ runs as
    DQ -> float op -> Q: measured 1.33x slower than float on ddddocr's recognizer, float
    regions 0.93x), LiteRT runs one integer width per model, Core ML has no int16."""
    for t in targets:
        if target_data(t)["auto_wide_bits"] != 16 or target_data(t)["one_integer_width"]:
            return None
    return 16


def check_act_bits(act_bits, targets: list[str]) -> None:
    """Explicit 16-bit activations on a target that cannot hold them: a one-line error."""
    if act_bits == 16:
        for t in targets:
            held = target_data(t).get("activation_bits", [8])
            if 16 not in held:
                raise PlanError(f"--act-bits 16: the {t} target holds {held}-bit activations; use --act-bits 8 or auto "
                                "(auto keeps sensitive ones float there)")


# -- float-exact rewrites that need data ----------------------------------------------------
def _values(graph: Graph, data, names: list[str]) -> dict[str, np.ndarray]:
    from edgeq.quant.calibrate import with_all_outputs

    runner = OrtRunner(with_all_outputs(graph, names).SerializeToString(), threads=2, optimize=False, source=graph.source)
    parts: dict[str, list] = {}
    for feeds in data.batches(batch_size_for(graph)):
        out = runner.run(feeds)
        for n in names:
            parts.setdefault(n, []).append(out[n])
    return {k: np.concatenate(v) for k, v in parts.items()}


def smoothable(graph: Graph) -> list[tuple[onnx.NodeProto, list[onnx.NodeProto]]]:
    """LayerNormalization (constant scale/bias, last axis) whose output only feeds MatMul/Gemm with constant weights."""
    out = []
    for ln in graph.nodes:
        if ln.op_type != "LayerNormalization" or get_attr(ln, "axis", -1) not in (-1, len(graph.shape(ln.input[0]) or [0]) - 1):
            continue
        if not all(graph.is_const(i) for i in ln.input[1:] if i) or len(graph.consumers.get(ln.input[1], [])) != 1:
            continue
        if len(ln.input) > 2 and ln.input[2] and len(graph.consumers.get(ln.input[2], [])) != 1:
            continue
        users = graph.consumers.get(ln.output[0], [])
        ok = users and ln.output[0] not in {o.name for o in graph.outputs} and all(
            u.op_type in ("MatMul", "Gemm") and u.input[0] == ln.output[0] and graph.is_const(u.input[1])
            and graph.initializer(u.input[1]).ndim == 2 and len(graph.consumers.get(u.input[1], [])) == 1
            and not get_attr(u, "transA", 0) for u in users)
        if ok:
            out.append((ln, users))
    return out


@register_data("smoothquant")
def smooth_layernorms(graph: Graph, data) -> tuple[Graph, dict]:
    """SmoothQuant: X' = X / s per channel (folded into LayerNorm's scale and bias), W' = s * W
    (folded into every consumer's weight rows). Exact in float; only where outliers exist.
    Returns a new graph and {"smoothquant": what was smoothed, "tensors": the rewritten constants}."""
    if not smoothable(graph):
        return graph, {"smoothquant": [], "tensors": {}}
    graph = graph.copy()  # the copy keeps the mask passes' records (Graph.records)
    cands = smoothable(graph)
    vals = _values(graph, data, [ln.output[0] for ln, _ in cands])
    tensors, done = {}, []
    for ln, users in cands:
        x = vals[ln.output[0]]
        amax = np.abs(x.reshape(-1, x.shape[-1])).max(0).astype(np.float64)
        ratio = float(amax.max() / max(np.median(amax), 1e-12))
        if ratio < OUTLIER_RATIO:
            continue
        wmax = np.zeros_like(amax)
        for u in users:
            w = graph.initializer(u.input[1])
            rows = w.T if u.op_type == "Gemm" and get_attr(u, "transB", 0) else w  # [K, N]
            wmax = np.maximum(wmax, np.abs(rows).max(axis=1))
        s = amax**SMOOTH_ALPHA / np.maximum(wmax, 1e-5) ** (1 - SMOOTH_ALPHA)
        s = np.clip(s / np.exp(np.mean(np.log(np.maximum(s, 1e-12)))), 1e-2, 1e2)  # geometric mean 1
        tensors[ln.input[1]] = (graph.initializer(ln.input[1]) / s).astype(np.float32)
        if len(ln.input) > 2 and ln.input[2]:
            tensors[ln.input[2]] = (graph.initializer(ln.input[2]) / s).astype(np.float32)
        for u in users:
            w = graph.initializer(u.input[1]).astype(np.float64)
            w = w * s[None, :] if u.op_type == "Gemm" and get_attr(u, "transB", 0) else w * s.reshape(-1, 1)
            tensors[u.input[1]] = w.astype(np.float32)
        after = np.abs(x.reshape(-1, x.shape[-1])).max(0) / s
        done.append({"layernorm": node_name(ln), "consumers": [node_name(u) for u in users],
                     "outlier_ratio": round(ratio, 2), "outlier_ratio_after": round(float(after.max() / np.median(after)), 2)})
    for t in graph.model.graph.initializer:
        if t.name in tensors:
            t.CopyFrom(numpy_helper.from_array(tensors[t.name], t.name))
    graph.refresh()
    return graph, {"smoothquant": done, "tensors": tensors}


def prepare_graph(graph: Graph, calib, smooth: bool = True) -> tuple[Graph, dict]:
    """The data-driven float-exact rewrites: (the rewritten graph, what was done for the report).
    The graph given is not changed."""
    from edgeq.passes.sentinel import describe

    data = calib.take(slice(0, min(len(calib), SAMPLES)))
    graph, masks = DATA_PASSES["scale_masks"](graph, data)
    info = {"sentinel_rewrites": masks, "smoothquant": [], "tensors": {}, "warnings": [describe(r) for r in masks]}
    if smooth:
        graph, smoothed = DATA_PASSES["smoothquant"](graph, data)
        info.update(smoothed)
    return graph, info


# -- the pipeline's hooks (edgeq/pipeline.py make_plan) -------------------------------------
@dataclass
class ActStage:
    """make_plan calls `before_plan` once data is loaded and `after_plan` once the plan is built."""

    opts: object
    graph: Graph  # the graph to plan and lower: the input graph after the data passes
    auto: bool = False
    prepared: dict = field(default_factory=dict)

    def after_plan(self, graph: Graph, plan: QuantPlan, calib, facts: dict) -> None:
        info = {k: v for k, v in self.prepared.items() if k not in ("tensors", "warnings")}
        facts["warnings"] += self.prepared.get("warnings", [])
        if self.auto and plan.mode == "static" and calib is not None and plan.activations:
            q = getattr(self.opts, "quant", None)
            decision = choose(graph, plan, calib, self.opts.targets, progress=getattr(self.opts, "progress", False),
                              use_cache=getattr(q, "use_cache", True))
            plan.constraints["act_precision"] = decision.to_json()
            info.update(decision.to_json(), seconds=round(decision.seconds, 1), cached=decision.cached)
            for bits in sorted({w["bits"] for w in decision.wide}, key=lambda b: b or 99):
                kept = [w for w in decision.wide if w["bits"] == bits]
                cost = [w["sqnr_db_int8_alone"] for w in kept]
                facts["warnings"].append(
                    f"{len(kept)} activation(s) kept {'float' if bits is None else f'{bits}-bit'} (int8 on each alone costs "
                    f"{min(cost)}-{max(cost)} dB output SQNR): " + ", ".join(w["tensor"] for w in kept[:6])
                    + (", ..." if len(kept) > 6 else "") + " (all in report.json act_precision.wide)")
        for name, value in sorted(self.prepared.get("tensors", {}).items()):  # SmoothQuant: --plan reuse sees them
            from edgeq.quant.simulate import encode_tensor

            plan.tensors.setdefault(name, encode_tensor(value))
        if info.get("sentinel_rewrites") or info.get("smoothquant") or self.auto:
            facts["act_precision"] = info


def before_plan(graph: Graph, calib, opts) -> ActStage:
    """Check --act-bits against the targets; run the data-driven float-exact rewrites (stage.graph)."""
    import dataclasses

    q = getattr(opts, "quant", None)
    act_bits = q.act_bits if q is not None else "auto"  # auto is the default: no collapsed model
    check_act_bits(act_bits, opts.targets)
    stage = ActStage(opts, graph, auto=act_bits == "auto" and opts.plan is None)  # a given plan is applied exactly
    if calib is not None:
        stage.graph, stage.prepared = prepare_graph(graph, calib, smooth=stage.auto and opts.plan is None)
    if act_bits == "auto":
        q8 = dataclasses.replace(q, act_bits=8) if q is not None else None
        stage.opts = dataclasses.replace(opts, quant=None if q8 is None or q8.is_default() else q8)
    return stage
