"""The search behind --act-bits auto (edgeq/quant/act_search.py): few simulations, same choice."""

from __future__ import annotations

from edgeq.graph import Graph
from edgeq.passes import run_passes
from edgeq.quant import act_search
from edgeq.quant.act_search import ActSimulator, groups_of, rank, smallest_k
from edgeq.quant.build import int8_plan
from edgeq.quant.calibrate import observe
from tests.quant.test_act_precision import residual_layernorm_stack, stack_data

GOAL = act_search.NOISE_GOAL


def test_smallest_k_doubles_then_bisects():
    calls = []

    def noise(k):
        calls.append(k)
        return GOAL * 2 if k < 11 else GOAL / 2

    assert smallest_k(noise, 40, GOAL * 10) == 11
    assert len(calls) <= 2 * 6 + 2 and calls[:6] == [40, 1, 2, 4, 8, 16]  # log2, not one run per k
    calls.clear()
    assert smallest_k(noise, 12, GOAL * 10) == 11  # the limit is not a doubling point: bisect below it
    assert calls[:5] == [12, 1, 2, 4, 8] and 16 not in calls


def test_smallest_k_without_reaching_the_goal_keeps_the_cheapest_good_k():
    # Noise falls until k=4, then flat: more widening buys nothing, so 4 is kept, not the limit.
    assert smallest_k(lambda k: GOAL * (10 - min(k, 4)), 16, GOAL * 10) == 4
    calls = []

    def falling(k):  # noise halves with each doubling of k: the limit is best, half of it is not close
        calls.append(k)
        return GOAL * 1000 / (1 + k)

    assert smallest_k(falling, 102, GOAL * 1000) == 102 and calls == [102, 51]  # two runs, not eight
    assert smallest_k(lambda k: GOAL * 5, 16, GOAL / 2) == 0  # all-int8 already meets the goal


def test_block_ranking_finds_the_same_top_group_within_a_tiny_budget():
    data = stack_data(16)
    g = run_passes(Graph(residual_layernorm_stack()))
    plan = int8_plan(g, observe(g, data))
    groups = groups_of(plan)
    sim = ActSimulator(g, plan)
    work = act_search.sim_work(g)
    full = rank(sim, plan, groups, data, work, budget=1e18)
    runs_full = sim.runs
    sim.runs = 0
    blocks = rank(sim, plan, groups, data, work, budget=0.0)  # no budget: contiguous blocks, nothing alone
    assert set(blocks) == set(full) == set(groups)
    assert sim.runs < runs_full
    top = max(full, key=full.get)
    top_block = [k for k, v in blocks.items() if v == max(blocks.values())]
    assert top in top_block


def test_the_decision_is_cached_and_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEQ_CACHE_DIR", str(tmp_path / "cache"))
    data = stack_data(16)
    g = run_passes(Graph(residual_layernorm_stack()))
    first_plan = int8_plan(g, observe(g, data))
    first = act_search.choose(g, first_plan, data, ["ort"])
    again_plan = int8_plan(g, observe(g, data))
    again = act_search.choose(g, again_plan, data, ["ort"])
    assert not first.cached and again.cached and first.wide and again.wide == first.wide
    assert again_plan.to_json() == first_plan.to_json()  # the same plan, without simulating
    fresh = act_search.choose(g, int8_plan(g, observe(g, data)), data, ["ort"], use_cache=False)
    assert not fresh.cached and fresh.wide == first.wide


def test_quality_warnings_name_the_problem_and_what_to_try():
    from edgeq.verify import quality_warnings

    good = {"sqnr_db": 35.0, "max_abs_err": 0.01, "top1_agreement": 0.995}
    assert quality_warnings("ort", good, 10.0, 9.0) == []
    poor = {"sqnr_db": 14.0, "max_abs_err": 1.0, "top1_agreement": 0.9, "accuracy_float": 0.9, "accuracy_quant": 0.85}
    (sqnr, drop, slow) = quality_warnings("ort", poor, 10.0, 25.0)
    assert "14.0 dB" in sqnr and "--calib" in sqnr
    assert "accuracy drops 5.0 points" in drop and "--max-drop" in drop
    assert "2.50x slower" in slow
    assert len(quality_warnings("coreml", poor, 10.0, 25.0, timed=False)) == 2  # a reference executor's time says nothing
