"""Reading artifacts back: the QDQ ORT model gives back its float graph and its plan."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from edgeq.errors import ModelError
from edgeq.op_cost import op_costs
from edgeq.profile.read import read_artifact


def test_qdq_artifact_round_trip(small_compiled):
    report, out, model = small_compiled
    art = read_artifact(report["targets"][0]["artifact"])
    assert art.target == "ort" and art.plan is not None
    assert not any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in art.graph.nodes)
    assert {w.node for w in art.plan.weights.values()} == {"conv1", "dw", "fc"}
    assert all(w.bits == 8 for w in art.plan.weights.values())
    assert "input" in art.plan.activations and "logits" in art.plan.activations
    assert [o.name for o in art.graph.outputs] == ["logits"]
    flt = read_artifact(model)
    assert flt.target == "onnx" and flt.plan is None
    macs = {c.name: c.macs for c in op_costs(flt.graph) if c.macs}
    assert macs == {c.name: c.macs for c in op_costs(art.graph, art.plan) if c.macs}


def test_corrupt_and_unknown_files(tmp_path):
    bad = tmp_path / "bad.ort.onnx"
    bad.write_bytes(b"\x08\x07garbage" * 50)
    with pytest.raises(ModelError, match="bad.ort.onnx: not a readable ONNX model"):
        read_artifact(bad)
    with pytest.raises(ModelError, match="no such file"):
        read_artifact(tmp_path / "missing.onnx")
    other = tmp_path / "model.xyz"
    other.write_bytes(b"x")
    with pytest.raises(ModelError, match="cannot profile '.xyz'"):
        read_artifact(other)


def test_tflite_artifact(tmp_path, small_compiled):
    """A .tflite edgeq wrote is costed from LiteRT's own op list and runs on LiteRT for timing."""
    from edgeq.pipeline import compile as edgeq_compile
    from edgeq.profile import profile_path

    _, _, model = small_compiled
    report = edgeq_compile(str(model), "tflite", calib="random", out=str(tmp_path / "out"), latency_runs=5)
    art = read_artifact(report["targets"][0]["artifact"])
    quant, flt = art.costs[0], art.costs[1]
    macs = {c.op: c.macs for c in quant if c.macs}
    assert macs["CONV_2D"] == 8 * 12 * 12 * 9 and macs["DEPTHWISE_CONV_2D"] == 8 * 6 * 6 * 9 and macs["FULLY_CONNECTED"] == 80
    assert {c.precision for c in quant if c.macs} == {"int8"} and {c.precision for c in flt} == {"fp32"}
    assert not any(c.op in ("QUANTIZE", "DEQUANTIZE") for c in flt)
    prof = profile_path(art.path, ["rpi5"], 30.0, runs=5)
    assert prof["target"] == "tflite" and prof["quantized"] and prof["host_measured"]["runs"] == 5
    assert prof["devices"]["host_x86_64"]["quant"]["unit"] == "litert"
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"TFL3" + b"\x00" * 40)
    with pytest.raises(ModelError, match="bad.tflite: not a readable TFLite model"):
        read_artifact(bad)
    # found by bench/atheris_loaders.py --target profile-tflite: LiteRT loads a file whose tensor name is not
    # UTF-8, and raised UnicodeDecodeError when read_tflite listed the tensors
    data = Path(report["targets"][0]["artifact"]).read_bytes()
    assert data.count(b"logits") >= 1
    bad.write_bytes(data.replace(b"logits", b"\x9cogits"))
    with pytest.raises(ModelError, match="bad.tflite: not a readable TFLite model .*utf-8"):
        read_artifact(bad)
    # found by the same harness: a model without a subgraphs vector passes LiteRT's verifier and segfaults
    # its interpreter while loading (the whole test process died); it is refused before LiteRT sees it
    import flatbuffers

    from edgeq.lower.tflite.schema import FILE_IDENTIFIER, read_model

    m = read_model(data)
    m.subgraphs = None
    builder = flatbuffers.Builder(1024)
    builder.Finish(m.Pack(builder), file_identifier=FILE_IDENTIFIER)
    bad.write_bytes(bytes(builder.Output()))
    with pytest.raises(ModelError, match="bad.tflite: not a readable TFLite model \\(no subgraph\\)"):
        read_artifact(bad)


