"""Read an artifact edgeq wrote (or a plain float ONNX model) back into Graph + plan for profiling.

An int8 ONNX Runtime artifact is a QDQ model: the plan is recovered from it (weights stored
as int8 behind DequantizeLinear, activations wrapped in QuantizeLinear/DequantizeLinear), and
the float graph is the same model with the Q/DQ pairs removed and the weights dequantized.
Other formats are read by the target that writes them (`Target.read`, found by its artifact's
suffix: edgeq.target.read_suffixes), so profile names no lowering module.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from edgeq.artifact import ReadArtifact
from edgeq.errors import ModelError
from edgeq.frontend.onnx_file import check_names_text, check_tensors_readable
from edgeq.graph import Graph, node_name
from edgeq.quant.plan import ActivationPlan, QuantPlan, WeightPlan
from edgeq.target import get_target, read_suffixes

QDQ = {"QuantizeLinear", "DequantizeLinear"}
INT_BITS = {onnx.TensorProto.INT4: (4, True), onnx.TensorProto.UINT4: (4, False), onnx.TensorProto.INT8: (8, True), onnx.TensorProto.UINT8: (8, False),
            onnx.TensorProto.INT16: (16, True), onnx.TensorProto.UINT16: (16, False)}


def _load_onnx(path: Path) -> onnx.ModelProto:
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as e:  # DecodeError, ValidationError, ... : a corrupt or foreign file
        reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise ModelError(f"{path}: not a readable ONNX model ({reason}); re-run `edgeq compile` to rewrite it") from None
    if not model.graph.node:
        raise ModelError(f"{path}: the ONNX model has no nodes; re-run `edgeq compile` to rewrite it")
    fix = "re-run `edgeq compile` to rewrite it"
    check_names_text(model, str(path), fix)  # protobuf hands invalid UTF-8 back as bytes; make_graph would raise
    check_tensors_readable(model, str(path), fix)  # the checker passes a bad data_type
    return model


def _infer(model: onnx.ModelProto, source: str) -> Graph:
    try:
        model = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception as e:
        raise ModelError(f"{source}: shape inference failed: {str(e).splitlines()[0][:200]}") from None
    return Graph(model, source)


def undo_qdq(model: onnx.ModelProto, source: str) -> tuple[Graph, QuantPlan]:
    """The float graph under a QDQ model, and the plan its Q/DQ nodes encode."""
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    alias: dict[str, str] = {}  # dequantized name -> float name
    acts: dict[str, ActivationPlan] = {}
    weight_floats: dict[str, np.ndarray] = {}
    weight_bits: dict[str, tuple[int, list[float]]] = {}
    drop: set[str] = set()
    for n in g.node:
        if n.op_type == "DequantizeLinear" and n.input[0] in inits:
            q = inits[n.input[0]]
            weight_floats[n.output[0]], scale = dequantized_weight(n, inits, source)
            bits = INT_BITS.get(q.data_type, (32, True))[0]
            weight_bits[n.output[0]] = (bits, [float(s) for s in np.ravel(scale)])
            drop.update(n.input)
        elif n.op_type == "QuantizeLinear":
            dqs = [c for c in consumers.get(n.output[0], []) if c.op_type == "DequantizeLinear"]
            zp_t = inits.get(n.input[2]) if len(n.input) > 2 else None
            bits, signed = INT_BITS.get(zp_t.data_type, (8, False)) if zp_t is not None else (8, False)
            scale = float(_first(inits[n.input[1]], n, source)) if n.input[1] in inits else 1.0
            zp = int(_first(zp_t, n, source)) if zp_t is not None else 0
            acts[n.input[0]] = ActivationPlan(n.input[0], bits, signed, scale, zp, observer="from artifact")
            for dq in dqs:
                alias[dq.output[0]] = n.input[0]
    nodes = [n for n in g.node if n.op_type not in QDQ]
    q_outputs = {n.output[0] for n in g.node if n.op_type == "QuantizeLinear"}
    if any(n.op_type == "DequantizeLinear" and n.input[0] not in inits and n.input[0] not in q_outputs for n in g.node):
        raise ModelError(f"{source}: a DequantizeLinear reads a tensor no QuantizeLinear writes; not an edgeq QDQ artifact")
    outputs = {o.name for o in g.output}
    rename = {alias[o]: o for o in outputs if o in alias}  # the float producer takes the output's name back

    def fix(name: str) -> str:
        name = alias.get(name, name)
        return rename.get(name, name)

    new = onnx.helper.make_graph(
        [], g.name, list(g.input), [onnx.helper.make_tensor_value_info(o.name, o.type.tensor_type.elem_type, None) for o in g.output],
        [t for t in g.initializer if t.name not in drop and t.name not in weight_floats]
        + [numpy_helper.from_array(v, k) for k, v in weight_floats.items()])
    for o, src in zip(new.output, g.output):
        o.CopyFrom(src)
    for n in nodes:
        m = onnx.NodeProto()
        m.CopyFrom(n)
        m.input[:] = [fix(i) for i in n.input]
        m.output[:] = [rename.get(o, o) for o in n.output]
        new.node.append(m)
    fmodel = onnx.helper.make_model(new, opset_imports=list(model.opset_import))
    fmodel.ir_version = model.ir_version
    graph = _infer(fmodel, source)
    plan = QuantPlan(model_sha256="", target="ort", mode="static")
    for name, a in acts.items():
        key = rename.get(name, name)
        a.tensor = key
        plan.activations[key] = a
    for i, n in enumerate(graph.nodes):
        for w in n.input[1:2]:
            if w in weight_bits:
                bits, scale = weight_bits[w]
                bias = n.input[2] if len(n.input) > 2 and n.input[2] in weight_bits else None  # an int32 bias
                plan.weights[w] = WeightPlan(w, node_name(n, i), n.op_type, list(graph.shape(w) or ()), bits, scale=scale,
                                             input=n.input[0], bias=bias)
    return graph, plan


def _not_edgeq(n: onnx.NodeProto, source: str, what: str) -> ModelError:
    return ModelError(f"{source}: {n.op_type} '{n.name or n.output[0]}' {what}; not an edgeq QDQ artifact "
                      "(re-run `edgeq compile` to rewrite it)")


def _first(t: onnx.TensorProto, n: onnx.NodeProto, source: str):
    """An activation's scale or zero point: edgeq writes one value per tensor."""
    values = numpy_helper.to_array(t).ravel()
    if values.size == 0 or not np.isfinite(values[0]):
        raise _not_edgeq(n, source, f"has {'an empty' if values.size == 0 else 'a non-finite'} '{t.name}'")
    return values[0]


