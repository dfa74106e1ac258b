"""The weight scheme registry (edgeq/schemes.py): every reader takes its facts from it, so a new
scheme of a known shape is one `register` line, and the CLI, the plan schema, the planner, the
storage rule and a target that lists no schemes (Core ML) take it without another edit."""

import numpy as np
import pytest
from click.testing import CliRunner

from edgeq import schemes
from edgeq.quant.mixed import QuantOptions, build_mixed_plan
from edgeq.quant.plan import QuantPlan, plan_schema
from edgeq.quant.simulate import simulate
from edgeq.quant.size import predicted_bytes
from edgeq.target import TARGET_MODULES, available, get_target
from tests.quant.test_bytes_agree import mlp


def test_cli_schema_and_targets_read_the_registry():
    from edgeq.cli import main

    assert plan_schema()["$defs"]["weight"]["properties"]["scheme"]["enum"] == list(schemes.SCHEMES)
    help_text = CliRunner().invoke(main, ["plan", "--help"]).output
    assert all(name in help_text for name in schemes.SCHEMES)
    for name in TARGET_MODULES:
        assert set(get_target(name).spec.held_schemes()) <= set(schemes.SCHEMES)
    assert get_target("coreml").spec.held_schemes() == tuple(schemes.SCHEMES)  # lists none: holds every registered one


def test_unknown_scheme_is_one_line():
    with pytest.raises(schemes.PlanError, match="scheme 'nf5' is not one of symmetric, asymmetric, palette"):
        schemes.scheme("nf5")


@pytest.fixture
def full_range_scheme(monkeypatch):
    """A scheme the code base has never seen: zero point 0 on the full signed grid [-8, 7] at 4 bits."""
    new = schemes.Scheme("symmetric_full", palette=False, narrow=False, zero_points=False, help="test")
    monkeypatch.setitem(schemes.SCHEMES, new.name, new)
    return new


def test_a_registered_scheme_plans_sizes_and_lowers(tmp_path, full_range_scheme):
    from edgeq.pipeline import Options, prepare
    from edgeq.quant.data import load_dataset

    graph = prepare(mlp(), Options(targets=[]))
    calib = load_dataset({"x": np.random.default_rng(1).normal(size=(32, 16)).astype(np.float32)}, graph, "--calib", 0)
    plan = build_mixed_plan(graph, calib, None, list(range(2, 9)), QuantOptions(bits=4, scheme="symmetric_full"))
    ws = [w for w in plan.weights.values() if w.bits is not None]
    assert ws and all(w.scheme == "symmetric_full" and set(w.zero_point) == {0} for w in ws)
    QuantPlan.from_dict(plan.to_dict())  # the schema and the checks know the new name
    from edgeq.quant.weights import grid

    w = ws[0]
    g = grid(w, w.shape)
    assert not g.narrow and g.codes(graph.initializer(w.tensor)).min() >= -8  # the full grid, from the entry
    if not available("coreml"):
        pytest.skip("coremltools missing")
    t = get_target("coreml")
    target_plan = t.plan_for(graph, plan, {})
    t.check_plan(graph, target_plan, {})
    artifact = t.lower(graph, target_plan, tmp_path, "m", {})
    assert t.payload(artifact) == pytest.approx(predicted_bytes(graph, target_plan, "coreml", {})["total"], rel=0.02)
    x = calib.take(slice(0, 8))
    want = simulate(graph, target_plan, x)["y"]
    got = t.runner(artifact).run({"x": x.arrays["x"]})["y"]
    assert np.abs(got - want).max() < 0.05 * np.abs(want).max()


def test_a_target_listing_schemes_refuses_an_unlisted_one(full_range_scheme):
    from edgeq.errors import PlanError
    from edgeq.quant.plan import WeightPlan
    from edgeq.target import check_plan_capabilities

    plan = QuantPlan(model_sha256="0" * 64)
    plan.weights["w"] = WeightPlan("w", "n", "MatMul", [4, 4], bits=8, scheme="symmetric_full", scale=[1.0] * 4)
    with pytest.raises(PlanError, match="holds symmetric, asymmetric weights, not symmetric_full"):
        check_plan_capabilities(get_target("ort").spec, plan)
