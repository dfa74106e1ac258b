"""ONNX files: safe external data, checker, bound shapes, shape inference."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
from onnx import external_data_helper, numpy_helper

from edgeq.errors import ModelError
from edgeq.graph import Graph, node_name


def load_onnx(path: Path) -> onnx.ModelProto:
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf raises DecodeError and friends
        raise ModelError(f"{path}: not a readable ONNX model ({type(e).__name__}); export it with torch.onnx.export or check the file") from None
    if not model.graph.node and not model.graph.input:
        raise ModelError(f"{path}: not an ONNX model (no graph found); pass a model saved by onnx.save or torch.onnx.export")
    base = path.resolve().parent
    for tensor in external_data_helper._get_all_tensors(model):
        if not external_data_helper.uses_external_data(tensor):
            continue
        check_external_data(tensor, base, path)
    try:
        external_data_helper.load_external_data_for_model(model, str(base))
    except Exception as e:
        raise ModelError(f"{path}: cannot read external data ({e}); check the files beside the model") from None
    return model


def check_external_data(tensor, base: Path, path: Path) -> None:
    """A tensor's external data entry, checked before anything opens it: a plain relative location inside
    the model's folder (no NUL, no over-long name), a numeric non-negative offset and length within the file."""
    entries = {e.key: e.value for e in tensor.external_data}
    where = f"{path}: tensor '{tensor.name}'"
    location = entries.get("location", "")
    if not location or "\0" in location or any(c in location for c in "\n\r"):
        raise ModelError(f"{where}: external data location {location!r} is not a file name; re-save the model with onnx.save")
    if len(location) > 4096 or any(len(part.encode()) > 255 for part in Path(location).parts):
        raise ModelError(f"{where}: external data location of {len(location)} characters is longer than a file name can be; "
                         "re-save the model with onnx.save(..., location='weights.bin')")
    numbers = {}
    for key in ("offset", "length"):
        if key in entries:
            try:
                numbers[key] = int(entries[key])
            except ValueError:
                numbers[key] = -1
            if numbers[key] < 0:
                raise ModelError(f"{where}: external data {key} {entries[key]!r} is not a non-negative integer; "
                                 "re-save the model with onnx.save")
    target = (base / location).resolve()
    if os.path.isabs(location) or base not in target.parents:
        raise ModelError(f"{where} points at external data '{location}' outside the model's folder; "
                         "keep external data files beside the model")
    if not target.is_file():
        raise ModelError(f"{path}: external data file '{location}' for tensor '{tensor.name}' is missing; copy it beside the model")
    size = target.stat().st_size
    if numbers.get("offset", 0) + numbers.get("length", 0) > size:
        raise ModelError(f"{where}: external data offset {numbers.get('offset', 0)} + length {numbers.get('length', 0)} runs past "
                         f"the end of '{location}' ({size} bytes); the file is truncated or not the model's")


def parse_input_shapes(specs: list[str] | tuple[str, ...]) -> dict[str, tuple[int, ...]]:
    """Parse ['x=1,3,224,224', ...] as given to --input-shape."""
    shapes = {}
    for spec in specs:
        name, sep, dims = spec.partition("=")
        try:
            if not sep or not name:
                raise ValueError
            shape = tuple(int(d) for d in dims.split(","))
            if any(not 1 <= d <= MAX_DIM for d in shape):
                raise ValueError
        except ValueError:
            raise ModelError(f"--input-shape '{spec}': write it as NAME=D0,D1,... with integers 1..{MAX_DIM}, "
                             "e.g. input=1,1,28,28") from None
        shapes[name] = shape
    return shapes


MAX_DIM = 2**31 - 1  # what every runtime's int32 shape fields hold
MAX_SAMPLE_BYTES = 2**31  # one sample of one input; edgeq allocates batches of these (random data, calibration)


