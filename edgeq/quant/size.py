"""What a plan's artifact should weigh on a target: the payload the plan predicts.

One rule per target gives the bytes each planned weight (codes + the quantization parameters the
format stores) and its bias take in the artifact: `edgeq.target.Target.storage`, which is the
target's own `weight_storage` (every target has one: the writer decides something the plan alone
does not say, e.g. ORT: float kernels, INT4 with --int4; LiteRT: INT4 kernels); `generic_storage` below
is the rule from a target's `[param_bytes]` (targets/<name>.toml: e.g. LiteRT keeps a float32 scale and an
int64 zero point per channel). The predicted payload, the profiler's weight bytes and the
writers all read it. Every other parameter counts at the format's float width. Graph structure
(names, shapes, ops) is not payload.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgeq import schemes
from edgeq.graph import Graph
from edgeq.quant.plan import QuantPlan, WeightPlan
from edgeq.quant.weights import storage_bits


@dataclass(frozen=True)
class Stored:
    """How one tensor sits in an artifact. codes: bytes of its values (codes, or floats for a
    weight kept float); params: bytes of its scales, zero points and lookup tables."""

    codes: float
    params: int = 0
    bias: bool = False
    other: bool = False  # a parameter no weight plan covers, at the format's float width for these options

    @property
    def total(self) -> float:
        return self.codes + self.params


def container_for(bits: int, containers) -> int:
    """The narrowest container width the format packs a `bits`-bit code into."""
    return min((c for c in containers if c >= bits), default=bits)


def linear_bytes(w: WeightPlan, container: int, fmt: dict) -> Stored:
    """Codes in `container` bits, + the plan's own scales (and zero points, palettes) as storage_bits
    counts them, + the format's per-channel overhead beyond those (fmt weight_scale / weight_zero_point)."""
    n = int(np.prod(w.shape))
    channels = len(w.scale or [])
    plan_params = (storage_bits(w) - w.bits * n) / 8
    return Stored(container * n / 8, int(np.ceil(plan_params)) + channels * (fmt["weight_scale"] + fmt["weight_zero_point"]))


def bias_bytes(graph: Graph, bias: str, fmt: dict, integer: bool = True) -> Stored:
    n = int(np.prod(graph.initializer(bias).shape)) if graph.is_const(bias) else 0
    if not integer:
        return Stored(n * fmt["float_bytes"], 0, bias=True)
    return Stored(n * fmt["bias_bytes"], n * (fmt["bias_scale"] + fmt["bias_zero_point"]), bias=True)


def float_bytes(w: WeightPlan, width: int) -> Stored:
    return Stored(width * int(np.prod(w.shape)))


def generic_storage(graph: Graph, plan: QuantPlan, fmt: dict) -> dict[str, Stored]:
    """{tensor: Stored} for every planned weight and its bias, from a format's `[param_bytes]`."""
    out: dict[str, Stored] = {}
    for w in plan.weights.values():
        if w.bits is None:
            out[w.tensor] = float_bytes(w, fmt["float_bytes"])
            continue
        sch = schemes.of(w)
        containers = fmt.get(f"{'palette' if sch.palette else 'linear'}_code_containers", fmt["code_containers"])
        n, channels = int(np.prod(w.shape)), len(w.scale or [])
        if sch.linear and fmt.get("linear_lut_bits") and not w.per_block:
            _, _, nbytes = cheapest_linear(w.bits, n, channels, containers, fmt["linear_lut_bits"], fmt["float_bytes"],
                                           sch.zero_points)
            out[w.tensor] = Stored(nbytes)
        else:
            out[w.tensor] = linear_bytes(w, container_for(w.bits, containers), fmt)
        if w.bias and w.bias not in out:
            out[w.bias] = bias_bytes(graph, w.bias, fmt)
    return out


def predicted_bytes(graph: Graph, plan: QuantPlan, target: str | None = None, options: dict | None = None) -> dict:
    """The payload: planned weights (codes), their parameters and biases, and every other parameter."""
    from edgeq.target import DEFAULT_PARAM_BYTES, get_target, target_spec

    if target is not None:
        stored, fmt = get_target(target).storage(graph, plan, options), target_spec(target).storage_format()
    else:
        stored, fmt = generic_storage(graph, plan, DEFAULT_PARAM_BYTES), DEFAULT_PARAM_BYTES
    return summarize(graph, stored, fmt["float_bytes"])


def summarize(graph: Graph, stored: dict[str, Stored], float_width: int) -> dict:
    weights = [s for s in stored.values() if not s.bias and not s.other]
    codes = sum(s.codes for s in weights)
    meta = sum(s.params for s in weights) + sum(s.total for s in stored.values() if s.bias)
    other = sum(s.total for s in stored.values() if s.other)
    other += float_width * sum(int(np.prod(t.dims)) for t in graph.model.graph.initializer if t.name not in stored)
    packed = int(np.ceil(codes))
    other = int(np.ceil(other))
    return {"weights_packed": packed, "quant_params": int(np.ceil(meta)), "other_params": other,
            "total": packed + int(np.ceil(meta)) + other}


def cheapest_linear(bits: int, n: int, channels: int, containers, lut_widths, float_bytes: int,
                    zero_points: bool = False) -> tuple[str, int, float]:
    """How a format with integer containers and per-channel lookup tables stores a linear grid
    cheapest: ("container", width, bytes) with a float scale (+ zero point) per channel, or ("lut",
    index width, bytes) with the grid's 2^width levels per channel (Core ML iOS 18). Ties: container."""
    container = container_for(bits, containers)
    options = [("container", container, n * container / 8 + channels * (float_bytes + zero_points * container / 8))]
    lut = min((b for b in lut_widths if b >= bits), default=None)
    if lut is not None and lut < container:
        options.append(("lut", lut, n * lut / 8 + channels * 2**lut * float_bytes))
    return min(options, key=lambda o: o[2])
