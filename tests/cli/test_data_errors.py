"""Data files: every member a numeric array, labels integer class indices within the output's classes."""

import zipfile

import numpy as np
import pytest

from tests.cli.test_errors import compile_fails
from tests.models import small_cnn_data


def test_npz_with_an_object_member(tmp_path, small_model):
    np.savez(tmp_path / "c.npz", input=small_cnn_data(8), meta=np.array([{"a": 1}], dtype=object))
    compile_fails(tmp_path, [small_model, "--calib", tmp_path / "c.npz"], "member 'meta' is an object array")


def test_npz_with_a_string_member(tmp_path, small_model):
    np.savez(tmp_path / "c.npz", input=small_cnn_data(8), names=np.array(["a", "b"]))
    compile_fails(tmp_path, [small_model, "--calib", tmp_path / "c.npz"], "member 'names' is a <U1 array")


def test_npz_with_a_member_that_is_not_npy(tmp_path, small_model):
    np.savez(tmp_path / "c.npz", input=small_cnn_data(8))
    with zipfile.ZipFile(tmp_path / "c.npz", "a") as z:
        z.writestr("notes.txt", "hello")
    compile_fails(tmp_path, [small_model, "--calib", tmp_path / "c.npz"], "member 'notes.txt' is not an array (bytes)")


@pytest.mark.parametrize("labels,match", [
    (np.full(8, np.nan), "'labels' holds NaN/inf"),
    (np.array(["cat"] * 8), "member 'labels' is a <U3 array"),
    (np.full(8, 10), "'labels' holds 10; labels are class indices 0..9 (the output has 10 classes)"),
    (np.full(8, -1), "'labels' holds -1"),
    (np.full(8, 2.5), "non-integer values"),
])
def test_bad_validation_labels(tmp_path, small_model, small_calib, labels, match):
    np.savez(tmp_path / "v.npz", input=small_cnn_data(8), labels=labels)
    line = compile_fails(tmp_path, [small_model, "--calib", small_calib, "--val", tmp_path / "v.npz"], match)
    assert "v.npz" in line


def test_integral_float_labels_are_accepted(small_model):
    import onnx

    from edgeq.frontend import load
    from edgeq.quant.data import load_dataset

    g = load(onnx.load(small_model))
    ds = load_dataset({"input": small_cnn_data(4), "labels": np.array([0.0, 3.0, 9.0, 1.0])}, g, "--val")
    assert ds.labels.dtype == np.int64 and list(ds.labels) == [0, 3, 9, 1]
