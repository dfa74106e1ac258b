"""TFLite target against ONNX backend node tests (libonnx-testdata): a sample of the tricky cases.

bench/conformance.py runs them all; these are the ones each lowering trick exists for.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from edgeq.lower import get_target

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("conformance", ROOT / "bench" / "conformance.py")
conformance = importlib.util.module_from_spec(spec)
spec.loader.exec_module(conformance)

CASES = [
    "test_conv_with_strides_and_asymmetric_padding",  # explicit PAD before a VALID CONV_2D
    "test_convtranspose_pads",  # VALID TRANSPOSE_CONV, then crop
    "test_convtranspose_dilations",  # zero-dilated kernel
    "test_averagepool_2d_pads",  # pads excluded from the count: per-position rescale
    "test_averagepool_2d_precomputed_pads_count_include_pad",
    "test_maxpool_1d_default",  # 1-D lifted to a height-1 2-D window
    "test_resize_upsample_scales_cubic",  # interpolation matrices from ONNX's reference
    "test_resize_upsample_sizes_nearest_ceil_half_pixel",  # exact GATHER index maps
    "test_edge_pad",
    "test_slice_neg_steps",
    "test_softmax_axis_0",
    "test_layer_normalization_4d_axis1",
    "test_add_uint8",  # wraps around like ONNX, through int32
    "test_pow_types_int64_float32",
]


@pytest.mark.skipif(not conformance.NODE_TESTS.exists(), reason="Debian libonnx-testdata not installed")
@pytest.mark.parametrize("case", CASES)
def test_node_case(tmp_path, case):
    ok, why = conformance.run_case(get_target("tflite"), conformance.NODE_TESTS / case, tmp_path)
    assert ok, why


@pytest.mark.skipif(not conformance.NODE_TESTS.exists(), reason="Debian libonnx-testdata not installed")
def test_wrong_answer_is_refused_not_returned(tmp_path):
    """tf_crop_and_resize extrapolates outside the box; the lowering refuses it rather than answer wrong."""
    from edgeq.errors import UnsupportedOpError

    with pytest.raises(UnsupportedOpError, match="tf_crop_and_resize"):
        conformance.run_case(get_target("tflite"), conformance.NODE_TESTS / "test_resize_tf_crop_and_resize", tmp_path)


@pytest.mark.parametrize("direction", ["reverse", "bidirectional"])
def test_lstm_directions_match_onnxruntime(tmp_path, direction):
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgeq.graph import Graph
    from edgeq.passes import run_passes
    from edgeq.quant.plan import QuantPlan
    from edgeq.runners import OrtRunner, make_runner

    rng = np.random.default_rng(0)
    dirs, hidden, size = (2 if direction == "bidirectional" else 1), 5, 3
    inits = [numpy_helper.from_array(rng.normal(0, 0.5, s).astype(np.float32), n) for n, s in
             (("W", (dirs, 4 * hidden, size)), ("R", (dirs, 4 * hidden, hidden)), ("B", (dirs, 8 * hidden)))]
    node = helper.make_node("LSTM", ["X", "W", "R", "B"], ["Y", "Y_h"], hidden_size=hidden, direction=direction)
    g = helper.make_graph([node], "lstm", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [7, 2, size])],
                          [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [7, dirs, 2, hidden]),
                           helper.make_tensor_value_info("Y_h", TensorProto.FLOAT, [dirs, 2, hidden])], inits)
    graph = run_passes(Graph(helper.make_model(g, opset_imports=[helper.make_opsetid("", 14)]), "lstm"))
    art = get_target("tflite").lower(graph, QuantPlan(graph.sha256()), tmp_path, "lstm", {})
    runner = make_runner(art)
    for _ in range(2):  # a second call starts from zero state too (LiteRT keeps it in variable tensors)
        x = rng.normal(0, 1, (7, 2, size)).astype(np.float32)
        got, ref = runner.run({"X": x}), OrtRunner(onnx.ModelProto.SerializeToString(graph.model)).run({"X": x})
        for k in ("Y", "Y_h"):
            np.testing.assert_allclose(got[k], ref[k], atol=1e-5)
    assert any("reset" in n for n in art.notes)
