"""The mixed-precision recipe: observers, overrides, AWQ, sensitivity, allocation, GPTQ -> QuantPlan.

    ranges       every activation sampled once; --calib-method picks the range (auto: per tensor)
    overrides    --keep-float PATTERN and --bits PATTERN=B (fnmatch on node or weight name)
    awq          --rounding awq: per-channel scales folded into the previous layer (plan.tensors)
    allocation   --avg-bits / --size-budget: knapsack over per-layer sensitivities;
                 --max-drop: the smallest plan on the frontier whose simulated metric holds
    rounding     --rounding gptq: GPTQ per layer where it beats round-to-nearest (plan.tensors)
"""

from __future__ import annotations

import copy
import fnmatch
from dataclasses import dataclass, field

import numpy as np

from edgeq import schemes
from edgeq.errors import PlanError
from edgeq.graph import Graph
from edgeq.progress import NullBar
from edgeq.quant import allocate as al
from edgeq.quant.awq import fold, foldable_producer, in_axis, search_scale
from edgeq.quant.build import activations_to_quantize, share_grids, weight_entry, weighted_nodes
from edgeq.quant.calibrate import collect, ranges_from
from edgeq.quant.gptq import layer_stats, supported
from edgeq.quant.linear import affine_params
from edgeq.quant.plan import ActivationPlan, QuantPlan, WeightPlan
from edgeq.quant.sensitivity import measure, quantize_layer
from edgeq.quant.simulate import Simulator, encode_tensor, simulate, with_tensors
from edgeq.quant.weights import storage_bits

MODES = ("static", "weight_only", "dynamic")
ROUNDINGS = ("nearest", "gptq", "awq")


@dataclass
class QuantOptions:
    bits: int = 8  # every weight, when no budget is given
    avg_bits: float | None = None
    size_budget: str | int | None = None
    max_drop: str | float | None = None
    metric: str | None = None  # module:function(outputs, labels) -> float, higher is better
    keep_float: list[str] = field(default_factory=list)
    bits_overrides: list[str] = field(default_factory=list)  # "PATTERN=B"
    calib_method: str = "minmax"
    mode: str = "static"
    rounding: str = "nearest"
    scheme: str = "symmetric"
    granularity: str = "per_channel"
    block_size: int | None = None
    codebook: str | None = None
    act_bits: int | str = "auto"  # 8, 16, or "auto" (the default: edgeq/quant/act_precision.py decides per tensor)
    use_cache: bool = True
    max_bits: int | None = None  # e.g. 7 for ORT on x86 without VNNI (8-bit weights saturate its kernels)

    def __post_init__(self):
        """Numbers outside their meaning are refused here, for the CLI and the Python API alike."""
        for flag, value in (("--weight-bits", self.bits), ("--max-bits", self.max_bits), ("--avg-bits", self.avg_bits)):
            if value is not None and (isinstance(value, bool) or not 2 <= value <= 8):  # also NaN
                raise PlanError(f"{flag} {value}: give 2..8 (weights take 2..8 bits)")
        if self.block_size is not None and (isinstance(self.block_size, bool) or not self.block_size >= 1):
            raise PlanError(f"--block-size {self.block_size}: give 1 or more")

    def is_default(self) -> bool:
        """The uniform recipe (any activation width choice): no budget, no overrides, no rounding."""
        import dataclasses

        return dataclasses.replace(self, act_bits="auto") == QuantOptions() and self.act_bits in ("auto", 8)

    def budget_kind(self) -> str | None:
        given = [k for k in ("avg_bits", "size_budget", "max_drop") if getattr(self, k) is not None]
        if len(given) > 1:
            raise al.BudgetError(f"give one budget, not {' and '.join('--' + g.replace('_', '-') for g in given)}")
        return given[0] if given else None


def _progress(progress, label: str, length: int):
    return progress(label, length) if progress else NullBar()


def resolve_overrides(plans: dict[str, WeightPlan], q: QuantOptions, allowed: list[int]) -> dict[str, int | None]:
    """{weight: bits or None} fixed by --keep-float / --bits; a pattern that matches nothing is an error."""
    fixed: dict[str, int | None] = {}
    names = sorted({w.node for w in plans.values()})

    def match(pattern: str) -> list[str]:
        hits = [t for t, w in plans.items() if fnmatch.fnmatchcase(w.node, pattern) or fnmatch.fnmatchcase(t, pattern)]
        if not hits:
            raise PlanError(f"no layer matches '{pattern}'; layers are: {', '.join(names[:12])}{' ...' if len(names) > 12 else ''}")
        return hits

    for pattern in q.keep_float:
        for t in match(pattern):
            fixed[t] = None
    for item in q.bits_overrides:
        pattern, sep, b = str(item).rpartition("=")
        try:  # int() itself, not str.isdigit(): '²' is a digit int() refuses
            bits = int(b) if sep else None
        except ValueError:
            bits = None
        if bits is None:
            raise PlanError(f"--bits '{item}': expected NAME=BITS, e.g. conv1=8")
        if bits not in allowed:
            raise PlanError(f"--bits '{item}': the target holds {allowed} bits")
        for t in match(pattern):
            fixed[t] = bits
    return fixed


