"""Core ML target: float and quantized .mlpackage, run in the MIL reference executor."""

from __future__ import annotations

import copy
import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import helper, numpy_helper

from edgeq.errors import PlanError, UnsupportedOpError
from edgeq.frontend import load
from edgeq.passes import run_passes
from edgeq.quant.plan import QuantPlan, WeightPlan
from edgeq.quant.weights import derive, fake_quant_weight
from edgeq.runners import OrtRunner
from tests.models import small_cnn, small_cnn_data

ct = pytest.importorskip("coremltools")
coreml = pytest.importorskip("edgeq.lower.coreml")
from edgeq.lower.coreml.mil_exec import MILProgram  # noqa: E402
from edgeq.lower.coreml.package import load_spec  # noqa: E402


@pytest.fixture(scope="module")
def graph():
    return run_passes(load(small_cnn()))


@pytest.fixture(scope="module")
def data():
    return small_cnn_data(6)


def _ref(graph, x, weights_from: QuantPlan | None = None):
    g = graph.copy()
    if weights_from is not None:  # the plan's weights, fake-quantized: what the artifact must compute
        for t in g.model.graph.initializer:
            wp = weights_from.weights.get(t.name)
            if wp is not None:
                t.CopyFrom(numpy_helper.from_array(fake_quant_weight(wp, numpy_helper.to_array(t)), t.name))
    return OrtRunner(g.serialize()).run({"input": x})["logits"]


def _plan(graph, settings: dict) -> QuantPlan:
    """A weight-only plan: settings maps weight name -> WeightPlan fields; parameters derived by edgeq.quant."""
    plan = QuantPlan(model_sha256=graph.sha256(), mode="weight_only")
    axes = {"conv1.w": 0, "dw.w": 0, "fc.w": 0}
    for name, kw in settings.items():
        w = graph.initializer(name)
        wp = WeightPlan(tensor=name, node=name.split(".")[0], op="Conv", shape=list(w.shape), axis=axes[name], **kw)
        plan.weights[name] = derive(wp, w)
    return plan


def test_float_program_matches_onnx_fp32_and_fp16(graph, data, tmp_path):
    ref = _ref(graph, data)
    plan = QuantPlan(model_sha256=graph.sha256())
    for precision, tol in (("fp32", 1e-5), ("fp16", 2e-2)):
        art = coreml.lower(graph, plan, tmp_path / precision, "small", {"coreml_precision": precision})
        got = coreml.make_runner(art).run({"input": data})["logits"]
        assert got.shape == ref.shape
        assert np.abs(got - ref).max() <= tol * max(1.0, np.abs(ref).max()), precision
        spec = ct.models.MLModel(str(art.path), skip_model_load=True).get_spec()
        assert [i.name for i in spec.description.input] == ["input"]
        assert list(spec.description.input[0].type.multiArrayType.shape) == [1, 1, 12, 12]
        assert [o.name for o in spec.description.output] == ["logits"]
        assert art.extra["compute_precision"] == precision and art.extra["min_os"] == "ios16"
    assert "cast" in MILProgram(art.path).op_types()  # fp16 program: casts at the boundary
    runner = coreml.make_runner(art)  # samples stacked through the batch-1 program == one by one
    stacked = runner.run({"input": data})["logits"]
    assert runner.stacking_ok is True
    single = np.concatenate([runner.program.run_positional([data[i : i + 1]])[0] for i in range(len(data))])
    np.testing.assert_allclose(stacked, single, rtol=1e-3, atol=1e-3)


def test_mixed_palettes_and_int8_follow_the_plan(graph, data, tmp_path):
    plan = _plan(graph, {"conv1.w": {"bits": 2, "scheme": "palette", "granularity": "per_tensor"},
                         "dw.w": {"bits": 4, "scheme": "palette", "granularity": "per_tensor"},
                         "fc.w": {"bits": 8, "scheme": "symmetric", "granularity": "per_channel"}})
    art = coreml.lower(graph, plan, tmp_path, "small", {"coreml_precision": "fp32"})
    assert art.extra["min_os"] == "ios16"
    got = coreml.make_runner(art).run({"input": data})["logits"]
    np.testing.assert_allclose(got, _ref(graph, data, plan), atol=1e-4)
    ops = _weight_ops_in_program(art.path)
    assert ops["conv1_w_w"] == ("constexpr_lut_to_dense", 4)  # lut of 2^2 entries
    assert ops["dw_w_w"] == ("constexpr_lut_to_dense", 16)
    assert ops["fc_w_w"] == ("constexpr_affine_dequantize", "int8")


