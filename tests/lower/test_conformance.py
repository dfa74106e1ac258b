"""ONNX node conformance (Debian's libonnx-testdata) on every target: a sample generated from each target's registry.

bench/conformance.py runs every case. Here, per target: for each op of its `OPS` that node-test cases are
about (bench/conformance.py `label`), the first such case by name, spread evenly over the ops to at most
CAP[target] cases; plus HAND_PICKED cases (the ones a lowering trick exists for) and every KNOWN_* case.
A case must pass, unless KNOWN_REFUSALS (a clean EdgeqError) or KNOWN_WRONG (lowers and answers wrong)
says how it fails: then it must still fail that way, so a fix shows up here and the entry goes.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from edgeq.lower import expand_all, get_target

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("conformance", ROOT / "bench" / "conformance.py")
conformance = importlib.util.module_from_spec(spec)
spec.loader.exec_module(conformance)

if not conformance.NODE_TESTS.exists():
    pytest.skip("Debian libonnx-testdata not installed", allow_module_level=True)

# Cases per target, chosen so the module runs in well under a minute on 2 cores: Core ML builds and
# saves a program per case (about 0.25 s), the others take a few hundredths of a second.
CAP = {"ort": 60, "tflite": 60, "tflm": 60, "coreml": 40}

HAND_PICKED = {
    "tflite": [
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
    ],
    "tflm": [
        "test_maxpool_2d_default",  # activations over 10x the model's bytes: measured in the whole SRAM
        "test_maxpool_2d_dilations",  # 9 ops: the memory planner's scratch is beyond the recorded arena
    ],
    "ort": [
        "test_hannwindow_expanded",  # value_int Constants become initializers
        "test_convtranspose_with_kernel",  # IR 3 / opset 8 converted to opset 13
    ],
    "coreml": [
        "test_nllloss_NCd1_ii_expanded",  # Where with a condition wider than both branches
    ],
}

# case -> a piece of the EdgeqError's message: refusals the user is told about in one line.
KNOWN_REFUSALS = {
    "ort": {
        "test_cast_BFLOAT16_to_FLOAT": "Unexpected input data type",  # numpy has no bfloat16: the data is uint16 bits
        "test_gru_batchwise": "Batchwise recurrent operations",  # onnxruntime's CPU RNNs take layout 0 only
        "test_reshape_allowzero_reordered": "unbound dynamic dim",  # a zero-size dim: edgeq binds dims >= 1
    },
    "tflite": {
        "test_cast_BFLOAT16_to_FLOAT": "Cast from onnx:16",  # LiteRT has no bfloat16
        "test_reshape_allowzero_reordered": "unbound dynamic dim",
        # LiteRT extrapolates outside the crop box differently: refused rather than answered wrong
        "test_resize_tf_crop_and_resize": "tf_crop_and_resize",
    },
    "tflm": {  # TFLite Micro has fewer kernels and dtypes than LiteRT; the same flatbuffer is refused at load
        "test_cast_BFLOAT16_to_FLOAT": "Cast from onnx:16",
        "test_clip": "RELU_N1_TO_1",
        "test_erf": "no TFLite Micro kernel for SIGN",
        # int64 inputs stay int64 in the flatbuffer; TFLite Micro's GATHER and CAST take no int64 (an int32
        # boundary, as the Core ML runner has, would fix it)
        "test_gather_0": "Positions of type 'INT64'",
        "test_pow": "no TFLite Micro kernel for POW",
        "test_reshape_allowzero_reordered": "unbound dynamic dim",
    },
    "coreml": {
        "test_cast_BFLOAT16_to_FLOAT": "bfloat16",  # Core ML program inputs are float, integer or bool
    },
}

# case -> a piece of the mismatch message: lowered, ran, answered wrong (the serious class). All of
# these are onnxruntime's own: the unmodified model on onnxruntime gives the same error.
KNOWN_WRONG = {
    "ort": {
        "test_dft": "max abs error",  # float32 sums against a float64 reference, 3e-4 off
        "test_stft": "max abs error",
        "test_maxunpool_export_with_output_shape": "max abs error 8",
        "test_resize_downsample_scales_cubic_align_corners": "max abs error 1.05",
        "test_resize_downsample_scales_linear_align_corners": "max abs error 0.857",
    },
    "tflite": {},
    "tflm": {},
    "coreml": {},
}


def sample(target: str, cases) -> list[str]:
    """The first case (by name) of each op of the target's registry, at most CAP[target], evenly spread."""
    first: dict[str, str] = {}
    for case, ops in conformance.target_cases(target, cases):
        first.setdefault(conformance.label(case.name, ops), case.name)
    ops = [op for op in sorted(first) if op in get_target(target).OPS]  # "A+B" labels name no single op
    step = -(-len(ops) // CAP[target])
    return [first[op] for op in ops[::step]]


def params() -> list:
    cases = conformance.node_cases()
    out = []
    for target in expand_all(["all"]):
        picked = [*sample(target, cases), *HAND_PICKED.get(target, []), *KNOWN_REFUSALS[target], *KNOWN_WRONG[target]]
        out += [pytest.param(target, case, id=f"{target}-{case[5:]}") for case in dict.fromkeys(picked)]
    return out


@pytest.mark.parametrize("target,case", params())
def test_node_case(tmp_path, target, case):
    got, why = conformance.outcome(get_target(target), conformance.NODE_TESTS / case, tmp_path)
    for kind, known in (("refused", KNOWN_REFUSALS[target]), ("wrong", KNOWN_WRONG[target])):
        if case in known:
            assert got == kind and known[case] in why, f"known {kind} ({known[case]!r}), now {got}: {why or 'passes'}"
            return
    assert got == "pass", f"{got}: {why}"
