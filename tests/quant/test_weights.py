import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper

from edgeq.errors import PlanError
from edgeq.quant.linear import qrange
from edgeq.quant.plan import WeightPlan
from edgeq.quant.weights import NF4, derive, fake_quant_weight, grid, needs_derive, storage_bits

W = np.random.default_rng(0).normal(0, 1, (16, 24, 3, 3)).astype(np.float32)
CASES = [("symmetric", "per_tensor", None, None), ("symmetric", "per_channel", 0, None), ("symmetric", "per_block", 1, 8),
         ("asymmetric", "per_tensor", None, None), ("asymmetric", "per_channel", 0, None), ("asymmetric", "per_block", 1, 8),
         ("palette", "per_tensor", None, None), ("palette", "per_channel", 0, 4)]


def plan(bits, scheme, gran, axis, bs, **kw) -> WeightPlan:
    return derive(WeightPlan("w", "conv", "Conv", list(W.shape), bits=bits, scheme=scheme, granularity=gran, axis=axis,
                             block_size=bs, **kw), W)


@pytest.mark.parametrize("scheme,gran,axis,bs", CASES)
def test_every_scheme_and_granularity_from_2_to_8_bits(scheme, gran, axis, bs):
    errs = []
    for bits in range(2, 9):
        wp = plan(bits, scheme, gran, axis, bs)
        g = grid(wp, W.shape)
        codes = g.codes(W)
        if scheme == "palette":
            assert codes.max() < 2**bits and len(np.unique(g.values(codes))) <= 2**bits * len(wp.palette)
        else:
            lo, hi = qrange(bits, signed=True, narrow=scheme == "symmetric")
            assert lo <= codes.min() and codes.max() <= hi
        fq = fake_quant_weight(wp, W)
        np.testing.assert_array_equal(g.round(fq), fq)  # the grid's values are fixed points
        errs.append(float(np.mean((fq - W) ** 2)))
        assert storage_bits(wp) >= bits * W.size
    assert all(a >= b for a, b in zip(errs, errs[1:])), errs  # more bits never worse
    assert errs[-1] < 1e-3 * errs[0]


def test_per_block_layout_is_dequantizelinear_21():
    """onnxruntime's blocked DequantizeLinear on our codes and scales gives our values."""
    wp = plan(4, "asymmetric", "per_block", 1, 8)
    g = grid(wp, W.shape)
    shape = list(W.shape)
    shape[1] = 3
    nodes = [helper.make_node("DequantizeLinear", ["q", "s", "z"], ["w"], axis=1, block_size=8)]
    inits = [numpy_helper.from_array(g.codes(W).astype(np.int8), "q"),
             numpy_helper.from_array(np.asarray(wp.scale, np.float32).reshape(shape), "s"),
             numpy_helper.from_array(np.asarray(wp.zero_point, np.int8).reshape(shape), "z")]
    m = helper.make_model(helper.make_graph(nodes, "dq", [], [helper.make_tensor_value_info("w", 1, W.shape)], inits),
                          opset_imports=[helper.make_opsetid("", 21)])
    m.ir_version = 10
    onnx.checker.check_model(m)
    got = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {})[0]
    np.testing.assert_array_equal(got, fake_quant_weight(wp, W))


def test_low_bit_blocks_and_palettes_beat_per_tensor():
    err = {c[:2]: np.mean((fake_quant_weight(plan(3, *c), W) - W) ** 2) for c in CASES}
    assert err[("symmetric", "per_block")] < err[("symmetric", "per_channel")] < err[("symmetric", "per_tensor")]
    assert err[("palette", "per_tensor")] < err[("symmetric", "per_tensor")]


def test_nf4_codebook_and_double_quantized_scales():
    wp = plan(4, "palette", "per_channel", 0, None, codebook="nf4")
    pal = np.asarray(wp.palette)
    np.testing.assert_allclose(pal / np.abs(W).reshape(16, -1).max(1, keepdims=True), np.tile(NF4, (16, 1)), rtol=1e-6)
    with pytest.raises(PlanError, match="NF4"):
        plan(3, "palette", "per_channel", 0, None, codebook="nf4")
    dq = plan(4, "symmetric", "per_block", 1, 8, scale_bits=8)
    steps = np.asarray(dq.scale) / np.repeat(dq.scale_scale, 256)[: len(dq.scale)]
    np.testing.assert_allclose(steps, np.rint(steps), atol=1e-3)  # scales sit on the 8-bit grid
    assert storage_bits(dq) < storage_bits(plan(4, "symmetric", "per_block", 1, 8))


def test_an_edit_of_bits_is_detected():
    wp = plan(4, "symmetric", "per_channel", 0, None)
    assert not needs_derive(wp)
    wp.bits = 3
    assert needs_derive(wp)