def base_plans(graph: Graph, q: QuantOptions) -> tuple[dict[str, WeightPlan], dict]:
    plans, nodes = {}, {}
    for k, n in weighted_nodes(graph):
        if n.input[1] in plans:
            continue
        wp = weight_entry(graph, k, n, 8)
        palette = schemes.scheme(q.scheme).palette
        wp.scheme, wp.codebook = q.scheme, q.codebook if palette else None
        if q.granularity == "per_block":
            wp.granularity, wp.block_size = "per_block", q.block_size or 32
            wp.axis = in_axis(n, len(wp.shape))
        elif q.granularity == "per_tensor" or wp.axis is None:
            wp.granularity, wp.axis = "per_tensor", None
        else:
            wp.block_size = q.block_size if palette else None
        wp.scale = wp.zero_point = None
        plans[n.input[1]], nodes[n.input[1]] = wp, n
    return plans, nodes


def apply_awq(graph: Graph, plans: dict, nodes: dict, stats: dict, bits: int) -> tuple[dict, list[str]]:
    """Fold AWQ scales layer by layer (graph order); returns the rewritten tensors."""
    tensors: dict[str, np.ndarray] = {}
    scaled = []
    for name, node in nodes.items():
        if name not in stats or plans[name].bits is None:
            continue
        g = with_tensors(graph, tensors)
        producer = foldable_producer(g, node)
        if producer is None:
            continue
        wp = copy.deepcopy(plans[name])
        wp.bits = bits
        s, err, rtn = search_scale(node, wp, g.initializer(name), stats[name])
        if err < rtn and not np.allclose(s, 1.0):
            tensors.update(fold(g, node, producer, s))
            scaled.append(name)
    return tensors, scaled


