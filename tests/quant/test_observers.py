import numpy as np
import pytest

from edgeq.errors import CalibrationError
from edgeq.quant.calibrate import collect, observe, ranges_from
from edgeq.quant.observers import CALIB_METHODS, ValueSample, choose_range, quant_mse


def heavy_tailed(seed=0) -> ValueSample:
    s = ValueSample()
    rng = np.random.default_rng(seed)
    for _ in range(4):
        s.update(np.concatenate([rng.normal(0, 1, 20000), [60.0, -45.0]]).astype(np.float32))
    return s


def test_every_method_gives_a_range_inside_the_extremes():
    s = heavy_tailed()
    for method in CALIB_METHODS:
        lo, hi, obs = choose_range(s, method)
        assert s.lo <= lo <= 0 <= hi <= s.hi, method
        assert obs in CALIB_METHODS


def test_clipping_methods_clip_outliers_and_mse_beats_minmax():
    s = heavy_tailed()
    v = s.values()
    for method in ("percentile", "entropy", "mse"):
        lo, hi, _ = choose_range(s, method)
        assert hi < 60.0 and lo > -45.0, method
    assert quant_mse(v, *choose_range(s, "mse")[:2]) < quant_mse(v, *choose_range(s, "minmax")[:2])


def test_auto_picks_the_lowest_error_per_tensor():
    s = heavy_tailed()
    v = s.values()
    lo, hi, obs = choose_range(s, "auto")
    best = min(quant_mse(v, *choose_range(s, m)[:2]) for m in ("minmax", "percentile", "entropy", "mse"))
    assert quant_mse(v, lo, hi) == pytest.approx(best)
    assert obs != "auto"


def test_relu_output_keeps_zero_as_its_minimum():
    s = ValueSample()
    s.update(np.maximum(np.random.default_rng(1).normal(0, 1, 50000), 0).astype(np.float32))
    for method in CALIB_METHODS:
        assert choose_range(s, method)[0] == 0.0


def test_observe_still_returns_minmax_ranges(small):
    graph, data = small
    ranges = observe(graph, data)
    x = data.arrays["input"]
    assert ranges["input"] == (float(x.min()), float(x.max()))
    auto = ranges_from(collect(graph, data), "auto")
    assert set(auto) == set(ranges)
    with pytest.raises(CalibrationError, match="unknown calibration method"):
        ranges_from(collect(graph, data), "bogus")


@pytest.mark.parametrize("op,what", [("Sqrt", "NaN"), ("Exp", "inf")])
def test_a_tensor_that_becomes_nan_or_inf_mid_graph_is_named(op, what):
    import onnx
    from onnx import TensorProto, helper

    from edgeq.graph import Graph
    from edgeq.quant.data import Dataset

    nodes = [helper.make_node("Mul", ["x", "k"], ["big"]), helper.make_node(op, ["big"], ["bad"]),
             helper.make_node("Relu", ["bad"], ["y"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])],
                          [helper.make_tensor("k", TensorProto.FLOAT, [], [-100.0])])
    graph = Graph(onnx.shape_inference.infer_shapes(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])))
    x = np.full((3, 4), 0.5, np.float32)
    x[2, 1] = -2.0  # Sqrt(-100 * 0.5) is NaN; Exp(-100 * -2) overflows
    with pytest.raises(CalibrationError, match=f"tensor 'bad' .*{op}.* becomes {what}"):
        collect(graph, Dataset({"x": x}))
    empty = collect(graph, Dataset({"x": x[:0] if op == "Sqrt" else x[:2] * 0}))  # no values, or all finite: no error
    assert set(empty) == {"x", "big", "bad", "y"}
