"""Bad input: one line on stderr naming the culprit, exit status 2, nothing written."""

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import helper, numpy_helper

from edgeq.cli import main
from tests.models import small_cnn, small_cnn_data


def compile_fails(tmp_path, args, match):
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["compile", *map(str, args), "--out", str(out)])
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("edgeq: error: "), result.output
    assert match in lines[0], lines[0]
    assert "Traceback" not in result.output
    assert not out.exists(), "nothing may be written on failure"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.staging")], "staging folder left behind"
    return lines[0]


def test_missing_file(tmp_path, small_calib):
    compile_fails(tmp_path, [tmp_path / "none.onnx", "--calib", small_calib], "none.onnx: no such file")


def test_not_onnx(tmp_path, small_calib):
    p = tmp_path / "fake.onnx"
    p.write_text("this is text, not a protobuf " * 20)
    compile_fails(tmp_path, [p, "--calib", small_calib], "fake.onnx")


def test_op_onnxruntime_cannot_run(tmp_path, small_calib):
    m = small_cnn()
    relu = next(n for n in m.graph.node if n.op_type == "Relu")
    relu.op_type, relu.domain = "FancyRelu", "com.example"
    m.opset_import.append(helper.make_opsetid("com.example", 1))
    onnx.save(m, tmp_path / "custom.onnx")
    line = compile_fails(tmp_path, [tmp_path / "custom.onnx", "--calib", small_calib], "FancyRelu")
    assert "relu1" in line


def test_calibration_shape_mismatch(tmp_path, small_model):
    np.savez(tmp_path / "c.npz", input=np.zeros((4, 1, 10, 10), np.float32))
    line = compile_fails(tmp_path, [small_model, "--calib", tmp_path / "c.npz"], "input 'input' expects shape")
    assert "[N, 1, 12, 12]" in line and "[4, 1, 10, 10]" in line


def test_calibration_dtype_mismatch(tmp_path, small_model):
    np.savez(tmp_path / "c.npz", input=np.zeros((4, 1, 12, 12), np.int32))
    compile_fails(tmp_path, [small_model, "--calib", tmp_path / "c.npz"], "expects float32, the data is int32")


def test_empty_calibration(tmp_path, small_model):
    np.savez(tmp_path / "c.npz", input=np.zeros((0, 1, 12, 12), np.float32))
    compile_fails(tmp_path, [small_model, "--calib", tmp_path / "c.npz"], "0 samples")


def test_nan_in_calibration(tmp_path, small_model):
    x = small_cnn_data(8)
    x[3, 0, 0, 0] = np.nan
    np.savez(tmp_path / "c.npz", input=x)
    compile_fails(tmp_path, [small_model, "--calib", tmp_path / "c.npz"], "NaN")


def test_nan_in_weights(tmp_path, small_calib):
    m = small_cnn()
    t = next(t for t in m.graph.initializer if t.name == "dw.w")
    a = numpy_helper.to_array(t).copy()
    a[0, 0, 1, 1] = np.inf
    t.CopyFrom(numpy_helper.from_array(a, "dw.w"))
    onnx.save(m, tmp_path / "nan.onnx")
    compile_fails(tmp_path, [tmp_path / "nan.onnx", "--calib", small_calib], "weight 'dw.w'")


def test_unbound_dynamic_dim(tmp_path, small_calib):
    m = small_cnn()
    d = m.graph.input[0].type.tensor_type.shape.dim[3]
    d.Clear()
    d.dim_param = "W"
    onnx.save(m, tmp_path / "dyn.onnx")
    compile_fails(tmp_path, [tmp_path / "dyn.onnx", "--calib", small_calib], "--input-shape input=")


def test_external_data_escape(tmp_path, small_calib):
    (tmp_path / "m").mkdir()
    onnx.save(small_cnn(), tmp_path / "m" / "x.onnx", save_as_external_data=True, location="x.data", size_threshold=0)
    raw = onnx.load(tmp_path / "m" / "x.onnx", load_external_data=False)
    for t in raw.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                e.value = "/etc/passwd"
    onnx.save(raw, tmp_path / "m" / "x.onnx")
    compile_fails(tmp_path, [tmp_path / "m" / "x.onnx", "--calib", small_calib], "outside the model's folder")


