"""TFLite target, bad input: one-line errors, exit 2, nothing written; the float fallback."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper

from edgeq.cli import main
from edgeq.errors import EdgeqError, UnsupportedOpError
from edgeq.graph import Graph
from edgeq.lower import get_target
from edgeq.passes import run_passes
from edgeq.quant.build import int8_plan
from edgeq.quant.calibrate import observe
from edgeq.quant.data import load_dataset
from edgeq.runners import OrtRunner, make_runner

tflite = get_target("tflite")


def _fails(tmp_path, args, match):
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["compile", *map(str, args), "--target", "tflite", "--out", str(out)])
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip() and not ln.startswith("INFO")]
    assert len(lines) == 1 and lines[0].startswith("edgeq: error: ") and match in lines[0], result.output
    assert not out.exists()
    return lines[0]


def _model(op: str, path, **attrs):
    """input [N, 4] -> Relu -> OP -> output (a unary op at the end)."""
    nodes = [helper.make_node("Relu", ["input"], ["r"], name="relu"),
             helper.make_node(op, ["r"], ["output"], name="the_op", **attrs)]
    g = helper.make_graph(nodes, "m", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 4])],
                          [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 4])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, path)
    return path


def test_unsupported_op_cli(tmp_path):
    model = _model("Hardmax", tmp_path / "m.onnx")
    msg = _fails(tmp_path, [model, "--calib", "random"], "op Hardmax has no tflite lowering")
    assert "the_op" in msg


def test_plan_bits_the_target_cannot_hold(tmp_path, small_model, small_calib):
    plan_dir = tmp_path / "p"
    r = CliRunner().invoke(main, ["plan", str(small_model), "--calib", str(small_calib), "--target", "tflite", "--out", str(plan_dir)])
    assert r.exit_code == 0, r.output
    plan = json.loads((plan_dir / "plan.json").read_text())
    plan["weights"]["fc.w"].update(scheme="palette", palette=[[0.0, 1.0]])
    (plan_dir / "palette.json").write_text(json.dumps(plan))
    _fails(tmp_path, [small_model, "--plan", plan_dir / "palette.json"], "no palette")
    plan = json.loads((plan_dir / "plan.json").read_text())
    for a in plan["activations"].values():
        a["bits"] = 16
    (plan_dir / "int16.json").write_text(json.dumps(plan))
    # LiteRT's int16 activations are symmetric: its own plan re-centres them, as in a compile without --plan.
    out = tmp_path / "int16"
    r = CliRunner().invoke(main, ["compile", str(small_model), "--plan", str(plan_dir / "int16.json"), "--target", "tflite",
                                  "--out", str(out)])
    assert r.exit_code == 0, r.output
    own = json.loads((out / "plan.tflite.json").read_text())["activations"]
    assert own and all(a["bits"] == 16 and a["zero_point"] == 0 for a in own.values())


def test_dynamic_shape_litert_cannot_hold():
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 6])
    shape = helper.make_tensor_value_info("shape", TensorProto.INT64, [2])
    nodes = [helper.make_node("Reshape", ["input", "shape"], ["output"], name="reshape_by_input")]
    g = helper.make_graph(nodes, "dyn", [x, shape], [helper.make_tensor_value_info("output", TensorProto.FLOAT, None)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    graph = run_passes(Graph(m, "dyn.onnx"))
    plan = int8_plan(graph, {}, mode="dynamic")
    with pytest.raises(EdgeqError, match="reshape_by_input.*dynamic shape") as e:
        tflite.check_plan(graph, plan, {})
    assert "\n" not in str(e.value)


def test_bad_option():
    with pytest.raises(EdgeqError, match="io_layout"):
        tflite.check_plan(None, None, {"io_layout": "nwch"})  # options are read before anything else


def test_op_without_integer_kernel_fallback_float(tmp_path):
    path = _model("Sqrt", tmp_path / "sqrt.onnx")
    graph = run_passes(Graph(onnx.load(path), str(path)))
    x = np.abs(np.random.default_rng(0).normal(0, 1, (32, 4))).astype(np.float32)
    plan = int8_plan(graph, observe(graph, load_dataset({"input": x}, graph)), target="tflite")
    with pytest.raises(UnsupportedOpError, match="the_op.*Sqrt.*--fallback error"):
        tflite.lower(graph, plan, tmp_path / "a", "m", {"fallback": "error"})  # full-integer only, as asked
    assert not (tmp_path / "a" / "m.tflite").exists()
    art = tflite.lower(graph, plan, tmp_path / "b", "m", {})  # the default: float between DEQUANTIZE/QUANTIZE
    ops = art.extra["tflite_ops"]
    assert ops["DEQUANTIZE"] >= 1 and ops["SQRT"] == 1 and ops["RELU"] == 1
    assert art.extra["float_nodes"] == ["the_op"] and any("fallback=float" in n for n in art.notes)
    got = make_runner(art).run({"input": x})["output"]
    ref = OrtRunner(graph.serialize()).run({"input": x})["output"]
    assert np.abs(got - ref).max() < 0.1  # sqrt near 0 magnifies the int8 step of its input


def test_cli_fallback_and_io_flags(tmp_path):
    """The CLI passes --fallback / --io-dtype / --io-layout through to the target."""
    path = _model("Sqrt", tmp_path / "sqrt.onnx")
    np.savez(tmp_path / "calib.npz", input=np.abs(np.random.default_rng(0).normal(0, 1, (32, 4))).astype(np.float32))
    args = ["compile", str(path), "--target", "tflite", "--calib", str(tmp_path / "calib.npz"), "--json"]
    bad = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "a"), "--fallback", "error"])
    assert bad.exit_code == 2 and "--fallback error" in bad.output and not (tmp_path / "a").exists()
    ok = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "b"), "--fallback", "float", "--io-dtype", "int8"])
    assert ok.exit_code == 0, ok.output
    entry = json.loads(ok.output[ok.output.index("{"):])["targets"][0]
    assert entry["float_nodes"] == ["the_op"] and entry["io_dtype"] == "int8" and (tmp_path / "b" / "sqrt.tflite").exists()
