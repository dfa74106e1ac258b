"""TFLite / LiteRT target: the plan as a .tflite flatbuffer, written without TensorFlow.

Modes follow the plan: float32 (no bits), float16 weights (option weights=float16),
dynamic-range int8 (plan mode "dynamic": hybrid kernels), int8 weights only (mode
"weight_only": DEQUANTIZE at load), full-integer int8 and int16x8 (mode "static" with 8-
or 16-bit activations), native INT4 weights for FULLY_CONNECTED / CONV_2D. Options:
io_dtype (float32|int8), io_layout (nchw|nhwc), fallback (error|float), weights
(auto|float32|float16), int4 (true|false), android_api (NNAPI compatibility at that API level).
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import numpy as np

from edgeq.artifact import Artifact, IOSpec
from edgeq.compare import lsb_agreement, run_check
from edgeq.errors import ModelError, PlanError, UnsupportedOpError
from edgeq.fileio import write_bytes
from edgeq.graph import Graph, node_name
from edgeq.lower.tflite import layout as L
from edgeq.lower.tflite.context import Ctx, TfliteOptions
from edgeq.lower.tflite.ops import INT8_OPS, OPS
from edgeq.lower.tflite.read import read_tflite as read_artifact  # noqa: F401  (Target hook)
from edgeq.lower.tflite.storage import stored_payload, weight_storage  # noqa: F401  (Target hooks)
from edgeq.quant.plan import QuantPlan
from edgeq.runners import captured_stderr, in_chunks, register_runner
from edgeq.schemes import of as scheme_of
from edgeq.target import target_data

NAME = "tflite"
DESCRIPTION = target_data("tflite").get("description", "")
INT8_KERNELS = INT8_OPS  # what the cost model prices as integer (edgeq.target reads INT8_KERNELS)
FUSED_AFTER = {"Add": ("Relu", "Clip")}  # ADD's fused activation (ops_math.lower_add, Ctx.fused): priced as free
__all__ = ["NAME", "DESCRIPTION", "OPS", "INT8_OPS", "INT8_KERNELS", "FUSED_AFTER", "lowering_view", "lower", "check_plan", "adjust_plan", "build", "LiteRTRunner",
           "cross_checks"]

# Output grids fixed by LiteRT's integer kernels, keyed by the ONNX op producing the tensor.
FIXED_OUTPUT_GRIDS = {"Softmax": "SOFTMAX", "Sigmoid": "LOGISTIC", "Tanh": "TANH", "LogSoftmax": "LOG_SOFTMAX"}
# Ops whose integer kernel needs the output on the input's grid.
SAME_GRID = ("AveragePool", "MaxPool", "GlobalMaxPool", "Resize", "ReduceMax", "ReduceMin", "Pad", "Slice", "Gather")


def adjust_plan(graph: Graph, plan: QuantPlan, options: dict | None = None) -> None:
    """Set the ranges LiteRT's integer kernels require (fixed softmax/logistic/tanh grids, int16 symmetric)."""
    from edgeq.lower.tflite.ops_math import FIXED_GRIDS
    from edgeq.quant.linear import symmetric_params

    for a in plan.activations.values():
        if a.bits == 16 and a.zero_point != 0:  # LiteRT's int16 activations are symmetric
            scale, _ = symmetric_params(np.asarray([max(abs(a.min), abs(a.max))]), 16)
            a.scale, a.zero_point = float(scale[0]), 0
    for n in graph.nodes:
        for out in n.output:
            a = plan.activations.get(out)
            if a is None or a.bits is None:
                continue
            if n.op_type in FIXED_OUTPUT_GRIDS and a.bits in FIXED_GRIDS[FIXED_OUTPUT_GRIDS[n.op_type]]:
                a.scale, a.zero_point = FIXED_GRIDS[FIXED_OUTPUT_GRIDS[n.op_type]][a.bits]
                a.observer = "fixed:tflite"
            elif n.op_type in SAME_GRID and n.input[0] in plan.activations:
                src = plan.activations[n.input[0]]
                if src.bits == a.bits:
                    a.scale, a.zero_point, a.shared_with = src.scale, src.zero_point, src.shared_with or src.tensor