def bind_input_shapes(model: onnx.ModelProto, shapes: dict[str, tuple], source: str) -> None:
    inits = {t.name for t in model.graph.initializer}
    inputs = {i.name: i for i in model.graph.input if i.name not in inits}
    for name, shape in shapes.items():
        if name not in inputs:
            raise ModelError(f"{source}: --input-shape names '{name}', but the model's inputs are {sorted(inputs)}")
        elem = inputs[name].type.tensor_type.elem_type
        try:
            itemsize = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem)).itemsize
        except (KeyError, TypeError, ValueError):
            itemsize = 4
        nbytes = int(np.prod([int(d) for d in shape], dtype=object)) * itemsize
        if nbytes > MAX_SAMPLE_BYTES:
            raise ModelError(f"{source}: --input-shape {name}={','.join(map(str, shape))} makes one sample {nbytes:,} bytes; "
                             f"edgeq takes at most {MAX_SAMPLE_BYTES // 2**30} GiB per sample of an input: check the dims")
        dims = inputs[name].type.tensor_type.shape.dim
        if len(dims) != len(shape):
            raise ModelError(f"{source}: input '{name}' has rank {len(dims)}, --input-shape gives {len(shape)} dims {shape}")
        for d, v in zip(dims, shape):
            if d.HasField("dim_value") and d.dim_value > 0 and d.dim_value != v:
                raise ModelError(f"{source}: input '{name}' has fixed shape {[x.dim_value for x in dims]}; --input-shape gives {list(shape)}")
            d.Clear()
            d.dim_value = v


def check_dynamic_dims(model: onnx.ModelProto, source: str) -> None:
    """A symbolic leading (batch) dim is kept; any other dynamic dim must be bound."""
    inits = {t.name for t in model.graph.initializer}
    for i in model.graph.input:
        if i.name in inits:
            continue
        dims = i.type.tensor_type.shape.dim
        for k, d in enumerate(dims):
            if d.HasField("dim_value") and d.dim_value > 0:
                continue
            if k == 0 and d.HasField("dim_param"):
                continue  # batch
            label = d.dim_param or "?"
            example = ",".join(str(x.dim_value) if x.dim_value > 0 else ("1" if j == 0 else "N") for j, x in enumerate(dims))
            raise ModelError(
                f"{source}: input '{i.name}' has an unbound dynamic dim {k} ('{label}'); bind it with --input-shape {i.name}={example}"
            )


def check_tensors_readable(model: onnx.ModelProto, source: str, fix: str = "export the model again") -> None:
    """Every initializer and Constant holds the values its dims and type say (the checker does not
    compare them; numpy_helper.to_array, which every pass uses, fails on a mismatch). Raw data is
    read without a copy, so this costs little."""
    consts = [a.t for n in model.graph.node if n.op_type == "Constant" for a in n.attribute if a.HasField("t")]
    for t in [*model.graph.initializer, *consts]:
        try:
            numpy_helper.to_array(t)
        except Exception as e:  # ValueError (size vs dims), TypeError / KeyError (a type numpy has no match for)
            what = "weight" if t.name in {i.name for i in model.graph.initializer} else "constant"
            reason = (f"data type {t.data_type} is not an ONNX tensor type" if isinstance(e, KeyError)
                      else (str(e).strip().splitlines() or [type(e).__name__])[0][:200])
            raise ModelError(f"{source}: {what} '{t.name}' (dims {list(t.dims)}) cannot be read: {reason}; "
                             f"the file is corrupt, {fix}") from None


def check_weights_finite(model: onnx.ModelProto, source: str) -> None:
    for t in model.graph.initializer:
        if t.data_type not in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE):
            continue
        arr = numpy_helper.to_array(t)
        if not np.all(np.isfinite(arr)):
            bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
            raise ModelError(f"{source}: weight '{t.name}' holds {bad} NaN/inf values; fix the trained weights before compiling")


def check_graph_weights_finite(graph: Graph) -> None:
    """After the passes: a weight that folding made non-finite (a BatchNormalization with a variance
    of 0 or below and eps 0, weights near float32's limit) is an error naming the node it feeds."""
    for t in graph.model.graph.initializer:
        if t.data_type not in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE):
            continue
        arr = numpy_helper.to_array(t)
        if np.all(np.isfinite(arr)):
            continue
        users = [node_name(n) for n in graph.consumers.get(t.name, [])]
        node = f"node '{users[0]}'" if users else "no node"
        raise ModelError(f"{graph.source}: weight '{t.name}' (feeding {node}) becomes NaN/inf once BatchNormalization and "
                         "constants are folded (a variance of 0 or below with epsilon 0, or weights near float32's limit); "
                         "fix the trained parameters")


