"""Property tests of data loading: any arrays (dtype, shape, NaN/inf, labels) load or give one EdgeqError line.

Against the small CNN of tests/models.py (input [N, 1, 12, 12] float32, 10 classes), as a dict
(the API), an .npz and a folder of .npy files (the CLI's --calib / --val).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, event, example, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as npst

from edgeq.frontend import load
from edgeq.quant.data import load_dataset
from tests.models import small_cnn
from tests.properties import SLOW, returns_or_one_line_error

DTYPES = st.one_of(
    npst.scalar_dtypes(),  # bool, ints, uints, floats, complex, datetime64, timedelta64
    npst.unicode_string_dtypes(max_len=3), npst.byte_string_dtypes(max_len=3),
    st.just(np.dtype(object)), st.sampled_from([np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.float16)]),
)
# Mostly shapes near the model's input, so the checks past the shape check run too.
SHAPES = st.one_of(
    npst.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=3),
    st.builds(lambda n: (n, 1, 12, 12), st.integers(0, 3)),
    st.just((1, 12, 12)),
)
# The library's callers see no numpy warning either (the CLI hides them; the API should not need to).
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

OBJECTS = st.one_of(st.none(), st.integers(), st.floats(), st.text(max_size=3))


@st.composite
def arrays(draw, shapes=SHAPES):
    dtype = draw(DTYPES)
    elements = OBJECTS if dtype.kind == "O" else None
    return draw(npst.arrays(dtype, draw(shapes), elements=elements))


LABEL_SHAPES = st.one_of(st.builds(lambda n: (n,), st.integers(0, 3)), npst.array_shapes(min_dims=0, max_dims=2, max_side=3))
KEYS = st.one_of(st.sampled_from(["input", "labels", "x"]), st.text("abc_-.", min_size=1, max_size=4))
DATASETS = st.dictionaries(KEYS, arrays(), max_size=3).flatmap(
    lambda d: st.just(d) if "labels" in d else st.one_of(st.just(d), arrays(LABEL_SHAPES).map(lambda y: {**d, "labels": y})))


@pytest.fixture(scope="module")
def graph():
    return load(small_cnn())


def check_loaded(ds):
    """What the pipeline relies on after a load: float32 inputs, finite, one count, labels in 0..9."""
    event("loaded" if ds is not None else "refused")  # pytest --hypothesis-show-statistics
    if ds is None:
        return
    a = ds.arrays["input"]
    assert a.dtype == np.float32 and a.shape[1:] == (1, 12, 12) and len(a) >= 1 and np.isfinite(a).all()
    if ds.labels is not None:
        assert ds.labels.dtype == np.int64 and len(ds.labels) == len(a)
        assert ds.labels.size == 0 or (ds.labels.min() >= 0 and ds.labels.max() <= 9)


@SLOW
@given(DATASETS)
@example({"input": np.full((2, 1, 12, 12), 1e300)})  # float64 beyond float32: the cast makes inf
@example({"input": np.zeros((2, 1, 12, 12), np.float32), "labels": np.array([1e300, 2.0])})
@example({"input": np.zeros((1, 12, 12), np.float16), "labels": np.array(True)})
def test_dict(graph, arrays):
    check_loaded(returns_or_one_line_error(load_dataset, arrays, graph))


@SLOW
@given(DATASETS)
def test_npz(graph, arrays):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "calib.npz"
        try:
            np.savez(path, **arrays)
        except Exception:  # numpy cannot write it, so no user has such a file
            assume(False)
        check_loaded(returns_or_one_line_error(load_dataset, str(path), graph, "--calib"))


@SLOW
@given(DATASETS)
def test_npy_folder(graph, arrays):
    with tempfile.TemporaryDirectory() as tmp:
        for name, a in arrays.items():
            try:
                np.save(Path(tmp) / f"{name}.npy", a)
            except Exception:
                assume(False)
        check_loaded(returns_or_one_line_error(load_dataset, tmp, graph, "--val"))
