"""One storage rule: for every target x recipe, the constants written to the artifact (read back
from it), the payload the plan predicts and the profiler's weight bytes agree within 2 %.

Each target's rule (Target.storage) is what its writer stores by; a writer that decided
otherwise (an INT4 it did not write, a float kernel's float32 weights, a zero bias it added)
shows here as a ratio off 1.
"""

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from edgeq.op_cost import op_costs
from edgeq.pipeline import Options, prepare
from edgeq.quant.data import load_dataset
from edgeq.quant.mixed import QuantOptions, build_mixed_plan
from edgeq.quant.size import predicted_bytes
from edgeq.target import available, get_target

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
TARGETS = [t for t in ("ort", "tflite", "tflm", "coreml") if available(t)]
# recipe: (QuantOptions, target options); the uniform W8A8 plan is the pipeline's default recipe
RECIPES = {
    "w8a8": (QuantOptions(act_bits=8), {}),
    "w8a8_per_tensor": (QuantOptions(act_bits=8, granularity="per_tensor"), {}),
    "int8_weight_only": (QuantOptions(mode="weight_only"), {}),
    "mixed_4bit_linear": (QuantOptions(bits=4), {}),
    "int4": (QuantOptions(bits=4), {"ort_int4": True, "min_os": "ios18"}),
    "palette_4bit": (QuantOptions(bits=4, scheme="palette", mode="weight_only"), {}),
    "float16": (QuantOptions(keep_float=["*"], mode="weight_only"), {"weights": "float16"}),
    "fp32_program": (QuantOptions(mode="weight_only"), {"coreml_precision": "fp32"}),
}
HOLDS = {  # what each target holds: the rest is refused before writing (tests/cli covers the refusals)
    "palette_4bit": {"coreml"},
    "float16": {"tflite", "coreml"},  # tflm: no float16 DEQUANTIZE kernel (refused in check_plan)
    "fp32_program": {"coreml"},
}


def mlp() -> onnx.ModelProto:
    """MatMul without a bias (LiteRT adds a zero one) -> Relu -> Gemm with alpha != 1 (LiteRT runs it float)."""
    rng = np.random.default_rng(0)
    w1, w2 = rng.normal(0, 0.3, (16, 48)).astype(np.float32), rng.normal(0, 0.3, (48, 8)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Gemm", ["r", "w2", "b2"], ["y"], alpha=0.5)]
    g = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 16])],
                          [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 8])],
                          [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2"),
                           numpy_helper.from_array(rng.normal(0, 0.1, 8).astype(np.float32), "b2")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


MODELS = {"fashion_cnn": lambda: str(SAMPLES / "fashion_cnn.onnx"), "mlp": mlp}


@pytest.fixture(scope="module", params=list(MODELS))
def graph_and_plans(request):
    graph = prepare(MODELS[request.param](), Options(targets=[]))
    if request.param == "fashion_cnn":
        calib = load_dataset(str(SAMPLES / "fashion_calib.npz"), graph, "--calib", 0).take(slice(0, 64))
    else:
        calib = load_dataset({"x": np.random.default_rng(1).normal(size=(64, 16)).astype(np.float32)}, graph, "--calib", 0)
    plans = {name: build_mixed_plan(graph, calib, None, list(range(2, 9)), recipe) for name, (recipe, _) in RECIPES.items()}
    return graph, plans


@pytest.mark.parametrize("recipe", RECIPES)
@pytest.mark.parametrize("target", TARGETS)
def test_written_predicted_and_profiled_bytes_agree(tmp_path, graph_and_plans, target, recipe):
    if target not in HOLDS.get(recipe, {target}):
        pytest.skip(f"{target} does not hold {recipe}")
    graph, plans = graph_and_plans
    options = RECIPES[recipe][1]
    t = get_target(target)
    plan = t.plan_for(graph, plans[recipe], options)
    t.check_plan(graph, plan, options)
    artifact = t.lower(graph, plan, tmp_path, "m", {"ort_format": False, **options})
    written = t.payload(artifact)
    predicted = predicted_bytes(graph, plan, target, options)["total"]
    stored = t.storage(graph, plan, options)
    profiled = sum(c.weight_bytes for c in op_costs(graph, plan, stored=stored))
    file_only = sum(s.total for name, s in stored.items() if not graph.is_const(name))  # e.g. weight.bin's header
    assert written == pytest.approx(predicted, rel=0.02), (written, predicted)
    assert profiled == pytest.approx(predicted - file_only, rel=0.02), (profiled, predicted, file_only)


def test_int4_is_smaller_than_int8_storage_on_ort(graph_and_plans):
    """The option changes what the rule predicts, as it changes what the writer writes."""
    graph, plans = graph_and_plans
    plain = predicted_bytes(graph, plans["mixed_4bit_linear"], "ort", {})["total"]
    int4 = predicted_bytes(graph, plans["int4"], "ort", {"ort_int4": True})["total"]
    assert int4 < 0.6 * plain
