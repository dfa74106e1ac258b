"""Each normalization pass alone keeps the float model's outputs (within float rounding)."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeq.frontend import load
from edgeq.passes import PASSES, run_passes
from edgeq.runners import OrtRunner
from tests.models import small_cnn, small_cnn_data


def run(graph, x):
    return OrtRunner(graph.serialize(), optimize=False).run({"input": x})["logits"]


@pytest.mark.parametrize("name", sorted(PASSES))
def test_pass_keeps_outputs(name, small_model):
    g = load(small_model)
    x = small_cnn_data(8)
    want = run(g, x)
    PASSES[name](g.copy())  # a pass must not need anything but the graph
    out = PASSES[name](g)
    out.refresh()
    np.testing.assert_allclose(run(out, x), want, rtol=1e-5, atol=1e-5)


def test_fold_batchnorm_removes_bn_and_dropout(small_model):
    g = run_passes(load(small_model))
    ops = g.op_counts()
    assert "BatchNormalization" not in ops and "Dropout" not in ops
    assert ops == {"Conv": 2, "Flatten": 1, "Gemm": 1, "GlobalAveragePool": 1, "Relu": 2}


def test_fold_batchnorm_into_gemm():
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(a.astype(np.float32), n) for n, a in [
        ("w", rng.normal(size=(4, 6))), ("b", rng.normal(size=4)), ("s", rng.uniform(0.5, 2, 4)),
        ("bb", rng.normal(size=4)), ("m", rng.normal(size=4)), ("v", rng.uniform(0.5, 2, 4))]]
    m = helper.make_model(helper.make_graph(
        [helper.make_node("Gemm", ["input", "w", "b"], ["g"], transB=1),
         helper.make_node("BatchNormalization", ["g", "s", "bb", "m", "v"], ["logits"])], "gemm_bn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [2, 6])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [2, 4])], inits),
        opset_imports=[helper.make_opsetid("", 17)])
    g = load(m)
    x = rng.normal(size=(2, 6)).astype(np.float32)
    want = run(g, x)
    g2 = run_passes(g.copy())
    assert g2.op_counts() == {"Gemm": 1}
    np.testing.assert_allclose(run(g2, x), want, rtol=1e-5, atol=1e-5)


def test_fold_constants_and_dead_nodes():
    c = numpy_helper.from_array(np.full((1, 10), 2.0, np.float32), "c")
    m = small_cnn(dropout=False)
    m.graph.initializer.append(c)
    # logits2 = logits * (c + c); and a dead branch nothing reads
    m.graph.node.extend([
        helper.make_node("Add", ["c", "c"], ["cc"], name="fold_me"),
        helper.make_node("Mul", ["logits", "cc"], ["scaled"], name="scale"),
        helper.make_node("Neg", ["scaled"], ["dead"], name="dead"),
    ])
    m.graph.output[0].CopyFrom(helper.make_tensor_value_info("scaled", TensorProto.FLOAT, ["N", 10]))
    onnx.checker.check_model(m)
    g = load(m)
    x = small_cnn_data(4)
    want = OrtRunner(g.serialize(), optimize=False).run({"input": x})["scaled"]
    g2 = run_passes(g.copy())
    assert "Neg" not in g2.op_counts() and g2.op_counts()["Mul"] == 1 and "Add" not in g2.op_counts()
    np.testing.assert_allclose(OrtRunner(g2.serialize()).run({"input": x})["scaled"], want, rtol=1e-5, atol=1e-5)


def test_shared_bias_is_unshared_and_both_convs_fuse(tmp_path):
    m = small_cnn(with_bn=False, dropout=False)
    for n in m.graph.node:
        if n.name == "dw":
            n.input[2] = "conv1.b"  # both convs read one (exporter-merged) bias
    g = run_passes(load(m))
    biases = [n.input[2] for n in g.nodes if n.op_type == "Conv"]
    assert len(set(biases)) == 2
    np.testing.assert_array_equal(g.initializer(biases[0]), g.initializer(biases[1]))


def test_constant_attribute_forms_become_initializers():
    """value_ints / value_float Constants (opset 12+) fold like `value` ones; an input-less node the
    passes keep (a string Constant) does not trip batchnorm_to_affine (found by bench/conformance.py)."""
    nodes = [helper.make_node("Constant", [], ["shape"], value_ints=[2, 3]),
             helper.make_node("Constant", [], ["half"], value_float=0.5),
             helper.make_node("Constant", [], ["unused"], value_strings=[b"a"]),
             helper.make_node("Reshape", ["x", "shape"], ["r"]),
             helper.make_node("Add", ["r", "half"], ["y"])]
    g = helper.make_graph(nodes, "c", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [6])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])])
    graph = run_passes(load(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])))
    assert graph.op_counts() == {"Reshape": 1, "Add": 1}
    x = np.arange(6, dtype=np.float32)
    got = OrtRunner(graph.serialize(), optimize=False).run({"x": x})["y"]
    np.testing.assert_array_equal(got, x.reshape(2, 3) + 0.5)


def test_divide_by_a_constant_becomes_a_multiply():
    """HardSwish as exported (x * clip(x + 3, 0, 6) / 6): the Div by 6 becomes a Mul by 1/6 under
    the same output name (LiteRT has no integer DIV); a Div by an activation, by zero or of
    integers is left alone."""
    inits = [numpy_helper.from_array(np.array(3.0, np.float32), "three"), numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
             numpy_helper.from_array(np.array(6.0, np.float32), "six"), numpy_helper.from_array(np.array(6, np.int64), "six_i"),
             numpy_helper.from_array(np.array(0.0, np.float32), "lo")]
    nodes = [helper.make_node("Add", ["input", "three"], ["a"]), helper.make_node("Clip", ["a", "lo", "six"], ["c"]),
             helper.make_node("Mul", ["input", "c"], ["m"]), helper.make_node("Div", ["m", "six"], ["hs"], name="div6"),
             helper.make_node("Div", ["hs", "c"], ["r"], name="div_act"), helper.make_node("Div", ["r", "zero"], ["logits"], name="div0"),
             helper.make_node("Div", ["n", "six_i"], ["n6"], name="div_int")]
    m = helper.make_model(helper.make_graph(nodes, "hs", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [2, 5]),
                                                           helper.make_tensor_value_info("n", TensorProto.INT64, [2])],
                                            [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [2, 5]),
                                             helper.make_tensor_value_info("n6", TensorProto.INT64, [2])], inits),
                          opset_imports=[helper.make_opsetid("", 17)])
    g = load(m)
    feeds = {"input": np.linspace(-5, 5, 10, dtype=np.float32).reshape(2, 5), "n": np.array([12, 7], np.int64)}
    want = OrtRunner(g.serialize(), optimize=False).run(feeds)
    g2 = PASSES["divide_as_multiply"](g.copy())
    g2.refresh()
    ops = {n.name: n.op_type for n in g2.nodes if n.name}
    assert ops == {"div6": "Mul", "div_act": "Div", "div0": "Div", "div_int": "Div"}
    assert next(n for n in g2.nodes if n.name == "div6").output[0] == "hs"
    got = OrtRunner(g2.serialize(), optimize=False).run(feeds)
    np.testing.assert_allclose(got["logits"], want["logits"], rtol=1e-6)
    np.testing.assert_array_equal(got["n6"], want["n6"])