lowering_view = L.static_graph  # what the op check before calibration looks at (edgeq/lower/__init__.py)


def check_plan(graph: Graph, plan: QuantPlan, options: dict | None = None) -> None:
    """Refuse, before anything is written, what LiteRT cannot hold."""
    opts = TfliteOptions.from_dict(options)
    static = L.static_graph(graph)  # ops as lowered: shape arithmetic folded, Erf-GELU fused
    for k, n in enumerate(static.nodes):  # a Shape left here has a dynamic input: check_static says so below
        if n.domain not in ("", "ai.onnx") or n.op_type not in OPS and n.op_type not in ("Shape", "Size"):
            raise UnsupportedOpError(node_name(n, k), n.op_type, NAME)
    for w in plan.weights.values():
        where = f"weight '{w.tensor}' (node '{w.node}')"
        if w.bits is None:
            continue
        # bits, schemes and granularities: Target.check_plan, from targets/tflite.toml
        if scheme_of(w).linear and any(z != 0 for z in (w.zero_point or [])):
            raise PlanError(f"{where}: LiteRT's integer kernels need weight zero points of 0; use the symmetric scheme")
    widths = {a.bits for a in plan.activations.values() if a.bits is not None} if plan.mode == "static" else set()
    if len(widths) > 1:
        raise PlanError(f"plan mixes {sorted(widths)}-bit activations; a LiteRT model runs one integer width (int8, or int16x8): "
                        "make them all 8 or all 16, or null (float) for layers to keep float")
    for name, a in plan.activations.items():
        if plan.mode == "static" and a.bits == 16 and a.zero_point != 0:
            raise PlanError(f"activation '{name}': LiteRT's int16 activations are symmetric; set zero_point to 0 "
                            "(compile does this in the plan it derives for tflite, plan.tflite.json)")
    if opts.io_dtype == "int8" and plan.mode == "static" and 16 in widths:
        raise PlanError("io_dtype=int8 with a 16-bit activation plan; use io_dtype float32")
    L.check_static(static, NAME)


def mode_of(plan: QuantPlan, opts: TfliteOptions) -> str:
    wbits = {w.bits for w in plan.weights.values()}
    if plan.mode == "static" and any(a.bits for a in plan.activations.values()):
        widths = {a.bits for a in plan.activations.values() if a.bits}
        base = "int16x8" if widths == {16} else "int8"
        return base if None not in wbits and not any(a.bits is None for a in plan.activations.values()) else f"mixed_{base}"
    if wbits - {None}:
        return "dynamic_int8" if plan.mode == "dynamic" else "weight_only_int8"
    return "float16" if opts.weights == "float16" else "float32"


def build(graph: Graph, plan: QuantPlan, options: dict | None = None) -> tuple[bytes, Ctx]:
    """The .tflite bytes (no file written) and the lowering context (for reports and tests)."""
    opts = TfliteOptions.from_dict(options)
    g = L.static_graph(graph)
    L.check_static(g, NAME)
    ctx = Ctx(g, L.lifted_plan(plan, dict(g.records["lift_1d"])), opts)
    io = {}
    for spec in g.inputs:
        layout = "nhwc" if opts.io_layout == "nhwc" and len(spec.shape) == 4 else "onnx"
        kind = "q" if opts.io_dtype == "int8" and ctx.act(spec.name) is not None else "float"
        t = ctx.output(spec.name, layout, kind)
        ctx.w.inputs.append(t)
        io[t] = spec.name
    for k, n in enumerate(g.nodes):
        if n.output and n.output[0] in ctx.skip:
            continue
        if n.op_type not in OPS:
            raise UnsupportedOpError(node_name(n, k), n.op_type, NAME)
        OPS[n.op_type](ctx, n)
    for spec in g.outputs:
        layout = "nhwc" if opts.io_layout == "nhwc" and len(spec.shape) == 4 else "onnx"
        kind = "q" if opts.io_dtype == "int8" and ctx.act(spec.name) is not None else "float"
        t = ctx.get(spec.name, layout, kind)
        ctx.w.outputs.append(t)
        io[t] = spec.name
    for t, name in io.items():  # boundary tensors carry the ONNX names exactly
        for other in ctx.w.tensors:
            if other.name == name and other is not ctx.w.tensors[t]:
                other.name = f"{name};internal"
        ctx.w.tensors[t].name = name
    return ctx.w.serialize(f"edgeq plan {plan.sha256()[:16]}"), ctx


