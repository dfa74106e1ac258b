"""An error is exactly one line: runtimes' own log lines are captured, a newline in a name is escaped."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgeq.cli import main

ROOT = Path(__file__).resolve().parents[2]


def edgeq(*args, cwd):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "edgeq.cli", *map(str, args)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_litert_delegate_line_is_not_printed(tmp_path, small_model, small_calib):
    """LiteRT prints "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." on fd 2 when an interpreter is made."""
    pytest.importorskip("ai_edge_litert")
    r = edgeq("compile", small_model, "--calib", small_calib, "--target", "tflite", "-o", tmp_path / "o", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stderr == "", r.stderr
    r = edgeq("profile", tmp_path / "o" / "small.tflite", "--runs", "2", "--rate", "1e999/s", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr


def test_corrupt_tflite_is_one_line(tmp_path, small_model, small_calib):
    pytest.importorskip("ai_edge_litert")
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\x1c\x00\x00\x00TFL3" + os.urandom(400))
    r = edgeq("profile", bad, "--runs", "2", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and r.stderr.startswith("edgeq: error: "), r.stderr


def test_onnxruntime_sessions_log_only_fatal(small_model):
    from edgeq.runners import ort_session

    assert ort_session(str(small_model)).get_session_options().log_severity_level == 4


def test_newline_in_a_file_name_stays_one_line(tmp_path, small_calib):
    r = CliRunner().invoke(main, ["compile", str(tmp_path / "a\nb.onnx"), "--calib", str(small_calib), "-o", str(tmp_path / "o")])
    assert r.exit_code == 2
    assert r.output.count("\n") == 1 and "a\\nb.onnx" in r.output, r.output
