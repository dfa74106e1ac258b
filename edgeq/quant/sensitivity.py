"""Per-layer sensitivity: the model's output error when only one layer is quantized.

For every quantizable layer and every bit width the target allows, the layer alone is
quantized (with the chosen rounding) and the whole model runs on calibration data in
simulation; the cost is the output noise power relative to the signal, summed over
outputs (additive across layers to first order, which is what the allocator assumes).
Results are cached on disk keyed by model, data, settings and rounding.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from edgeq.fileio import dumps_json, write_text
from edgeq.graph import Graph
from edgeq.quant.gptq import LayerStats, gptq_weight, supported
from edgeq.quant.plan import WeightPlan
from edgeq.quant.simulate import Simulator
from edgeq.quant.weights import derive, fake_quant_weight, storage_bits

SENSITIVITY_SAMPLES = 128


def cache_dir() -> Path:
    return Path(os.environ.get("EDGEQ_CACHE_DIR", Path.home() / ".cache" / "edgeq")) / "sensitivity"


def quantize_layer(graph: Graph, node, wp: WeightPlan, w: np.ndarray, rounding: str,
                   stats: LayerStats | None) -> tuple[WeightPlan, np.ndarray | None, np.ndarray]:
    """(derived plan, rewritten float weight or None, float values on the target).

    GPTQ keeps its result only where it lowers the layer's output error (never worse than RTN)."""
    wp = derive(wp, w)
    if wp.bits is None:
        return wp, None, w
    if rounding == "gptq" and stats is not None and supported(graph, node):
        q, err, rtn = gptq_weight(node, wp, w, stats)
        if err < rtn:
            wp.rounding = "gptq"
            return wp, q, q
    wp.rounding = "nearest"
    return wp, None, fake_quant_weight(wp, w)


def relative_noise(ref: dict, got: dict) -> float:
    total = 0.0
    for k, r in ref.items():
        r64 = r.astype(np.float64)
        total += float(np.sum((got[k] - r64) ** 2) / max(np.sum(r64**2), 1e-30))
    return total


def _key(graph: Graph, dataset, names: list[str], bits: list[int], rounding: str, base: dict[str, WeightPlan]) -> str:
    h = hashlib.sha256(graph.sha256().encode())
    for k in sorted(dataset.arrays):
        h.update(k.encode())
        h.update(np.ascontiguousarray(dataset.arrays[k]).tobytes())
    settings = [(n, base[n].scheme, base[n].granularity, base[n].axis, base[n].block_size, base[n].codebook) for n in names]
    h.update(json.dumps([settings, bits, rounding, SENSITIVITY_SAMPLES], sort_keys=True).encode())
    return h.hexdigest()


def measure(graph: Graph, nodes: dict, base: dict[str, WeightPlan], bits: list[int], dataset, rounding: str = "nearest",
            stats: dict[str, LayerStats] | None = None, progress=None, use_cache: bool = True) -> dict:
    """{"cost": {weight: {bits: cost}}, "size": {weight: {bits: storage bits}}, "cached": bool}."""
    names = list(base)
    data = dataset.take(slice(0, min(len(dataset), SENSITIVITY_SAMPLES)))
    path = cache_dir() / f"{_key(graph, data, names, bits, rounding, base)}.json"
    if use_cache and path.is_file():
        try:
            d = json.loads(path.read_text())
            conv = {kind: {n: {int(b): v for b, v in per.items()} for n, per in d[kind].items()} for kind in ("cost", "size")}
            if progress:
                progress(len(names) * len(bits))
            return {**conv, "cached": True}
        except (ValueError, KeyError):
            pass
    sim = Simulator(graph, names, data)
    ref = sim.run()
    cost: dict = {}
    size: dict = {}
    for name in names:
        w = graph.initializer(name)
        cost[name], size[name] = {}, {}
        for b in bits:
            wp = copy.deepcopy(base[name])
            wp.bits = b
            wp, _, values = quantize_layer(graph, nodes[name], wp, w, rounding, (stats or {}).get(name))
            cost[name][b] = relative_noise(ref, sim.run({name: values}))
            size[name][b] = storage_bits(wp)
            if progress:
                progress(1)
    if use_cache:
        write_text(path, dumps_json({"cost": cost, "size": size}))
    return {"cost": cost, "size": size, "cached": False}
