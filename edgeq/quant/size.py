"""What a plan's artifact should weigh on a target: the payload the plan predicts.

Packed weight codes at their planned bits, plus the quantization parameters the target's
format stores per channel (targets/<name>.toml `[param_bytes]`: e.g. LiteRT keeps a float32
scale and an int64 zero point per channel, for weights and int32 biases alike), plus every
other parameter at 4 bytes. Graph structure (names, shapes, ops) is not payload.
"""

from __future__ import annotations

import numpy as np

from edgeq.graph import Graph
from edgeq.lower import target_data
from edgeq.quant.plan import QuantPlan
from edgeq.quant.weights import storage_bits

# Default: a float32 scale per channel and no stored zero point (symmetric).
# code_containers: the widths the format packs codes into (a 7-bit code in an int8 byte).
DEFAULT_PARAM_BYTES = {"weight_scale": 0, "weight_zero_point": 0, "bias_scale": 4, "bias_zero_point": 0,
                       "code_containers": [1, 2, 3, 4, 5, 6, 7, 8]}


def predicted_bytes(graph: Graph, plan: QuantPlan, target: str | None = None) -> dict:
    fmt = {**DEFAULT_PARAM_BYTES, **{k: v for k, v in (target_data(target).get("param_bytes", {}) if target else {}).items() if k != "source"}}
    codes = 0
    meta = 0
    biases = set()
    for w in plan.weights.values():
        if w.bits is None:
            codes += 32 * int(np.prod(w.shape))
            continue
        n = int(np.prod(w.shape))
        container = min((c for c in fmt["code_containers"] if c >= w.bits), default=w.bits)
        # codes in the format's container, + scales (+ zero points, palettes) as the plan holds them
        codes += storage_bits(w) - w.bits * n + container * n
        channels = len(w.scale or [])
        meta += channels * (fmt["weight_scale"] + fmt["weight_zero_point"])  # format overhead beyond the plan's own
        if w.bias:
            biases.add(w.bias)
            nb = int(np.prod(graph.initializer(w.bias).shape)) if graph.is_const(w.bias) else 0
            meta += nb * (4 + fmt["bias_scale"] + fmt["bias_zero_point"])
    planned = set(plan.weights) | biases
    other = 4 * sum(int(np.prod(t.dims)) for t in graph.model.graph.initializer if t.name not in planned)
    total = int(np.ceil(codes / 8)) + meta + other
    return {"weights_packed": int(np.ceil(codes / 8)), "quant_params": meta, "other_params": other, "total": total}