def check_names_text(model: onnx.ModelProto, source: str, fix: str = "export it again") -> None:
    """Every name is text: protobuf hands back bytes for a string field holding invalid UTF-8 (a corrupt
    file), which would surface much later in a report or a lowering."""
    g = model.graph

    def bad(values):
        return next((v for v in values if isinstance(v, bytes)), None)

    for k, n in enumerate(g.node):
        v = bad([n.name, n.op_type, n.domain, *n.input, *n.output, *(a.name for a in n.attribute)])
        if v is not None:
            raise ModelError(f"{source}: node {k} has a name that is not valid UTF-8 ({v!r}); the file is corrupt, {fix}")
    v = bad([*(i.name for i in [*g.input, *g.output, *g.value_info, *g.initializer]), g.name,
             *(o.domain for o in model.opset_import), model.producer_name])
    if v is not None:
        raise ModelError(f"{source}: a tensor or graph name is not valid UTF-8 ({v!r}); the file is corrupt, {fix}")


def constant_inputs_as_constants(model: onnx.ModelProto, source: str) -> None:
    """A graph input that is also an initializer (older exporters list every weight as an input; ONNX reads
    it as a default the caller may override) becomes a plain constant, as edgeq treats it: the float
    reference and every artifact then agree. A model left with no input at all is refused."""
    inits = {t.name for t in model.graph.initializer}
    shadowed = [i.name for i in model.graph.input if i.name in inits]
    if not shadowed:
        return
    if len(shadowed) == len(model.graph.input):
        raise ModelError(f"{source}: every graph input ({', '.join(shadowed[:3])}{' ...' if len(shadowed) > 3 else ''}) is also an "
                         "initializer, so the model has no input to feed; remove the initializer of the real input(s)")
    kept = [i for i in model.graph.input if i.name not in inits]
    del model.graph.input[:]
    model.graph.input.extend(kept)


def check_outputs_computed(model: onnx.ModelProto, source: str) -> None:
    """Every output is computed by a node: a graph with no nodes, or an output that is a graph input or a
    constant passed straight through, has nothing to quantize or lower."""
    g = model.graph
    if not g.node:
        raise ModelError(f"{source}: the graph has no nodes (its outputs are its inputs or constants); there is nothing to compile")
    produced = {o for n in g.node for o in n.output if o}
    for o in g.output:
        if o.name not in produced:
            what = "a graph input" if o.name in {i.name for i in g.input} else "a constant" if o.name in \
                {t.name for t in g.initializer} else "not produced by any node"
            raise ModelError(f"{source}: output '{o.name}' is {what}, not computed by a node; remove it from the graph's "
                             "outputs (or add an Identity node in the exporter)")


def finish(model: onnx.ModelProto, source: str, input_shapes: dict | None) -> Graph:
    """Check, bind shapes, infer shapes: the one way every front end ends."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    check_names_text(m, source)
    if input_shapes:
        bind_input_shapes(m, input_shapes, source)
    try:
        onnx.checker.check_model(m)
    except onnx.checker.ValidationError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "invalid model"
        raise ModelError(f"{source}: ONNX checker rejects the model: {first}") from None
    except UnicodeDecodeError:  # protobuf reads the bytes; a name holding invalid UTF-8 fails only when decoded
        raise ModelError(f"{source}: a name or string in the model is not valid UTF-8 (the file is corrupt); "
                         "export it again") from None
    except ValueError:  # Python's protobuf keeps bytes C++ protobuf (the checker's) refuses, e.g. an unclosed group
        raise ModelError(f"{source}: the ONNX checker cannot parse the model (the file is corrupt); export it again") from None
    constant_inputs_as_constants(m, source)
    check_outputs_computed(m, source)
    check_dynamic_dims(m, source)
    check_tensors_readable(m, source)
    check_weights_finite(m, source)
    try:
        m = onnx.shape_inference.infer_shapes(m, check_type=True, strict_mode=True, data_prop=True)
    except Exception as e:
        first = str(e).strip().splitlines()[0]
        raise ModelError(f"{source}: shape inference fails: {first}") from None
    return Graph(m, source)
