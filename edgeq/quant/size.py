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
# float_bytes: bytes per parameter the format keeps float (and per weight the plan leaves float).
# linear_code_containers / palette_code_containers: per scheme, where a format stores them apart.
DEFAULT_PARAM_BYTES = {"weight_scale": 0, "weight_zero_point": 0, "bias_scale": 4, "bias_zero_point": 0,
                       "code_containers": [1, 2, 3, 4, 5, 6, 7, 8], "float_bytes": 4, "bias_bytes": 4}


def predicted_bytes(graph: Graph, plan: QuantPlan, target: str | None = None) -> dict:
    fmt = {**DEFAULT_PARAM_BYTES, **{k: v for k, v in (target_data(target).get("param_bytes", {}) if target else {}).items() if k != "source"}}
    codes = 0
    meta = 0
    biases = set()
    for w in plan.weights.values():
        if w.bits is None:
            codes += 8 * fmt["float_bytes"] * int(np.prod(w.shape))
            continue
        n = int(np.prod(w.shape))
        containers = fmt.get(f"{'palette' if w.scheme == 'palette' else 'linear'}_code_containers", fmt["code_containers"])
        container = min((c for c in containers if c >= w.bits), default=w.bits)
        channels = len(w.scale or [])
        if w.scheme != "palette" and fmt.get("linear_lut_bits") and w.granularity in ("per_tensor", "per_channel"):
            _, _, nbytes = cheapest_linear(w.bits, n, channels, containers, fmt["linear_lut_bits"], fmt["float_bytes"],
                                           w.scheme == "asymmetric")
            codes += int(np.ceil(8 * nbytes))
        else:
            # codes in the format's container, + scales (+ zero points, palettes) as the plan holds them
            codes += storage_bits(w) - w.bits * n + container * n
            meta += channels * (fmt["weight_scale"] + fmt["weight_zero_point"])  # format overhead beyond the plan's own
        if w.bias:
            biases.add(w.bias)
            nb = int(np.prod(graph.initializer(w.bias).shape)) if graph.is_const(w.bias) else 0
            meta += nb * (fmt["bias_bytes"] + fmt["bias_scale"] + fmt["bias_zero_point"])
    planned = set(plan.weights) | biases
    other = fmt["float_bytes"] * sum(int(np.prod(t.dims)) for t in graph.model.graph.initializer if t.name not in planned)
    total = int(np.ceil(codes / 8)) + meta + other
    return {"weights_packed": int(np.ceil(codes / 8)), "quant_params": meta, "other_params": other, "total": total}


def cheapest_linear(bits: int, n: int, channels: int, containers, lut_widths, float_bytes: int,
                    zero_points: bool = False) -> tuple[str, int, float]:
    """How a format with integer containers and per-channel lookup tables stores a linear grid
    cheapest: ("container", width, bytes) with a float scale (+ zero point) per channel, or ("lut",
    index width, bytes) with the grid's 2^width levels per channel (Core ML iOS 18). Ties: container."""
    container = min((c for c in containers if c >= bits), default=bits)
    options = [("container", container, n * container / 8 + channels * (float_bytes + zero_points * container / 8))]
    lut = min((b for b in lut_widths if b >= bits), default=None)
    if lut is not None and lut < container:
        options.append(("lut", lut, n * lut / 8 + channels * 2**lut * float_bytes))
    return min(options, key=lambda o: o[2])
