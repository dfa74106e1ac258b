"""What a Core ML lowering function works with: the ONNX values seen so far, as MIL vars or numpy.

A value is a MIL `Var` when it depends on a model input, and a numpy array when it is a
constant (an initializer, or a shape computation folded here because every shape is static
once the batch is bound to 1). Lowerings ask `ctx.var(name)` for an operand and
`ctx.const(name)` for a value they need at compile time (shapes, axes, pads).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import onnx

from edgeq.errors import UnsupportedOpError
from edgeq.graph import Graph, get_attr, node_name
from edgeq.quant.plan import QuantPlan

# Narrow ONNX integers live in int32 inside the program (Core ML has no such tensors); their bits.
NARROW_BITS = {"int8": 8, "uint8": 8, "int16": 16, "uint16": 16}
# Ops whose results are some of their inputs' values (moved, selected, bounded): a narrow integer
# result stays in range without wrapping. Every other op's narrow result is wrapped (program._wrap).
IN_RANGE_OPS = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Concat", "Split", "Slice", "Gather",
                "GatherElements", "Tile", "Expand", "Pad", "Max", "Min", "Clip", "Relu", "MaxPool", "GlobalMaxPool",
                "ReduceMax", "ReduceMin", "Where", "Identity", "DepthToSpace", "SpaceToDepth", "TopK"}


@dataclass
class LoweringContext:
    graph: Graph
    plan: QuantPlan
    min_os: str  # ios16 | ios17 | ios18
    precision: str  # fp16 | fp32
    values: dict = field(default_factory=dict)  # ONNX tensor name -> MIL Var | np.ndarray
    weight_ops: list[dict] = field(default_factory=list)  # per planned weight: the MIL op and bits used
    notes: list[str] = field(default_factory=list)
    folded: set[str] = field(default_factory=set)  # nodes evaluated at compile time (not in the program)
    node: onnx.NodeProto | None = None  # the node being lowered (for error messages)
    index: int = 0

    # -- operands ------------------------------------------------------------------
    def has(self, name: str) -> bool:
        return bool(name) and name in self.values

    def value(self, name: str):
        if name not in self.values:
            raise self.unsupported(f"input '{name}' is not produced by any lowered node")
        return self.values[name]

    def var(self, name: str):
        """An operand for a MIL op: a Var, or a constant in a dtype MIL holds (no int64/float64)."""
        return mil_const(self.value(name))

    def const(self, name: str) -> np.ndarray | None:
        """The compile-time value of an operand, or None when it depends on an input."""
        if not name:
            return None
        v = self.value(name)
        return v if isinstance(v, np.ndarray) else None

    def need_const(self, name: str, what: str) -> np.ndarray:
        v = self.const(name)
        if v is None:
            raise self.unsupported(f"{what} ('{name}') must be a constant for Core ML")
        return v

    def shape(self, name: str) -> tuple[int, ...]:
        v = self.value(name)
        if isinstance(v, np.ndarray):
            return v.shape
        if any(not isinstance(d, int | np.integer) for d in v.shape):
            raise self.unsupported(f"'{name}' has a dynamic shape {v.shape}; bind it with --input-shape")
        return tuple(int(d) for d in v.shape)

    def rank(self, name: str) -> int:
        return len(self.shape(name))

    def attr(self, name: str, default=None):
        return get_attr(self.node, name, default)

    def inp(self, k: int) -> str:
        """The k-th input name of the current node ('' when absent)."""
        return self.node.input[k] if len(self.node.input) > k else ""

    # -- naming --------------------------------------------------------------------
    def out_name(self, k: int = 0) -> str:
        """MIL name for the node's k-th output: the ONNX name (W8A8 tensors get '_float')."""
        name = self.node.output[k]
        if self.wrap_bits(name) is not None:
            return mil_name(f"{name}_int32")  # the wrapped value takes the ONNX name (program._wrap)
        a = self.plan.activations.get(name)
        if self.min_os != "ios16" and self.plan.mode == "static" and a is not None and a.bits == 8:
            name = f"{name}_float"
        return mil_name(name)

    def wrap_bits(self, name: str) -> int | None:
        """The width a node output must be wrapped to after the current op, or None."""
        if self.node is None or self.node.op_type in IN_RANGE_OPS:
            return None
        return NARROW_BITS.get(self.graph.dtype(name))

    def unsupported(self, why: str) -> UnsupportedOpError:
        n = self.node
        return UnsupportedOpError(node_name(n, self.index), n.op_type, "coreml", why + "; edgeq inspect MODEL --target coreml lists the ops")


def mil_name(name: str) -> str:
    """Core ML names: letters, digits and '_' (coremltools sanitizes the rest the same way)."""
    s = re.sub(r"[^A-Za-z0-9_]", "_", name)
    return s if s and not s[0].isdigit() else f"_{s}"


def mil_const(v):
    if not isinstance(v, np.ndarray):
        return v
    if v.dtype == np.int64 or v.dtype == np.uint64 or v.dtype == np.uint32:
        return v.astype(np.int32)
    if v.dtype == np.float64:
        return v.astype(np.float32)
    return v


def to_ints(v) -> list[int]:
    return [int(x) for x in np.asarray(v).ravel()]


def is_float(v) -> bool:
    """A MIL var or numpy value holding floats."""
    if isinstance(v, np.ndarray):
        return v.dtype.kind == "f"
    return v.dtype.__name__ in ("fp16", "fp32", "fp64")
