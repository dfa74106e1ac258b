"""ONNX Runtime target: the plan as a QDQ model with int8 weight initializers.

Weights are stored quantized (int8 initializer -> DequantizeLinear), activations are
wrapped in QuantizeLinear/DequantizeLinear, biases are int32. onnxruntime's optimizer
fuses DQ -> op -> Q into integer kernels (QLinearConv, QGemm, QLinearMatMul, ...).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgeq.artifact import Artifact, IOSpec
from edgeq.errors import PlanError, UnsupportedOpError
from edgeq.fileio import write_bytes
from edgeq.graph import Graph, node_name
from edgeq.lower import target_data
from edgeq.lower.ort_format import write_ort_format
from edgeq.quant.linear import quantize, storage_dtype
from edgeq.quant.plan import QuantPlan, WeightPlan
from edgeq.runners import OrtRunner, ort_cpu_ops, ort_session, register_runner

NAME = "ort"
DESCRIPTION = target_data("ort").get("description", "")
# Ops onnxruntime's CPU provider turns into integer kernels when wrapped in QDQ
# (see onnxruntime/core/optimizer/qdq_transformer/selectors_actions).
INT8_KERNELS = {
    "Conv", "ConvTranspose", "Gemm", "MatMul", "Add", "Mul", "AveragePool", "GlobalAveragePool", "MaxPool",
    "Relu", "Clip", "Sigmoid", "LeakyRelu", "Concat", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose",
    "Resize", "Softmax", "Where", "Split", "Gather", "Slice", "Pad", "HardSigmoid", "InstanceNormalization",
}


def cpu_ops() -> frozenset[str]:
    return frozenset(op for domain, op in ort_cpu_ops() if domain == "ai.onnx")


def lower_weighted(ctx: LoweringContext, node: onnx.NodeProto) -> None:
    """The weight becomes an int8 initializer behind DequantizeLinear; the bias int32."""
    wp = ctx.plan.weights.get(node.input[1])
    if wp is None or wp.bits is None or wp.tensor in ctx.done:
        return
    ctx.done.add(wp.tensor)
    ctx.quantize_weight(wp)
    if wp.bias and wp.bias not in ctx.done and ctx.act_scale(wp.input) is not None:
        ctx.done.add(wp.bias)
        ctx.quantize_bias(wp)


def keep_float_kernel(ctx: LoweringContext, node: onnx.NodeProto) -> None:
    """The op runs as it is; its inputs/outputs carry the QDQ pairs of the plan."""


def _table() -> dict:
    table = {op: keep_float_kernel for op in cpu_ops()}
    table.update({op: lower_weighted for op in ("Conv", "ConvTranspose", "Gemm", "MatMul")})
    return dict(sorted(table.items()))


OPS = _table()


class LoweringContext:
    def __init__(self, graph: Graph, plan: QuantPlan):
        self.graph, self.plan = graph, plan
        self.g = graph.model.graph
        self.new_inits: list[onnx.TensorProto] = []
        self.new_nodes: list[onnx.NodeProto] = []  # DequantizeLinear of weights, placed first
        self.drop_inits: set[str] = set()
        self.done: set[str] = set()
        self.notes: list[str] = []

    def act_scale(self, name: str | None) -> float | None:
        a = self.plan.activations.get(name) if name else None
        return a.scale if a is not None and a.bits is not None else None

    def quantize_weight(self, wp: WeightPlan) -> None:
        if wp.scheme == "palette":
            raise PlanError(f"weight '{wp.tensor}' (node '{wp.node}'): the ort target holds linear weights, not palettes; use --target coreml or a linear scheme")
        w = self.graph.initializer(wp.tensor)
        axis = wp.axis if wp.granularity == "per_channel" else None
        q = quantize(w, wp.scale, wp.zero_point, wp.bits, signed=True, axis=axis, narrow=wp.scheme == "symmetric")
        q_name, s_name, z_name = f"{wp.tensor}_quantized", f"{wp.tensor}_scale", f"{wp.tensor}_zero_point"
        self.new_inits += [
            numpy_helper.from_array(q.astype(np.int8), q_name),
            numpy_helper.from_array(np.asarray(wp.scale if axis is not None else wp.scale[0], np.float32), s_name),
            numpy_helper.from_array(np.asarray(wp.zero_point if axis is not None else wp.zero_point[0], np.int8), z_name),
        ]
        attrs = {"axis": axis} if axis is not None else {}
        self.new_nodes.append(helper.make_node("DequantizeLinear", [q_name, s_name, z_name], [wp.tensor], name=f"{wp.tensor}_DequantizeLinear", **attrs))
        self.drop_inits.add(wp.tensor)
        if wp.bits < 8:
            self.notes.append(f"{wp.node}: {wp.bits}-bit weights stored on the int8 grid (values within ±{2 ** (wp.bits - 1) - 1})")

    def quantize_bias(self, wp: WeightPlan) -> None:
        b = self.graph.initializer(wp.bias).astype(np.float64)
        s_w = np.asarray(wp.scale, np.float64)
        scale = (self.act_scale(wp.input) * s_w).astype(np.float32)
        scale = np.broadcast_to(scale, b.shape).copy() if scale.size == 1 else scale
        q = np.clip(np.rint(b / scale.astype(np.float64)), -(2**31), 2**31 - 1).astype(np.int32)
        q_name, s_name, z_name = f"{wp.bias}_quantized", f"{wp.bias}_scale", f"{wp.bias}_zero_point"
        self.new_inits += [
            numpy_helper.from_array(q, q_name),
            numpy_helper.from_array(scale.astype(np.float32), s_name),
            numpy_helper.from_array(np.zeros(b.shape, np.int32), z_name),
        ]
        self.new_nodes.append(helper.make_node("DequantizeLinear", [q_name, s_name, z_name], [wp.bias], name=f"{wp.bias}_DequantizeLinear", axis=0))
        self.drop_inits.add(wp.bias)

    def wrap_activations(self) -> list[onnx.NodeProto]:
        """Q/DQ after each planned activation; consumers read the dequantized copy."""
        outputs = {o.name for o in self.g.output}
        inputs = {i.name for i in self.graph.inputs}
        qdq_after: dict[str, list[onnx.NodeProto]] = {}
        for name, a in self.plan.activations.items():
            if a.bits is None:
                continue
            if a.bits != 8:
                raise PlanError(f"activation '{name}': the ort target holds 8-bit activations here; set bits to 8 or null")
            s_name, z_name = f"{name}_act_scale", f"{name}_act_zero_point"
            self.new_inits += [numpy_helper.from_array(np.asarray(a.scale, np.float32), s_name),
                               numpy_helper.from_array(np.asarray(a.zero_point, storage_dtype(8, a.signed)), z_name)]
            src = f"{name}_float" if name in outputs and name not in inputs else name
            dq_out = name if name in outputs and name not in inputs else f"{name}_dequantized"
            if src != name:
                for n in self.g.node:
                    for k, o in enumerate(n.output):
                        if o == name:
                            n.output[k] = src
            else:
                for n in self.g.node:
                    for k, i in enumerate(n.input):
                        if i == name:
                            n.input[k] = dq_out
            qdq_after[src] = [
                helper.make_node("QuantizeLinear", [src, s_name, z_name], [f"{name}_quantized"], name=f"{name}_QuantizeLinear"),
                helper.make_node("DequantizeLinear", [f"{name}_quantized", s_name, z_name], [dq_out], name=f"{name}_DequantizeLinear"),
            ]
        ordered = [n for i in self.graph.inputs for n in qdq_after.get(i.name, [])]
        for n in self.g.node:
            ordered.append(n)
            for o in n.output:
                ordered += qdq_after.get(o, [])
        return ordered


def check_plan(graph: Graph, plan: QuantPlan, options: dict | None = None) -> None:
    caps = target_data(NAME)
    for w in plan.weights.values():
        if w.bits is not None and w.bits not in caps["weight_bits"]:
            raise PlanError(f"weight '{w.tensor}' (node '{w.node}'): {w.bits} bits; the ort target holds {caps['weight_bits']}")
    for n in graph.nodes:
        if n.domain in ("", "ai.onnx") and n.op_type not in OPS:
            raise UnsupportedOpError(node_name(n), n.op_type, NAME)


def lower(graph: Graph, plan: QuantPlan, out_dir: Path, stem: str, options: dict | None = None) -> Artifact:
    options = options or {}
    check_plan(graph, plan, options)
    g = graph.copy()
    if g.opset < target_data(NAME)["min_opset"]:
        g = Graph(onnx.version_converter.convert_version(g.model, target_data(NAME)["min_opset"]), g.source)
    ctx = LoweringContext(g, plan)
    for n in g.nodes:
        if n.op_type in OPS:
            OPS[n.op_type](ctx, n)
    nodes = ctx.wrap_activations() if plan.mode == "static" else list(ctx.g.node)
    keep_inits = [t for t in ctx.g.initializer if t.name not in ctx.drop_inits]
    del ctx.g.initializer[:]
    ctx.g.initializer.extend(keep_inits + ctx.new_inits)
    del ctx.g.node[:]
    ctx.g.node.extend(ctx.new_nodes + nodes)
    del ctx.g.value_info[:]
    m = g.model
    m.producer_name, m.producer_version = "edgeq", ""
    del m.metadata_props[:]
    onnx.helper.set_model_props(m, {"edgeq.plan_sha256": plan.sha256(), "edgeq.model_sha256": plan.model_sha256})
    onnx.checker.check_model(m)
    path = Path(out_dir) / f"{stem}.ort.onnx"
    data = m.SerializeToString(deterministic=True)
    write_bytes(path, data)
    files = [path]
    if options.get("ort_format", True):
        files.append(_write_ort_format(path, ctx.notes))
    return Artifact(
        target=NAME, path=path, files=files,
        inputs=[IOSpec(s.name, list(s.shape), s.dtype) for s in graph.inputs],
        outputs=[IOSpec(s.name, list(s.shape), s.dtype) for s in graph.outputs],
        plan_sha256=plan.sha256(), model_sha256=plan.model_sha256, notes=sorted(set(ctx.notes)),
        extra={"ort_file": str(files[1]) if len(files) > 1 else None},
    )


def _write_ort_format(onnx_path: Path, notes: list[str]) -> Path:
    """The .ort flatbuffer for ORT Mobile, beside the .onnx (x.ort.onnx -> x.ort)."""
    path = onnx_path.with_suffix("")
    if not write_ort_format(onnx_path, path):
        notes.append("the .ort file was converted with address randomization on: its bytes may differ between runs")
    return path


def optimized_ops(artifact: Artifact) -> dict[str, int]:
    """Op counts of the graph onnxruntime actually runs (after its QDQ fusions)."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        opt = str(Path(d) / "optimized.onnx")
        ort_session(str(artifact.path), optimized_path=opt)
        counts: dict[str, int] = {}
        for n in onnx.load(opt).graph.node:
            counts[n.op_type] = counts.get(n.op_type, 0) + 1
    return dict(sorted(counts.items()))


@register_runner(NAME)
def make_runner(artifact: Artifact, threads: int = 1) -> OrtRunner:
    return OrtRunner(str(artifact.path), threads=threads, source=str(artifact.path))
