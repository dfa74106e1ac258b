"""Activation precision (`--act-bits auto`): int8, int16 or float per tensor, by measurement.

Weight-only int8 of real models stays within a point; full int8 collapses because of a few
activations (softmax inputs, residual / LayerNorm streams with outlier channels, logits).
So each activation (a group of tensors sharing one grid) is quantized alone in simulation
with the plan's weights, and its effect on the outputs measured (relative noise power, as
for weights in sensitivity.py). The most sensitive groups are widened one at a time until
the whole plan's simulated outputs reach NOISE_GOAL, within a cost limit on how many stay
wide. "Wide" is what every requested target can hold per tensor: int16 on ORT (16-bit QDQ),
float elsewhere (LiteRT runs one integer width per model; Core ML has no int16 activations
and runs float ones in fp16). Logits are widened when int8 makes argmax tie.

Before planning, `prepare_graph` applies the float-exact rewrites that need calibration
data: sentinel masks scaled to the score range (edgeq/passes/sentinel.py) and
SmoothQuant-style migration of LayerNorm outlier channels into the next layers' weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgeq.errors import PlanError
from edgeq.graph import Graph, get_attr, node_name
from edgeq.lower import target_data
from edgeq.quant.linear import affine_params
from edgeq.quant.plan import QuantPlan
from edgeq.quant.sensitivity import relative_noise
from edgeq.quant.simulate import planned_weights, with_tensors, wrap_tensors
from edgeq.runners import OrtRunner, batch_size_for

SAMPLES = 128  # calibration samples the measurements use
NOISE_GOAL = 10 ** (-30 / 10)  # whole-plan output noise to reach: 30 dB SQNR
MAX_WIDE_FRACTION = 0.25  # cost limit: at most this share of the activation groups stays wide
MAX_WIDE_MIN = 2
PATIENCE = 4  # stop widening after this many in a row that buy nothing
ONE_INTEGER_WIDTH = {"tflite", "tflm"}  # LiteRT: one integer width per model (tflite check_plan)
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
    """The width a kept-wide activation gets on every requested target: 16, or None (float)."""
    for t in targets:
        if 16 not in target_data(t).get("activation_bits", [8]) or t in ONE_INTEGER_WIDTH:
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


# -- measurement ---------------------------------------------------------------------------
def groups_of(plan: QuantPlan) -> dict[str, list[str]]:
    """Activation groups (tensors sharing one grid), keyed by their source tensor."""
    out: dict[str, list[str]] = {}
    for name, a in plan.activations.items():
        if a.bits is not None:
            out.setdefault(a.shared_with or name, []).append(name)
    return out


class ActSimulator:
    """One onnxruntime session with a switchable fake-quant on every planned activation:
    run({tensor: (scale, zero_point, qmin, qmax)}) quantizes only those."""

    def __init__(self, graph: Graph, plan: QuantPlan, data):
        weights = planned_weights(graph, plan)
        g = with_tensors(graph, weights)
        self.names = [n for n, a in plan.activations.items() if a.bits is not None]
        m = onnx.ModelProto()
        m.CopyFrom(g.model)
        self._insert(m.graph, set(self.names))
        self.runner = OrtRunner(m.SerializeToString(), threads=2, optimize=False, source=graph.source)
        self.data, self.batch = data, batch_size_for(graph, preferred=SAMPLES)
        self.outputs = [o.name for o in graph.outputs]

    @staticmethod
    def _insert(g, names: set[str]) -> None:
        params = ("s", "z", "lo", "hi", "on")

        def fq(src: str, dst: str, t: str) -> list:
            p = {k: f"{t}__aq_{k}" for k in params}
            for k in params:
                g.input.append(helper.make_tensor_value_info(p[k], onnx.TensorProto.FLOAT, []))
            x = [f"{t}__aq{i}" for i in range(7)]
            return [helper.make_node("Div", [src, p["s"]], [x[0]]), helper.make_node("Round", [x[0]], [x[1]]),
                    helper.make_node("Add", [x[1], p["z"]], [x[2]]), helper.make_node("Clip", [x[2], p["lo"], p["hi"]], [x[3]]),
                    helper.make_node("Sub", [x[3], p["z"]], [x[4]]), helper.make_node("Mul", [x[4], p["s"]], [x[5]]),
                    helper.make_node("Sub", [x[5], src], [x[6]]), helper.make_node("Mul", [x[6], p["on"]], [x[6] + "o"]),
                    helper.make_node("Add", [src, x[6] + "o"], [dst])]

        wrap_tensors(g, names, fq, "{}__aqout", "{}__aqpre")

    def run(self, grids: dict[str, tuple]) -> dict[str, np.ndarray]:
        one = lambda v: np.asarray(v, np.float32)  # noqa: E731
        feeds0 = {}
        for t in self.names:
            s, z, lo, hi = grids.get(t, (1.0, 0.0, -3e38, 3e38))
            feeds0.update({f"{t}__aq_s": one(s), f"{t}__aq_z": one(z), f"{t}__aq_lo": one(lo), f"{t}__aq_hi": one(hi),
                           f"{t}__aq_on": one(1.0 if t in grids else 0.0)})
        parts: dict[str, list] = {}
        for feeds in self.data.batches(self.batch):
            out = self.runner.run({**feeds, **feeds0})
            for k in self.outputs:
                parts.setdefault(k, []).append(out[k])
        return {k: np.concatenate(v) for k, v in parts.items()}


def grid(a, bits: int) -> tuple:
    scale, zp = (a.scale, a.zero_point) if bits == a.bits else affine_params(a.min, a.max, bits, a.signed)
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if a.signed else (0, 2**bits - 1)
    return (scale, zp, lo, hi)


def plan_grids(plan: QuantPlan, widened: dict[str, int | None], groups: dict[str, list[str]]) -> dict[str, tuple]:
    out = {}
    for g, members in groups.items():
        bits = widened.get(g, 8) if g in widened else plan.activations[g].bits
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


# -- the choice --------------------------------------------------------------------------
@dataclass
class ActDecision:
    wide: list[dict] = field(default_factory=list)  # {tensor, bits, sensitivity, members}
    logits: list[dict] = field(default_factory=list)
    noise_int8: float = 0.0
    noise_final: float = 0.0
    groups: int = 0
    max_wide: int = 0

    def to_json(self) -> dict:
        db = lambda n: round(float(-10 * np.log10(n)), 2) if n > 0 else None  # noqa: E731
        return {"mode": "auto", "groups": self.groups, "max_wide": self.max_wide, "kept_wide": len(self.wide),
                "wide": self.wide, "logits": self.logits, "sqnr_db_all_int8": db(self.noise_int8),
                "sqnr_db_chosen": db(self.noise_final), "noise_goal_db": round(float(-10 * np.log10(NOISE_GOAL)), 1)}


def choose(graph: Graph, plan: QuantPlan, calib, targets: list[str], max_wide: int | None = None) -> ActDecision:
    """Widen the most sensitive activation groups of `plan` (in place) until the goal holds."""
    data = calib.take(slice(0, min(len(calib), SAMPLES)))
    groups = groups_of(plan)
    wide = wide_bits(targets)
    limit = max_wide if max_wide is not None else max(MAX_WIDE_MIN, int(np.ceil(MAX_WIDE_FRACTION * len(groups))))
    sim = ActSimulator(graph, plan, data)
    ref = OrtRunner(graph.serialize(), threads=2, optimize=False).run_batches(data, sim.batch)
    runs = {0: relative_noise(ref, sim.run(plan_grids(plan, {}, groups)))}
    sens: dict[str, float] = {}
    base: dict = {}

    def sensitivity(g: str) -> float:  # one simulation per group: measured only when needed
        if g not in sens:
            if not base:
                base.update(sim.run({}))  # the plan's weights, float activations
            sens[g] = relative_noise(base, sim.run(plan_grids(plan, {}, {g: groups[g]})))
        return sens[g]

    order = sorted(groups, key=lambda g: -sensitivity(g)) if runs[0] > NOISE_GOAL else list(groups)
    best, stale = 0, 0
    for k in range(1, min(limit, len(order)) + 1):
        if runs[best] <= NOISE_GOAL or stale >= PATIENCE:
            break
        trial = {g: wide for g in order[:k]}
        runs[k] = relative_noise(ref, sim.run(plan_grids(plan, trial, groups)))
        best, stale = (k, 0) if runs[k] < runs[best] * 0.9 else (best, stale + 1)  # a widening must buy something
    widened = {g: wide for g in order[:best]}
    decision = ActDecision(noise_int8=runs[0], groups=len(groups), max_wide=limit)
    # Logits: argmax must not tie because the output grid is coarse.
    final = sim.run(plan_grids(plan, widened, groups))
    for out in sim.outputs:
        g = next((k for k, m in groups.items() if out in m), None)
        if g is None:
            continue
        rate = tie_rate(ref[out], final[out])
        entry = {"tensor": out, "tie_rate": round(rate, 4), "bits": plan.activations[out].bits}
        if rate > 0 and g not in widened and len(widened) < limit + 1:
            for bits in dict.fromkeys((wide, None)):  # 16 bits where the target holds them, else / still tying: float
                widened[g] = bits
                final = sim.run(plan_grids(plan, widened, groups))
                after = tie_rate(ref[out], final[out])
                if after == 0:
                    break
            entry.update(bits=widened[g], tie_rate_after=round(after, 4))
        decision.logits.append(entry)
    decision.noise_final = relative_noise(ref, final)
    for g, bits in widened.items():
        for t in groups[g]:
            a = plan.activations[t]
            a.bits = bits
            if bits is not None:
                a.scale, a.zero_point = affine_params(a.min, a.max, bits, a.signed)
        decision.wide.append({"tensor": g, "bits": bits, "members": groups[g], "sensitivity": float(f"{sensitivity(g):.4g}"),
                              "sqnr_db_int8_alone": round(float(-10 * np.log10(max(sensitivity(g), 1e-30))), 2)})
    return decision


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


def smooth_layernorms(graph: Graph, data) -> tuple[list[dict], dict[str, np.ndarray]]:
    """SmoothQuant: X' = X / s per channel (folded into LayerNorm's scale and bias), W' = s * W
    (folded into every consumer's weight rows). Exact in float; only where outliers exist."""
    cands = smoothable(graph)
    if not cands:
        return [], {}
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
    return done, tensors


def prepare_graph(graph: Graph, calib, smooth: bool = True) -> dict:
    """The data-driven float-exact rewrites, in place; returns what was done for the report."""
    from edgeq.passes.sentinel import describe, scale_masks

    data = calib.take(slice(0, min(len(calib), SAMPLES)))
    masks = scale_masks(graph, data)
    smoothed, tensors = smooth_layernorms(graph, data) if smooth else ([], {})
    return {"sentinel_rewrites": masks, "smoothquant": smoothed, "tensors": tensors, "warnings": [describe(r) for r in masks]}


# -- the pipeline's hooks (edgeq/pipeline.py make_plan) -------------------------------------
@dataclass
class ActStage:
    """make_plan calls `before_plan` once data is loaded and `after_plan` once the plan is built."""

    opts: object
    auto: bool = False
    prepared: dict = field(default_factory=dict)

    def after_plan(self, graph: Graph, plan: QuantPlan, calib, facts: dict) -> None:
        info = {k: v for k, v in self.prepared.items() if k not in ("tensors", "warnings")}
        facts["warnings"] += self.prepared.get("warnings", [])
        if self.auto and plan.mode == "static" and calib is not None and plan.activations:
            decision = choose(graph, plan, calib, self.opts.targets)
            plan.constraints["act_precision"] = decision.to_json()
            info.update(decision.to_json())
            for w in decision.wide:
                what = "float" if w["bits"] is None else f"{w['bits']}-bit"
                facts["warnings"].append(f"activation '{w['tensor']}' kept {what}: int8 alone costs "
                                         f"{w['sqnr_db_int8_alone']} dB output SQNR")
        for name, value in sorted(self.prepared.get("tensors", {}).items()):  # SmoothQuant: --plan reuse sees them
            from edgeq.quant.simulate import encode_tensor

            plan.tensors.setdefault(name, encode_tensor(value))
        if info.get("sentinel_rewrites") or info.get("smoothquant") or self.auto:
            facts["act_precision"] = info


def before_plan(graph: Graph, calib, opts) -> ActStage:
    """Check --act-bits against the targets; apply the data-driven float-exact rewrites in place."""
    import dataclasses

    q = getattr(opts, "quant", None)
    act_bits = q.act_bits if q is not None else "auto"  # auto is the default: no collapsed model
    check_act_bits(act_bits, opts.targets)
    stage = ActStage(opts, auto=act_bits == "auto" and opts.plan is None)  # a given plan is applied exactly
    if calib is not None:
        stage.prepared = prepare_graph(graph, calib, smooth=stage.auto and opts.plan is None)
    if act_bits == "auto":
        q8 = dataclasses.replace(q, act_bits=8) if q is not None else None
        stage.opts = dataclasses.replace(opts, quant=None if q8 is None or q8.is_default() else q8)
    return stage