def test_ios18_groups_3bit_and_int4_blocks(graph, data, tmp_path):
    plan = _plan(graph, {"conv1.w": {"bits": 3, "scheme": "palette", "granularity": "per_channel", "block_size": 4},
                         "dw.w": {"bits": 6, "scheme": "palette", "granularity": "per_tensor"},
                         "fc.w": {"bits": 4, "scheme": "symmetric", "granularity": "per_block", "block_size": 4}})
    plan.weights["fc.w"].axis = 1  # blocks of 4 along the input dim of the [10, 8] weight
    plan.weights["fc.w"] = derive(plan.weights["fc.w"], graph.initializer("fc.w"))
    with pytest.raises(PlanError, match="--min-os ios18"):
        coreml.check_plan(graph, plan, {"min_os": "ios17"})
    art = coreml.lower(graph, plan, tmp_path, "small", {"coreml_precision": "fp32"})
    assert art.extra["min_os"] == "ios18"
    got = coreml.make_runner(art).run({"input": data})["logits"]
    np.testing.assert_allclose(got, _ref(graph, data, plan), atol=1e-4)
    prog = MILProgram(art.path)
    assert prog.consts["conv1_w_w"].shape == (8, 1, 3, 3)
    spec_ops = _weight_ops_in_program(art.path)
    assert spec_ops["conv1_w_w"] == ("constexpr_lut_to_dense", 8)  # 3 bits
    assert spec_ops["fc_w_w"] == ("constexpr_blockwise_shift_scale", "int4")
    assert {w["tensor"]: w["bits"] for w in art.extra["weight_ops"]} == {"conv1.w": 3, "dw.w": 6, "fc.w": 4}
    assert next(w for w in art.extra["weight_ops"] if w["tensor"] == "conv1.w")["groups"] == 2


def _weight_ops_in_program(path) -> dict:
    """Each compressed weight op in the saved program: (op type, lut entries, or the stored int type)."""
    spec = load_spec(path)
    fn = spec.mlProgram.functions["main"]
    out = {}
    for op in fn.block_specializations[fn.opset].operations:
        if op.type.startswith("constexpr_"):
            args = {**{k: v.arguments[0].value for k, v in op.inputs.items()}, **dict(op.attributes)}
            if "lut" in args:
                dims = [d.constant.size for d in args["lut"].type.tensorType.dimensions]
                out[_weight_name(op)] = (op.type, dims[0] if len(dims) == 1 else dims[-2])
            else:
                data = args.get("data", args.get("quantized_data"))
                out[_weight_name(op)] = (op.type, DATA_TYPES[data.type.tensorType.dataType])
    return out


DATA_TYPES = {21: "int8", 25: "int4", 31: "uint8"}


def _weight_name(op) -> str:
    return op.outputs[0].name.removesuffix("_cast_fp16")  # fp16 programs suffix the weight's name


def test_two_compiles_are_byte_identical(graph, tmp_path):
    from edgeq.artifact import tree_sha256

    plan = _plan(graph, {"conv1.w": {"bits": 4, "scheme": "palette", "granularity": "per_tensor"}})
    a = coreml.lower(graph, plan, tmp_path / "a", "small", {})
    b = coreml.lower(graph, copy.deepcopy(plan), tmp_path / "b", "small", {})
    assert tree_sha256(a.path) == tree_sha256(b.path)
    manifest = json.loads((a.path / "Manifest.json").read_text())
    assert len(manifest["itemInfoEntries"]) == 2
    assert "com.github.apple.coremltools.conversion_date" not in load_spec(a.path).description.metadata.userDefined


def test_min_os_errors_name_the_fix(graph):
    plan = QuantPlan(model_sha256=graph.sha256())
    from edgeq.quant.plan import ActivationPlan

    plan.activations["c2"] = ActivationPlan("c2", 8, True, 0.05, 0)
    with pytest.raises(PlanError, match="use --min-os ios17"):
        coreml.check_plan(graph, plan, {"min_os": "ios16"})
    assert coreml.resolve_options(plan, {})[0] == "ios17"


