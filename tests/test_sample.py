"""The bundled sample end to end: the README's command, .pt2 and the Python API."""

import json

import pytest
from click.testing import CliRunner

import edgeq
from edgeq.artifact import Artifact
from edgeq.cli import main
from edgeq.lower.ort import optimized_ops


@pytest.fixture(scope="module")
def onnx_report(sample, tmp_path_factory):
    out = tmp_path_factory.mktemp("sample") / "out"
    r = CliRunner().invoke(main, ["compile", str(sample["onnx"]), "--target", "ort", "--calib", str(sample["calib"]),
                                  "--val", str(sample["val"]), "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.output), out


def test_readme_command_meets_goals(onnx_report):
    report, out = onnx_report
    t = report["targets"][0]
    v = t["verify"]
    assert v["accuracy_float"] >= 0.88
    assert v["accuracy_float"] - v["accuracy_quant"] <= 0.01, v
    assert t["bytes"] <= 0.30 * t["float_bytes"], (t["bytes"], t["float_bytes"])
    assert (out / "fashion_cnn.ort.onnx").exists() and (out / "fashion_cnn.ort").exists()
    assert (out / "report.json").exists() and (out / "plan.json").exists()
    assert report["validation"]["samples"] == 2000 and report["validation"]["labels"]


def test_sample_runs_integer_kernels(onnx_report):
    _, out = onnx_report
    ops = optimized_ops(Artifact("ort", out / "fashion_cnn.ort.onnx"))
    assert ops.get("QLinearConv", 0) >= 6, ops
    assert "Conv" not in ops, ops


def test_pt2_and_python_api_match_onnx_path(sample, onnx_report, tmp_path):
    pytest.importorskip("torch")
    import torch

    from samples.fashion_model import load_fashion_cnn

    base = onnx_report[0]["targets"][0]["verify"]["accuracy_quant"]
    pt2 = edgeq.compile(str(sample["pt2"]), target="ort", calib=str(sample["calib"]), val=str(sample["val"]), out=tmp_path / "pt2")
    assert abs(pt2["targets"][0]["verify"]["accuracy_quant"] - base) <= 0.002, (pt2["targets"][0]["verify"], base)
    module = load_fashion_cnn()
    api = edgeq.compile(module, example_inputs=(torch.zeros(1, 1, 28, 28),), target="ort", calib=str(sample["calib"]),
                        val=str(sample["val"]), out=tmp_path / "api")
    assert abs(api["targets"][0]["verify"]["accuracy_quant"] - base) <= 0.002, (api["targets"][0]["verify"], base)
    assert (tmp_path / "api" / "fashioncnn.ort.onnx").exists()
