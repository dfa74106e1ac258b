"""plan.json: validated against the shipped JSON Schema; errors name the JSON path; a plan for another
model or target is refused unless --force."""

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from edgeq.cli import main
from edgeq.quant.plan import plan_schema
from tests.cli.test_errors import compile_fails
from tests.models import small_cnn


@pytest.fixture
def written(tmp_path, small_model, small_calib):
    r = CliRunner().invoke(main, ["plan", str(small_model), "--calib", str(small_calib), "--out", str(tmp_path / "p")])
    assert r.exit_code == 0, r.output
    return json.loads((tmp_path / "p" / "plan.json").read_text())


def _apply(tmp_path, small_model, small_calib, plan, match, *extra):
    path = tmp_path / "edited.json"
    path.write_text(plan if isinstance(plan, str) else json.dumps(plan))
    return compile_fails(tmp_path, [small_model, "--calib", small_calib, "--plan", path, *extra], match)


def test_schema_is_shipped_and_versioned():
    s = plan_schema()
    assert s["properties"]["version"] == {"const": 1} and "$id" in s


def test_written_plan_is_valid(written):
    import jsonschema

    jsonschema.validate(written, plan_schema())


@pytest.mark.parametrize("edit,match", [
    (lambda p: p["weights"]["conv1.w"]["scale"].__setitem__(3, "big"), 'weights.conv1.w.scale[3]: expected a number, got "big"'),
    (lambda p: p["weights"]["conv1.w"].__setitem__("scale", 0.5), "weights.conv1.w.scale: expected a list or null"),
    (lambda p: p.__setitem__("weights", []), "weights: expected an object"),
    (lambda p: p.__setitem__("mode", "foo"), 'mode: "foo" is not one of "static", "weight_only", "dynamic"'),
    (lambda p: p["weights"]["conv1.w"].__setitem__("axis", 9), "weights.conv1.w.axis: 9 must be at most 7"),
    (lambda p: p["weights"]["conv1.w"].__setitem__("axis", 5), "axis 5 is outside the weight's 4 dims"),
    (lambda p: p["weights"]["conv1.w"]["scale"].pop(), "7 scale(s); per_channel on axis 0 of shape [8, 1, 3, 3] needs 8"),
    (lambda p: p["weights"]["conv1.w"].__setitem__("zero_point", [1000] * 8), "zero_point[0]: 1000 must be at most 255"),
    (lambda p: p["weights"]["conv1.w"].__setitem__("zero_point", [200] * 8), "zero_point 200 is outside -128..127 (signed 8-bit)"),
    (lambda p: next(iter(p["activations"].values())).__setitem__("zero_point", 500), "zero_point 500 is outside -128..127"),
    (lambda p: p["weights"].__setitem__("nope", dict(p["weights"]["conv1.w"], tensor="nope")), "weight 'nope'"),
    (lambda p: p["weights"]["conv1.w"].__setitem__("tensor", "nope"), "key and its 'tensor' must be the same"),
    (lambda p: p["weights"]["conv1.w"]["scale"].__setitem__(1, 10**400), "weights.conv1.w.scale[1]: 1000000000"),
    (lambda p: next(iter(p["activations"].values())).__setitem__("max", -(10**60)), "must be at least -3.4"),
])
def test_bad_edit_names_the_json_path(tmp_path, small_model, small_calib, written, edit, match):
    edit(written)
    _apply(tmp_path, small_model, small_calib, written, match)


def test_folder_and_deep_nesting(tmp_path, small_model, small_calib):
    (tmp_path / "plans").mkdir()
    compile_fails(tmp_path, [small_model, "--calib", small_calib, "--plan", tmp_path / "plans"], "is a folder")
    _apply(tmp_path, small_model, small_calib, "[" * 100000 + "]" * 100000, "edited.json")


def test_plan_for_another_model_or_target_needs_force(tmp_path, small_model, small_calib, written):
    other = tmp_path / "other.onnx"
    onnx.save(small_cnn(seed=5), other)
    (tmp_path / "plan.json").write_text(json.dumps(written))
    compile_fails(tmp_path, [other, "--calib", small_calib, "--plan", tmp_path / "plan.json"], "made for another model")
    r = CliRunner().invoke(main, ["compile", str(other), "--calib", str(small_calib), "--plan", str(tmp_path / "plan.json"),
                                  "--force", "-o", str(tmp_path / "forced")])
    assert r.exit_code == 0, r.output
    written["target"] = "ort"
    (tmp_path / "plan.json").write_text(json.dumps(written))
    compile_fails(tmp_path, [small_model, "--calib", small_calib, "--plan", tmp_path / "plan.json", "--target", "tflite"],
                  "made for target 'ort', compiling for tflite")


def test_plan_applies_to_its_own_model(tmp_path, small_model, small_calib, written):
    (tmp_path / "plan.json").write_text(json.dumps(written))
    r = CliRunner().invoke(main, ["compile", str(small_model), "--calib", str(small_calib), "--plan", str(tmp_path / "plan.json"),
                                  "-o", str(tmp_path / "o"), "--json"])
    assert r.exit_code == 0, r.output
    assert np.isfinite(json.loads(r.output)["targets"][0]["verify"]["sqnr_db"])
