"""TFLite target on transformers: the bundled ViT sample and a Hugging Face BERT-style encoder.

Their exports carry shape arithmetic (folded before the op check), masks (Cast, And, Expand,
Where) and erf-GELU (fused into LiteRT's GELU; a lone Erf is a float polynomial).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from edgeq.frontend import load
from edgeq.lower import get_target
from edgeq.lower.tflite import LiteRTRunner
from edgeq.passes import run_passes
from edgeq.pipeline import compile as edgeq_compile
from edgeq.quant.mixed import QuantOptions
from edgeq.quant.plan import QuantPlan
from edgeq.runners import OrtRunner
from tests.models import SAMPLES, fashion_data
from tests.test_transformers import export_bert, token_batch, token_cosine

tflite = get_target("tflite")


def _run_tflite(path: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One sample at a time through LiteRT (the artifact holds batch 1), by I/O tensor name."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=path)
    it.allocate_tensors()
    ins, outs = it.get_input_details(), it.get_output_details()
    got: dict[str, list] = {d["name"]: [] for d in outs}
    for i in range(len(next(iter(feeds.values())))):
        for d in ins:
            it.set_tensor(d["index"], feeds[d["name"]][i:i + 1].astype(d["dtype"]))
        it.invoke()
        for d in outs:
            got[d["name"]].append(it.get_tensor(d["index"]))
    return {k: np.concatenate(v) for k, v in got.items()}


def test_vit_sample_int8_keeps_top1_within_a_point(tmp_path):
    calib, val = fashion_data(128, 500)
    report = edgeq_compile(str(SAMPLES / "fashion_vit.onnx"), "tflite", calib=calib, val=val, out=tmp_path / "out",
                           latency_runs=3, quant=QuantOptions(act_bits="auto"), target_options={"fallback": "float"})
    entry = report["targets"][0]
    v = entry["verify"]
    assert v["accuracy_quant"] >= v["accuracy_float"] - 0.01, v
    ops = entry["tflite_ops"]
    assert ops["GELU"] == 2 and "SIGN" not in ops  # erf-GELU fused, not expanded
    assert ops["FULLY_CONNECTED"] >= 8 and entry["bytes"] < 0.5 * entry["float_bytes"]  # really int8
    # LayerNormalization has no integer kernel: kept float, and the artifact says so
    assert any("LayerNormalization" in n for n in entry["float_nodes"])
    assert any("fallback=float" in n for n in entry["notes"])


def test_vit_sample_float_matches_onnx(tmp_path):
    graph = run_passes(load(str(SAMPLES / "fashion_vit.onnx")))
    plan = QuantPlan(model_sha256="float", mode="static")
    tflite.check_plan(graph, plan, {})  # ConstantOfShape / Equal / Where of the export fold away first
    art = tflite.lower(graph, plan, tmp_path, "vit", {})
    with np.load(SAMPLES / "fashion_val.npz") as z:
        x = z["input"][:64]
    ref = OrtRunner(graph.serialize()).run({"input": x})["logits"]
    got = LiteRTRunner(art).run({"input": x})["logits"]
    assert np.abs(got - ref).max() < 1e-4 * max(1.0, float(np.abs(ref).max()))


def test_lone_erf_is_accurate(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2001])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2001])
    m = helper.make_model(helper.make_graph([helper.make_node("Erf", ["x"], ["y"])], "erf", [x], [y]),
                          opset_imports=[helper.make_operatorsetid("", 17)])
    onnx.save(m, tmp_path / "erf.onnx")
    graph = run_passes(load(str(tmp_path / "erf.onnx")))
    art = tflite.lower(graph, QuantPlan(model_sha256="float", mode="static"), tmp_path, "erf", {})
    v = np.linspace(-6, 6, 2001, dtype=np.float32)[None]
    got = LiteRTRunner(art).run({"x": v})["y"]
    ref = OrtRunner(graph.serialize()).run({"x": v})["y"]
    assert np.abs(got - ref).max() < 1e-6  # Abramowitz-Stegun 7.1.26: 1.5e-7, plus float32 rounding


def test_bert_encoder_act_bits_auto_keeps_embedding_cosine(tmp_path):
    export_bert(tmp_path / "bert.onnx")
    ids, mask = token_batch(160, seed=2)
    vids, vmask = token_batch(48, seed=3)
    report = edgeq_compile(str(tmp_path / "bert.onnx"), "tflite", calib={"input_ids": ids, "attention_mask": mask},
                           val={"input_ids": vids, "attention_mask": vmask}, out=tmp_path / "out", latency_runs=3,
                           quant=QuantOptions(act_bits="auto"), target_options={"fallback": "float"})
    entry = report["targets"][0]
    ops = entry["tflite_ops"]
    assert {"CAST", "LOGICAL_AND", "SELECT_V2", "GELU", "GATHER"} <= set(ops)  # the mask path and embeddings
    assert entry["tflite_mode"].endswith("int8") and ops["FULLY_CONNECTED"] >= 12
    feeds = {"input_ids": vids, "attention_mask": vmask}
    ref = OrtRunner(str(tmp_path / "bert.onnx")).run(feeds)["embeddings"]
    got = _run_tflite(entry["artifact"], feeds)["embeddings"]
    assert token_cosine(ref, got, vmask) >= 0.99
