"""TFLite Micro target: C array + manifest, run in TFLite Micro, same outputs as LiteRT's kernels."""

from __future__ import annotations

import hashlib
import json
import re

import numpy as np
import pytest

from edgeq.graph import Graph
from edgeq.lower import get_target
from edgeq.lower.tflite import LiteRTRunner
from edgeq.passes import run_passes
from edgeq.quant.build import int8_plan
from edgeq.quant.calibrate import observe
from edgeq.quant.data import load_dataset
from edgeq.runners import make_runner
from tests.models import small_cnn, small_cnn_data

tflm = get_target("tflm")


@pytest.fixture(scope="module")
def lowered(tmp_path_factory):
    g = run_passes(Graph(small_cnn(), "small_cnn"))
    x = small_cnn_data(32)
    plan = int8_plan(g, observe(g, load_dataset({"input": x}, g)), target="tflm")
    plan = tflm.plan_for(g, plan, {})
    out = tmp_path_factory.mktemp("tflm")
    return tflm.lower(g, plan, out, "small", {}), x, out


def test_c_array_and_manifest(lowered):
    art, _, out = lowered
    data = art.path.read_bytes()
    names = sorted(p.relative_to(out).as_posix() for p in art.files)
    assert names == ["CMakeLists.txt", "library.json", "small.micro.tflite", "small.tflm.json", "small_model_data.c",
                     "small_model_data.cc", "small_model_data.h", "small_ops.h", "zephyr/CMakeLists.txt", "zephyr/module.yml"]
    cc = (out / "small_model_data.cc").read_text()
    assert "alignas(16) const unsigned char small_model[]" in cc
    body = cc.split("{", 1)[1].split("}", 1)[0]
    assert bytes(int(v, 16) for v in re.findall(r"0x([0-9a-f]{2})", body)) == data
    assert f"small_model_len = {len(data)};" in cc
    h = (out / "small_model_data.h").read_text()
    manifest = json.loads((out / "small.tflm.json").read_text())
    assert manifest["sha256"] == hashlib.sha256(b"small.micro.tflite" + data).hexdigest() == art.sha256()
    assert manifest["arena_bytes_measured"] > 1000 and manifest["arena_bytes"] > manifest["arena_bytes_measured"]
    assert f"TensorArenaSize = {manifest['arena_bytes']};" in h
    assert manifest["inputs"][0]["dtype"] == "int8" and manifest["inputs"][0]["shape"] == [1, 1, 12, 12]
    assert manifest["outputs"][0]["scale"] > 0 and "CONV_2D" in manifest["ops"]


def test_same_outputs_as_litert_reference_kernels(lowered):
    art, x, _ = lowered
    micro = make_runner(art).run({"input": x})["logits"]
    ref = LiteRTRunner(art, kernels="reference").run({"input": x})["logits"]
    np.testing.assert_array_equal(micro, ref)


SAMPLE = __import__("pathlib").Path(__file__).resolve().parents[2] / "samples"


@pytest.mark.skipif(not (SAMPLE / "fashion_cnn.onnx").exists(), reason="bundled sample not built yet")
def test_fashion_sample_in_tflite_micro(tmp_path):
    from edgeq.frontend import load

    g = run_passes(load(str(SAMPLE / "fashion_cnn.onnx")))
    plan = int8_plan(g, observe(g, load_dataset({"input": np.load(SAMPLE / "fashion_calib.npz")["input"]}, g)), target="tflm")
    plan = tflm.plan_for(g, plan, {})
    art = tflm.lower(g, plan, tmp_path, "fashion", {})
    x = np.load(SAMPLE / "fashion_val.npz")["input"][:40]
    micro = make_runner(art).run({"input": x})["logits"]
    np.testing.assert_array_equal(micro, LiteRTRunner(art, kernels="reference").run({"input": x})["logits"])
    builtin = LiteRTRunner(art, kernels="builtin").run({"input": x})["logits"]
    assert np.abs(micro - builtin).max() <= art.outputs[0].scale * 1.001  # optimized kernels: within 1 LSB
    assert art.extra["tflm_arena_bytes"] > 10_000
