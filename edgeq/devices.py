"""Device profiles: targets/devices/<name>.toml, every number with its source.

A number is a table `{ value = 15.8, unit = "TOPS", source = "..." }`, or, when no
published figure exists, `{ value = ..., unit = ..., assumed = true, reason = "..." }`.
A bare number anywhere in a device file is a schema error: the report must be able to
say where each figure came from, and list the assumed ones.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

from edgeq import host_numbers
from edgeq.errors import EdgeqError

# Unit -> factor to SI (ops/s, bytes/s, joules, watts, seconds, bytes, watt-hours, volts).
SI = {
    "GOPS": 1e9, "TOPS": 1e12, "GB/s": 1e9, "pJ": 1e-12, "nJ": 1e-9, "W": 1.0, "mW": 1e-3,
    "us": 1e-6, "ms": 1e-3, "s": 1.0, "B": 1.0, "KiB": 1024.0, "MiB": 1024.0**2, "Wh": 1.0, "V": 1.0,
    "ratio": 1.0, "rows": 1.0,
}
PRECISIONS = ("int8", "fp16", "fp32")
OP_CLASSES = ("dense", "depthwise", "elementwise")


class DeviceError(EdgeqError):
    """A device name that is not known, or a device file that breaks the schema."""


@dataclass(frozen=True)
class Quantity:
    value: float
    unit: str
    source: str  # citation, or the reason when assumed
    assumed: bool = False

    @property
    def si(self) -> float:
        return self.value * SI[self.unit]

    def to_json(self) -> dict:
        if self.assumed:
            return {"value": self.value, "unit": self.unit, "assumed": True, "reason": self.source}
        return {"value": self.value, "unit": self.unit, "source": self.source}


@dataclass
class ComputeUnit:
    name: str
    kind: str  # cpu | gpu | npu
    peak_ops: dict[str, Quantity]  # precision -> ops/s (1 MAC = 2 ops)
    efficiency: dict[str, Quantity]  # op class -> fraction of peak a real kernel reaches
    bandwidth: Quantity  # DRAM bytes/s as seen from this unit
    onchip_bandwidth: Quantity
    onchip_bytes: Quantity  # cache / SRAM a working set must fit in to stay on chip
    op_overhead: Quantity  # fixed cost per kernel launch
    energy_per_mac: dict[str, Quantity]
    energy_per_byte: dict[str, Quantity]  # dram, onchip
    active_power: Quantity  # power of the unit while busy (beyond arithmetic and data movement)
    idle_power: Quantity
    call_overhead: Quantity | None = None  # fixed cost per inference call (runtime entry)
    kernel_overhead: dict[str, Quantity] = field(default_factory=dict)  # per op class(_precision), overrides op_overhead
    unsupported_ops: list[str] = field(default_factory=list)  # ops that fall back to `fallback`
    fallback: str | None = None
    # per precision: the GEMM rows per call (output positions per image) at which a dense kernel
    # reaches half its rate; efficiency.dense_* was measured at REFERENCE_ROWS (op_time scales it)
    gemm_half_rows: dict[str, Quantity] = field(default_factory=dict)

    def precision_for(self, wanted: str) -> str:
        """The precision this unit computes `wanted` in: int8 if it has it, else its float."""
        if wanted in self.peak_ops:
            return wanted
        for p in ("fp16", "fp32", "int8") if wanted != "int8" else ("fp16", "fp32"):
            if p in self.peak_ops:
                return p
        raise DeviceError(f"compute unit '{self.name}' has no peak_ops entry")


@dataclass
class Device:
    name: str
    description: str
    units: dict[str, ComputeUnit]
    targets: dict[str, str]  # artifact target -> unit that runs it ("onnx" = plain float model)
    battery_wh: Quantity | None
    battery_v: Quantity | None
    transfer_bandwidth: Quantity | None
    transfer_overhead: Quantity | None
    quantities: dict[str, Quantity]  # every number by dotted path, for listing sources
    int8_saturates: bool = False  # x86 without VNNI: int8 pair sums saturate at 16 bits (ort reduce_range)
    host_numbers: dict | None = None  # a host profile: where its CPU-dependent numbers came from (host_numbers.py)

    def unit_for(self, target: str) -> ComputeUnit | None:
        name = self.targets.get(target)
        return self.units.get(name) if name else None

    def assumed(self) -> list[dict]:
        return [{"number": k, "value": q.value, "unit": q.unit, "reason": q.source}
                for k, q in sorted(self.quantities.items()) if q.assumed]


def _quantity(path: str, d: dict) -> Quantity:
    if "value" not in d or "unit" not in d:
        raise DeviceError(f"{path}: a number needs value and unit")
    if d["unit"] not in SI:
        raise DeviceError(f"{path}: unknown unit '{d['unit']}'; use one of {', '.join(SI)}")
    if not isinstance(d["value"], int | float) or isinstance(d["value"], bool):
        raise DeviceError(f"{path}: value must be a number")
    if d.get("assumed") is True:
        reason = d.get("reason", "")
        if not isinstance(reason, str) or not reason.strip():
            raise DeviceError(f"{path}: assumed numbers need a reason")
        return Quantity(float(d["value"]), d["unit"], reason, True)
    source = d.get("source", "")
    if not isinstance(source, str) or not source.strip():
        raise DeviceError(f"{path}: number without a source (add source = \"...\" or assumed = true with a reason)")
    return Quantity(float(d["value"]), d["unit"], source)


def collect_quantities(data, path: str = "") -> dict[str, Quantity]:
    """Every number in a device file by dotted path; raises on a number without a source."""
    out: dict[str, Quantity] = {}
    if isinstance(data, dict):
        if "value" in data:
            return {path: _quantity(path, data)}
        for k, v in data.items():
            out.update(collect_quantities(v, f"{path}.{k}" if path else k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out.update(collect_quantities(v, f"{path}[{i}]"))
    elif isinstance(data, int | float) and not isinstance(data, bool):
        raise DeviceError(f"{path}: bare number {data}; write {{ value = {data}, unit = \"...\", source = \"...\" }}")
    return out


def _unit(name: str, d: dict, q: dict[str, Quantity], prefix: str) -> ComputeUnit:
    def get(key: str) -> Quantity:
        if f"{prefix}.{key}" not in q:
            raise DeviceError(f"{prefix}: missing {key}")
        return q[f"{prefix}.{key}"]

    def table(key: str) -> dict[str, Quantity]:
        return {k: q[f"{prefix}.{key}.{k}"] for k in d.get(key, {})}

    return ComputeUnit(
        name=name, kind=d.get("kind", "cpu"), peak_ops=table("peak_ops"), efficiency=table("efficiency"),
        bandwidth=get("bandwidth"), onchip_bandwidth=get("onchip_bandwidth"), onchip_bytes=get("onchip_bytes"),
        op_overhead=get("op_overhead"), energy_per_mac=table("energy_per_mac"),
        energy_per_byte=table("energy_per_byte"), active_power=get("active_power"), idle_power=get("idle_power"),
        call_overhead=q.get(f"{prefix}.call_overhead"), kernel_overhead=table("kernel_overhead"), unsupported_ops=list(d.get("unsupported_ops", [])),
        fallback=d.get("fallback"), gemm_half_rows=table("gemm_half_rows"),
    )


def parse_device(name: str, data: dict) -> Device:
    q = {f"{name}.{k}": v for k, v in collect_quantities(data).items()}
    units = {u: _unit(u, d, q, f"{name}.units.{u}") for u, d in data.get("units", {}).items()}
    if not units:
        raise DeviceError(f"device '{name}': no [units.*] compute units")
    for u in units.values():
        if not u.peak_ops or "dram" not in u.energy_per_byte or "onchip" not in u.energy_per_byte:
            raise DeviceError(f"device '{name}' unit '{u.name}': needs peak_ops and energy_per_byte.dram/onchip")
        if u.fallback and u.fallback not in units:
            raise DeviceError(f"device '{name}' unit '{u.name}': fallback '{u.fallback}' is not a unit")
    targets = dict(data.get("targets", {}))
    for t, u in targets.items():
        if u not in units:
            raise DeviceError(f"device '{name}': target {t} runs on unknown unit '{u}'")
    return Device(
        name=name, description=data.get("description", name), units=units, targets=targets,
        battery_wh=q.get(f"{name}.battery.capacity"), battery_v=q.get(f"{name}.battery.voltage"),
        transfer_bandwidth=q.get(f"{name}.transfer.bandwidth"), transfer_overhead=q.get(f"{name}.transfer.overhead"),
        quantities=q, int8_saturates=_int8_saturates(name, data.get("int8_dot", True)),
    )


def _int8_saturates(name: str, value) -> bool:
    """int8_dot = true | false | "host" (this machine's CPU, detected at run time)."""
    if value == "host":
        from edgeq.hostcpu import int8_dot

        return not int8_dot()
    if not isinstance(value, bool):
        raise DeviceError(f"device '{name}': int8_dot must be true, false or \"host\"")
    return not value


def _device_files() -> dict[str, object]:
    folder = resources.files("edgeq.targets").joinpath("devices")
    return {f.name[:-5]: f for f in folder.iterdir() if f.name.endswith(".toml")}


def device_names() -> list[str]:
    return sorted(_device_files())


@cache
def _shipped(name: str) -> dict:
    try:
        return tomllib.loads(_device_files()[name].read_text())
    except tomllib.TOMLDecodeError as e:
        raise DeviceError(f"targets/devices/{name}.toml: {e}") from None


def load_device(name: str) -> Device:
    files = _device_files()
    if name not in files:
        raise DeviceError(f"unknown device '{name}'; known devices: {', '.join(sorted(files))}")
    data = _shipped(name)
    # a host profile (it names the CPU its numbers were measured on) also depends on this CPU's cache file
    return _device(name, host_numbers.cache_stamp() if "measured_on" in data else None)


@cache
def _device(name: str, host_stamp: tuple | None) -> Device:
    data = _shipped(name)
    if host_stamp is None:
        return parse_device(name, data)
    data, numbers = host_numbers.overlay(name, data)
    dev = parse_device(name, host_numbers.mark_other_cpu(data, numbers))
    dev.host_numbers = numbers
    dev.description = f"{dev.description}. {numbers['note'][0].upper()}{numbers['note'][1:]}"
    return dev


def load_devices(names) -> list[Device]:
    return [load_device(n) for n in dict.fromkeys(names)]
