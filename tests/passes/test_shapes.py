"""fold_shapes and batchnorm_to_affine: what real exporters emit, folded exactly."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeq.errors import ModelError
from edgeq.frontend import load
from edgeq.passes import PASSES, run_passes
from edgeq.runners import OrtRunner


def i64(name, values):
    return numpy_helper.from_array(np.asarray(values, np.int64), name)


def model(nodes, inputs, outputs, inits, opset=13):
    g = helper.make_graph(nodes, "m", inputs, outputs, inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def run(graph, feeds):
    return OrtRunner(graph.serialize(), optimize=False).run(feeds)


def flatten_by_shape(batch="N"):
    """Paddle's flatten: Reshape(x, Concat(Slice(Shape(x), 0, 1), [-1])), batch symbolic."""
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Shape", ["r"], ["s"]),
             helper.make_node("Slice", ["s", "zero", "one"], ["b"]),
             helper.make_node("Concat", ["b", "minus1"], ["t"], axis=0), helper.make_node("Reshape", ["r", "t"], ["y"])]
    return model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 4])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 12])],
                 [i64("zero", [0]), i64("one", [1]), i64("minus1", [-1])])


def test_flatten_with_symbolic_batch_folds_and_keeps_batch(tmp_path):
    p = tmp_path / "m.onnx"
    onnx.save(flatten_by_shape(), p)
    g = run_passes(load(str(p)))
    assert "Shape" not in g.op_counts() and "Concat" not in g.op_counts()
    x = np.random.default_rng(0).normal(size=(5, 3, 4)).astype(np.float32)
    np.testing.assert_array_equal(run(g, {"x": x})["y"], np.maximum(x, 0).reshape(5, 12))


def test_lstm_state_from_bound_shape_folds(tmp_path):
    """ConstantOfShape(Concat([1], Unsqueeze(Gather(Shape(x), 1)), [8])): static once x's dims are bound."""
    nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Gather", ["s", "idx"], ["b"], axis=0),
             helper.make_node("Unsqueeze", ["b", "ax"], ["bu"]),
             helper.make_node("Concat", ["one", "bu", "eight"], ["shape"], axis=0),
             helper.make_node("ConstantOfShape", ["shape"], ["zeros"], value=numpy_helper.from_array(np.zeros(1, np.float32))),
             helper.make_node("Add", ["x", "zeros"], ["y"])]
    m = model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "W", 8])],
              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, "W", 8])],
              [i64("idx", 1), i64("ax", [0]), i64("one", [1]), i64("eight", [8])])
    p = tmp_path / "m.onnx"
    onnx.save(m, p)
    g = run_passes(load(str(p), {"x": (1, 6, 8)}))
    assert set(g.op_counts()) == {"Add"}
    assert g.initializer(g.nodes[0].input[1]).shape == (1, 6, 8)


def test_unknown_rank_is_not_folded():
    """A Shape of a value whose rank inference does not know stays (no empty shape invented)."""
    nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Cast", ["s"], ["y"], to=TensorProto.FLOAT)]
    m = helper.make_model(helper.make_graph(nodes, "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
                                            [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]),
                          opset_imports=[helper.make_opsetid("", 13)])
    from edgeq.graph import Graph

    g = PASSES["fold_shapes"](Graph(m))
    assert "Shape" in g.op_counts()


def bn_after_add(var):
    c = 4
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(a.astype(np.float32), n) for n, a in [
        ("s", rng.uniform(0.5, 2, c)), ("bb", rng.normal(size=c)), ("m", rng.normal(size=c)), ("v", np.asarray(var, np.float32))]]
    nodes = [helper.make_node("Add", ["x", "x"], ["a"]),
             helper.make_node("BatchNormalization", ["a", "s", "bb", "m", "v"], ["y"], epsilon=0.0)]
    return model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, 5, 5])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, c, 5, 5])], inits)


def test_standalone_batchnorm_becomes_mul_add(tmp_path):
    p = tmp_path / "m.onnx"
    onnx.save(bn_after_add([0.5, 1.0, 2.0, 3.0]), p)
    g0 = load(str(p))
    x = np.random.default_rng(1).normal(size=(1, 4, 5, 5)).astype(np.float32)
    want = run(g0, {"x": x})["y"]
    g = run_passes(load(str(p)))
    assert "BatchNormalization" not in g.op_counts() and g.op_counts()["Mul"] == 1
    np.testing.assert_allclose(run(g, {"x": x})["y"], want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("var", [[0.5, 0.0, 2.0, 3.0], [0.5, -1.0, 2.0, 3.0]])
def test_batchnorm_with_nonpositive_variance_is_a_one_line_error(tmp_path, var):
    p = tmp_path / "m.onnx"
    onnx.save(bn_after_add(var), p)
    with pytest.raises(ModelError, match="BatchNormalization.*variance"):
        run_passes(load(str(p)))


def test_a_stale_declared_output_shape_is_inferred_afresh():
    """ddddocr's recognizer declares its [T, 1, C] output as [1, 'seqlen']: LiteRT needs the real one."""
    import onnx
    from onnx import TensorProto, helper

    from edgeq.graph import Graph
    from edgeq.passes import infer

    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "stale",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, "seqlen"])])
    graph = infer(Graph(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])))
    assert graph.shape("y") == (3, 1, 4)
    unknown = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "kept",
                                [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
                                [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])])
    assert infer(Graph(onnx.helper.make_model(unknown, opset_imports=[helper.make_opsetid("", 17)]))).shape("y") == ("N", 4)
