"""Flags with a range: a value outside it is one `edgeq: error:` line naming the flag, exit 2, before any work."""

import os

import pytest
from click.testing import CliRunner

from edgeq.cli import main
from tests.cli.test_errors import compile_fails


@pytest.mark.parametrize("flag,value,match", [
    ("--weight-bits", "0", "--weight-bits 0: give 2..8"),
    ("--weight-bits", "9", "--weight-bits 9: give 2..8"),
    ("--avg-bits", "9", "--avg-bits 9.0: give 2..8"),
    ("--avg-bits", "nan", "--avg-bits nan: give 2..8"),
    ("--max-bits", "0", "--max-bits 0: give 2..8"),
    ("--max-bits", "1", "--max-bits 1: give 2..8"),
    ("--max-bits", "99", "--max-bits 99: give 2..8"),
    ("--block-size", "-4", "--block-size -4"),
    ("--block-size", "0", "--block-size 0"),
    ("--threads", "0", "--threads 0: give 1.."),
    ("--threads", "-3", "--threads -3"),
    ("--threads", "100000", "per core"),
])
def test_out_of_range_flag(tmp_path, small_calib, flag, value, match):
    # A missing model: the flag must be refused before the model is even looked at.
    compile_fails(tmp_path, [tmp_path / "none.onnx", "--calib", small_calib, flag, value], match)


@pytest.mark.parametrize("target", ["", " ", "ort,", ",tflite"])
def test_empty_target_lists_the_valid_ones(tmp_path, small_model, small_calib, target):
    line = compile_fails(tmp_path, [small_model, "--calib", small_calib, "--target", target], "empty target name")
    assert "ort" in line and "choose from" in line


def one_line(r, match):
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("edgeq: error: ") and match in lines[0], r.output


@pytest.mark.parametrize("args,match", [
    (["--runs", "0"], "--runs 0"), (["--runs", "-1"], "--runs -1"),
    (["--threads", "0"], "--threads 0"), (["--threads", str((os.cpu_count() or 1) * 4 + 1)], "per core"),
])
def test_profile_ranges(small_model, args, match):
    one_line(CliRunner().invoke(main, ["profile", str(small_model), *args]), match)


def test_inspect_empty_target(small_model):
    one_line(CliRunner().invoke(main, ["inspect", str(small_model), "--target", "ort,"]), "empty target name")


@pytest.mark.parametrize("spec,match", [
    ("input=99999999999999999999,1,12,12", "integers 1..2147483647"),
    ("input=0,1,12,12", "integers 1.."),
    ("input=2147483647,1,12,12", "GiB per sample"),
])
def test_input_shape_dims_and_bytes(tmp_path, small_model, small_calib, spec, match):
    compile_fails(tmp_path, [small_model, "--calib", small_calib, "--input-shape", spec], match)


def test_threads_checked_in_the_python_api(tmp_path, small_model):
    from edgeq import compile as edgeq_compile
    from edgeq.errors import EdgeqError

    with pytest.raises(EdgeqError, match="--threads 0"):
        edgeq_compile(str(small_model), calib="random", out=tmp_path / "o", threads=0)
    assert not (tmp_path / "o").exists()


def test_missing_target_package_names_the_edgeq_extra(monkeypatch):
    import importlib

    import edgeq.target as lower
    from edgeq.errors import EdgeqError

    real = importlib.import_module

    def no_litert(name, *a, **k):
        if name == lower.TARGET_MODULES["tflite"]:
            raise ImportError("No module named 'ai_edge_litert'", name="ai_edge_litert")
        return real(name, *a, **k)

    monkeypatch.setattr(lower.importlib, "import_module", no_litert)
    lower.get_target.cache_clear()  # targets are built once per process
    try:
        with pytest.raises(EdgeqError, match=r"pip install 'edgeq\[tflite\]'"):
            lower.get_target("tflite")
    finally:
        lower.get_target.cache_clear()


@pytest.mark.parametrize("kw", [{"bits": 0}, {"bits": 9}, {"avg_bits": float("nan")}, {"max_bits": 1}, {"block_size": -4}])
def test_quant_options_refuse_out_of_range_numbers_in_the_api(kw):
    from edgeq.errors import EdgeqError
    from edgeq.quant.mixed import QuantOptions

    with pytest.raises(EdgeqError, match="give"):
        QuantOptions(**kw)
