"""Graph inputs that are initializers, and outputs no node computes: normalized or refused in the front end."""

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgeq.frontend import load
from tests.cli.test_errors import compile_fails
from tests.models import small_cnn


def test_weights_listed_as_inputs_become_constants(tmp_path):
    """Older exporters list every initializer as a graph input too; they are constants, not inputs."""
    m = small_cnn()
    for t in m.graph.initializer:
        m.graph.input.append(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    g = load(m)
    assert [s.name for s in g.inputs] == ["input"]
    assert [i.name for i in g.model.graph.input] == ["input"]


def test_an_initializer_shadowing_the_only_input(tmp_path, small_calib):
    m = small_cnn()
    m.graph.initializer.append(numpy_helper.from_array(np.zeros((1, 1, 12, 12), np.float32), "input"))
    onnx.save(m, tmp_path / "shadow.onnx")
    compile_fails(tmp_path, [tmp_path / "shadow.onnx", "--calib", small_calib, "--target", "tflite"], "no input to feed")


def test_a_graph_with_no_nodes(tmp_path, small_calib):
    m = small_cnn()
    del m.graph.node[:]
    del m.graph.initializer[:]
    m.graph.output[0].CopyFrom(m.graph.input[0])
    onnx.save(m, tmp_path / "ident.onnx")
    compile_fails(tmp_path, [tmp_path / "ident.onnx", "--calib", small_calib, "--target", "tflite"], "the graph has no nodes")


def test_an_output_passed_straight_through(tmp_path, small_calib):
    m = small_cnn()
    m.graph.output.append(m.graph.input[0])
    onnx.save(m, tmp_path / "through.onnx")
    compile_fails(tmp_path, [tmp_path / "through.onnx", "--calib", small_calib, "--target", "tflite"],
                  "output 'input' is a graph input")


def test_a_name_that_is_not_utf8(tmp_path, small_calib):
    data = small_cnn().SerializeToString()
    assert data.count(b"relu1") == 1
    (tmp_path / "bad.onnx").write_bytes(data.replace(b"relu1", b"rel\xec1"))
    compile_fails(tmp_path, [tmp_path / "bad.onnx", "--calib", small_calib], "not valid UTF-8")


def test_a_folder_or_an_artifact_is_not_a_model(tmp_path):
    from click.testing import CliRunner

    from edgeq.cli import main

    (tmp_path / "m.mlpackage").mkdir()
    (tmp_path / "plain").mkdir()
    (tmp_path / "m.tflite").write_bytes(b"TFL3")
    for p, what in (("m.mlpackage", "a compiled artifact"), ("plain", "a folder"), ("m.tflite", "a compiled artifact")):
        r = CliRunner().invoke(main, ["inspect", str(tmp_path / p)])
        assert r.exit_code == 2 and r.output.count("\n") == 1 and f"{what}, not a model" in r.output, r.output
