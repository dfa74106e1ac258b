"""Comparison, boolean and select ONNX ops -> MIL ops (attention and padding masks).

MIL's comparisons take fp16/fp32/int32 and return bool; its logical ops take bool. ONNX compares
bools too (Equal on a bool mask), so bool operands of a comparison are compared as int32.
"""

from __future__ import annotations

import numpy as np
from coremltools.converters.mil.mil import Builder as mb

from edgeq.lower.coreml.context import LoweringContext, is_float, mil_const


def _is_bool(v) -> bool:
    return v.dtype == np.bool_ if isinstance(v, np.ndarray) else v.dtype.__name__ == "bool"


def _numeric(v):
    """A bool operand as int32 (MIL compares numbers only); anything else unchanged."""
    if not _is_bool(v):
        return v
    return v.astype(np.int32) if isinstance(v, np.ndarray) else mb.cast(x=v, dtype="int32")


def _same_dtype(x, y):
    """A constant operand takes the var operand's dtype (ONNX types both alike; MIL has no int64)."""
    if isinstance(y, np.ndarray) and not isinstance(x, np.ndarray):
        y = y.astype(np.bool_ if _is_bool(x) else np.float32 if is_float(x) else np.int32)
    elif isinstance(x, np.ndarray) and not isinstance(y, np.ndarray):
        x = x.astype(np.bool_ if _is_bool(y) else np.float32 if is_float(y) else np.int32)
    return x, y


def _compare(mil_op):
    def lower(ctx: LoweringContext):
        x, y = _same_dtype(ctx.var(ctx.inp(0)), ctx.var(ctx.inp(1)))
        return mil_op(x=_numeric(x), y=_numeric(y), name=ctx.out_name())

    lower.__name__ = f"lower_{mil_op.__name__}"
    return lower


def _logical(mil_op):
    def lower(ctx: LoweringContext):
        x, y = ctx.var(ctx.inp(0)), ctx.var(ctx.inp(1))
        return mil_op(x=mil_const(x), y=mil_const(y), name=ctx.out_name())

    lower.__name__ = f"lower_{mil_op.__name__}"
    return lower


def lower_not(ctx: LoweringContext):
    return mb.logical_not(x=ctx.var(ctx.inp(0)), name=ctx.out_name())


def lower_where(ctx: LoweringContext):
    cond = ctx.var(ctx.inp(0))
    a, b = _same_dtype(ctx.var(ctx.inp(1)), ctx.var(ctx.inp(2)))
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):  # both branches constant: one MIL dtype for both
        dtype = np.float32 if a.dtype.kind == "f" or b.dtype.kind == "f" else np.bool_ if a.dtype == np.bool_ else np.int32
        a, b = a.astype(dtype), b.astype(dtype)
    if isinstance(cond, np.ndarray):
        cond = cond.astype(np.bool_)
    # MIL's select types its output by a and b only: a cond wider than both (Where(mask, 0.0, 1.0)) would give
    # a narrower declared shape than ONNX's, and every later op would follow it. Widen a to the full shape.
    full = np.broadcast_shapes(*(ctx.shape(ctx.inp(k)) for k in range(3)))
    if np.broadcast_shapes(ctx.shape(ctx.inp(1)), ctx.shape(ctx.inp(2))) != full:
        a = _broadcast_to(a, full)
    return mb.select(cond=cond, a=a, b=b, name=ctx.out_name())


def _broadcast_to(v, shape: tuple[int, ...]):
    """A constant or Var broadcast to `shape` (numpy rules)."""
    if isinstance(v, np.ndarray):
        return np.ascontiguousarray(np.broadcast_to(v, shape))
    have = tuple(v.shape)
    if len(have) < len(shape):
        v = mb.reshape(x=v, shape=[1] * (len(shape) - len(have)) + list(have))
        have = (1,) * (len(shape) - len(have)) + have
    return mb.tile(x=v, reps=[s // d for s, d in zip(shape, have)])


LOGIC_OPS = {
    "Equal": _compare(mb.equal),
    "Greater": _compare(mb.greater),
    "GreaterOrEqual": _compare(mb.greater_equal),
    "Less": _compare(mb.less),
    "LessOrEqual": _compare(mb.less_equal),
    "And": _logical(mb.logical_and),
    "Or": _logical(mb.logical_or),
    "Xor": _logical(mb.logical_xor),
    "Not": lower_not,
    "Where": lower_where,
}
