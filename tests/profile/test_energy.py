"""Energy and battery: the terms add up, int8 vs float on several devices for the bundled CNN."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeq.devices import load_device
from edgeq.op_cost import op_costs
from edgeq.profile import profile_model
from edgeq.profile.cost import estimate_latency
from edgeq.profile.energy import battery_impact, energy_terms

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
DEVICES = ["pixel8", "iphone_a17pro", "snapdragon_8gen3", "android_midrange", "rpi5"]


@pytest.fixture(scope="module")
def fashion(tmp_path_factory):
    """The bundled Fashion-MNIST CNN compiled for ort."""
    from edgeq.pipeline import compile as edgeq_compile

    d = tmp_path_factory.mktemp("fashion")
    model = SAMPLES / "fashion_cnn.onnx"
    calib = SAMPLES / "fashion_calib.npz"
    report = edgeq_compile(str(model), "ort", calib=str(calib), out=str(d / "out"), devices=DEVICES, latency_runs=10)
    return report


def test_int8_vs_float_energy_on_devices(fashion):
    prof = fashion["targets"][0]["profile"]
    shown = [d for d in DEVICES if "quant" in prof["devices"][d]]
    assert len(shown) >= 3
    for d in shown:
        q, f = prof["devices"][d]["quant"], prof["devices"][d]["float"]
        assert q["energy_mj"] > 0 and f["energy_mj"] > 0
        assert q["energy_terms_mj"]["mac"] < f["energy_terms_mj"]["mac"] / 10  # int8 MACs cost far less (Horowitz)
        for e in (q, f):  # the terms add up to the total
            assert sum(e["energy_terms_mj"].values()) == pytest.approx(e["energy_mj"], rel=1e-4)
    assert prof["label"].startswith("estimate")


def test_terms_recomputed_from_device_numbers(fashion):
    """Recompute every term from the op costs and the device file, independently of energy.py."""
    from edgeq.profile.read import read_artifact

    art = read_artifact(fashion["targets"][0]["artifact"])
    costs = op_costs(art.graph, art.plan)
    dev = load_device("pixel8")
    cpu = dev.units["cpu"]
    lat = estimate_latency(costs, dev, "ort")
    mac = sum(c.macs * cpu.energy_per_mac[t.precision].si for c, t in zip(costs, lat["times"]))
    other = sum(c.other_ops * cpu.energy_per_mac[t.precision].si for c, t in zip(costs, lat["times"]))
    moved = sum(t.dram_bytes * cpu.energy_per_byte["dram"].si + t.onchip_bytes * cpu.energy_per_byte["onchip"].si for t in lat["times"])
    active = lat["seconds"] * cpu.active_power.si  # all on one unit: busy for the whole latency
    e = energy_terms(costs, dev, lat)
    assert e["terms"]["mac_j"] == pytest.approx(mac)
    assert e["terms"]["other_ops_j"] == pytest.approx(other)
    assert e["terms"]["dram_j"] + e["terms"]["onchip_j"] == pytest.approx(moved)
    assert e["terms"]["active_power_j"] == pytest.approx(active)
    assert e["total_j"] == pytest.approx(mac + other + moved + active)
    # 8 M MACs at int8 on Horowitz's 0.23 pJ
    assert mac == pytest.approx(sum(c.macs for c in costs) * 0.23e-12)


def test_battery_formula():
    dev = load_device("iphone_a17pro")
    b = battery_impact(1e-3, 2e-3, dev, 30.0)  # 1 mJ per inference, 2 ms, 30/s
    battery_j = dev.battery_wh.value * 3600
    assert b["pct_per_1000"] == pytest.approx(100 * 1.0 / battery_j)
    assert b["pct_per_hour"] == pytest.approx(100 * 30 * 3600 * 1e-3 / battery_j)
    assert b["duty_cycle"] == pytest.approx(0.06)
    assert battery_impact(1e-3, 2e-3, load_device("rpi5"), 30.0)["pct_per_hour"] is None  # mains powered


def test_rate_scales_battery_per_hour(fashion):
    from edgeq.profile.read import read_artifact

    art = read_artifact(fashion["targets"][0]["artifact"])
    a = profile_model(art.graph, art.plan, "ort", ["pixel8"], 30.0)["devices"]["pixel8"]["quant"]["battery"]
    b = profile_model(art.graph, art.plan, "ort", ["pixel8"], 60.0)["devices"]["pixel8"]["quant"]["battery"]
    assert b["pct_per_hour"] == pytest.approx(2 * a["pct_per_hour"], rel=1e-4)
    assert b["pct_per_1000"] == pytest.approx(a["pct_per_1000"], rel=1e-4)
