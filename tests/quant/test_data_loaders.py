"""Calibration data loaders: .npz, folder of .npy, one-array npz, checks before any work."""

import numpy as np
import pytest

from edgeq.errors import CalibrationError, MissingExtraError
from edgeq.frontend import load
from edgeq.quant.data import load_dataset
from tests.models import small_cnn, small_cnn_data


@pytest.fixture
def graph():
    return load(small_cnn())


def test_npz_by_name_and_single_array(tmp_path, graph):
    x = small_cnn_data(10)
    np.savez(tmp_path / "a.npz", input=x, labels=np.arange(10))
    ds = load_dataset(tmp_path / "a.npz", graph)
    assert len(ds) == 10 and list(ds.labels) == list(range(10))
    np.savez(tmp_path / "b.npz", whatever=x)  # one array for a one-input model: any key
    assert len(load_dataset(tmp_path / "b.npz", graph)) == 10


def test_float64_is_cast_int_is_refused(tmp_path, graph):
    np.savez(tmp_path / "a.npz", input=small_cnn_data(4).astype(np.float64))
    assert load_dataset(tmp_path / "a.npz", graph).arrays["input"].dtype == np.float32
    np.savez(tmp_path / "b.npz", input=np.zeros((4, 1, 12, 12), np.int64))
    with pytest.raises(CalibrationError, match="expects float32, the data is int64"):
        load_dataset(tmp_path / "b.npz", graph)


def test_folder_of_samples_and_of_named_arrays(tmp_path, graph):
    (tmp_path / "s").mkdir()
    for k in range(5):
        np.save(tmp_path / "s" / f"{k:03d}.npy", small_cnn_data(1, seed=k)[0])  # one sample each, no batch axis
    ds = load_dataset(tmp_path / "s", graph)
    assert ds.arrays["input"].shape == (5, 1, 12, 12)
    (tmp_path / "n").mkdir()
    np.save(tmp_path / "n" / "input.npy", small_cnn_data(7))
    np.save(tmp_path / "n" / "labels.npy", np.arange(7))
    ds = load_dataset(tmp_path / "n", graph)
    assert len(ds) == 7 and ds.labels is not None


def test_pickled_npz_is_refused(tmp_path, graph):
    np.savez(tmp_path / "p.npz", input=np.array([{"a": 1}], dtype=object))
    with pytest.raises(CalibrationError, match="p.npz"):
        load_dataset(tmp_path / "p.npz", graph)


def test_missing_input_names_keys(tmp_path):
    from onnx import TensorProto, helper

    m = helper.make_model(helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["y"])], "two",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 3]) for n in ("a", "b")],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])]), opset_imports=[helper.make_opsetid("", 17)])
    np.savez(tmp_path / "c.npz", a=np.zeros((2, 3), np.float32))
    with pytest.raises(CalibrationError, match=r"no array for input\(s\) \['b'\]"):
        load_dataset(tmp_path / "c.npz", load(m))


def test_split_holds_back_the_tail(tmp_path, graph):
    np.savez(tmp_path / "a.npz", input=small_cnn_data(10))
    calib, val = load_dataset(tmp_path / "a.npz", graph).split(0.2)
    assert (len(calib), len(val)) == (8, 2)


def test_missing_torch_says_how_to_install(monkeypatch, tmp_path):
    import sys

    from edgeq.frontend.torch_export import load_pt2

    monkeypatch.setitem(sys.modules, "torch", None)  # what an environment without the extra looks like
    with pytest.raises(MissingExtraError, match=r"pip install 'edgeq\[torch\]'"):
        load_pt2(tmp_path / "m.pt2")
