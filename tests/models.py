"""Small ONNX graphs built with onnx.helper for tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _init(name, arr):
    return numpy_helper.from_array(np.asarray(arr, dtype=np.float32), name)


def small_cnn(seed: int = 0, batch="N", opset: int = 17, with_bn: bool = True, dropout: bool = True) -> onnx.ModelProto:
    """Conv -> BN -> Relu -> [Dropout] -> depthwise Conv -> Relu -> GAP -> Flatten -> Gemm."""
    rng = np.random.default_rng(seed)
    c = 8
    inits = [
        _init("conv1.w", rng.normal(0, 0.5, (c, 1, 3, 3))), _init("conv1.b", rng.normal(0, 0.1, c)),
        _init("bn.scale", rng.uniform(0.5, 1.5, c)), _init("bn.bias", rng.normal(0, 0.1, c)),
        _init("bn.mean", rng.normal(0, 0.1, c)), _init("bn.var", rng.uniform(0.5, 1.5, c)),
        _init("dw.w", rng.normal(0, 0.5, (c, 1, 3, 3))), _init("dw.b", rng.normal(0, 0.1, c)),
        _init("fc.w", rng.normal(0, 0.5, (10, c))), _init("fc.b", rng.normal(0, 0.1, 10)),
    ]
    nodes = [helper.make_node("Conv", ["input", "conv1.w", "conv1.b"], ["c1"], name="conv1", pads=[1, 1, 1, 1])]
    x = "c1"
    if with_bn:
        nodes.append(helper.make_node("BatchNormalization", [x, "bn.scale", "bn.bias", "bn.mean", "bn.var"], ["bn1"], name="bn1"))
        x = "bn1"
    nodes.append(helper.make_node("Relu", [x], ["r1"], name="relu1"))
    x = "r1"
    if dropout:
        nodes.append(helper.make_node("Dropout", [x], ["d1"], name="drop"))
        x = "d1"
    nodes += [
        helper.make_node("Conv", [x, "dw.w", "dw.b"], ["c2"], name="dw", group=c, pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["logits"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes, "small_cnn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 1, 12, 12])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="edgeq-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def small_cnn_data(n: int = 64, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 1, (n, 1, 12, 12)).astype(np.float32)


SAMPLES = Path(__file__).resolve().parents[1] / "samples"


def fashion_data(n_calib: int, n_val: int) -> tuple[dict, dict]:
    """The first n_calib calibration and n_val validation samples of the bundled Fashion-MNIST data."""
    with np.load(SAMPLES / "fashion_calib.npz") as z:
        calib = {"input": z["input"][:n_calib]}
    with np.load(SAMPLES / "fashion_val.npz") as z:
        val = {"input": z["input"][:n_val], "labels": z["labels"][:n_val]}
    return calib, val
