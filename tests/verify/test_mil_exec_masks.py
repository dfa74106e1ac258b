"""MIL reference executor: the ops the transformer lowerings emit (select, fill, range_1d,
gather_along_axis, tile, comparisons, logical ops), each against coremltools' own value
inference of that MIL op on the same constant operands (its definition of the op's semantics)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("coremltools")
import coremltools as ct  # noqa: E402
from coremltools.converters.mil.mil import Builder as mb  # noqa: E402
from coremltools.converters.mil.mil import Function  # noqa: E402

from edgeq.lower.coreml.mil_exec.ops import MIL_OPS  # noqa: E402

RNG = np.random.default_rng(0)
COND = RNG.random((3, 1, 4)) > 0.5
A = RNG.normal(size=(2, 4)).astype(np.float32)
B = RNG.normal(size=(3, 2, 1)).astype(np.float32)
IDX = RNG.integers(-3, 4, (2, 4)).astype(np.int32)
CASES = [
    ("select", dict(cond=COND, a=A, b=B)),
    ("select", dict(cond=COND, a=IDX, b=np.int32(7))),
    ("fill", dict(shape=np.array([2, 3], np.int32), value=np.float32(-1.5))),
    ("fill", dict(shape=np.array([4], np.int32), value=np.int32(3))),
    ("range_1d", dict(start=np.int32(2), end=np.int32(11), step=np.int32(3))),
    ("range_1d", dict(start=np.float32(0.5), end=np.float32(-1.0), step=np.float32(-0.5))),
    ("gather_along_axis", dict(x=A, indices=np.abs(IDX) % 2, axis=0)),
    ("gather_along_axis", dict(x=A, indices=IDX, axis=1)),  # negative indices count from the end
    ("tile", dict(x=COND, reps=np.array([1, 2, 1], np.int32))),
    ("tile", dict(x=A, reps=np.array([3, 1], np.int32))),
    ("logical_not", dict(x=COND)),
    *[(name, dict(x=COND, y=np.array([True, False, True, False]))) for name in ("logical_and", "logical_or", "logical_xor")],
    *[(name, dict(x=A, y=B)) for name in ("equal", "not_equal", "greater", "greater_equal", "less", "less_equal")],
    *[(name, dict(x=IDX, y=np.int32(1))) for name in ("equal", "greater_equal", "less_equal")],
]


def _coremltools_value(name: str, kwargs: dict) -> np.ndarray:
    with Function({}, opset_version=ct.target.iOS17):
        v = getattr(mb, name)(**kwargs)
        assert v.val is not None, f"coremltools has no value inference for {name}"
        return np.asarray(v.val)


@pytest.mark.parametrize("name,kwargs", CASES, ids=[f"{c[0]}-{k}" for k, c in enumerate(CASES)])
def test_op_matches_coremltools_value_inference(name, kwargs):
    want = _coremltools_value(name, kwargs)
    got = np.asarray(MIL_OPS[name](**kwargs))
    assert got.shape == want.shape
    np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), rtol=1e-6)
    assert (got.dtype == np.bool_) == (want.dtype == np.bool_)
