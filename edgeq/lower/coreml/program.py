"""Graph + plan -> a MIL program (coremltools' pymil), node by node through the op table.

The leading symbolic batch is bound to 1 (Core ML's fixed-shape programs run fastest on the
Neural Engine; the runner loops over samples). A node whose inputs are all constants is
evaluated at compile time with onnx's reference implementation, so the shape arithmetic of
exported models (Shape -> Gather -> Concat -> Reshape) never reaches Core ML.
"""

from __future__ import annotations

import numpy as np
import onnx
from coremltools.converters.mil.mil import Builder as mb
from coremltools.converters.mil.mil import Function, Program
from onnx import helper

from edgeq.errors import UnsupportedOpError
from edgeq.graph import Graph, node_name
from edgeq.lower.coreml.context import LoweringContext, mil_name
from edgeq.quant.plan import QuantPlan

OPSET_OF = {"ios16": "iOS16", "ios17": "iOS17", "ios18": "iOS18"}
# ONNX input dtype -> the Core ML program's input dtype. Core ML inputs are fp16/fp32/int32/bool only:
# other integers enter as int32 and float64 as fp32, converted by the runner at the boundary
# (coreml.boundary_feeds); narrow integer results are wrapped back to their width in the program.
BOUNDARY_DTYPES = {**dict.fromkeys(("int8", "uint8", "int16", "uint16", "uint32", "int64", "uint64"), "int32"),
                   "float64": "float32"}
PLACEHOLDER_DTYPES = {"float32": "fp32", "float16": "fp32", "int32": "int32", "bool": "bool",
                      **{k: {"int32": "int32", "float32": "fp32"}[v] for k, v in BOUNDARY_DTYPES.items()}}


def static_shape(shape: tuple) -> tuple[int, ...]:
    """Symbolic or unknown dims bound to 1 (the batch); a scalar input becomes [1] (Core ML inputs have rank >= 1)."""
    return tuple(d if isinstance(d, int) and d > 0 else 1 for d in shape) or (1,)


def build_program(graph: Graph, plan: QuantPlan, min_os: str, precision: str, ops: dict) -> tuple[Program, LoweringContext]:
    import coremltools as ct
    from coremltools.converters.mil.mil import types

    ctx = LoweringContext(graph, plan, min_os, precision)
    for t in graph.model.graph.initializer:
        ctx.values[t.name] = onnx.numpy_helper.to_array(t)
    placeholders = {}
    for spec in graph.inputs:
        dtype = PLACEHOLDER_DTYPES.get(spec.dtype)
        if dtype is None:
            name = spec.dtype.removeprefix("onnx:")
            name = onnx.TensorProto.DataType.Name(int(name)).lower() if name.isdigit() else name
            raise UnsupportedOpError(spec.name, f"input of type {name}", "coreml",
                                     "Core ML program inputs are float, integer or bool; convert it before the model")
        placeholders[mil_name(spec.name)] = mb.placeholder(shape=static_shape(spec.shape), dtype=types.string_to_builtin(dtype))
    prog = Program()
    with Function(placeholders, opset_version=getattr(ct.target, OPSET_OF[min_os])) as fn:
        for spec in graph.inputs:
            ctx.values[spec.name] = _qdq(ctx, spec.name, fn.inputs[mil_name(spec.name)])
        for k, node in enumerate(graph.nodes):
            ctx.node, ctx.index = node, k
            outs = _lower_node(ctx, node, ops)
            for name, v in zip(node.output, outs):
                if name and v is not None:
                    ctx.values[name] = _qdq(ctx, name, _wrap(ctx, name, v))
        fn.set_outputs([_output(ctx, o.name) for o in graph.outputs])
    prog.add_function("main", fn)
    lowered = {w["tensor"] for w in ctx.weight_ops}
    for wp in plan.weights.values():
        if wp.bits is not None and wp.tensor not in lowered:
            ctx.notes.append(f"{wp.node}: weight '{wp.tensor}' kept float (its op has no compressed-weight form here)")
    return prog, ctx


def _lower_node(ctx: LoweringContext, node: onnx.NodeProto, ops: dict) -> list:
    if node.domain not in ("", "ai.onnx") or node.op_type not in ops:
        raise UnsupportedOpError(node_name(node, ctx.index), node.op_type, "coreml")
    if all(isinstance(ctx.value(i), np.ndarray) for i in node.input if i):
        ctx.folded.add(node_name(node, ctx.index))
        return fold_constant(node, [ctx.value(i) if i else None for i in node.input], ctx.graph.opset)
    try:
        out = ops[node.op_type](ctx)
    except (ValueError, TypeError, AssertionError, NotImplementedError) as e:  # MIL's type inference rejected it
        raise ctx.unsupported(f"Core ML rejects it ({str(e).splitlines()[0][:160]})") from None
    return list(out) if isinstance(out, list | tuple) else [out]


def fold_constant(node: onnx.NodeProto, inputs: list, opset: int) -> list[np.ndarray]:
    """Evaluate a node whose inputs are all known, with onnx's reference implementation."""
    from onnx.reference import ReferenceEvaluator

    names = [i for i in node.input if i]
    vis = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
           for n, v in zip(node.input, inputs) if n]
    g = helper.make_graph([node], "fold", vis, [helper.make_empty_tensor_value_info(o) for o in node.output if o])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    outs = ReferenceEvaluator(model).run(None, {n: v for n, v in zip(node.input, inputs) if n in names})
    return [np.asarray(o) for o in outs]


def _qdq(ctx: LoweringContext, name: str, v):
    """W8A8: quantize -> dequantize after each activation the plan puts on an int8 grid (iOS 17+)."""
    a = ctx.plan.activations.get(name)
    if a is None or a.bits != 8 or ctx.plan.mode != "static" or isinstance(v, np.ndarray) or ctx.min_os == "ios16":
        return v
    dtype = "int8" if a.signed else "uint8"
    zp = np.int8(a.zero_point) if a.signed else np.uint8(a.zero_point)
    q = mb.quantize(input=v, scale=np.float32(a.scale), zero_point=zp, output_dtype=dtype, name=mil_name(f"{name}_quantized"))
    kw = {"name": mil_name(name)} if name in _outputs(ctx) else {}
    return mb.dequantize(input=q, scale=np.float32(a.scale), zero_point=zp, **kw)


def _wrap(ctx: LoweringContext, name: str, v):
    """An int8/uint8/int16/uint16 result computed in int32 (Add, Mul, Neg...) brought back into its
    ONNX width, as ONNX wraps it: floor mod 2^bits (MIL's mod is Python's %), shifted for signed."""
    bits = ctx.wrap_bits(name)
    if bits is None or isinstance(v, np.ndarray):
        return v
    signed, span = ctx.graph.dtype(name).startswith("int"), np.int32(2**bits)
    if not signed:
        return mb.mod(x=v, y=span, name=mil_name(name))
    half = np.int32(2 ** (bits - 1))
    return mb.sub(x=mb.mod(x=mb.add(x=v, y=half), y=span), y=half, name=mil_name(name))


def _outputs(ctx: LoweringContext) -> set[str]:
    return {o.name for o in ctx.graph.model.graph.output}


def _output(ctx: LoweringContext, name: str):
    v = ctx.values[name]
    if isinstance(v, np.ndarray):
        v = mb.const(val=v.astype(np.float32) if v.dtype.kind == "f" else v.astype(np.int32))
    if v.name != mil_name(name):
        v = mb.identity(x=v, name=mil_name(name))
    return v

