"""MIL reference executor, op by op, against the semantics coremltools' MIL op reference defines
(its own `decompress` implementations for the compressed-weight ops, ONNX's reference for the
ops whose definition matches ONNX), and through programs saved as real .mlpackage files."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper
from onnx.reference import ReferenceEvaluator

pytest.importorskip("coremltools")
import coremltools as ct  # noqa: E402
from coremltools.converters.mil.mil import Builder as mb  # noqa: E402
from coremltools.converters.mil.mil import types  # noqa: E402
from coremltools.converters.mil.mil.ops.defs.iOS16 import constexpr_ops as ios16  # noqa: E402
from coremltools.converters.mil.mil.ops.defs.iOS18 import compression as ios18  # noqa: E402

from edgeq.lower.coreml.mil_exec import MILProgram  # noqa: E402
from edgeq.lower.coreml.mil_exec.ops import MIL_OPS  # noqa: E402
from edgeq.lower.coreml.package import save_package  # noqa: E402
from edgeq.lower.coreml.weights import pack_bits  # noqa: E402

RNG = np.random.default_rng(0)


def _onnx_ref(op: str, inputs: dict, **attrs) -> np.ndarray:
    node = helper.make_node(op, list(inputs), ["y"], **attrs)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info(k, 1, v.shape) for k, v in inputs.items()],
                          [helper.make_empty_tensor_value_info("y")])
    return ReferenceEvaluator(helper.make_model(g, opset_imports=[helper.make_opsetid("", 19)])).run(None, inputs)[0]


@pytest.mark.parametrize("nbits", [1, 2, 4, 6, 8])
def test_lut_to_dense_ios16_packed(nbits):
    shape = (5, 3, 7)
    idx = RNG.integers(0, 2**nbits, int(np.prod(shape))).astype(np.uint8)
    lut = RNG.normal(size=2**nbits).astype(np.float32)
    got = MIL_OPS["constexpr_lut_to_dense"](indices=pack_bits(idx, nbits), lut=lut, shape=np.array(shape, np.uint32))
    want = ios16.constexpr_lut_to_dense.decompress(lut, pack_bits(idx, nbits), np.array(shape, np.uint32))
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got, lut[idx].reshape(shape))


def test_lut_to_dense_ios18_groups():
    idx = RNG.integers(0, 8, (6, 4, 3)).astype(np.uint8)
    lut = RNG.normal(size=(3, 1, 1, 8, 1)).astype(np.float32)  # 3 palettes, 2 channels each, along axis 0
    got = MIL_OPS["constexpr_lut_to_dense"](indices=idx, lut=lut)
    np.testing.assert_array_equal(got, ios18.constexpr_lut_to_dense.decompress(idx, lut, None))


def test_affine_dequantize_and_blockwise_shift_scale():
    q = RNG.integers(-127, 128, (4, 6)).astype(np.int8)
    scale, zp = RNG.uniform(0.01, 0.1, 6).astype(np.float32), RNG.integers(-3, 3, 6).astype(np.int8)
    got = MIL_OPS["constexpr_affine_dequantize"](quantized_data=q, zero_point=zp, scale=scale, axis=1)
    np.testing.assert_allclose(got, ios16.constexpr_affine_dequantize.decompress(q, zp, scale, 1), rtol=1e-6)
    bscale = RNG.uniform(0.01, 0.1, (4, 2)).astype(np.float32)  # blocks of 3 along axis 1
    boff = RNG.integers(-2, 2, (4, 2)).astype(np.int8)
    got = MIL_OPS["constexpr_blockwise_shift_scale"](data=q, scale=bscale, offset=boff)
    np.testing.assert_allclose(got, ios18.constexpr_blockwise_shift_scale.decompress(q, bscale, boff), rtol=1e-6)


def test_quantize_rounds_half_to_even_and_clips():
    x = np.array([0.5, 1.5, 2.5, -0.5, 300.0, -300.0], np.float32)
    q = MIL_OPS["quantize"](input=x, scale=np.float32(1.0), zero_point=np.int8(0), output_dtype="int8")
    np.testing.assert_array_equal(q, [0, 2, 2, -0.0, 127, -128])
    np.testing.assert_array_equal(MIL_OPS["dequantize"](input=q.astype(np.int8), scale=np.float32(0.5), zero_point=np.int8(2)),
                                  (q.astype(np.float32) - 2) * 0.5)  # q is int8 now, as the program stores it


@pytest.mark.parametrize("groups,strides,dilations,pads", [(1, [1, 1], [1, 1], [1, 1, 1, 1]), (2, [2, 1], [1, 2], [0, 1, 2, 0]),
                                                            (4, [2, 2], [1, 1], [0, 0, 0, 0])])
def test_conv_matches_onnx_definition(groups, strides, dilations, pads):
    x = RNG.normal(size=(1, 4, 9, 8)).astype(np.float32)
    w = RNG.normal(size=(8, 4 // groups, 3, 3)).astype(np.float32)
    b = RNG.normal(size=8).astype(np.float32)
    got = MIL_OPS["conv"](x=x, weight=w, bias=b, strides=strides, dilations=dilations, groups=groups, pad_type="custom",
                          pad=[pads[0], pads[2], pads[1], pads[3]])
    want = _onnx_ref("Conv", {"x": x, "w": w, "b": b}, group=groups, strides=strides, dilations=dilations, pads=pads)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_conv_transpose_matches_onnx_definition():
    x = RNG.normal(size=(1, 4, 5, 6)).astype(np.float32)
    w = RNG.normal(size=(4, 3, 3, 2)).astype(np.float32)
    got = MIL_OPS["conv_transpose"](x=x, weight=w, strides=[2, 3], dilations=[1, 2], groups=1)
    want = _onnx_ref("ConvTranspose", {"x": x, "w": w}, strides=[2, 3], dilations=[1, 2])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("ceil_mode", [0, 1])
def test_pools_match_onnx_definition(ceil_mode):
    x = RNG.normal(size=(1, 2, 7, 8)).astype(np.float32)
    kw = dict(kernel_sizes=[3, 2], strides=[2, 2], pad_type="custom", pad=[1, 1, 0, 1], ceil_mode=bool(ceil_mode))
    want = _onnx_ref("MaxPool", {"x": x}, kernel_shape=[3, 2], strides=[2, 2], pads=[1, 0, 1, 1], ceil_mode=ceil_mode)
    np.testing.assert_allclose(MIL_OPS["max_pool"](x=x, **kw), want, rtol=1e-6)
    want = _onnx_ref("AveragePool", {"x": x}, kernel_shape=[3, 2], strides=[2, 2], pads=[1, 0, 1, 1], ceil_mode=ceil_mode)
    np.testing.assert_allclose(MIL_OPS["avg_pool"](x=x, exclude_padding_from_average=True, **kw), want, rtol=1e-5)


@pytest.mark.parametrize("coord,align", [("half_pixel", False), ("align_corners", True), ("asymmetric", False)])
def test_upsample_bilinear_matches_onnx_resize(coord, align):
    x = RNG.normal(size=(1, 2, 4, 5)).astype(np.float32)
    got = MIL_OPS["upsample_bilinear"](x=x, scale_factor_height=2.0, scale_factor_width=3.0, align_corners=align,
                                       half_pixel_centers=coord == "half_pixel")
    node_in = {"x": x, "roi": np.zeros(0, np.float32), "scales": np.array([1, 1, 2, 3], np.float32)}
    want = _onnx_ref("Resize", node_in, mode="linear", coordinate_transformation_mode=coord)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_slice_by_index_masks_and_negative_stride():
    x = np.arange(24).reshape(4, 6)
    got = MIL_OPS["slice_by_index"](x=x, begin=[3, 1], end=[0, 5], stride=[-1, 2], begin_mask=[False, False], end_mask=[True, False])
    np.testing.assert_array_equal(got, x[3::-1, 1:5:2])


def test_saved_program_with_sub_byte_weights_runs(tmp_path):
    """A real .mlpackage (uint3 indices, int4 data in weight.bin) decodes to coremltools' own values."""
    idx = RNG.integers(0, 8, (16, 1, 3, 3)).astype(types.np_uint3_dtype)
    lut = RNG.normal(size=(2, 1, 1, 1, 8, 1)).astype(np.float32)
    q4 = RNG.integers(-8, 8, (10, 16)).astype(types.np_int4_dtype)
    s4 = RNG.uniform(0.01, 0.1, (10, 4)).astype(np.float32)

    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 1, 6, 6))], opset_version=ct.target.iOS18)
    def prog(x):
        w = mb.constexpr_lut_to_dense(indices=idx, lut=lut, name="w_lut")
        y = mb.relu(x=mb.conv(x=x, weight=w, name="conv"))
        y = mb.reduce_mean(x=y, axes=[2, 3], keep_dims=False)
        w2 = mb.constexpr_blockwise_shift_scale(data=q4, scale=s4, name="w_int4")
        return mb.linear(x=y, weight=w2, name="out")

    path = tmp_path / "p.mlpackage"
    save_package(prog, path, "ios18", "fp32", {})
    p = MILProgram(path)
    np.testing.assert_array_equal(p.consts["w_lut"], ios18.constexpr_lut_to_dense.decompress(idx.astype(np.uint8), lut, None))
    np.testing.assert_allclose(p.consts["w_int4"], ios18.constexpr_blockwise_shift_scale.decompress(q4.astype(np.int8), s4, None))
    x = RNG.normal(size=(1, 1, 6, 6)).astype(np.float32)
    y = p.run({"x": x})["out"]
    feat = np.maximum(_onnx_ref("Conv", {"x": x, "w": p.consts["w_lut"]}), 0).mean(axis=(2, 3))
    np.testing.assert_allclose(y, feat @ p.consts["w_int4"].T, rtol=1e-5, atol=1e-5)
