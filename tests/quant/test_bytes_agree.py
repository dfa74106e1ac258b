"""One storage rule: for every target x recipe, the constants written to the artifact (read back
from it), the payload the plan predicts and the profiler's weight bytes agree within 2 %.

Each target's rule (Target.storage) is what its writer stores by; a writer that decided
otherwise (an INT4 it did not write, a float kernel's float32 weights, a zero bias it added)
shows here as a ratio off 1.
"""

from pathlib import Path

import pytest

from edgeq.op_cost import op_costs
from edgeq.pipeline import Options, prepare
from edgeq.quant.build import int8_plan
from edgeq.quant.calibrate import observe
from edgeq.quant.data import load_dataset
from edgeq.quant.mixed import QuantOptions, build_mixed_plan
from edgeq.quant.size import predicted_bytes
from edgeq.target import available, get_target

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
TARGETS = [t for t in ("ort", "tflite", "tflm", "coreml") if available(t)]
# recipe: (QuantOptions or "int8" for the uniform static plan, target options)
RECIPES = {
    "w8a8": ("int8", {}),
    "int8_weight_only": (QuantOptions(mode="weight_only"), {}),
    "mixed_4bit_linear": (QuantOptions(bits=4), {}),
    "int4": (QuantOptions(bits=4), {"ort_int4": True, "min_os": "ios18"}),
    "palette_4bit": (QuantOptions(bits=4, scheme="palette", mode="weight_only"), {}),
    "float16": (QuantOptions(keep_float=["*"], mode="weight_only"), {"weights": "float16"}),
}
HOLDS = {  # what each target holds: the rest is refused before writing (tests/cli covers the refusals)
    "palette_4bit": {"coreml"},
    "float16": {"tflite", "coreml"},  # tflm: no float16 DEQUANTIZE kernel (refused in check_plan)
}


@pytest.fixture(scope="module")
def graph_and_calib():
    graph = prepare(str(SAMPLES / "fashion_cnn.onnx"), Options(targets=[]))
    calib = load_dataset(str(SAMPLES / "fashion_calib.npz"), graph, "--calib", 0)
    return graph, calib


@pytest.fixture(scope="module")
def plans(graph_and_calib):
    graph, calib = graph_and_calib
    out = {}
    for name, (recipe, _) in RECIPES.items():
        if recipe == "int8":
            out[name] = int8_plan(graph, observe(graph, calib.take(slice(0, 64))))
        else:
            out[name] = build_mixed_plan(graph, calib.take(slice(0, 64)), None, list(range(2, 9)), recipe)
    return out


@pytest.mark.parametrize("recipe", RECIPES)
@pytest.mark.parametrize("target", TARGETS)
def test_written_predicted_and_profiled_bytes_agree(tmp_path, graph_and_calib, plans, target, recipe):
    if target not in HOLDS.get(recipe, {target}):
        pytest.skip(f"{target} does not hold {recipe}")
    graph, _ = graph_and_calib
    options = RECIPES[recipe][1]
    t = get_target(target)
    plan = t.plan_for(graph, plans[recipe], options)
    t.check_plan(graph, plan, options)
    artifact = t.lower(graph, plan, tmp_path, "m", {"ort_format": False, **options})
    written = t.payload(artifact)
    predicted = predicted_bytes(graph, plan, target, options)["total"]
    profiled = sum(c.weight_bytes for c in op_costs(graph, plan, stored=t.storage(graph, plan, options)))
    assert written == pytest.approx(predicted, rel=0.02), (written, predicted)
    assert profiled == pytest.approx(predicted, rel=0.02), (profiled, predicted)


def test_int4_is_smaller_than_int8_storage_on_ort(graph_and_calib, plans):
    """The option changes what the rule predicts, as it changes what the writer writes."""
    graph, _ = graph_and_calib
    plain = predicted_bytes(graph, plans["mixed_4bit_linear"], "ort", {})["total"]
    int4 = predicted_bytes(graph, plans["int4"], "ort", {"ort_int4": True})["total"]
    assert int4 < 0.6 * plain