def build_mixed_plan(graph: Graph, calib, target: str | None, allowed: list[int], q: QuantOptions,
                     progress=None) -> QuantPlan:
    if q.mode not in MODES:
        raise PlanError(f"--mode '{q.mode}': choose one of {', '.join(MODES)}")
    if q.rounding not in ROUNDINGS:
        raise PlanError(f"--rounding '{q.rounding}': choose one of {', '.join(ROUNDINGS)}")
    kind = q.budget_kind()
    if q.max_bits is not None:
        allowed = [b for b in allowed if b <= q.max_bits] or allowed[:1]
        q = copy.copy(q)
        q.bits = min(q.bits, max(allowed))
    if kind == "avg_bits":
        al.check_avg_bits(float(q.avg_bits), allowed)
    metric_fn = al.load_metric(q.metric) if q.metric else None
    plans, nodes = base_plans(graph, q)
    fixed = resolve_overrides(plans, q, allowed)
    for t, b in fixed.items():
        plans[t].bits = b
    if kind is None and q.bits not in allowed:
        raise PlanError(f"{q.bits}-bit weights: the target holds {allowed}")
    stats = {}
    if q.rounding in ("gptq", "awq"):
        todo = [nodes[t] for t in plans if supported(graph, nodes[t])]
        with _progress(progress, "layer statistics", len(calib)) as bar:
            stats = layer_stats(graph, todo, calib, bar.update) if todo else {}
    tensors, scaled = {}, []
    if q.rounding == "awq":
        awq_bits = q.bits if kind is None else max(min(allowed), min(4, max(allowed)))
        tensors, scaled = apply_awq(graph, plans, nodes, stats, awq_bits)
    qgraph = with_tensors(graph, tensors)
    plan = QuantPlan(model_sha256=graph.sha256(), target=target, mode=q.mode)
    plan.constraints = {"weight_bits": list(allowed)}
    # -- activations (first: --max-drop checks candidates with them)
    method = q.calib_method
    act_bits = 8 if q.act_bits == "auto" else q.act_bits  # auto starts at int8; act_precision widens after
    if q.mode == "static":
        with _progress(progress, "calibrating", len(calib)) as bar:
            ranges = ranges_from(collect(qgraph, calib, bar.update), method, act_bits)
        for name in activations_to_quantize(qgraph, {k: v[:2] for k, v in ranges.items()}):
            lo, hi, obs = ranges[name]
            scale, zp = affine_params(lo, hi, act_bits, signed=True)
            plan.activations[name] = ActivationPlan(name, act_bits, True, scale, zp, float(lo), float(hi), obs)
        share_grids(qgraph, plan)
    # -- bits per layer
    alloc = {t: (fixed[t] if t in fixed else q.bits) for t in plans}
    rounding = "gptq" if q.rounding == "gptq" else "nearest"
    if kind == "size_budget":  # fail before the (slow) sensitivity pass when no plan can fit
        floor = {t: fixed.get(t, min(allowed)) for t in plans}
        smallest = sum(storage_bits(_sized(plans[t], b)) for t, b in floor.items())
        smallest += 32 * sum(int(np.prod(t.dims)) for t in graph.model.graph.initializer if t.name not in set(plans))
        if smallest > 8 * al.parse_size(q.size_budget):
            raise al.BudgetError(f"--size-budget {q.size_budget} is smaller than the smallest plan the target can hold "
                                 f"({int(np.ceil(smallest / 8)):,} bytes at {min(allowed)} bits); raise it")
    if kind is not None:
        free = [t for t in plans if t not in fixed]
        steps = len(free) * len(allowed)
        with _progress(progress, "sensitivity", steps) as bar:
            sens = measure(qgraph, nodes, {t: plans[t] for t in free}, list(allowed), calib, rounding, stats,
                           bar.update, q.use_cache)
        alloc = choose_bits(qgraph, calib, plans, nodes, fixed, sens, q, kind, stats, metric_fn, progress, plan.activations)
        plan.budget = {"kind": kind, "value": getattr(q, kind), "sensitivity_cached": sens["cached"],
                       "sensitivity": {t: {str(b): float(f"{c:.6g}") for b, c in per.items()} for t, per in sens["cost"].items()}}
    # -- the weights, with their rounding
    for t, wp in plans.items():
        wp.bits = alloc[t]
        wp, values, _ = quantize_layer(qgraph, nodes[t], wp, qgraph.initializer(t), rounding, stats.get(t))
        if t in scaled and wp.bits is not None:
            wp.rounding = "awq"
        plan.weights[t] = wp
        if values is not None:
            tensors[t] = values
    plan.tensors = {k: encode_tensor(v) for k, v in sorted(tensors.items())}
    plan.calibration = {"source": calib.source, "samples": len(calib), "observer": method, "random": calib.random,
                        "rounding": q.rounding}
    plan.predicted = predicted(graph, plan)
    return plan


def predicted(graph: Graph, plan: QuantPlan) -> dict:
    planned = set(plan.weights)
    other = sum(int(np.prod(t.dims)) for t in graph.model.graph.initializer if t.name not in planned)
    weight_bits = sum(storage_bits(w) for w in plan.weights.values())
    return {"weight_bytes": int(np.ceil(weight_bits / 8)), "other_param_bytes": 4 * other,  # biases: int32
            "avg_weight_bits": round(plan.avg_weight_bits(), 4)}


def choose_bits(graph, calib, plans, nodes, fixed, sens, q: QuantOptions, kind: str, stats, metric_fn, progress,
                activations: dict) -> dict:
    cost = sens["cost"]
    fixed_bits = {t: b for t, b in fixed.items()}
    n_of = {t: int(np.prod(w.shape)) for t, w in plans.items()}
    if kind in ("avg_bits", "size_budget"):
        if kind == "avg_bits":
            size = {t: {b: b * n_of[t] for b in cost[t]} for t in cost}
            extra = sum((b or 32) * n_of[t] for t, b in fixed_bits.items())
            budget = float(q.avg_bits) * sum(n_of.values())
        else:
            size = sens["size"]
            other = 32 * sum(int(np.prod(t.dims)) for t in graph.model.graph.initializer if t.name not in set(plans))
            extra = other + sum(storage_bits(_sized(plans[t], b)) for t, b in fixed_bits.items())
            budget = 8 * al.parse_size(q.size_budget)
        alloc = al.allocate(cost, size, budget, {}, extra)
        candidates = [alloc, uniform_within(cost, size, budget - extra)]
        candidates += [a for a in al.frontier(cost, size) if al.total(size, a) + extra <= budget][-3:]
        rounding = "gptq" if q.rounding == "gptq" else "nearest"
        best = best_measured(graph, calib, plans, nodes, fixed_bits, candidates, rounding, stats,
                             activations if q.mode == "static" else None)
        return {**best, **fixed_bits}
    return smallest_within_drop(graph, calib, plans, nodes, fixed_bits, sens, q, stats, metric_fn, progress, activations)


