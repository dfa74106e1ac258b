"""Device profiles: every number has a source or is marked assumed with a reason."""

from __future__ import annotations

import tomllib
from importlib import resources

import pytest

from edgeq.devices import DeviceError, collect_quantities, device_names, load_device, parse_device

REQUIRED = {"iphone_a15", "iphone_a16", "iphone_a17pro", "mac_m2", "pixel8", "snapdragon_8gen3", "android_midrange",
            "rpi4", "rpi5", "cortex_m7", "cortex_m55", "host_x86_64"}


def raw(name: str) -> dict:
    return tomllib.loads(resources.files("edgeq.targets").joinpath("devices", f"{name}.toml").read_text())


def test_required_devices_present():
    assert REQUIRED <= set(device_names())


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_every_number_has_a_source(name):
    q = collect_quantities(raw(name))  # raises on a bare number or one without source/reason
    assert len(q) >= 15
    for path, quantity in q.items():
        assert quantity.source.strip(), path
        assert quantity.value >= 0, path
    dev = load_device(name)
    for unit in dev.units.values():
        assert unit.peak_ops and unit.energy_per_mac and {"dram", "onchip"} <= set(unit.energy_per_byte)
        for precision in unit.peak_ops:
            assert precision in unit.energy_per_mac, f"{name}.{unit.name}: no energy per MAC at {precision}"
        assert unit.active_power.si > 0 and unit.bandwidth.si > 0


def test_phones_have_batteries_and_accelerators():
    for name in ("iphone_a15", "iphone_a16", "iphone_a17pro", "pixel8", "snapdragon_8gen3"):
        dev = load_device(name)
        assert dev.battery_wh is not None and 5 < dev.battery_wh.value < 30
        assert any(u.kind in ("npu", "gpu") for u in dev.units.values())
    assert load_device("rpi4").battery_wh is None


def test_host_profile_is_measured_not_assumed(tmp_path, monkeypatch):
    """The shipped host numbers are measured (on the CPU [measured_on] names); on a CPU with no
    calibration cache they are listed as assumed, the reason naming both CPUs."""
    monkeypatch.setenv("EDGEQ_CACHE_DIR", str(tmp_path))  # no calibration for this CPU
    shipped = raw("host_x86_64")
    assert shipped["measured_on"]["cpu"]
    for k in ("fp32", "int8"):
        assert shipped["units"]["cpu"]["peak_ops"][k]["source"].startswith("measured on the reference host")
    dev = load_device("host_x86_64")
    cpu = dev.units["cpu"]
    assert dev.host_numbers["from"] == "shipped" and shipped["measured_on"]["cpu"] in dev.description
    for q in [*cpu.peak_ops.values(), cpu.bandwidth, cpu.op_overhead, *cpu.efficiency.values(), *cpu.gemm_half_rows.values()]:
        # numbers the reference host never measured ship assumed already, naming the CPU they come from
        other = q.source.startswith("not measured on the reference host") and "calibrate_host.py on" in q.source
        assert q.assumed and (other or "not on this CPU" in q.source and shipped["measured_on"]["cpu"] in q.source), q
    assert not cpu.energy_per_mac["int8"].assumed  # literature figures do not depend on the CPU


def test_bare_number_fails():
    data = raw("rpi4")
    data["units"]["cpu"]["bandwidth"] = 12.8
    with pytest.raises(DeviceError, match="bare number"):
        parse_device("rpi4", data)


def test_number_without_source_fails():
    data = raw("rpi4")
    data["units"]["cpu"]["bandwidth"] = {"value": 12.8, "unit": "GB/s"}
    with pytest.raises(DeviceError, match="without a source"):
        parse_device("rpi4", data)


def test_assumed_needs_a_reason_and_is_listed():
    data = raw("rpi4")
    data["units"]["cpu"]["bandwidth"] = {"value": 12.8, "unit": "GB/s", "assumed": True}
    with pytest.raises(DeviceError, match="reason"):
        parse_device("rpi4", data)
    data["units"]["cpu"]["bandwidth"] = {"value": 12.8, "unit": "GB/s", "assumed": True, "reason": "a guess"}
    listed = {a["number"]: a["reason"] for a in parse_device("rpi4", data).assumed()}
    assert listed["rpi4.units.cpu.bandwidth"] == "a guess"


def test_unknown_unit_fails():
    data = raw("rpi4")
    data["units"]["cpu"]["bandwidth"] = {"value": 12.8, "unit": "furlongs", "source": "x"}
    with pytest.raises(DeviceError, match="unknown unit"):
        parse_device("rpi4", data)


def test_unknown_device_lists_known():
    with pytest.raises(DeviceError, match="known devices: .*pixel8"):
        load_device("pixel9")