def test_w8a8_places_quantize_dequantize(graph, data, tmp_path):
    from edgeq.quant.build import int8_plan
    from edgeq.quant.calibrate import observe
    from edgeq.quant.data import load_dataset

    plan = int8_plan(graph, observe(graph, load_dataset({"input": small_cnn_data(32)}, graph, "--calib", 0)))
    art = coreml.lower(graph, plan, tmp_path, "small", {"coreml_precision": "fp32"})
    ops = MILProgram(art.path).op_types()
    # a shape op between two tensors of the same grid runs on int8: coremltools drops the inner pair
    n_acts = sum(a.bits == 8 and a.shared_with is None for a in plan.activations.values())
    assert art.extra["min_os"] == "ios17" and ops.count("quantize") == n_acts == ops.count("dequantize")
    got = coreml.make_runner(art).run({"input": data})["logits"]
    ref = _ref(graph, data)
    assert np.corrcoef(got.ravel(), ref.ravel())[0, 1] > 0.99


def test_unsupported_op_is_one_line(tmp_path):
    node = helper.make_node("Det", ["x"], ["y"], name="det0")
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [3, 3])],
                          [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [])])
    graph = run_passes(load(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])))
    with pytest.raises(UnsupportedOpError, match="node 'det0': op Det has no coreml lowering"):
        coreml.check_plan(graph, QuantPlan(model_sha256=""), {})
    assert not any(tmp_path.iterdir())


def test_cli_compile_and_residency_estimate(tmp_path, small_model, small_calib):
    from edgeq.cli import main

    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["compile", str(small_model), "--target", "coreml", "--calib", str(small_calib),
                                  "--out", str(out), "--json", "--min-os", "ios18"])
    assert r.exit_code == 0, r.output
    entry = json.loads(r.output)["targets"][0]
    assert entry["target"] == "coreml" and entry["min_os"] == "ios18" and (out / "small.mlpackage").is_dir()
    assert entry["verify"]["top1_agreement"] >= 0.9
    ne = entry["neural_engine"]
    assert ne["estimate"] is True and "estimate" in ne["note"] and ne["expected_fallbacks"] == 0
    bad = CliRunner().invoke(main, ["compile", str(small_model), "--target", "coreml", "--calib", str(small_calib),
                                    "--out", str(tmp_path / "bad"), "--min-os", "ios16"])
    assert bad.exit_code == 2 and "--min-os ios17" in bad.output and not (tmp_path / "bad").exists()


@pytest.mark.skipif(not coreml.can_predict(), reason="Core ML predict runs only on macOS")
def test_coreml_predict_agrees_with_reference_executor(graph, data, tmp_path):
    art = coreml.lower(graph, QuantPlan(model_sha256=graph.sha256()), tmp_path, "small", {})
    got = coreml.CoreMLPredictRunner(art).run({"input": data})["logits"]
    np.testing.assert_allclose(got, coreml.make_runner(art).run({"input": data})["logits"], atol=2e-2)


