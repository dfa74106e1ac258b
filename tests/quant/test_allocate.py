import numpy as np
import pytest

from edgeq.quant import allocate as al
from edgeq.quant.data import Dataset
from edgeq.quant.mixed import QuantOptions, build_mixed_plan
from edgeq.quant.sensitivity import measure
from edgeq.quant.simulate import simulate

BITS = [2, 3, 4, 5, 6, 7, 8]


def toy():
    rng = np.random.default_rng(0)
    n = {f"l{i}": int(rng.integers(100, 2000)) for i in range(6)}
    sens = {f"l{i}": float(rng.uniform(0.1, 10)) for i in range(6)}
    cost = {k: {b: sens[k] * 4.0**-b for b in BITS} for k in n}
    size = {k: {b: b * n[k] for b in BITS} for k in n}
    return n, cost, size


def test_knapsack_meets_the_budget_and_spends_it_well():
    n, cost, size = toy()
    total_n = sum(n.values())
    prev = None
    for avg in (2.5, 3.0, 4.0, 6.0):
        alloc = al.allocate(cost, size, avg * total_n)
        assert al.total(size, alloc) <= avg * total_n
        uniform = {k: int(avg) for k in n}
        assert al.total(cost, alloc) <= al.total(cost, uniform) + 1e-12  # never worse than uniform
        if prev is not None:
            assert al.total(cost, alloc) < prev
        prev = al.total(cost, alloc)
    with pytest.raises(al.BudgetError, match="smaller than the smallest plan"):
        al.allocate(cost, size, 1.5 * total_n)
    front = al.frontier(cost, size)
    sizes = [al.total(size, a) for a in front]
    assert sizes == sorted(sizes) and len(front) > 6


def test_budget_arguments():
    assert al.parse_size("300KB") == 300_000 and al.parse_size("1.5MiB") == int(1.5 * 2**20)
    assert al.parse_drop("1%") == pytest.approx(0.01)
    for bad in ("3 parsecs", "KB"):
        with pytest.raises(al.BudgetError):
            al.parse_size(bad)
    with pytest.raises(al.BudgetError, match="at least 2"):
        al.check_avg_bits(1, BITS)


def test_sensitivity_is_cached_and_ranks_layers(small):
    graph, data = small
    from edgeq.quant.mixed import base_plans

    plans, nodes = base_plans(graph, QuantOptions())
    first = measure(graph, nodes, plans, BITS, data)
    second = measure(graph, nodes, plans, BITS, data)
    assert not first["cached"] and second["cached"]
    assert second["cost"] == first["cost"]
    for per in first["cost"].values():
        assert per[2] > per[8]  # fewer bits hurt more


def test_each_budget_kind_gives_a_plan_within_it(small):
    graph, data = small
    for q in (QuantOptions(avg_bits=3.5), QuantOptions(avg_bits=4.5, rounding="gptq", mode="weight_only")):
        p = build_mixed_plan(graph, data, "ort", BITS, q)
        assert p.avg_weight_bits() <= q.avg_bits + 1e-9
        assert len({w.bits for w in p.weights.values()}) >= 1
    p = build_mixed_plan(graph, data, "ort", BITS, QuantOptions(size_budget="400B"))
    assert p.predicted["weight_bytes"] + p.predicted["other_param_bytes"] <= 400
    drop = build_mixed_plan(graph, data, "ort", BITS, QuantOptions(max_drop="0.5%", mode="weight_only"))
    ref = simulate(graph, type(drop)(graph.sha256(), mode="weight_only"), data)["logits"]
    got = simulate(graph, drop, data)["logits"]
    cos = float((ref.ravel() @ got.ravel()) / np.linalg.norm(ref) / np.linalg.norm(got))
    assert cos >= 0.995 - 1e-9
    assert drop.avg_weight_bits() < 8


def test_labels_metric_and_overrides(small):
    graph, data = small
    labels = simulate(graph, type(build_mixed_plan(graph, data, "ort", BITS, QuantOptions(mode="weight_only")))(
        graph.sha256(), mode="weight_only"), data)["logits"].argmax(1)
    labelled = Dataset(data.arrays, labels, "t")
    p = build_mixed_plan(graph, labelled, "ort", BITS, QuantOptions(max_drop="0%", keep_float=["fc"], bits_overrides=["conv1=8"]))
    assert p.weights["fc.w"].bits is None and p.weights["conv1.w"].bits == 8


def test_mixed_plan_is_checked_end_to_end_against_uniform(sample):
    """At equal average bits the chosen plan is never noisier, simulated on calibration data, than uniform."""
    from edgeq.quant.sensitivity import relative_noise

    graph, data, _ = sample
    ref = simulate(graph, type(build_mixed_plan(graph, data, "ort", BITS, QuantOptions(mode="weight_only")))(
        graph.sha256(), mode="weight_only"), data)
    noise = {}
    for key, q in (("uniform", QuantOptions(bits=3, mode="weight_only")), ("mixed", QuantOptions(avg_bits=3, mode="weight_only"))):
        p = build_mixed_plan(graph, data, "ort", BITS, q)
        assert p.avg_weight_bits() <= 3.0 + 1e-9
        noise[key] = relative_noise(ref, simulate(graph, p, data))
    assert noise["mixed"] <= noise["uniform"] * (1 + 1e-6), noise
