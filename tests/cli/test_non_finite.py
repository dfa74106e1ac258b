"""Non-finite numbers never reach json.dumps: a weight or activation that overflows is an error naming
it; a metric that overflows is written as null with a warning."""

import json
import math

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import helper, numpy_helper

from edgeq.cli import main
from edgeq.errors import PlanError
from edgeq.quant.plan import ActivationPlan, QuantPlan, WeightPlan
from edgeq.report import finite_copy, write_report
from tests.cli.test_errors import compile_fails
from tests.models import small_cnn


def test_bn_with_negative_variance_and_zero_eps_names_the_node(tmp_path, small_calib):
    m = small_cnn()
    var = next(t for t in m.graph.initializer if t.name == "bn.var")
    var.CopyFrom(numpy_helper.from_array(np.full(8, -1.0, np.float32), "bn.var"))
    bn = next(n for n in m.graph.node if n.op_type == "BatchNormalization")
    bn.attribute.append(helper.make_attribute("epsilon", 0.0))
    onnx.save(m, tmp_path / "bn.onnx")
    line = compile_fails(tmp_path, [tmp_path / "bn.onnx", "--calib", small_calib], "BatchNormalization")
    assert "bn1" in line


def test_constant_folded_to_inf_names_the_node(tmp_path):
    """Two finite constants whose product overflows: the folded weight is an error naming its node."""
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 4])
    a, b = (numpy_helper.from_array(np.full(4, 1e30, np.float32), n) for n in ("a", "b"))
    g = helper.make_graph([helper.make_node("Mul", ["a", "b"], ["ab"], name="fold_me"),
                           helper.make_node("Add", ["x", "ab"], ["y"], name="shift")], "g", [x], [y], [a, b])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "fold.onnx")
    np.savez(tmp_path / "c.npz", x=np.ones((8, 4), np.float32))
    line = compile_fails(tmp_path, [tmp_path / "fold.onnx", "--calib", tmp_path / "c.npz"], "NaN/inf")
    assert "shift" in line or "fold_me" in line, line


def test_activation_overflow_names_the_tensor(tmp_path):
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 4])
    big = numpy_helper.from_array(np.full(4, 1e38, np.float32), "big")
    g = helper.make_graph([helper.make_node("Mul", ["x", "big"], ["m"], name="scale_up"),
                           helper.make_node("Relu", ["m"], ["y"], name="relu")], "g", [x], [y], [big])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "big.onnx")
    np.savez(tmp_path / "c.npz", x=np.full((8, 4), 100.0, np.float32))
    line = compile_fails(tmp_path, [tmp_path / "big.onnx", "--calib", tmp_path / "c.npz"], "tensor 'm'")
    assert "scale_up" in line and "inf" in line


def test_plan_json_refuses_a_non_finite_scale_and_nulls_a_non_finite_metric():
    plan = QuantPlan("0" * 64, weights={"w": WeightPlan("w", "conv", "Conv", [4, 1], scale=[1.0, 2.0, math.inf, 1.0])})
    with pytest.raises(PlanError, match=r"weight 'w': scale\[2\] is inf"):
        plan.to_json()
    plan = QuantPlan("0" * 64, activations={"a": ActivationPlan("a", scale=math.nan)})
    with pytest.raises(PlanError, match="activation 'a': scale is nan"):
        plan.to_json()
    plan = QuantPlan("0" * 64, predicted={"error": math.inf})
    assert json.loads(plan.to_json())["predicted"] == {"error": None}


def test_report_metric_overflow_is_null_with_a_warning(tmp_path):
    report = {"warnings": [], "targets": [{"verify": {"sqnr_db": math.inf, "max_abs_err": np.float32("nan"), "cosine": 1.0}}]}
    clean, warnings = finite_copy(report)
    assert clean["targets"][0]["verify"] == {"sqnr_db": None, "max_abs_err": None, "cosine": 1.0}
    assert len(warnings) == 2 and "targets[0].verify.sqnr_db" in warnings[0]
    assert report["targets"][0]["verify"]["sqnr_db"] == math.inf, "the caller's dict is not changed"
    write_report(report, tmp_path)
    assert json.loads((tmp_path / "report.json").read_text())["targets"][0]["verify"]["sqnr_db"] is None


@pytest.mark.parametrize("rate", ["1e999/s", "1e12/s", "inf"])
def test_rate_beyond_any_device_is_refused(tmp_path, small_model, small_calib, rate):
    compile_fails(tmp_path, [small_model, "--calib", small_calib, "--rate", rate], "--rate")
    r = CliRunner().invoke(main, ["profile", str(small_model), "--rate", rate])
    assert r.exit_code == 2 and r.output.count("\n") == 1 and r.output.startswith("edgeq: error: --rate"), r.output