def _single_node_model(op, inputs: dict, consts: dict, opset=17, n_out=1, **attrs):
    """One node; inputs are graph inputs, consts initializers."""
    outs = [f"y{k}" for k in range(n_out)]
    node = helper.make_node(op, list(inputs) + list(consts), outs, name=f"{op.lower()}0", **attrs)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info(k, 1, v.shape) for k, v in inputs.items()],
                          [helper.make_empty_tensor_value_info(o) for o in outs],
                          [numpy_helper.from_array(v, k) for k, v in consts.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return onnx.shape_inference.infer_shapes(m)


R = np.random.default_rng(3)
OP_CASES = {
    "lstm_bidirectional_peepholes": ("LSTM", {"x": R.normal(size=(5, 2, 3)).astype(np.float32)},
                                     {"W": R.normal(size=(2, 16, 3)).astype(np.float32), "R": R.normal(size=(2, 16, 4)).astype(np.float32),
                                      "B": R.normal(size=(2, 32)).astype(np.float32), "": None, "h0": np.zeros((2, 2, 4), np.float32),
                                      "c0": R.normal(size=(2, 2, 4)).astype(np.float32), "P": R.normal(size=(2, 12)).astype(np.float32)},
                                     dict(hidden_size=4, direction="bidirectional"), 3),
    "conv_transpose_pads_output_padding": ("ConvTranspose", {"x": R.normal(size=(1, 2, 4, 5)).astype(np.float32)},
                                           {"w": R.normal(size=(2, 3, 3, 3)).astype(np.float32)},
                                           dict(strides=[2, 2], pads=[1, 0, 0, 1], output_padding=[1, 1]), 1),
    "resize_linear_half_pixel": ("Resize", {"x": R.normal(size=(1, 2, 3, 4)).astype(np.float32)},
                                 {"roi": np.zeros(0, np.float32), "scales": np.array([1, 1, 2, 2], np.float32)},
                                 dict(mode="linear"), 1),
    "resize_nearest_fractional_sizes": ("Resize", {"x": R.normal(size=(1, 2, 4, 6)).astype(np.float32)},
                                        {"roi": np.zeros(0, np.float32), "scales": np.zeros(0, np.float32),
                                         "sizes": np.array([1, 2, 7, 4])}, dict(mode="nearest", nearest_mode="ceil"), 1),
    "slice_negative_step": ("Slice", {"x": R.normal(size=(6, 5)).astype(np.float32)},
                            {"s": np.array([-1, 4]), "e": np.array([-100, 0]), "a": np.array([0, 1]), "st": np.array([-2, -1])}, {}, 1),
    "split_three": ("Split", {"x": R.normal(size=(2, 7)).astype(np.float32)}, {"sp": np.array([2, 2, 3])}, dict(axis=1), 3),
    "gelu_tanh": ("Gelu", {"x": R.normal(size=(3, 4)).astype(np.float32)}, {}, dict(approximate="tanh"), 1),
}


@pytest.mark.parametrize("case", sorted(OP_CASES))
def test_op_lowerings_match_onnx_reference(case, tmp_path):
    from onnx.reference import ReferenceEvaluator

    op, inputs, consts, attrs, n_out = OP_CASES[case]
    opset = 20 if op == "Gelu" else 17
    consts = {k: v for k, v in consts.items() if v is not None}
    model = _single_node_model(op, inputs, consts, opset=opset, n_out=n_out, **attrs)
    if op == "LSTM":  # optional sequence_lens input left empty
        model.graph.node[0].input[4:4] = [""]
        del model.graph.node[0].input[8:]
    want = ReferenceEvaluator(model).run(None, inputs)
    graph = run_passes(load(model))
    art = coreml.lower(graph, QuantPlan(model_sha256=graph.sha256()), tmp_path, case, {"coreml_precision": "fp32"})
    got = coreml.make_runner(art).run(inputs)
    for k, w in enumerate(want):
        np.testing.assert_allclose(got[f"y{k}"], w, rtol=1e-4, atol=1e-5, err_msg=f"{case} output {k}")


def test_int4_linear_defaults_to_ios18_and_fits_ios16_on_the_int8_grid(graph, data, tmp_path):
    plan = _plan(graph, {"conv1.w": {"bits": 4, "scheme": "symmetric", "granularity": "per_channel"}})
    assert coreml.resolve_options(plan, {})[0] == "ios18"
    a18 = coreml.lower(graph, plan, tmp_path / "a", "small", {"coreml_precision": "fp32"})
    a16 = coreml.lower(graph, plan, tmp_path / "b", "small", {"coreml_precision": "fp32", "min_os": "ios16"})
    assert _weight_ops_in_program(a18.path)["conv1_w_w"] == ("constexpr_blockwise_shift_scale", "int4")
    assert _weight_ops_in_program(a16.path)["conv1_w_w"] == ("constexpr_affine_dequantize", "int8")
    assert any("int8 grid" in n for n in a16.notes)
    want = _ref(graph, data, plan)
    for art in (a18, a16):  # the same values either way
        np.testing.assert_allclose(coreml.make_runner(art).run({"input": data})["logits"], want, atol=1e-4)


@pytest.mark.parametrize("bits,lut_entries", [(3, 8), (6, 64), (2, 4)])
def test_sub_container_linear_weights_are_stored_as_their_levels(bits, lut_entries, tmp_path):
    """iOS 18: a 3-bit (6-bit) linear grid would sit in int4 (int8) data; as a per-channel LUT of its
    levels it stores the planned bits, with the same values. (A 64-entry LUT per channel pays off
    above 512 weights per channel, an 8-entry one above 32.)"""
    rng = np.random.default_rng(0)
    k = 1024 if bits == 6 else 256
    w = rng.normal(0, 0.2, (64, k)).astype(np.float32)
    g = helper.make_graph([helper.make_node("Gemm", ["x", "fc.w"], ["y"], transB=1, name="fc")], "g",
                          [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [4, k])],
                          [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [4, 64])],
                          [numpy_helper.from_array(w, "fc.w")])
    graph = run_passes(load(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])))
    plan = QuantPlan(model_sha256=graph.sha256(), mode="weight_only")
    wp = WeightPlan(tensor="fc.w", node="fc", op="Gemm", shape=[64, k], axis=0, bits=bits, scheme="asymmetric",
                    granularity="per_channel")
    plan.weights["fc.w"] = derive(wp, w)
    art = coreml.lower(graph, plan, tmp_path, "fc", {"min_os": "ios18"})  # fp16: LUT entries of 2 bytes
    assert next(iter(_weight_ops_in_program(art.path).values())) == ("constexpr_lut_to_dense", lut_entries)
    assert art.extra["weight_ops"][0]["bits"] == {3: 3, 6: 6, 2: 2}[bits]
    x = rng.normal(0, 1, (4, k)).astype(np.float32)
    want = x @ fake_quant_weight(plan.weights["fc.w"], w).T
    np.testing.assert_allclose(coreml.make_runner(art).run({"x": x})["y"], want, rtol=2e-2, atol=2e-2)  # fp16 compute
    packed = sum(f.stat().st_size for f in art.path.rglob("weight.bin"))
    assert packed < 64 * k * (4 if bits <= 4 else 8) / 8  # below the int4 / int8 container