def test_mlpackage_artifact(tmp_path, small_compiled):
    """An .mlpackage is costed from its ML program; the A17 Pro's Neural Engine computes it in int8."""
    from edgeq.pipeline import compile as edgeq_compile
    from edgeq.profile import profile_path

    _, _, model = small_compiled
    report = edgeq_compile(str(model), "coreml", calib="random", out=str(tmp_path / "out"), latency_runs=2)
    art = read_artifact(report["targets"][0]["artifact"])
    macs = sorted(c.macs for c in art.costs[0] if c.macs)
    assert macs == sorted([8 * 12 * 12 * 9, 8 * 6 * 6 * 9, 80])
    prof = profile_path(art.path, ["iphone_a17pro", "iphone_a15", "pixel8"], 30.0, runs=2)
    a17, a15 = prof["devices"]["iphone_a17pro"]["quant"], prof["devices"]["iphone_a15"]["quant"]
    assert a17["unit"] == "ane" and a17["precision"].get("int8") and not a15["precision"].get("int8")
    assert "skipped" in prof["devices"]["pixel8"] and "reference executor" in prof["host_measured"]["note"]


def test_weight_of_an_unknown_data_type(tmp_path):
    # found by bench/atheris_loaders.py --target profile-onnx: the checker passed data_type 195, and folding
    # BatchNormalization raised KeyError in numpy_helper.to_array
    from tests.models import small_cnn

    m = small_cnn()
    next(t for t in m.graph.initializer if t.name == "bn.var").data_type = 195
    onnx.save(m, tmp_path / "model.onnx")
    with pytest.raises(ModelError, match="weight 'bn.var' .* data type 195 is not an ONNX tensor type"):
        read_artifact(tmp_path / "model.onnx")


def test_per_block_artifact(tmp_path):
    # DequantizeLinear-21 block scales ([O, I / block]) were broadcast against the weight as if per channel:
    # ValueError on every per_block ORT artifact edgeq wrote (seen while fixing the next test's finding)
    import numpy as np

    from edgeq.pipeline import compile as edgeq_compile
    from edgeq.quant.mixed import QuantOptions
    from tests.models import small_cnn, small_cnn_data

    onnx.save(small_cnn(), tmp_path / "small.onnx")
    report = edgeq_compile(str(tmp_path / "small.onnx"), "ort", calib={"input": small_cnn_data(16)}, out=str(tmp_path / "out"),
                           quant=QuantOptions(granularity="per_block", block_size=4, bits=4), latency_runs=2)
    art = read_artifact(report["targets"][0]["artifact"])
    fc = art.graph.initializer("fc.w")
    assert fc.shape == (10, 8) and np.abs(fc - onnx.numpy_helper.to_array(
        next(t for t in small_cnn().graph.initializer if t.name == "fc.w"))).max() < 0.5


def test_qdq_axis_outside_the_weight(tmp_path, small_compiled):
    # found by bench/atheris_loaders.py --target profile-onnx: a DequantizeLinear axis past the weight's
    # dims raised IndexError in undo_qdq
    report, out, model = small_compiled
    m = onnx.load(report["targets"][0]["artifact"])
    dq = next(n for n in m.graph.node if n.op_type == "DequantizeLinear" and any(a.name == "axis" for a in n.attribute))
    next(a for a in dq.attribute if a.name == "axis").i = 5
    onnx.save(m, tmp_path / "axis.ort.onnx")
    with pytest.raises(ModelError, match="has axis 5 for a weight of .* dims; not an edgeq QDQ artifact"):
        read_artifact(tmp_path / "axis.ort.onnx")


def test_graph_name_not_utf8(tmp_path, small_compiled):
    # found by bench/atheris_loaders.py --target profile-onnx: protobuf hands invalid UTF-8 back as bytes,
    # and undo_qdq's onnx.helper.make_graph raised UnicodeDecodeError on the graph's name
    report, out, model = small_compiled
    data = Path(report["targets"][0]["artifact"]).read_bytes()
    name = onnx.load(report["targets"][0]["artifact"]).graph.name.encode()
    (tmp_path / "name.ort.onnx").write_bytes(data.replace(name, name[:-1] + b"\x97"))
    with pytest.raises(ModelError, match="name is not valid UTF-8 .* re-run `edgeq compile`"):
        read_artifact(tmp_path / "name.ort.onnx")