def dequantized_weight(n: onnx.NodeProto, inits: dict, source: str) -> tuple[np.ndarray, np.ndarray]:
    """(float32 weight, scale) of a DequantizeLinear of a constant: scale and zero point one value,
    one per channel of `axis`, or (DequantizeLinear-21 block_size) one per block along it."""
    def const(name: str) -> np.ndarray:
        if name not in inits:
            raise _not_edgeq(n, source, f"reads '{name}', which is not a constant")
        return numpy_helper.to_array(inits[name]).astype(np.float64)

    x, scale = const(n.input[0]), const(n.input[1])
    zp = const(n.input[2]) if len(n.input) > 2 and n.input[2] else np.zeros(())
    attrs = {a.name: a.i for a in n.attribute}
    axis, block = attrs.get("axis", 1), attrs.get("block_size", 0)
    s, z = scale, zp  # as broadcast against x
    if scale.size > 1 or block:
        if not -x.ndim <= axis < x.ndim:
            raise _not_edgeq(n, source, f"has axis {axis} for a weight of {x.ndim} dims")
        axis %= x.ndim
        if block > 0:  # each scale covers `block` consecutive values along axis
            s = np.repeat(scale, block, axis).take(range(x.shape[axis]), axis, mode="clip") if scale.ndim == x.ndim else scale
            z = np.repeat(zp, block, axis).take(range(x.shape[axis]), axis, mode="clip") if zp.ndim == x.ndim else zp
        elif scale.ndim == 1:  # one per channel of axis
            shape = [1] * x.ndim
            shape[axis] = -1
            s = scale.reshape(shape)
            z = zp.reshape(shape) if zp.ndim == 1 and zp.size == scale.size else zp
    try:
        return ((x - z) * s).astype(np.float32), scale
    except ValueError:  # shapes that do not broadcast
        raise _not_edgeq(n, source, f"has a scale of shape {list(scale.shape)} for a weight of shape {list(x.shape)}") from None


def read_onnx(path: Path) -> ReadArtifact:
    model = _load_onnx(path)
    if any(n.op_type in QDQ for n in model.graph.node):
        graph, plan = undo_qdq(model, str(path))
        int4 = any(t.data_type in (onnx.TensorProto.INT4, onnx.TensorProto.UINT4) for t in model.graph.initializer)
        return ReadArtifact(path, "ort", graph, plan, options={"ort_int4": int4})
    from edgeq.passes import run_passes

    # the same normalization compile applies (BN folded, Dropout gone), as the runtimes do too
    return ReadArtifact(path, "onnx", run_passes(_infer(model, str(path))), None)


def read_artifact(path) -> ReadArtifact:
    path = Path(path)
    if not path.exists():
        raise ModelError(f"{path}: no such file")
    if path.suffix == ".ort":
        raise ModelError(f"{path}: the .ort flatbuffer holds no graph edgeq can cost; profile the .ort.onnx file beside it")
    if path.suffix == ".onnx":
        return read_onnx(path)
    readers = read_suffixes()
    if path.suffix not in readers:
        raise ModelError(f"{path}: cannot profile '{path.suffix}' files yet; profile an .onnx/.ort.onnx artifact "
                         f"(readers: {', '.join(sorted(['.onnx', *readers]))})")
    return get_target(readers[path.suffix]).read(path)
