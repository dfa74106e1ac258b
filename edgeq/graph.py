"""The model between stages: an ONNX ModelProto with typed helpers.

ONNX is the interchange format, so the Graph *is* a ModelProto; this class only adds
the lookups that passes and lowerings need (shapes, producers, consumers, weights as
numpy) and keeps them honest after edits (call `refresh()` after changing the proto).
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

# ONNX elem types edgeq handles, by name.
DTYPES = {
    onnx.TensorProto.FLOAT: "float32",
    onnx.TensorProto.FLOAT16: "float16",
    onnx.TensorProto.DOUBLE: "float64",
    onnx.TensorProto.INT8: "int8",
    onnx.TensorProto.UINT8: "uint8",
    onnx.TensorProto.INT16: "int16",
    onnx.TensorProto.UINT16: "uint16",
    onnx.TensorProto.UINT32: "uint32",
    onnx.TensorProto.UINT64: "uint64",
    onnx.TensorProto.INT32: "int32",
    onnx.TensorProto.INT64: "int64",
    onnx.TensorProto.BOOL: "bool",
}
ONNX_TYPE = {v: k for k, v in DTYPES.items()}


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple  # ints, or str for a symbolic dim, or None for unknown
    dtype: str

    def is_static(self) -> bool:
        return all(isinstance(d, int) and d > 0 for d in self.shape)

    def to_json(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


def value_spec(vi: onnx.ValueInfoProto) -> TensorSpec:
    t = vi.type.tensor_type
    dims = []
    for d in t.shape.dim:
        if d.HasField("dim_value") and d.dim_value > 0:
            dims.append(int(d.dim_value))
        elif d.HasField("dim_param") and d.dim_param:
            dims.append(d.dim_param)
        else:
            dims.append(None)
    return TensorSpec(vi.name, tuple(dims), DTYPES.get(t.elem_type, f"onnx:{t.elem_type}"))


class Graph:
    def __init__(self, model: onnx.ModelProto, source: str = "<memory>"):
        self.model = model
        self.source = source
        self.records: dict[str, list] = {}  # what graph passes did, by pass ("sentinel_rewrites"): for the report
        self.refresh()

    # -- bookkeeping -------------------------------------------------------------
    def refresh(self) -> None:
        g = self.model.graph
        self.init_names = {t.name for t in g.initializer}
        self.producer = {o: n for n in g.node for o in n.output if o}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for n in g.node:
            for i in n.input:
                if i:
                    self.consumers.setdefault(i, []).append(n)
        self.specs = {vi.name: value_spec(vi) for vi in [*g.value_info, *g.input, *g.output]}

    def copy(self) -> Graph:
        m = onnx.ModelProto()
        m.CopyFrom(self.model)
        out = Graph(m, self.source)
        out.records = copy.deepcopy(self.records)  # a pass's copy keeps what earlier passes recorded
        return out

    # -- views -------------------------------------------------------------------
    @property
    def nodes(self) -> list[onnx.NodeProto]:
        return list(self.model.graph.node)

    @property
    def inputs(self) -> list[TensorSpec]:
        return [value_spec(i) for i in self.model.graph.input if i.name not in self.init_names]

    @property
    def outputs(self) -> list[TensorSpec]:
        return [value_spec(o) for o in self.model.graph.output]

    @property
    def opset(self) -> int:
        for o in self.model.opset_import:
            if o.domain in ("", "ai.onnx"):
                return o.version
        return 0

    def initializer(self, name: str) -> np.ndarray:
        for t in self.model.graph.initializer:
            if t.name == name:
                return numpy_helper.to_array(t)
        raise KeyError(name)

    def initializers(self) -> dict[str, np.ndarray]:
        return {t.name: numpy_helper.to_array(t) for t in self.model.graph.initializer}

    def is_const(self, name: str) -> bool:
        return name in self.init_names

    def shape(self, name: str) -> tuple | None:
        if name in self.init_names:
            return tuple(self.initializer(name).shape)
        spec = self.specs.get(name)
        return spec.shape if spec else None

    def dtype(self, name: str) -> str | None:
        spec = self.specs.get(name)
        return spec.dtype if spec else None

    def op_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for n in self.model.graph.node:
            counts[n.op_type] = counts.get(n.op_type, 0) + 1
        return dict(sorted(counts.items()))

    def param_count(self) -> int:
        return sum(int(np.prod(t.dims)) for t in self.model.graph.initializer)

    def serialize(self) -> bytes:
        return self.model.SerializeToString(deterministic=True)

    def sha256(self) -> str:
        return hashlib.sha256(self.serialize()).hexdigest()

    def float_bytes(self) -> int:
        """Bytes of the model serialized as float32 (the baseline sizes compare to)."""
        return len(self.serialize())


def node_name(node: onnx.NodeProto, index: int | None = None) -> str:
    return node.name or (f"{node.op_type}_{index}" if index is not None else node.op_type)


def get_attr(node: onnx.NodeProto, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def with_all_outputs(graph: Graph, names: list[str]) -> onnx.ModelProto:
    """A copy of the model that also outputs `names` (calibration and the mask pass read them)."""
    m = onnx.ModelProto()
    m.CopyFrom(graph.model)
    present = {o.name for o in m.graph.output}
    vis = {vi.name: vi for vi in m.graph.value_info}
    for name in names:
        if name in present or name in {i.name for i in graph.inputs}:
            continue
        m.graph.output.append(vis[name] if name in vis else onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    return m
