"""Lowering state: which LiteRT tensor holds each ONNX value, in which layout and kind.

A value may exist as several LiteRT tensors: layout "onnx" or "nhwc", kind "float" or
"q" (the plan's integer grid). `get` returns the variant an op asks for and inserts the
one conversion needed (TRANSPOSE, or a free RESHAPE, QUANTIZE, DEQUANTIZE) the first
time, so a conversion is emitted once however many consumers need it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from edgeq.graph import Graph
from edgeq.lower.tflite import layout as L
from edgeq.lower.tflite.schema import NUMPY_TYPES, ModelWriter, Quant, fb
from edgeq.quant.linear import affine_params, quantize
from edgeq.quant.plan import ActivationPlan, QuantPlan
from edgeq.target import target_spec


@dataclass
class TfliteOptions:
    io_dtype: str = "float32"  # float32 | int8 (the plan's grid at the boundary)
    io_layout: str = "nchw"  # nchw | nhwc
    fallback: str = "float"  # float: an op without an integer kernel stays float (noted); error: refuse it
    weights: str = "auto"  # auto | float32 | float16 (weight storage when the plan keeps them float)
    int4: bool = True  # native INT4 for 4-bit FULLY_CONNECTED / CONV_2D weights
    android_api: int | None = None  # report NNAPI compatibility at this Android API level

    @classmethod
    def from_dict(cls, d: dict | None) -> TfliteOptions:
        d = d or {}
        for opt in target_spec("tflite").options:  # the declared options' values, checked as their flags are
            if d.get(opt.key) is not None and not (opt.key == "weights" and d[opt.key] == "auto"):
                opt.check(d[opt.key], "tflite")
        return cls(**{k: d[k] for k in ("io_dtype", "io_layout", "fallback", "weights", "int4", "android_api")
                      if k in d and d[k] is not None})


def on_integer_grids(graph: Graph, plan: QuantPlan, tensors: list[str]) -> bool:
    """Every float tensor among `tensors` has a grid in a static plan: the condition for a LiteRT
    integer kernel (Ctx.kind, and the storage rule in storage.py)."""
    if plan.mode != "static":
        return False
    tensors = [t for t in tensors if t and graph.dtype(t) in (None, "float32")]
    acts = [plan.activations.get(t) for t in tensors]
    return bool(tensors) and all(a is not None and a.bits is not None for a in acts)


@dataclass
class Ctx:
    graph: Graph  # static-shaped copy
    plan: QuantPlan
    opts: TfliteOptions
    w: ModelWriter = field(default_factory=ModelWriter)
    values: dict = field(default_factory=dict)  # onnx name -> {(layout, kind): tensor index}
    skip: set = field(default_factory=set)  # first outputs of nodes fused into their producer
    notes: list = field(default_factory=list)
    float_nodes: list = field(default_factory=list)  # nodes kept float inside an integer model
    names: set = field(default_factory=set)
    extra_counts: Counter = field(default_factory=Counter)

    # -- facts about ONNX values ------------------------------------------------------
    def shape(self, name: str) -> list[int]:
        return [int(d) for d in self.graph.shape(name)]

    def act(self, name: str) -> ActivationPlan | None:
        a = self.plan.activations.get(name) if self.plan.mode == "static" else None
        return a if a is not None and a.bits is not None else None

    @property
    def width(self) -> int:
        """The integer width of the model's activations (8, or 16 for int16x8)."""
        return 16 if any(a.bits == 16 for a in self.plan.activations.values()) else 8

    def grid_for(self, lo: float, hi: float) -> tuple[float, int, int]:
        """(scale, zero point, bits) for a tensor the plan does not name (constants, expansion temporaries)."""
        if self.width == 16:  # LiteRT's int16 tensors are symmetric
            return max(abs(lo), abs(hi), 1e-12) / 32767, 0, 16
        scale, zp = affine_params(lo, hi, 8)
        return scale, zp, 8

    def act_quant(self, name: str) -> Quant:
        a = self.act(name)
        return Quant([a.scale], [a.zero_point])

    def qtype(self, name: str) -> str:
        return "int16" if self.act(name).bits == 16 else "int8"

    def const(self, name: str) -> np.ndarray | None:
        return self.graph.initializer(name) if self.graph.is_const(name) else None

    # -- tensors ----------------------------------------------------------------------
    def new(self, name: str, shape, dtype: str, quant: Quant | None = None, data=None) -> int:
        base, k = name, 1
        while name in self.names:  # LiteRT tolerates duplicates; readers of the artifact should not have to
            name, k = f"{base};{k}", k + 1
        self.names.add(name)
        return self.w.add_tensor(name, shape, dtype, data, quant)

    def temp(self, like: str, suffix: str, shape, kind: str, quant: Quant | None = None) -> int:
        """An intermediate LiteRT tensor with no ONNX counterpart."""
        dtype = "float32" if kind == "float" else (self.qtype(like) if self.act(like) else f"int{self.width}")
        return self.new(f"{like}/{suffix}", shape, dtype, quant if kind == "q" else None)

    def kind(self, node, outs: list[str] | None = None, int_ok: bool = True, weight: str | None = None,
             int16_ok: bool = True) -> str:
        """"q" when the plan puts every float input and output of the node on an integer grid."""
        from edgeq.errors import UnsupportedOpError
        if weight is not None:
            wp = self.plan.weights.get(weight)
            if wp is None or wp.bits is None:
                return "float"
        tensors = [i for i in node.input if i and not self.graph.is_const(i)] + list(outs if outs is not None else node.output)
        if not on_integer_grids(self.graph, self.plan, tensors):  # the storage rule asks the same
            return "float"
        if not int_ok or not int16_ok and self.width == 16:
            if self.opts.fallback == "float":
                self.float_nodes.append(node.name or node.op_type)
                return "float"
            raise UnsupportedOpError(node.name or node.op_type, node.op_type, "tflite",
                                     f"LiteRT has no int{self.width} kernel for it (--fallback error); drop --fallback error to keep it "
                                     "float between DEQUANTIZE/QUANTIZE, or set its activations to null in the plan")
        return "q"

    def write_requantized(self, name: str, layout: str, src: int) -> None:
        """Move `src` (a kernel's required output grid) onto the plan's grid for `name`."""
        dst = self.output(name, layout, "q")
        self.w.add_op("QUANTIZE", [src], [dst])

    def q_output(self, name: str, layout: str, required: Quant | None) -> tuple[int, bool]:
        """(tensor to write, needs requantize) for a kernel that fixes its output grid."""
        plan_q = self.act_quant(name)
        if required is None or (np.float32(required.scale[0]) == np.float32(plan_q.scale[0])
                                and required.zero_point[0] == plan_q.zero_point[0]):
            return self.output(name, layout, "q"), False
        shape = L.stored_shape(self.shape(name), layout)
        return self.new(f"{name}/kernel_grid", shape, self.qtype(name), required), True

    def const_tensor(self, name: str, value: np.ndarray, dtype: str | None = None, quant: Quant | None = None) -> int:
        value = np.asarray(value)
        dtype = dtype or ("float32" if value.dtype == np.float64 else str(value.dtype))
        return self.new(name, value.shape, dtype, quant, value)

    def int32(self, name: str, values) -> int:
        return self.const_tensor(name, np.asarray(values, np.int32), "int32")

    def output(self, name: str, layout: str, kind: str, quant: Quant | None = None) -> int:
        """The LiteRT tensor an op writes ONNX value `name` into."""
        shape = L.stored_shape(self.shape(name), layout)
        if kind == "q":
            t = self.new(name, shape, self.qtype(name), quant or self.act_quant(name))
        else:
            dtype = self.graph.dtype(name) or "float32"
            t = self.new(name, shape, dtype if dtype in NUMPY_TYPES else "float32")
        self.values.setdefault(name, {})[(layout, kind)] = t
        return t

    def layouts(self, name: str) -> set[str]:
        return {lay for lay, _ in self.values.get(name, {})}

    def get(self, name: str, layout: str = "onnx", kind: str = "float") -> int:
        """ONNX value `name` as a LiteRT tensor in `layout` ("any": whichever exists) and `kind`."""
        c = self.const(name)
        if c is not None:
            return self._const_operand(name, c, layout if layout != "any" else "onnx", kind)
        have = self.values.get(name)
        if not have:
            raise KeyError(name)
        if layout == "any":
            layout = "nhwc" if any(lay == "nhwc" for lay, _ in have) else "onnx"
        if (layout, kind) in have:
            return have[(layout, kind)]
        items = sorted(have.items())
        for (lay, _), t in items:
            if lay == layout:  # change kind only
                return self._convert_kind(name, t, layout, kind)
        for (lay, k), t in items:
            if k == kind:  # change layout only
                return self._convert_layout(name, t, lay, layout, kind)
        (lay, k), t = items[0]
        if k == "q":  # move int8 data (smaller), then dequantize
            return self._convert_kind(name, self._convert_layout(name, t, lay, layout, k), layout, kind)
        return self._convert_layout(name, self._convert_kind(name, t, lay, kind), lay, layout, kind)

    def get_any(self, name: str, kind: str = "float") -> tuple[int, str]:
        """(tensor, layout) of `name` in whichever layout it already lives (NHWC first)."""
        layout = "nhwc" if self.const(name) is None and "nhwc" in self.layouts(name) else "onnx"
        return self.get(name, layout, kind), layout

    def _convert_kind(self, name: str, src: int, layout: str, kind: str) -> int:
        dst = self.output(name, layout, kind)
        self.w.add_op("QUANTIZE" if kind == "q" else "DEQUANTIZE", [src], [dst])
        return dst

    def _convert_layout(self, name: str, src: int, src_layout: str, layout: str, kind: str) -> int:
        rank = len(self.shape(name))
        src_shape = L.stored_shape(self.shape(name), src_layout)
        # perm from the stored source order to the stored destination order
        src_perm, dst_perm = L.perm_to(src_layout, rank), L.perm_to(layout, rank)
        perm = [src_perm.index(a) for a in dst_perm]
        quant = self.w.tensor_quant(src)
        dst = self.output(name, layout, kind, quant)
        if L.is_free_transpose(src_shape, perm):
            self.w.add_op("RESHAPE", [src, self.int32(f"{name}_shape_{layout}", self.w.tensor_shape(dst))], [dst])
        else:
            self.w.add_op("TRANSPOSE", [src, self.int32(f"{name}_perm_{layout}", perm)], [dst])
        return dst

    def _const_operand(self, name: str, value: np.ndarray, layout: str, kind: str) -> int:
        key = (layout, kind)
        have = self.values.setdefault(name, {})
        if key in have:
            return have[key]
        v = value if value.ndim != 4 else value.transpose(L.perm_to(layout, 4))
        if kind == "q" and value.dtype == np.float32:
            a = self.act(name)
            if a is not None:
                scale, zp, bits = a.scale, a.zero_point, a.bits
            else:  # a constant operand the plan does not cover: its own exact range, at the model's width
                scale, zp, bits = self.grid_for(float(value.min(initial=0)), float(value.max(initial=0)))
            q = quantize(v, scale, zp, bits)
            t = self.const_tensor(f"{name}_{layout}_q", q.astype(np.int16 if bits == 16 else np.int8),
                                  "int16" if bits == 16 else "int8", Quant([scale], [zp]))
        else:
            t = self.const_tensor(f"{name}_{layout}", v.astype(np.float32) if v.dtype == np.float64 else v)
        have[key] = t
        return t

    def operand_for_rank(self, name: str, rank: int, layout: str, kind: str) -> int:
        """A constant broadcast operand brought to `rank` so a layout permutation applies to it."""
        c = self.const(name)
        if c is not None and c.ndim < rank and layout == "nhwc":
            c = c.reshape((1,) * (rank - c.ndim) + c.shape)
            return self._const_operand(f"{name}_r{rank}", c, layout, kind)
        return self.get(name, layout, kind)

    def fused(self, node, index: int = 0) -> tuple[str, int]:
        """(output name, fused activation) for a node whose only consumer is Relu / Clip(0, 6)."""
        out = node.output[index]
        users = self.graph.consumers.get(out, [])
        graph_outputs = {o.name for o in self.graph.model.graph.output}
        if len(users) == 1 and out not in graph_outputs:
            u = users[0]
            act = None
            if u.op_type == "Relu":
                act = fb.ActivationFunctionType.RELU
            elif u.op_type == "Clip":
                lo, hi = clip_bounds(self, u)
                act = {(0.0, 6.0): fb.ActivationFunctionType.RELU6, (-1.0, 1.0): fb.ActivationFunctionType.RELU_N1_TO_1,
                       (0.0, float("inf")): fb.ActivationFunctionType.RELU}.get((lo, hi))
            if act is not None:
                self.skip.add(u.output[0])
                return u.output[0], act
        return out, fb.ActivationFunctionType.NONE


def clip_bounds(ctx: Ctx, node) -> tuple[float, float]:
    from edgeq.graph import get_attr

    lo, hi = get_attr(node, "min", float("-inf")), get_attr(node, "max", float("inf"))
    if len(node.input) > 1 and node.input[1]:
        c = ctx.const(node.input[1])
        lo = float(c) if c is not None else None
    if len(node.input) > 2 and node.input[2]:
        c = ctx.const(node.input[2])
        hi = float(c) if c is not None else None
    return (float(lo) if lo is not None else None), (float(hi) if hi is not None else None)