def test_a_corrupt_op_in_a_package_is_one_line_naming_it(graph, tmp_path):
    """A bit flip in model.mlmodel can rename an op's argument (fuzz: 'name' -> 'lame'): loading or
    running it is a ModelError naming the op, for compile's runner and `edgeq profile` alike."""
    from edgeq.errors import ModelError
    from edgeq.lower.coreml.mil_exec import MILProgram

    art = coreml.lower(graph, QuantPlan(model_sha256=graph.sha256()), tmp_path, "small", {"coreml_precision": "fp32"})
    prog = MILProgram(art.path)
    env = {**prog.consts, **{name: np.zeros((1, 1, 12, 12), dtype) for name, dtype in prog.inputs}}
    for op_type, args, outs in prog.steps:
        if op_type == "relu":
            with pytest.raises(ModelError, match="MIL op 'relu'.*unexpected keyword argument 'lame'"):
                prog.step(env, op_type, {**args, "lame": [("value", np.float32(1))]}, outs)
            break
        prog.step(env, op_type, args, outs)
    else:
        pytest.fail("no relu in the program")


def test_reference_executor_verifies_a_bounded_share_and_says_so(tmp_path, monkeypatch):
    """Off macOS, Core ML runs in edgeq's numpy MIL executor: a large model verifies on the samples
    REFERENCE_WORK buys (at least REFERENCE_MIN_SAMPLES), the report says how many, and the float
    reference it is compared with is taken on the same samples."""
    import edgeq.verify
    from edgeq.pipeline import compile as edgeq_compile

    monkeypatch.setattr(edgeq.verify, "REFERENCE_WORK", 1.0)  # as if the model were huge
    x = small_cnn_data(40)
    report = edgeq_compile(small_cnn(), "coreml", calib={"input": x}, val={"input": x[:20]}, out=tmp_path / "o")
    (t,) = report["targets"]
    assert t["verify"]["samples"] == edgeq.verify.REFERENCE_MIN_SAMPLES == 8
    assert any("verified on the first 8 of 20 validation samples" in n for n in t["notes"])
    assert t["verify"]["sqnr_db"] > 20  # compared with float on the same 8 samples
    monkeypatch.undo()
    report = edgeq_compile(small_cnn(), "coreml", calib={"input": x}, val={"input": x[:20]}, out=tmp_path / "p")
    assert report["targets"][0]["verify"]["samples"] == 20


def test_validating_once_changes_no_byte(tmp_path, monkeypatch):
    """package.validated_once skips coremltools' whole-program check between its passes: same package."""
    import contextlib

    import edgeq.lower.coreml.package as package
    from edgeq.pipeline import compile as edgeq_compile

    def package_bytes(out):
        edgeq_compile(small_cnn(), "coreml", calib={"input": small_cnn_data(16)}, out=out)
        return [(f.name, f.read_bytes()) for f in sorted(out.rglob("*")) if f.is_file() and ".mlpackage" in str(f)]

    once = package_bytes(tmp_path / "once")
    monkeypatch.setattr(package, "validated_once", lambda prog: contextlib.nullcontext())
    assert once and package_bytes(tmp_path / "every_pass") == once