def test_unknown_target(tmp_path, small_model, small_calib):
    compile_fails(tmp_path, [small_model, "--calib", small_calib, "--target", "vax"], "unknown target 'vax'")


def test_no_calibration(tmp_path, small_model):
    compile_fails(tmp_path, [small_model], "--calib")


@pytest.mark.parametrize("bad", ['{"version": 1, "weights": {"nope": {}}}', "not json", '{"version": 99}'])
def test_bad_plan(tmp_path, small_model, small_calib, bad):
    (tmp_path / "plan.json").write_text(bad)
    compile_fails(tmp_path, [small_model, "--calib", small_calib, "--plan", tmp_path / "plan.json"], "plan.json")


def test_existing_output_untouched_on_failure(tmp_path, small_model):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    np.savez(tmp_path / "c.npz", input=np.zeros((0, 1, 12, 12), np.float32))
    result = CliRunner().invoke(main, ["compile", str(small_model), "--calib", str(tmp_path / "c.npz"), "--out", str(out)])
    assert result.exit_code == 2
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def test_corrupt_pt2_is_one_line(tmp_path, small_calib):
    pytest.importorskip("torch")
    p = tmp_path / "bad.pt2"
    p.write_text("not a zip archive")
    compile_fails(tmp_path, [p, "--calib", small_calib], "bad.pt2: not a torch.export archive")


def test_comma_separated_targets(tmp_path, small_model, small_calib):
    """--target tflite,coreml is --target tflite --target coreml; an unknown one in the list fails before any work."""
    compile_fails(tmp_path, [small_model, "--calib", small_calib, "--target", "tflite,nope"], "unknown target 'nope'")
    out = tmp_path / "both"
    result = CliRunner().invoke(main, ["compile", str(small_model), "--calib", str(small_calib), "--target", "tflite,coreml",
                                       "--act-bits", "8", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    assert (out / "small.tflite").exists() and (out / "small.mlpackage").is_dir()


def _no_staging_anywhere(root):
    return [p for p in root.rglob("*") if ".staging." in p.name or p.name.startswith(".edgeq-probe.")]


@pytest.mark.parametrize("kind", ["file", "under_file", "proc", "long"])
def test_unusable_output_path_fails_before_loading(tmp_path, small_calib, kind):
    """-o naming a file, a path under a file, or an unwritable place: one line before the model is even read."""
    (tmp_path / "taken").write_text("mine")
    out = {"file": tmp_path / "taken", "under_file": tmp_path / "taken" / "sub", "proc": "/proc/edgeq_out",
           "long": tmp_path / ("o" * 300)}[kind]
    # The model does not exist: if the output path were not checked first, the error would name the model.
    result = CliRunner().invoke(main, ["compile", str(tmp_path / "none.onnx"), "--calib", str(small_calib), "-o", str(out)])
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("edgeq: error: --out"), result.output
    assert "none.onnx" not in lines[0]
    assert (tmp_path / "taken").read_text() == "mine"
    assert not _no_staging_anywhere(tmp_path)


def test_commit_failure_leaves_no_staging(tmp_path):
    """The output path turning into a file mid-run: the commit fails, the staging folder goes, nothing else is made."""
    from edgeq.fileio import StagingDir, write_text

    out = tmp_path / "new" / "deeper" / "out"
    with pytest.raises(FileExistsError):
        with StagingDir(out) as s:
            write_text(s.path / "a.txt", "x")
            out.write_text("someone else's file")
    assert not _no_staging_anywhere(tmp_path)
    with pytest.raises(RuntimeError):
        with StagingDir(tmp_path / "made" / "out") as s:
            write_text(s.path / "a.txt", "x")
            raise RuntimeError("boom")
    assert not (tmp_path / "made").exists(), "folders made for the output are removed on failure"
