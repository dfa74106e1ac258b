"""The op table: ONNX op type -> one lowering function (listable with `edgeq inspect --target tflite`).

INT8_OPS lists the ops with an integer LiteRT kernel; the others run float, and in an
integer model are wrapped in DEQUANTIZE / QUANTIZE (with fallback=float) or refused.
"""

from __future__ import annotations

from edgeq.lower.tflite import ops_logic as LG
from edgeq.lower.tflite import ops_math as M
from edgeq.lower.tflite import ops_nn as N
from edgeq.lower.tflite import ops_pool as P
from edgeq.lower.tflite import ops_resize as R
from edgeq.lower.tflite import ops_rnn as RNN
from edgeq.lower.tflite import ops_shape as S
from edgeq.lower.tflite import ops_softmax as SM

OPS = dict(sorted({
    "Abs": M.lower_abs, "Add": M.lower_add, "And": LG.lower_and, "Cast": LG.lower_cast, "AveragePool": P.lower_average_pool, "Ceil": M.lower_ceil,
    "Clip": M.lower_clip, "Concat": S.lower_concat, "Conv": N.lower_conv, "ConvTranspose": N.lower_conv_transpose,
    "Cos": M.lower_cos, "Div": M.lower_div, "Elu": M.lower_elu, "Erf": LG.lower_erf, "Exp": M.lower_exp, "Expand": LG.lower_expand, "Flatten": S.lower_reshape,
    "Floor": M.lower_floor, "Gather": S.lower_gather, "Gelu": M.lower_gelu, "Gemm": N.lower_gemm,
    "GlobalAveragePool": N.lower_global_average_pool, "GlobalMaxPool": N.lower_global_max_pool,
    "HardSigmoid": M.lower_hard_sigmoid, "HardSwish": M.lower_hard_swish,
    "LayerNormalization": S.lower_layer_normalization, "LeakyRelu": M.lower_leaky_relu, "Log": M.lower_log,
    "LogSoftmax": SM.lower_log_softmax, "LSTM": RNN.lower_lstm, "MatMul": N.lower_matmul, "Max": M.lower_max, "MaxPool": P.lower_max_pool,
    "Min": M.lower_min, "Mul": M.lower_mul, "Neg": M.lower_neg, "Pad": S.lower_pad, "Pow": M.lower_pow,
    "PRelu": M.lower_prelu, "Reciprocal": M.lower_reciprocal, "ReduceMax": S.lower_reduce_max,
    "ReduceMean": S.lower_reduce_mean, "ReduceMin": S.lower_reduce_min, "ReduceSum": S.lower_reduce_sum,
    "Relu": M.lower_relu, "Reshape": S.lower_reshape, "Resize": R.lower_resize, "Sigmoid": M.lower_sigmoid,
    "Sin": M.lower_sin, "Slice": S.lower_slice, "Softmax": SM.lower_softmax, "Split": S.lower_split,
    "Sqrt": M.lower_sqrt, "Squeeze": S.lower_reshape, "Sub": M.lower_sub, "Tanh": M.lower_tanh,
    "Transpose": S.lower_transpose, "Unsqueeze": S.lower_reshape, "Where": LG.lower_where,
}.items()))

INT8_OPS = frozenset(OPS) - {"LSTM", "Ceil", "Erf", "Cos", "Div", "Exp", "Floor", "LayerNormalization", "Log", "Max", "Min", "Pow",
                             "Reciprocal", "Sin", "Sqrt"}
