"""A compile that cannot succeed fails before calibration, in one line naming node, cause and fix."""

from __future__ import annotations

import numpy as np
import onnx
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from edgeq.cli import main


def _save(tmp_path, model, name="m.onnx"):
    path = tmp_path / name
    onnx.save(model, path)
    return path


def _compile(path, out, *extra):
    return CliRunner().invoke(main, ["compile", str(path), "--calib", "random", "--out", str(out), *extra])


def _flatten_by_shape(batch="N"):
    """x[N,4,2,2] -> Reshape(x, Concat(Shape(x)[0:1], [-1])): an exporter's dynamic flatten."""
    nodes = [
        helper.make_node("Shape", ["x"], ["s"], name="shape"),
        helper.make_node("Gather", ["s", "zero"], ["n"], name="take_batch", axis=0),
        helper.make_node("Unsqueeze", ["n", "axes"], ["n1"], name="unsq"),
        helper.make_node("Concat", ["n1", "minus1"], ["target"], name="cat", axis=0),
        helper.make_node("Reshape", ["x", "target"], ["flat"], name="flatten"),
        helper.make_node("MatMul", ["flat", "w"], ["y"], name="fc"),
    ]
    inits = [numpy_helper.from_array(np.array(0, np.int64), "zero"), numpy_helper.from_array(np.array([0], np.int64), "axes"),
             numpy_helper.from_array(np.array([-1], np.int64), "minus1"),
             numpy_helper.from_array(np.random.default_rng(0).normal(size=(16, 3)).astype(np.float32), "w")]
    g = helper.make_graph(nodes, "flat", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 4, 2, 2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 3])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_already_quantized_model_is_refused_naming_the_ops(tmp_path):
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="q"),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], name="dq")]
    inits = [numpy_helper.from_array(np.array(0.1, np.float32), "s"), numpy_helper.from_array(np.array(0, np.int8), "z")]
    g = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], inits)
    path = _save(tmp_path, helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
    r = _compile(path, tmp_path / "out")
    assert r.exit_code == 2
    line = r.output.strip()
    assert "\n" not in line and "already quantized" in line and "QuantizeLinear x1" in line and "float model" in line
    assert not (tmp_path / "out").exists()
    r = CliRunner().invoke(main, ["inspect", str(path)])
    assert r.exit_code == 0 and "already quantized: DequantizeLinear x1, QuantizeLinear x1" in r.output


def test_unlowerable_op_fails_before_calibration(tmp_path):
    # Sinh has no tflite lowering: the error comes from the op check, not after planning.
    g = helper.make_graph([helper.make_node("Sinh", ["x"], ["y"], name="the_sinh")], "sinh",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    path = _save(tmp_path, helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
    from edgeq.lower import get_target

    assert "Sinh" not in get_target("tflite").OPS, "pick another op for this test"
    r = _compile(path, tmp_path / "out", "--target", "tflite", "--calib", "/nonexistent.npz")
    # The op check runs before the data is even read: the error is about the op, not the missing file.
    assert r.exit_code == 2 and "node 'the_sinh': op Sinh has no tflite lowering" in r.output, r.output
    assert "1 node(s) of Sinh" in r.output


def test_shape_chain_folds_once_dims_are_bound(tmp_path):
    path = _save(tmp_path, _flatten_by_shape())
    from edgeq.frontend import load
    from edgeq.lower import unlowerable
    from edgeq.passes import run_passes

    g = run_passes(load(path, {"x": (1, 4, 2, 2)}))
    assert not unlowerable(g, "tflite") and "Shape" not in g.op_counts()
    g = run_passes(load(path))  # batch unbound: Reshape's 0 keeps the batch, so it still folds
    assert "Shape" not in g.op_counts()


def test_unbound_shape_op_names_input_shape(tmp_path):
    # A shape read from the input: cannot fold while W is unbound (LiteRT binds only a batch).
    nodes = [helper.make_node("Shape", ["x"], ["s"], name="shape_of_x"),
             helper.make_node("ConstantOfShape", ["s"], ["ones"], name="ones", value=numpy_helper.from_array(np.ones(1, np.float32))),
             helper.make_node("Add", ["x", "ones"], ["y"], name="add")]
    g = helper.make_graph(nodes, "dyn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "W"])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, "W"])])
    path = _save(tmp_path, helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
    r = _compile(path, tmp_path / "out", "--target", "tflite")
    assert r.exit_code == 2 and "--input-shape x=1," in r.output and "\n" not in r.output.strip(), r.output
    r = _compile(path, tmp_path / "out2", "--target", "tflite", "--input-shape", "x=1,4")
    assert r.exit_code == 0, r.output


def test_tflm_refuses_what_no_microcontroller_holds_before_calibration(tmp_path):
    # One 1x16x512x512 conv: 4 MiB in + 4 MiB out of int8 activations, past the SRAM limit.
    w = numpy_helper.from_array(np.zeros((16, 16, 1, 1), np.float32), "w")
    g = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], name="big_conv")], "big",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 512, 512])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 512, 512])], [w])
    path = _save(tmp_path, helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
    r = _compile(path, tmp_path / "out", "--target", "tflm", "--calib", "/nonexistent.npz")
    assert r.exit_code == 2 and "node 'big_conv' alone holds 8.0 MiB" in r.output and "--target tflite" in r.output, r.output
    assert not (tmp_path / "out").exists()


def test_tflm_refuses_activations_live_at_once_past_the_sram(tmp_path):
    # Every node holds at most 3.75 MiB of int8 activations (under the 4 MiB limit), but x and a
    # stay live for the skip connections: x, a, b and c (1.25 MiB each) at once at 'c2'.
    w = numpy_helper.from_array(np.zeros((8, 8, 1, 1), np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["a"], name="c1"), helper.make_node("Relu", ["a"], ["b"], name="r1"),
             helper.make_node("Conv", ["b", "w"], ["c"], name="c2"), helper.make_node("Add", ["a", "c"], ["d"], name="add1"),
             helper.make_node("Add", ["x", "d"], ["y"], name="add2")]
    shape = [1, 8, 640, 256]
    g = helper.make_graph(nodes, "skip", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)], [w])
    path = _save(tmp_path, helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
    r = _compile(path, tmp_path / "out", "--target", "tflm", "--calib", "/nonexistent.npz")
    assert r.exit_code == 2 and "at node 'c2' the int8 activations still needed hold 5.0 MiB" in r.output, r.output
    assert "--target tflite" in r.output and "\n" not in r.output.strip() and not (tmp_path / "out").exists()


def _recurrent(time_dim="T"):
    """x[T, 8] -> Unsqueeze(1) -> LSTM over T steps: the leading dim is time, not a batch."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(np.array([1], np.int64), "ax"),
             numpy_helper.from_array(rng.normal(0, 0.3, (1, 16, 8)).astype(np.float32), "W"),
             numpy_helper.from_array(rng.normal(0, 0.3, (1, 16, 4)).astype(np.float32), "R")]
    nodes = [helper.make_node("Unsqueeze", ["x", "ax"], ["x3"], name="unsq"),
             helper.make_node("LSTM", ["x3", "W", "R"], ["y"], name="the_lstm", hidden_size=4)]
    g = helper.make_graph(nodes, "rnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [time_dim, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [time_dim, 1, 1, 4])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_a_time_axis_is_not_split_as_a_batch(tmp_path):
    path = _save(tmp_path, _recurrent())
    r = _compile(path, tmp_path / "out")
    assert r.exit_code == 2 and "time axis of LSTM 'the_lstm', not a batch" in r.output and "--input-shape x=T,8" in r.output
    calib = tmp_path / "calib.npz"
    np.savez(calib, x=np.random.default_rng(0).normal(size=(40, 8)).astype(np.float32))  # 5 sequences of 8 steps
    r = CliRunner().invoke(main, ["compile", str(path), "--input-shape", "x=8,8", "--calib", str(calib), "--out",
                                  str(tmp_path / "o2"), "--json", "--act-bits", "8"])
    assert r.exit_code == 0, r.output
    import json

    report = json.loads(r.output)
    assert report["validation"]["samples"] == 8 and report["calibration"]["samples"] == 32  # whole sequences held back
    np.savez(calib, x=np.zeros((41, 8), np.float32))
    r = _compile(path, tmp_path / "o3", "--input-shape", "x=8,8", "--calib", str(calib))
    assert r.exit_code == 2 and "41 rows; the model takes 8 rows per inference" in r.output, r.output
