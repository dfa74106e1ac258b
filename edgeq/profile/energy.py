"""Energy per inference and battery impact, with their terms (an estimate, labelled so).

    E = Σ MACs × energy per MAC at the op's precision          (arithmetic)
      + Σ other ops × energy per MAC at that precision           (adds, compares, pooling)
      + DRAM bytes × energy per DRAM byte + on-chip bytes × energy per on-chip byte
      + active power × time                                      (the unit busy: clocks, leakage, control)

Battery: % of the device's battery per 1,000 inferences, and per hour at a rate; the duty
cycle (rate × latency) above 1 means the device cannot keep up with that rate.
"""

from __future__ import annotations

from edgeq.devices import Device
from edgeq.op_cost import OpCost


def energy_terms(costs: list[OpCost], device: Device, latency: dict) -> dict:
    """Joules per inference by term, from the per-op times of `estimate_latency`."""
    mac = other = dram = onchip = active = 0.0
    for c, t in zip(costs, latency["times"]):
        u = device.units[t.unit]
        e_mac = u.energy_per_mac[t.precision].si if t.precision in u.energy_per_mac else max(
            q.si for q in u.energy_per_mac.values())
        mac += c.macs * e_mac
        other += c.other_ops * e_mac
        dram += t.dram_bytes * u.energy_per_byte["dram"].si
        onchip += t.onchip_bytes * u.energy_per_byte["onchip"].si
        active += t.seconds * u.active_power.si
    main = device.units[latency["main_unit"]]
    active += (latency["call_seconds"] + latency["transfer_seconds"]) * main.active_power.si
    terms = {"mac_j": mac, "other_ops_j": other, "dram_j": dram, "onchip_j": onchip, "active_power_j": active}
    return {"total_j": sum(terms.values()), "terms": terms}


def battery_impact(energy_j: float, latency_s: float, device: Device, rate_per_s: float) -> dict:
    if device.battery_wh is None:
        return {"battery_wh": None, "pct_per_1000": None, "pct_per_hour": None,
                "duty_cycle": rate_per_s * latency_s, "note": "no battery (mains powered)"}
    battery_j = device.battery_wh.si * 3600.0
    return {
        "battery_wh": device.battery_wh.value,
        "pct_per_1000": 100.0 * 1000 * energy_j / battery_j,
        "pct_per_hour": 100.0 * rate_per_s * 3600 * energy_j / battery_j,
        "duty_cycle": rate_per_s * latency_s,
    }
