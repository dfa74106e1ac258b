import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeq.errors import ModelError
from edgeq.frontend import load, parse_input_shapes
from tests.models import small_cnn


def test_loads_and_infers_shapes(small_model):
    g = load(small_model)
    assert [s.name for s in g.inputs] == ["input"]
    assert g.inputs[0].shape == ("N", 1, 12, 12)
    # Shape inference ran: intermediate tensors have shapes.
    assert g.shape("c1") == ("N", 8, 12, 12)


def test_external_data_beside_model_loads(tmp_path):
    m = small_cnn()
    want = numpy_helper.to_array(next(t for t in m.graph.initializer if t.name == "fc.w"))
    onnx.save(m, tmp_path / "ext.onnx", save_as_external_data=True, location="ext.data", size_threshold=0)
    g = load(tmp_path / "ext.onnx")
    np.testing.assert_array_equal(g.initializer("fc.w"), want)


def test_external_data_escaping_folder_is_refused(tmp_path):
    (tmp_path / "model").mkdir()
    m = small_cnn()
    onnx.save(m, tmp_path / "model" / "ext.onnx", save_as_external_data=True, location="ext.data", size_threshold=0)
    raw = onnx.load(tmp_path / "model" / "ext.onnx", load_external_data=False)
    for t in raw.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                e.value = "../secret.data"
    onnx.save(raw, tmp_path / "model" / "ext.onnx")
    with pytest.raises(ModelError, match="outside the model's folder"):
        load(tmp_path / "model" / "ext.onnx")


def test_unbound_dynamic_dim_names_input(tmp_path):
    m = small_cnn()
    m.graph.input[0].type.tensor_type.shape.dim[2].Clear()
    m.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "height"
    onnx.save(m, tmp_path / "dyn.onnx")
    with pytest.raises(ModelError, match=r"input 'input' has an unbound dynamic dim 2 \('height'\).*--input-shape input="):
        load(tmp_path / "dyn.onnx")
    g = load(tmp_path / "dyn.onnx", parse_input_shapes(["input=1,1,12,12"]))
    assert g.inputs[0].shape == (1, 1, 12, 12)


def test_input_shape_wrong_name_or_rank(small_model):
    with pytest.raises(ModelError, match="model's inputs are"):
        load(small_model, {"x": (1, 1, 12, 12)})
    with pytest.raises(ModelError, match="rank 4"):
        load(small_model, {"input": (1, 12, 12)})
    with pytest.raises(ModelError, match="NAME=D0"):
        parse_input_shapes(["input:1,2"])


def test_not_onnx_and_missing_and_pickle(tmp_path):
    (tmp_path / "junk.onnx").write_bytes(b"\x00\x01 not a model" * 10)
    with pytest.raises(ModelError, match="junk.onnx"):
        load(tmp_path / "junk.onnx")
    with pytest.raises(ModelError, match="no such file"):
        load(tmp_path / "nope.onnx")
    (tmp_path / "m.pt").write_bytes(b"x")
    with pytest.raises(ModelError, match="pickled"):
        load(tmp_path / "m.pt")


def test_nan_weight_is_named(tmp_path):
    m = small_cnn()
    w = next(t for t in m.graph.initializer if t.name == "fc.w")
    arr = numpy_helper.to_array(w).copy()
    arr[0, 0] = np.nan
    w.CopyFrom(numpy_helper.from_array(arr, "fc.w"))
    onnx.save(m, tmp_path / "nan.onnx")
    with pytest.raises(ModelError, match="weight 'fc.w' holds 1 NaN"):
        load(tmp_path / "nan.onnx")


def test_checker_failure_is_one_line(tmp_path):
    bad = helper.make_model(helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])]), opset_imports=[helper.make_opsetid("", 17)])
    bad.graph.node[0].op_type = "NotAnOp"
    onnx.save(bad, tmp_path / "bad.onnx")
    with pytest.raises(ModelError) as e:
        load(tmp_path / "bad.onnx")
    assert "\n" not in str(e.value) and "bad.onnx" in str(e.value)


def test_weight_dims_not_matching_its_data(tmp_path):
    # found by bench/atheris_loaders.py --target onnx: the checker passed it, numpy_helper.to_array raised ValueError
    m = small_cnn()
    w = next(t for t in m.graph.initializer if t.name == "conv1.w")
    w.dims[:] = [1, 3, 3]  # 72 values
    onnx.save(m, tmp_path / "dims.onnx")
    with pytest.raises(ModelError, match=r"weight 'conv1.w' \(dims \[1, 3, 3\]\) cannot be read"):
        load(tmp_path / "dims.onnx")


def test_bytes_only_python_protobuf_parses(tmp_path):
    # found by bench/atheris_loaders.py --target onnx: a start-group tag (0x0b) inside the input's shape is
    # kept by Python's protobuf as an unknown field; the checker's C++ parser raised ValueError
    m = small_cnn()
    vi = m.graph.input[0]
    vi.ParseFromString(vi.SerializeToString().replace(b"N\n\x02\x08\x01", b"N\x0b\x02\x08\x01"))
    (tmp_path / "group.onnx").write_bytes(m.SerializeToString())
    with pytest.raises(ModelError, match="the ONNX checker cannot parse the model"):
        load(tmp_path / "group.onnx")
