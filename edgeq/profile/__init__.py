"""Profile: bytes, latency measured on the real runtime, and per-device estimates.

`profile_artifact(artifact, graph, plan, devices, rate)` is what `compile` calls per target;
`profile_path(path, ...)` is `edgeq profile`. Estimates (latency, energy, battery) come from
the cost model (cost.py) and the device profiles (targets/devices/*.toml) and are labelled
as such; measured numbers are host-only.
"""

from __future__ import annotations

import re
import time
from collections import Counter

import numpy as np

from edgeq.errors import EdgeqError
from edgeq.target import TARGET_MODULES, get_target

HOST_DEVICE = "host_x86_64"
ESTIMATE_LABEL = ("estimate: roofline cost model x device profile (targets/devices/*.toml); "
                  "energy = MACs x pJ/MAC + bytes x pJ/byte + active power x time; not a measurement")


def measure_runners(runners: list, feeds: dict, warmup: int = 5, runs: int = 50, budget_s: float = 5.0) -> list[dict]:
    """Milliseconds per run for each runner, taken alternately so machine noise hits all alike:
    warm-up first, then up to `runs` timed rounds within a time budget (at least 5)."""
    for _ in range(warmup):
        for r in runners:
            r.run(feeds)
    times: list[list[float]] = [[] for _ in runners]
    deadline = time.perf_counter() + budget_s
    while len(times[0]) < runs and (len(times[0]) < 5 or time.perf_counter() < deadline):
        for k, r in enumerate(runners):
            t0 = time.perf_counter()
            r.run(feeds)
            times[k].append((time.perf_counter() - t0) * 1e3)
    return [{"p50": float(np.percentile(t, 50)), "p90": float(np.percentile(t, 90)), "p99": float(np.percentile(t, 99)),
             "runs": len(t)} for t in map(np.asarray, times)]


def measure_latency(runner, feeds: dict, warmup: int = 5, runs: int = 50, budget_s: float = 5.0) -> dict:
    return measure_runners([runner], feeds, warmup, runs, budget_s)[0]


def measure_pair(float_runner, quant_runner, feeds: dict, warmup: int = 5, runs: int = 50, budget_s: float = 4.0) -> tuple[dict, dict]:
    """Float and quantized latency measured alternately."""
    flt, quant = measure_runners([float_runner, quant_runner], feeds, warmup, runs, budget_s)
    return flt, quant


def one_sample(dataset, batch: int = 1) -> dict:
    """One inference's feeds: `batch` samples (a model bound to batch B is timed per call of B)."""
    return {k: v[np.arange(batch) % len(v)] for k, v in dataset.arrays.items()}


