"""The host profile's CPU-dependent numbers: calibrated for this CPU, or the shipped ones marked assumed.

targets/devices/host_x86_64.toml ships throughput and overhead numbers measured once on one CPU
(its [measured_on] table names it). `bench/calibrate_host.py --write-cache` measures the CPU it
runs on and writes $EDGEQ_CACHE_DIR/host/<key>.toml (default ~/.cache/edgeq), keyed by
edgeq.hostcpu.cache_key: model name, family/part ids and throughput features. load_device lays
that file over the shipped numbers when its key is this CPU's. Every CPU-dependent number the
file does not give is marked assumed, its reason naming both CPUs: another machine's throughput
is never passed off as this one's (LiteRT int8 runs twice as fast with VNNI as without).

A corrupt cache file is an error naming it, not skipped: it cannot be recomputed on the fly
like the sensitivity cache, and skipping it would silently swap back to another CPU's numbers
while the user believes this one is calibrated.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path

from edgeq.errors import EdgeqError

# Numbers under a unit that do not depend on the CPU's throughput (literature energy, power guesses).
CPU_INDEPENDENT = ("energy_per_mac", "energy_per_byte", "active_power", "idle_power")
CALIBRATE = "bench/calibrate_host.py --write-cache"


def cache_dir() -> Path:
    return Path(os.environ.get("EDGEQ_CACHE_DIR", Path.home() / ".cache" / "edgeq")) / "host"


def cache_path(info: dict | None = None) -> Path:
    from edgeq.hostcpu import cache_key

    return cache_dir() / f"{cache_key(info)}.toml"


def cache_stamp() -> tuple:
    """What a loaded host profile depends on: the cache file's path, and its size and mtime if present."""
    path = cache_path()
    try:
        st = path.stat()
        return str(path), st.st_size, st.st_mtime_ns
    except OSError:
        return str(path), None, None


def cache_text(units: dict, info: dict | None = None, measured: str = "") -> str:
    """A cache entry as TOML: {unit: {"peak_ops.int8": {value, unit, source}, ...}} measured on
    the CPU `info` (this one by default). Written by hand: tomllib reads but does not write."""
    from edgeq.hostcpu import cache_key, cpu_info

    info = info or cpu_info()
    q = json.dumps  # a JSON string is a valid TOML basic string
    lines = ["# edgeq host numbers for one CPU, written by bench/calibrate_host.py --write-cache", "[cpu]",
             f"key = {q(cache_key(info))}", f"model = {q(info['model'])}", f"id = {q(info.get('id', ''))}",
             f"arch = {q(info['arch'])}", f"flags = [{', '.join(q(f) for f in info['flags'])}]",
             f"cores = {int(info['cores'])}", f"measured = {q(measured)}"]
    for unit, numbers in units.items():
        lines += ["", f"[units.{unit}]"]
        for key, n in numbers.items():
            cite = f"assumed = true, reason = {q(n['reason'])}" if n.get("assumed") else f"source = {q(n['source'])}"
            lines.append(f"{key} = {{ value = {float(n['value'])!r}, unit = {q(n['unit'])}, {cite} }}")
    return "\n".join(lines) + "\n"


def write_cache(units: dict, info: dict | None = None, measured: str = "") -> Path:
    from edgeq.fileio import write_text

    path = cache_path(info)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, cache_text(units, info, measured))
    return path


def cpu_dependent(path: str) -> bool:
    """'units.<u>.<key>...' paths whose number is measured per CPU."""
    parts = path.split(".")
    return len(parts) >= 3 and parts[0] == "units" and parts[2] not in CPU_INDEPENDENT


def read_cache(path: Path, info: dict | None = None) -> dict | None:
    """The cache entry's {"cpu": ..., "units": ...} for this CPU, or None when there is none."""
    from edgeq.hostcpu import cache_key

    if not path.is_file():
        return None
    where = f"host calibration cache {path}"
    fix = f"delete it or re-run {CALIBRATE}"
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as e:
        raise EdgeqError(f"{where} is unreadable ({str(e).splitlines()[0]}); {fix}") from None
    cpu, units = data.get("cpu"), data.get("units")
    if not isinstance(cpu, dict) or not isinstance(units, dict) or not units:
        raise EdgeqError(f"{where}: needs [cpu] and [units.*] tables; {fix}")
    if cpu.get("key") != cache_key(info):
        raise EdgeqError(f"{where}: written for CPU key {cpu.get('key')!r}, not this CPU's {cache_key(info)!r}; {fix}")
    return data


def overlay(name: str, data: dict, info: dict | None = None) -> tuple[dict, dict]:
    """The device data with this CPU's cached numbers laid over it, and what the report says about
    where the host numbers came from: {"from": "cache" | "shipped", "cpu", "measured_on", "file"}."""
    from edgeq.devices import DeviceError, collect_quantities
    from edgeq.hostcpu import describe

    measured_on = data.get("measured_on")
    if not isinstance(measured_on, dict) or not isinstance(measured_on.get("cpu"), str):
        raise DeviceError(f"device '{name}': [measured_on] needs cpu = \"...\" (the CPU its numbers were measured on)")
    path = cache_path(info)
    entry = read_cache(path, info)
    here, shipped_cpu = describe(info), measured_on["cpu"]
    if entry is None:
        return data, {"from": "shipped", "cpu": here, "measured_on": shipped_cpu, "file": None, "calibrated": [],
                      "note": f"host numbers are from a different CPU ({shipped_cpu}), not this one ({here}): "
                              f"marked assumed; run {CALIBRATE} to measure this CPU"}
    try:
        cached = collect_quantities({"units": entry["units"]})
    except DeviceError as e:
        raise EdgeqError(f"host calibration cache {path}: {e}; delete it or re-run {CALIBRATE}") from None
    merged = json.loads(json.dumps(data))  # a deep copy: the shipped data stays as read
    for dotted in cached:
        parts = dotted.split(".")
        if not cpu_dependent(dotted) or parts[1] not in data.get("units", {}):
            raise EdgeqError(f"host calibration cache {path}: {dotted} is not a CPU-dependent number of {name}; "
                             f"delete it or re-run {CALIBRATE}")
        node, value = merged, entry
        for p in parts[:-1]:
            node, value = node.setdefault(p, {}), value[p]
        node[parts[-1]] = value[parts[-1]]
    when = entry["cpu"].get("measured", "")
    note = f"host numbers calibrated on this CPU ({here}{', ' + when if when else ''}): {path}"
    return merged, {"from": "cache", "cpu": here, "measured_on": shipped_cpu, "file": str(path),
                    "calibrated": sorted(cached), "note": note}


def mark_other_cpu(data: dict, numbers: dict, path: str = "") -> dict:
    """The device data with each CPU-dependent number that was not measured on this CPU turned
    into an assumed one whose reason says so (all of them without a cache entry; with one, those
    it does not give, e.g. LiteRT's without --litert)."""
    if isinstance(data, dict) and "value" in data:
        if not cpu_dependent(path) or path in numbers["calibrated"] or data.get("assumed") is True:
            return data
        why = (f"measured on {numbers['measured_on']}, not on this CPU ({numbers['cpu']}); run {CALIBRATE} "
               f"to measure it here (was: {data.get('source', '')})")
        return {"value": data["value"], "unit": data["unit"], "assumed": True, "reason": why}
    if isinstance(data, dict):
        return {k: mark_other_cpu(v, numbers, f"{path}.{k}" if path else k) for k, v in data.items()}
    return data