def lower(graph: Graph, plan: QuantPlan, out_dir: Path, stem: str, options: dict | None = None) -> Artifact:
    options = options or {}
    check_plan(graph, plan, options)
    data, ctx = build(graph, plan, options)
    path = Path(out_dir) / f"{stem}.tflite"
    write_bytes(path, data)
    artifact = artifact_for(path, ctx, plan, graph)
    from edgeq.lower.tflite.where import where_it_runs

    artifact.extra["where_it_runs"], notes = where_it_runs(path, ctx.opts.android_api)
    artifact.notes += notes
    return artifact


def artifact_for(path: Path, ctx: Ctx, plan: QuantPlan, graph: Graph, target: str = NAME) -> Artifact:
    w, opts = ctx.w, ctx.opts

    def spec(t: int, onnx_shape) -> IOSpec:
        q = w.tensor_quant(t)
        dtype = w.tensor_dtype(t)
        return IOSpec(w.tensors[t].name, list(w.tensor_shape(t)), dtype,
                      q.scale[0] if q and dtype != "float32" else None, q.zero_point[0] if q and dtype != "float32" else None)

    counts = Counter(w.op_names)
    notes = sorted(set(ctx.notes))
    if ctx.float_nodes:
        notes.append(f"kept float (fallback=float) between DEQUANTIZE/QUANTIZE: {', '.join(ctx.float_nodes)}")
    if counts.get("UNIDIRECTIONAL_SEQUENCE_LSTM"):
        notes.append("UNIDIRECTIONAL_SEQUENCE_LSTM keeps its state between invocations: reset it before each inference "
                     "(Python reset_all_variables(), C++ Interpreter::ResetVariableTensors(), TFLite Micro reset()), "
                     "as the ONNX model starts from its initial state every call; edgeq's verification does")
    return Artifact(
        target=target, path=path, files=[path],
        inputs=[spec(t, s.shape) for t, s in zip(w.inputs, ctx.graph.inputs)],
        outputs=[spec(t, s.shape) for t, s in zip(w.outputs, ctx.graph.outputs)],
        plan_sha256=plan.sha256(), model_sha256=plan.model_sha256, notes=notes,
        extra={
            "tflite_mode": mode_of(plan, opts), "io_layout": opts.io_layout, "io_dtype": opts.io_dtype,
            "transpose_ops": counts.get("TRANSPOSE", 0), "tflite_ops": dict(sorted(counts.items())),
            "int4_weights": ctx.extra_counts.get("int4_weights", 0), "float_nodes": ctx.float_nodes or None,
            "batch": 1,
        },
    )


class LiteRTRunner:
    """ai-edge-litert's Interpreter; loops over the leading axis (the artifact holds batch 1).

    kernels: "auto" (XNNPACK delegate applied where it can), "builtin" (LiteRT's optimized
    built-in kernels only) or "reference" (the reference kernels).
    """

    reference_executor = False  # LiteRT itself, as the device runs it

    def __init__(self, artifact: Artifact, threads: int = 1, kernels: str = "auto"):
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        resolver = {"auto": OpResolverType.AUTO, "builtin": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
                    "reference": OpResolverType.BUILTIN_REF}[kernels]
        start = time.perf_counter()
        try:
            with captured_stderr():  # LiteRT's "Created TensorFlow Lite XNNPACK delegate" INFO line
                self.interpreter = Interpreter(model_path=str(artifact.path), num_threads=threads,
                                               experimental_op_resolver_type=resolver)
                self.interpreter.allocate_tensors()
        except (RuntimeError, ValueError) as e:
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise ModelError(f"{artifact.path}: LiteRT cannot load it ({reason}); re-run `edgeq compile` to rewrite it") from None
        self.load_seconds = time.perf_counter() - start
        self.artifact = artifact
        self.nhwc = artifact.extra.get("io_layout") == "nhwc"
        self.in_details = self.interpreter.get_input_details()
        self.out_details = self.interpreter.get_output_details()

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        def invoke(chunk: dict) -> dict:
            for spec, d in zip(self.artifact.inputs, self.in_details):
                self.interpreter.set_tensor(d["index"], to_artifact(chunk[spec.name], spec, self.nhwc))
            try:
                self.interpreter.reset_all_variables()  # LSTM state: every ONNX call starts from its initial state
                self.interpreter.invoke()
            except RuntimeError as e:
                reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
                raise ModelError(f"{self.artifact.path}: LiteRT failed while running ({reason})") from None
            return {spec.name: from_artifact(self.interpreter.get_tensor(d["index"]), spec, self.nhwc)
                    for spec, d in zip(self.artifact.outputs, self.out_details)}

        return run_in_batches(self.artifact, feeds, invoke)