def parse_rate(text) -> float:
    """'30/s', '30', '120/min', '5/h' -> inferences per second (> 0)."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?\d+)?)\s*(?:/\s*(s|sec|min|h|hour))?\s*", str(text))
    if not m:
        raise EdgeqError(f"--rate '{text}': write inferences per time, e.g. 30/s, 120/min or 5/h")
    value = float(m.group(1)) / {"s": 1, "sec": 1, None: 1, "min": 60, "h": 3600, "hour": 3600}[m.group(2)]
    if value <= 0:
        raise EdgeqError(f"--rate '{text}': the rate must be above 0 inferences per second")
    if not value <= MAX_RATE:  # also inf (1e999)
        raise EdgeqError(f"--rate '{text}': the rate must be at most {MAX_RATE:.0e} inferences per second "
                         "(no device runs a model faster); e.g. 30/s")
    return value


MAX_RATE = 1e6


def _r(x: float | None, nd: int = 6):
    return None if x is None else float(f"{x:.{nd}g}")


def device_estimate(costs, device, target: str, rate: float, residency: dict | None = None) -> dict:
    """Latency, energy with its terms and battery impact of one model on one device."""
    from edgeq.profile.cost import estimate_latency
    from edgeq.profile.energy import battery_impact, energy_terms

    lat = estimate_latency(costs, device, target, residency)
    energy = energy_terms(costs, device, lat)
    main = device.units[lat["main_unit"]]
    fallback = [c.name for c, u in zip(costs, lat["units"]) if u != lat["main_unit"]]
    return {
        "unit": lat["main_unit"],
        "latency_ms": _r(lat["seconds"] * 1e3),
        "call_overhead_ms": _r(lat["call_seconds"] * 1e3),
        "transfer_ms": _r(lat["transfer_seconds"] * 1e3),
        "energy_mj": _r(energy["total_j"] * 1e3),
        "energy_terms_mj": {k.removesuffix("_j"): _r(v * 1e3) for k, v in energy["terms"].items()},
        "battery": {k: _r(v) if isinstance(v, float) else v for k, v in battery_impact(energy["total_j"], lat["seconds"], device, rate).items()},
        "ops_per_unit": dict(sorted(Counter(lat["units"]).items())),
        "fallback_ops": fallback,
        "precision": dict(sorted(Counter(t.precision for t in lat["times"]).items())),
        "bound": dict(sorted(Counter(t.bound for t in lat["times"]).items())),
        "idle_power_w": main.idle_power.value,
        "per_op_ms": [_r(t.seconds * 1e3, 4) for t in lat["times"]],
        "units": lat["units"],
    }


def profile_model(graph, plan, target: str, devices: list[str], rate: float, residency: dict | None = None,
                  options: dict | None = None) -> dict:
    """Estimates for the quantized model and its float original on each device, plus memory.
    options: the target options the artifact was written with (they decide its storage); the
    target also says which ops its runtime runs as integer kernels and which activations it fuses."""
    from edgeq.op_cost import Sizer, op_costs

    spec = get_target(target) if target in TARGET_MODULES else None
    stored = spec.storage(graph, plan, options) if spec is not None and plan is not None else None
    kernels, fusions = (spec.int8_kernels, spec.fused_after) if spec is not None else (None, None)
    quant = op_costs(graph, plan, int8_kernels=kernels, stored=stored, fused_after=fusions)
    return profile_costs(quant, op_costs(graph, None, fused_after=fusions), Sizer(graph, plan, 1).act_bytes,
                         Sizer(graph, None, 1).act_bytes, [s.name for s in graph.inputs], [s.name for s in graph.outputs],
                         target, devices, rate, residency)


def profile_costs(quant, flt, size_quant, size_float, ins: list[str], outs: list[str], target: str, devices: list[str],
                  rate: float, residency: dict | None = None) -> dict:
    """The profile from per-op costs (quantized and float) and tensor sizes, whatever format they came from."""
    from edgeq.devices import load_devices
    from edgeq.profile.memory import memory_summary

    out: dict = {
        "label": ESTIMATE_LABEL,
        "rate_per_s": rate,
        "memory": {"quant": memory_summary(quant, size_quant, ins, outs), "float": memory_summary(flt, size_float, ins, outs)},
        "totals": {"macs": int(sum(c.macs for c in quant)), "quant_weight_bytes": int(sum(c.weight_bytes for c in quant)),
                   "float_weight_bytes": int(sum(c.weight_bytes for c in flt))},
        "devices": {}, "assumed": {},
    }
    per_device_units = {}
    for dev in load_devices(devices):
        if target not in dev.targets:
            out["devices"][dev.name] = {"skipped": f"{target} artifacts do not run on {dev.name} (it runs: {', '.join(sorted(dev.targets))})"}
            continue
        q = device_estimate(quant, dev, target, rate, residency)
        f = device_estimate(flt, dev, target, rate)
        per_device_units[dev.name] = (q.pop("units"), q.pop("per_op_ms"))
        f.pop("units"), f.pop("per_op_ms")
        out["devices"][dev.name] = {"description": dev.description, "quant": q, "float": f}
        if dev.host_numbers is not None:  # this CPU's calibration, or another CPU's numbers marked assumed
            out["devices"][dev.name]["host_numbers"] = {k: v for k, v in dev.host_numbers.items() if k != "calibrated"}
        out["assumed"][dev.name] = dev.assumed()
    out["ops"] = [
        {"name": c.name, "op": c.op, "kind": c.kind, "precision": c.precision, "macs": c.macs, "weight_bytes": c.weight_bytes,
         "activation_bytes": c.in_bytes + c.out_bytes,
         "unit": {d: u[i] for d, (u, _) in per_device_units.items()},
         "ms": {d: t[i] for d, (_, t) in per_device_units.items()}}
        for i, c in enumerate(quant)
    ]
    return out


def _measured(lat: dict, threads: int, load_seconds: float | None) -> dict:
    return {"p50_ms": _r(lat["p50"]), "p90_ms": _r(lat["p90"]), "p99_ms": _r(lat["p99"]), "runs": lat["runs"],
            "threads": threads, "load_ms": _r(load_seconds * 1e3) if load_seconds is not None else None}


def compare_host(profile: dict, measured_ms: float | None, float_measured: tuple[float, float] | None = None) -> None:
    """Add predicted/measured for the host profile, the check the cost model is held to.
    float_measured: (predicted, measured) ms of the float model on onnxruntime."""
    host = profile["devices"].get(HOST_DEVICE, {})
    if "quant" not in host or not measured_ms:
        return
    cmp = {"quant": {"predicted_ms": host["quant"]["latency_ms"], "measured_ms": _r(measured_ms),
                     "ratio": _r(host["quant"]["latency_ms"] / measured_ms, 4)}}
    if float_measured:
        pred, meas = float_measured
        cmp["float"] = {"predicted_ms": pred, "measured_ms": _r(meas), "ratio": _r(pred / meas, 4)}
    profile["host_predicted_vs_measured"] = cmp


def backend_residency(extra: dict) -> dict | None:
    """{op name: unit} from the backend, if it says where ops run (extra["residency"], or the
    per-node table inside extra["neural_engine"] that the coreml target writes)."""
    r = extra.get("residency")
    if isinstance(r, dict):
        return r
    ne = extra.get("neural_engine")
    if isinstance(ne, dict):
        if isinstance(ne.get("per_node"), list):  # the coreml target: [{node, op, unit}]
            return {e["node"]: e["unit"] for e in ne["per_node"] if isinstance(e, dict) and "node" in e and "unit" in e}
        for key in ("residency", "ops", "per_op"):
            table = ne.get(key)
            if isinstance(table, dict) and table and all(isinstance(v, str) for v in table.values()):
                return table
    return None


def profile_artifact(artifact, graph, plan, devices, rate, measured: dict | None = None, float_measured: dict | None = None,
                     load_seconds: float | None = None, threads: int = 1, options: dict | None = None) -> dict:
    """The `profile` entry of a target in report.json (estimates + host measurements)."""
    devices = list(dict.fromkeys([*devices, HOST_DEVICE]))
    residency = backend_residency(artifact.extra)
    prof = profile_model(graph, plan, artifact.target, devices, rate, residency, options)
    arena = artifact.extra.get("tflm_arena_bytes", artifact.extra.get("arena_bytes"))
    if arena is not None:  # TFLite Micro's recording allocator measured it (plus its margin)
        prof["memory"]["measured_arena_bytes"] = int(arena)
    if measured is not None:
        prof["host_measured"] = _measured(measured, threads, load_seconds)
        if float_measured is not None:
            prof["host_measured"]["float_p50_ms"] = _r(float_measured["p50"])
        float_pair = None
        if float_measured is not None:  # compile times the float model on onnxruntime: predict that
            from edgeq.devices import load_device
            from edgeq.op_cost import op_costs

            pred = device_estimate(op_costs(graph, None), load_device(HOST_DEVICE), "onnx", rate)["latency_ms"]
            float_pair = (pred, float_measured["p50"])
        compare_host(prof, measured["p50"], float_pair)
        if threads != 1 and "host_predicted_vs_measured" in prof:
            prof["host_predicted_vs_measured"]["note"] = f"the host profile describes 1 thread; measured with {threads}"
    return prof


def random_feeds(specs, seed: int = 0) -> dict:
    """Normal noise for each input (TensorSpec or IOSpec), batch 1 for symbolic dims."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for s in specs:
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in s.shape]
        feeds[s.name] = rng.normal(0, 1, shape).astype(np.float32)
    return feeds


def profile_path(path, devices, rate, threads: int = 1, runs: int = 50, measure: bool = True) -> dict:
    """`edgeq profile ARTIFACT`: read it back, measure it on the host runtime, estimate per device."""
    from edgeq.artifact import path_bytes
    from edgeq.profile.read import read_artifact

    art = read_artifact(path)
    devices = list(dict.fromkeys([*devices, HOST_DEVICE]))
    if art.costs is not None:
        prof = profile_costs(*art.costs, art.target, devices, rate)
    else:
        prof = profile_model(art.graph, art.plan, art.target, devices, rate, options=art.options)
    prof = {"artifact": str(art.path), "target": art.target, "bytes": path_bytes(art.path),
            "quantized": art.quantized, **prof}
    if measure:
        runner = art.runner(threads)
        lat = measure_latency(runner, random_feeds(art.input_specs()), runs=runs)
        prof["host_measured"] = _measured(lat, threads, runner.load_seconds)
        if runner.reference_executor:  # e.g. Core ML off macOS: edgeq's numpy MIL executor
            prof["host_measured"]["note"] = "a reference executor (the target's runtime cannot run here): not a device latency"
        compare_host(prof, lat["p50"])
    return prof
