"""python -m edgeq, compile --quiet, --target all (real runtimes, the small CNN)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from edgeq.lower import expand_all, target_names

ROOT = Path(__file__).resolve().parents[2]


def _run(*args, cwd=None):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "edgeq", *map(str, args)], capture_output=True, text=True, env=env, cwd=cwd)


def test_python_dash_m_edgeq_runs_the_cli():
    r = _run("--version")
    assert r.returncode == 0, r.stderr
    assert "edgeq" in r.stdout
    r = _run("targets")
    assert r.returncode == 0 and "ort" in r.stdout


def test_expand_all_is_every_target_once():
    assert expand_all(["all"]) == target_names()
    assert expand_all(["tflite", "all"]) == ["tflite"] + [t for t in target_names() if t != "tflite"]


def test_compile_quiet_target_all(small_model, small_calib, tmp_path):
    out = tmp_path / "out"
    r = _run("compile", small_model, "--target", "all", "--calib", small_calib, "--out", out, "--quiet", "--act-bits", "8")
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""  # no table
    report = json.loads((out / "report.json").read_text())
    assert [t["target"] for t in report["targets"]] == target_names()
    for t in report["targets"]:
        assert (out / t["artifact"]).exists()
    # warnings, if any, are one line each on stderr and nothing else is there (no progress bars)
    lines = [ln for ln in r.stderr.splitlines() if ln]
    assert len(lines) == len(report["warnings"])
    assert all(ln.startswith("edgeq: warning: ") for ln in lines)


def test_compile_unknown_target_with_all_is_one_line(small_model, small_calib, tmp_path):
    r = _run("compile", small_model, "--target", "all,foo", "--calib", small_calib, "--out", tmp_path / "o", "--quiet")
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "foo" in r.stderr
