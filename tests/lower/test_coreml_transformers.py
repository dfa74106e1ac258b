"""Transformer encoders on the Core ML target: the mask / position ops they need (Where, Expand,
Equal, And, ConstantOfShape, Range, GatherElements, bool Gather) op by op against ONNX Runtime,
then the bundled ViT sample and a Hugging Face BERT encoder end to end in the MIL reference executor."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeq.errors import CalibrationError
from edgeq.frontend import load
from edgeq.passes import run_passes
from edgeq.quant.plan import QuantPlan
from edgeq.runners import OrtRunner
from tests.conftest import SAMPLES
from tests.models import fashion_data

pytest.importorskip("coremltools")
coreml = pytest.importorskip("edgeq.lower.coreml")


def _model(nodes, inputs, outputs, inits=()) -> onnx.ModelProto:
    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _lower_and_run(model: onnx.ModelProto, feeds: dict, tmp_path, precision: str = "fp32") -> tuple[dict, dict, object]:
    graph = run_passes(load(model))
    art = coreml.lower(graph, QuantPlan(model_sha256=graph.sha256()), tmp_path, "m", {"coreml_precision": precision})
    got = coreml.make_runner(art).run(feeds)
    ref = OrtRunner(model.SerializeToString()).run(feeds)
    return got, ref, art


def test_mask_ops_match_onnxruntime(tmp_path):
    """A padding mask built from int64 ids the way exported encoders build it, every op on input data."""
    vi = helper.make_tensor_value_info
    nodes = [
        helper.make_node("Equal", ["ids", "zero"], ["pad"]),
        helper.make_node("Not", ["pad"], ["real"]),
        helper.make_node("Greater", ["x", "zero_f"], ["pos"]),
        helper.make_node("And", ["real", "pos"], ["both"]),
        helper.make_node("Or", ["pad", "pos"], ["either"]),
        helper.make_node("Xor", ["both", "either"], ["odd"]),
        helper.make_node("Gather", ["odd", "perm"], ["odd_perm"], axis=1),  # a bool gather
        helper.make_node("Expand", ["odd_perm", "shape3"], ["wide"]),  # [2, 6] -> [3, 2, 6]
        helper.make_node("Where", ["wide", "x", "neg"], ["masked"]),
        helper.make_node("LessOrEqual", ["x", "zero_f"], ["le"]),
        helper.make_node("GreaterOrEqual", ["ids", "three"], ["ge"]),
        helper.make_node("Less", ["x", "zero_f"], ["lt"]),
        helper.make_node("And", ["le", "ge"], ["le_ge"]),
        helper.make_node("Or", ["le_ge", "lt"], ["flags_b"]),
        helper.make_node("Cast", ["flags_b"], ["flags"], to=TensorProto.FLOAT),
        helper.make_node("GatherElements", ["x", "ids"], ["picked"], axis=1),  # var indices, some negative
        helper.make_node("Add", ["ids", "one"], ["dims"]),  # a shape and a limit computed from the input
        helper.make_node("Gather", ["dims", "zero"], ["row"], axis=0),
        helper.make_node("Slice", ["row", "zero_1", "two_1"], ["dims2"]),
        helper.make_node("ConstantOfShape", ["dims2"], ["filled"], value=helper.make_tensor("v", TensorProto.FLOAT, [1], [2.5])),
        helper.make_node("ReduceMax", ["dims"], ["limit"], keepdims=0),
        helper.make_node("Range", ["zero", "limit", "one"], ["steps"]),
    ]
    inits = [numpy_helper.from_array(np.array(v, dt), k) for k, v, dt in
             [("zero", 0, np.int64), ("one", 1, np.int64), ("three", 3, np.int64), ("zero_f", 0.0, np.float32),
              ("neg", -1e4, np.float32), ("perm", [5, 4, 3, 2, 1, 0], np.int64), ("shape3", [3, 1, 1], np.int64),
              ("zero_1", [0], np.int64), ("two_1", [2], np.int64)]]
    outs = {"masked": (TensorProto.FLOAT, [3, 2, 6]), "flags": (TensorProto.FLOAT, [2, 6]), "picked": (TensorProto.FLOAT, [2, 6]),
            "filled": (TensorProto.FLOAT, ["a", "b"]), "steps": (TensorProto.INT64, ["n"])}
    model = _model(nodes, [vi("ids", TensorProto.INT64, [2, 6]), vi("x", TensorProto.FLOAT, [2, 6])],
                   [vi(o, t, shape) for o, (t, shape) in outs.items()], inits)
    feeds = {"ids": np.array([[3, 0, 1, -2, 2, 0], [1, 4, 2, 0, -6, 5]], np.int64),
             "x": np.random.default_rng(0).normal(size=(2, 6)).astype(np.float32)}
    got, ref, art = _lower_and_run(model, feeds, tmp_path)
    for o in outs:
        assert np.shape(got[o]) == ref[o].shape, o
        np.testing.assert_allclose(np.asarray(got[o], np.float32), ref[o], rtol=1e-6, err_msg=o)
    assert any("int64 input 'ids' is int32 in the program" in n for n in art.notes)
    assert [s.dtype for s in art.inputs] == ["int32", "float32"]


def test_int64_inputs_outside_int32_are_refused_not_wrapped(tmp_path):
    vi = helper.make_tensor_value_info
    model = _model([helper.make_node("Add", ["ids", "one"], ["y"])], [vi("ids", TensorProto.INT64, [1, 3])],
                   [vi("y", TensorProto.INT64, [1, 3])], [numpy_helper.from_array(np.array(1, np.int64), "one")])
    got, ref, art = _lower_and_run(model, {"ids": np.array([[1, 2, 3]], np.int64)}, tmp_path)
    np.testing.assert_array_equal(got["y"], ref["y"])
    with pytest.raises(CalibrationError, match="outside int32"):
        coreml.make_runner(art).run({"ids": np.array([[1, 2**40, 3]], np.int64)})


def test_vit_sample_compiles_for_coreml_and_keeps_top1(tmp_path):
    """samples/fashion_vit.onnx, default plan and fp16: top-1 within 1 point of float."""
    from edgeq.pipeline import compile as edgeq_compile

    calib, val = fashion_data(128, 400)
    report = edgeq_compile(str(SAMPLES / "fashion_vit.onnx"), "coreml", calib=calib, val=val, out=tmp_path / "out",
                           latency_runs=1)
    entry = report["targets"][0]
    assert entry["compute_precision"] == "fp16"
    v = entry["verify"]
    assert abs(v["accuracy_quant"] - v["accuracy_float"]) <= 0.01 + 1e-9, v
    assert v["cosine"] >= 0.99, v


def test_bert_encoder_lowers_with_int64_tokens(tmp_path):
    """The Hugging Face BERT encoder of tests/test_transformers.py: W8A8 (--act-bits auto), fp16,
    int64 token ids and padding mask fed as-is; embeddings of real tokens keep cosine >= 0.99."""
    from edgeq.pipeline import compile as edgeq_compile
    from edgeq.quant.mixed import QuantOptions
    from tests.test_transformers import export_bert, token_batch, token_cosine

    path = tmp_path / "bert.onnx"
    export_bert(path)
    ids, mask = token_batch(96, seed=2)
    vids, vmask = token_batch(32, seed=3)
    report = edgeq_compile(str(path), "coreml", calib={"input_ids": ids, "attention_mask": mask},
                           val={"input_ids": vids, "attention_mask": vmask}, out=tmp_path / "out", latency_runs=1,
                           quant=QuantOptions(act_bits="auto"))
    entry = report["targets"][0]
    assert entry["min_os"] == "ios17" and entry["compute_precision"] == "fp16"
    assert any("int64 input 'input_ids' is int32 in the program" in n for n in entry["notes"])
    from edgeq.artifact import Artifact, IOSpec
    from edgeq.lower.coreml.mil_exec import MILProgram

    assert "quantize" in MILProgram(entry["artifact"]).op_types()  # really W8A8
    art = Artifact("coreml", entry["artifact"], inputs=[IOSpec("input_ids", [1, 12], "int32"), IOSpec("attention_mask", [1, 12], "int32")],
                   outputs=[IOSpec("embeddings", [1, 12, 32], "float32")], extra={"batch_bound": True})
    feeds = {"input_ids": vids, "attention_mask": vmask}  # int64, as the ONNX model takes them
    got = coreml.make_runner(art).run(feeds)["embeddings"]
    ref = OrtRunner(str(path)).run(feeds)["embeddings"]
    assert got.shape == ref.shape
    assert token_cosine(ref, got, vmask) >= 0.99