def run_in_batches(artifact: Artifact, feeds: dict, invoke) -> dict[str, np.ndarray]:
    """Feed the artifact's fixed batch at a time (the whole feed when it already has that shape)."""
    specs = {s.name: s for s in artifact.inputs}
    first = artifact.inputs[0] if artifact.inputs else None
    if first is None or not first.shape or all(np.shape(feeds[k]) == _onnx_shape(specs[k], artifact) for k in specs):
        return invoke(feeds)
    return in_chunks(feeds, max(int(first.shape[0]), 1), invoke)


def _onnx_shape(spec: IOSpec, artifact: Artifact) -> tuple:
    shape = list(spec.shape)
    if artifact.extra.get("io_layout") == "nhwc" and len(shape) == 4:
        shape = [shape[a] for a in L.TO_NCHW]
    return tuple(shape)


def to_artifact(x: np.ndarray, spec: IOSpec, nhwc: bool) -> np.ndarray:
    """A float ONNX-layout sample as the artifact takes it (layout, integer grid)."""
    x = np.asarray(x)
    if nhwc and x.ndim == 4:
        x = x.transpose(L.TO_NHWC)
    if spec.scale is not None:
        info = np.iinfo(np.dtype(spec.dtype))
        return np.clip(np.rint(x / np.float32(spec.scale)) + spec.zero_point, info.min, info.max).astype(spec.dtype)
    return np.array(x, dtype=spec.dtype, order="C")  # keeps rank 0 (ascontiguousarray would not)


def from_artifact(y: np.ndarray, spec: IOSpec, nhwc: bool) -> np.ndarray:
    if spec.scale is not None:
        y = ((y.astype(np.int64) - spec.zero_point) * np.float32(spec.scale)).astype(np.float32)
    if nhwc and y.ndim == 4:
        y = y.transpose(L.TO_NCHW)
    return y


def cross_checks(artifact: Artifact, graph: Graph, plan: QuantPlan, feeds: dict, ref: dict, got: dict,
                 builtin_key: str = "builtin_kernels") -> dict:
    """What verify ran (XNNPACK where it delegates; TFLite Micro for tflm) against LiteRT's built-in
    kernels, and, for integer activations, against the plan's QDQ simulation in onnxruntime (1 LSB
    where the math allows)."""
    checks = {builtin_key: run_check(lambda: lsb_agreement(got, LiteRTRunner(artifact, kernels="builtin").run(feeds), plan))}
    if plan.mode == "static" and any(a.bits for a in plan.activations.values()):
        checks["integer_simulation"] = run_check(lambda: lsb_agreement(got, qdq_simulation(graph, plan, feeds), plan))
    return checks


def qdq_simulation(graph: Graph, plan: QuantPlan, feeds: dict) -> dict:
    """The plan run as QDQ ONNX without graph optimizations: float math on the plan's grids."""
    import tempfile

    from edgeq.lower import get_target
    from edgeq.runners import OrtRunner, batch_size_for

    rows = len(next(iter(feeds.values())))
    with tempfile.TemporaryDirectory() as d:
        sim = get_target("ort").lower(graph, plan, Path(d), "simulation", {"ort_format": False})
        # a model bound to a batch (silero-vad: 32 frames per call) runs the rows that many at a time
        return in_chunks(feeds, batch_size_for(graph, rows), OrtRunner(str(sim.path), optimize=False).run)


@register_runner(NAME)
def make_runner(artifact: Artifact, threads: int = 1) -> LiteRTRunner:
    return LiteRTRunner(artifact, threads)
