"""Cross-checks in the report: a second runtime (or the plan's simulation) beside the one verify ran."""

from __future__ import annotations

import numpy as np
import onnx

from edgeq.compare import lsb_agreement
from edgeq.pipeline import compile as edgeq_compile
from edgeq.quant.mixed import QuantOptions
from edgeq.quant.plan import ActivationPlan, QuantPlan
from edgeq.report import table
from tests.models import small_cnn, small_cnn_data


def test_lsb_agreement_counts_steps_of_the_output_grid():
    plan = QuantPlan(model_sha256="x")
    plan.activations["y"] = ActivationPlan(tensor="y", bits=8, scale=0.5, zero_point=0, min=-64, max=63.5)
    got = {"y": np.zeros((4, 10), np.float32)}
    other = {"y": got["y"].copy()}
    other["y"][0, :5] = 0.5  # 1 LSB
    other["y"][1, 0] = 1.5  # 3 LSB
    c = lsb_agreement(got, other, plan)
    assert c["max_lsb"] == 3.0 and c["within_1_lsb"] == 39 / 40 and c["max_abs_diff"] == 1.5 and c["samples"] == 4
    assert "max_lsb" not in lsb_agreement(got, other, QuantPlan(model_sha256="x"))  # a float output has no LSB


def test_report_cross_checks_each_runtime(tmp_path):
    model = tmp_path / "small.onnx"
    onnx.save(small_cnn(), model)
    np.savez(tmp_path / "calib.npz", input=small_cnn_data(64))
    report = edgeq_compile(str(model), ["tflite", "tflm", "coreml"], calib=str(tmp_path / "calib.npz"), out=str(tmp_path / "out"),
                           latency_runs=2, quant=QuantOptions(act_bits=8))
    checks = {t["target"]: t["verify"]["cross_checks"] for t in report["targets"]}
    # XNNPACK rescales in float like the QDQ simulation; the built-in kernels use fixed-point multipliers
    assert checks["tflite"]["integer_simulation"]["max_lsb"] <= 1.0
    assert checks["tflite"]["builtin_kernels"]["max_lsb"] <= 1.0
    assert checks["tflm"]["litert_builtin_kernels"]["max_lsb"] <= 1.0
    assert checks["tflite"]["builtin_kernels"]["samples"] == 13  # the held-back 20 % of 64
    assert "skipped" in checks["coreml"]["coreml_predict"] or checks["coreml"]["coreml_predict"]["sqnr_db"] > 20
    assert "vs builtin kernels" in table(report)