def uniform_within(cost: dict, size: dict, budget: float) -> dict:
    """The highest uniform bit width that fits, then the greedy fill: the classic baseline."""
    common = sorted(set.intersection(*[set(c) for c in cost.values()]))
    fits = [b for b in common if al.total(size, {t: b for t in cost}) <= budget] or common[:1]
    return al.greedy_fill(cost, size, {t: fits[-1] for t in cost}, budget, {})


def best_measured(graph, calib, plans, nodes, fixed, candidates, rounding, stats, activations) -> dict:
    """Sensitivities add up only for small errors: simulate each candidate allocation end to end
    on calibration data (weights, and activations in static mode) and keep the least noisy."""
    from edgeq.quant.sensitivity import SENSITIVITY_SAMPLES, relative_noise

    unique = list({tuple(sorted(a.items())): a for a in candidates}.values())
    if len(unique) == 1:
        return unique[0]
    data = calib.take(slice(0, min(len(calib), SENSITIVITY_SAMPLES)))
    sim = Simulator(graph, list(plans), data, activations)
    ref = Simulator(graph, [], data).run()
    cache: dict = {}

    def values(t, b):
        if (t, b) not in cache:
            wp = copy.deepcopy(plans[t])
            wp.bits = b
            cache[(t, b)] = quantize_layer(graph, nodes[t], wp, graph.initializer(t), rounding, stats.get(t))[2]
        return cache[(t, b)]

    scored = [(relative_noise(ref, sim.run({t: values(t, b) for t, b in {**a, **fixed}.items()})), k, a)
              for k, a in enumerate(unique)]
    return min(scored, key=lambda x: (x[0], x[1]))[2]


def _sized(wp: WeightPlan, bits) -> WeightPlan:
    from edgeq.quant.weights import derive

    wp = copy.deepcopy(wp)
    wp.bits = bits
    return derive(wp, np.zeros(wp.shape, np.float32) + 1.0) if bits is not None else wp


def smallest_within_drop(graph, calib, plans, nodes, fixed, sens, q, stats, metric_fn, progress, activations) -> dict:
    """Binary search on the frontier (smallest first) for the first plan whose metric, simulated
    end to end (weights and, in static mode, activations), holds."""
    drop = al.parse_drop(q.max_drop)
    weights = dict(plans)
    ref = simulate(graph, QuantPlan(graph.sha256(), mode="weight_only"), calib)
    if metric_fn is not None:
        metric, name = metric_fn, q.metric
    elif calib.labels is not None:
        metric, name = al.accuracy, "top-1 accuracy"
    else:
        metric, name = al.fidelity(ref), "cosine similarity to float"
    base = al.call_metric(metric, ref, calib.labels, name)
    frontier = [{**a, **fixed} for a in al.frontier(sens["cost"], sens["size"])]
    rounding = "gptq" if q.rounding == "gptq" else "nearest"

    def ok(alloc) -> bool:
        p = QuantPlan(graph.sha256(), mode=q.mode, activations=activations)
        tensors = {}
        for t, wp in weights.items():
            wp = copy.deepcopy(wp)
            wp.bits = alloc[t]
            wp, values, _ = quantize_layer(graph, nodes[t], wp, graph.initializer(t), rounding, stats.get(t))
            p.weights[t] = wp
            if values is not None:
                tensors[t] = values
        p.tensors = {k: encode_tensor(v) for k, v in tensors.items()}
        return al.call_metric(metric, simulate(graph, p, calib), calib.labels, name) >= base * (1 - drop) - 1e-12

    lo, hi = 0, len(frontier) - 1
    with _progress(progress, "searching", int(np.ceil(np.log2(len(frontier) + 1)))) as bar:
        while lo < hi:
            mid = (lo + hi) // 2
            if ok(frontier[mid]):
                hi = mid
            else:
                lo = mid + 1
            bar.update(1)
    return frontier[lo]


def refresh_plan(graph: Graph, plan: QuantPlan) -> list[str]:
    """After a plan edit: re-derive the parameters of every weight whose settings changed
    (bits, scheme, granularity, ...), with round-to-nearest; the rest stay exactly as written."""
    from edgeq.quant.simulate import plan_graph
    from edgeq.quant.weights import derive, needs_derive

    changed = [t for t, wp in plan.weights.items() if wp.derived is not None and needs_derive(wp)]
    for t in changed:
        wp = plan.weights[t]
        if wp.rounding == "gptq":
            plan.tensors.pop(t, None)  # GPTQ values were rounded for the old grid
        wp.rounding = "awq" if wp.rounding == "awq" and wp.bits is not None else "nearest"
        derive(wp, plan_graph(graph, plan).initializer(t))
    return changed
