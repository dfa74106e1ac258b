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


def test_compile_output_file_copies_the_one_artifact(small_model, small_calib, tmp_path):
    out, dest = tmp_path / "out", tmp_path / "app" / "assets" / "model.tflite"
    r = _run("compile", small_model, "--target", "tflite", "--calib", small_calib, "--out", out, "--quiet",
             "--act-bits", "8", "--output-file", dest)
    assert r.returncode == 0, r.stderr
    report = json.loads((out / "report.json").read_text())
    assert dest.read_bytes() == (out / report["targets"][0]["artifact"]).read_bytes()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["model.tflite"]  # exactly PATH, nothing beside it


def test_compile_output_file_refuses_several_targets_before_any_work(small_model, small_calib, tmp_path):
    for spec in ("ort,tflite", "all"):
        r = _run("compile", small_model, "--target", spec, "--calib", small_calib, "--out", tmp_path / "o",
                 "--output-file", tmp_path / "m.bin")
        assert r.returncode == 2
        assert len(r.stderr.strip().splitlines()) == 1 and "--output-file" in r.stderr and "one --target" in r.stderr
        assert not (tmp_path / "o").exists() and not (tmp_path / "m.bin").exists()
