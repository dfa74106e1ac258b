"""The TFLite Micro firmware package: a C header usable from C99 and C++ and an op-resolver header.

MODEL_model_data.h declares the model array with C linkage (`extern const unsigned char NAME_model[]`),
`#define NAME_ARENA_SIZE` (the tensor arena TFLite Micro measured, plus a margin), `NAME_MODEL_LEN`, and
each int8 input's / output's scale and zero point as `#define`s. MODEL_ops.h defines
`NAME_register_ops(NAME_OpResolver&)`, registering exactly the model's ops on a
`tflite::MicroMutableOpResolver<NAME_OP_COUNT>`. MODEL_model_data.c holds the same array as plain C99 (for
C-only firmware; compile it or the .cc, never both). Build glue for the folder: CMakeLists.txt (a static
library NAME_model, the .cc or with -DNAME_MODEL_C_SOURCE=ON the .c), PlatformIO's library.json and a Zephyr
module (zephyr/module.yml, zephyr/CMakeLists.txt).
"""

from __future__ import annotations

import json

# TFLite builtin op -> its MicroMutableOpResolver method, read from tensorflow/tflite-micro
# tensorflow/lite/micro/micro_mutable_op_resolver.h at commit 90b983c2b3f1480642e040bbd2ddb37b998f3424 (2026-08).
RESOLVER_METHODS = {
    "ABS": "AddAbs", "ADD": "AddAdd", "ADD_N": "AddAddN", "ARG_MAX": "AddArgMax", "ARG_MIN": "AddArgMin",
    "ASSIGN_VARIABLE": "AddAssignVariable", "AVERAGE_POOL_2D": "AddAveragePool2D", "BATCH_MATMUL": "AddBatchMatMul",
    "BATCH_TO_SPACE_ND": "AddBatchToSpaceNd", "BROADCAST_ARGS": "AddBroadcastArgs", "BROADCAST_TO": "AddBroadcastTo",
    "CALL_ONCE": "AddCallOnce", "CAST": "AddCast", "CEIL": "AddCeil", "CONCATENATION": "AddConcatenation",
    "CONV_2D": "AddConv2D", "COS": "AddCos", "CUMSUM": "AddCumSum", "DEPTHWISE_CONV_2D": "AddDepthwiseConv2D",
    "DEPTH_TO_SPACE": "AddDepthToSpace", "DEQUANTIZE": "AddDequantize", "DIV": "AddDiv",
    "DYNAMIC_UPDATE_SLICE": "AddDynamicUpdateSlice", "ELU": "AddElu", "EMBEDDING_LOOKUP": "AddEmbeddingLookup",
    "EQUAL": "AddEqual", "EXP": "AddExp", "EXPAND_DIMS": "AddExpandDims", "FILL": "AddFill", "FLOOR": "AddFloor",
    "FLOOR_DIV": "AddFloorDiv", "FLOOR_MOD": "AddFloorMod", "FULLY_CONNECTED": "AddFullyConnected",
    "GATHER": "AddGather", "GATHER_ND": "AddGatherNd", "GREATER": "AddGreater", "GREATER_EQUAL": "AddGreaterEqual",
    "HARD_SWISH": "AddHardSwish", "IF": "AddIf", "L2_NORMALIZATION": "AddL2Normalization",
    "L2_POOL_2D": "AddL2Pool2D", "LEAKY_RELU": "AddLeakyRelu", "LESS": "AddLess", "LESS_EQUAL": "AddLessEqual",
    "LOG": "AddLog", "LOGICAL_AND": "AddLogicalAnd", "LOGICAL_NOT": "AddLogicalNot", "LOGICAL_OR": "AddLogicalOr",
    "LOGISTIC": "AddLogistic", "LOG_SOFTMAX": "AddLogSoftmax", "MAXIMUM": "AddMaximum",
    "MAX_POOL_2D": "AddMaxPool2D", "MEAN": "AddMean", "MINIMUM": "AddMinimum", "MIRROR_PAD": "AddMirrorPad",
    "MUL": "AddMul", "NEG": "AddNeg", "NOT_EQUAL": "AddNotEqual", "PACK": "AddPack", "PAD": "AddPad",
    "PADV2": "AddPadV2", "PRELU": "AddPrelu", "QUANTIZE": "AddQuantize", "READ_VARIABLE": "AddReadVariable",
    "REDUCE_ALL": "AddReduceAll", "REDUCE_MAX": "AddReduceMax", "REDUCE_MIN": "AddReduceMin", "RELU": "AddRelu",
    "RELU6": "AddRelu6", "RESHAPE": "AddReshape", "RESIZE_BILINEAR": "AddResizeBilinear",
    "RESIZE_NEAREST_NEIGHBOR": "AddResizeNearestNeighbor", "REVERSE_V2": "AddReverseV2", "ROUND": "AddRound",
    "RSQRT": "AddRsqrt", "SELECT_V2": "AddSelectV2", "SHAPE": "AddShape", "SIN": "AddSin", "SLICE": "AddSlice",
    "SOFTMAX": "AddSoftmax", "SPACE_TO_BATCH_ND": "AddSpaceToBatchNd", "SPACE_TO_DEPTH": "AddSpaceToDepth",
    "SPLIT": "AddSplit", "SPLIT_V": "AddSplitV", "SQRT": "AddSqrt", "SQUARE": "AddSquare",
    "SQUARED_DIFFERENCE": "AddSquaredDifference", "SQUEEZE": "AddSqueeze", "STRIDED_SLICE": "AddStridedSlice",
    "SUB": "AddSub", "SUM": "AddSum", "SVDF": "AddSvdf", "TANH": "AddTanh", "TRANSPOSE": "AddTranspose",
    "TRANSPOSE_CONV": "AddTransposeConv", "UNIDIRECTIONAL_SEQUENCE_LSTM": "AddUnidirectionalSequenceLSTM",
    "UNPACK": "AddUnpack", "VAR_HANDLE": "AddVarHandle", "WHILE": "AddWhile", "ZEROS_LIKE": "AddZerosLike",
}


def _io_defines(prefix: str, kind: str, specs) -> list[str]:
    lines = []
    for k, spec in enumerate(specs):
        tag = f"{prefix}_{kind}" if len(specs) == 1 else f"{prefix}_{kind}{k}"
        scale, zp = getattr(spec, "scale", None), getattr(spec, "zero_point", None)
        if scale is None or zp is None:
            lines.append(f"/* {kind.lower()} {k} '{_comment(spec.name)}': {spec.dtype}, not quantized */")
            continue
        scale = float(scale if not isinstance(scale, list | tuple) else scale[0])
        zp = int(zp if not isinstance(zp, list | tuple) else zp[0])
        lines += [f"/* {kind.lower()} {k} '{_comment(spec.name)}': {spec.dtype}, real = (q - ZERO_POINT) * SCALE */",
                  f"#define {tag}_SCALE {scale!r}f", f"#define {tag}_ZERO_POINT ({zp})"]
    return lines


def _comment(text: str) -> str:
    return str(text).replace("*/", "* /").replace("\n", " ")


def c_header(symbol: str, length: int, arena: int, inputs=(), outputs=()) -> str:
    """The model array's header: C99 and C++ (C linkage), sizes and I/O quantization as #defines."""
    prefix = symbol.upper()
    guard = f"EDGEQ_{prefix}_MODEL_DATA_H_"
    camel = "".join(p.capitalize() for p in symbol.split("_"))
    lines = [
        "/* Generated by edgeq. Do not edit. Usable from C99 and C++. */",
        f"#ifndef {guard}", f"#define {guard}", "",
        "#ifdef __cplusplus", 'extern "C" {', "#endif", "",
        "/* The .tflite flatbuffer, 16-byte aligned (" + f"{symbol}_model_data.cc" + "). */",
        f"extern const unsigned char {symbol}_model[];",
        f"extern const unsigned int {symbol}_model_len;",
        f"#define {prefix}_MODEL_LEN {length}u",
        "/* Tensor arena measured by TFLite Micro's recording allocator, plus a margin. */",
        f"#define {prefix}_ARENA_SIZE {arena}u", "",
        *_io_defines(prefix, "INPUT", inputs),
        *_io_defines(prefix, "OUTPUT", outputs), "",
        "/* Earlier names. */",
        f"#define g_{symbol}_model_data {symbol}_model",
        f"#define g_{symbol}_model_data_len {symbol}_model_len", "",
        "#ifdef __cplusplus", "}  /* extern \"C\" */",
        f"constexpr unsigned int k{camel}TensorArenaSize = {arena};",
        "#endif", "", f"#endif  /* {guard} */", "",
    ]
    return "\n".join(lines)


def c_source(symbol: str, header: str, data: bytes) -> str:
    rows = [", ".join(f"0x{b:02x}" for b in data[i:i + 12]) for i in range(0, len(data), 12)]
    body = ",\n  ".join(rows)
    return (f"// Generated by edgeq. Do not edit.\n#include \"{header}\"\n\n"
            f"alignas(16) const unsigned char {symbol}_model[] = {{\n  {body}\n}};\n"
            f"const unsigned int {symbol}_model_len = {len(data)};\n")


C_ALIGN = """#if defined(__GNUC__) || defined(__clang__)
#define EDGEQ_ALIGN16 __attribute__((aligned(16)))
#elif defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L
#define EDGEQ_ALIGN16 _Alignas(16)
#elif defined(_MSC_VER)
#define EDGEQ_ALIGN16 __declspec(align(16))
#else
#define EDGEQ_ALIGN16 /* add your compiler's 16-byte alignment here: TFLite Micro needs it */
#endif
"""


def c99_source(symbol: str, header: str, data: bytes) -> str:
    """The array as plain C99 (GCC/Clang's aligned attribute, C11's _Alignas, or MSVC's __declspec)."""
    rows = [", ".join(f"0x{b:02x}" for b in data[i:i + 12]) for i in range(0, len(data), 12)]
    body = ",\n  ".join(rows)
    return (f"/* Generated by edgeq. Do not edit. C99; the same array as {symbol}_model_data.cc: build one of them. */\n"
            f"#include \"{header}\"\n\n{C_ALIGN}\n"
            f"EDGEQ_ALIGN16 const unsigned char {symbol}_model[] = {{\n  {body}\n}};\n"
            f"const unsigned int {symbol}_model_len = {len(data)}u;\n")


def build_glue(symbol: str, cc_source: str, c_source_name: str, headers: list[str], version: str) -> dict[str, str]:
    """Relative path -> text: CMakeLists.txt, library.json (PlatformIO), zephyr/module.yml and zephyr/CMakeLists.txt."""
    lib, opt = f"{symbol}_model", f"{symbol.upper()}_MODEL_C_SOURCE"
    cmake = "\n".join([
        "# Generated by edgeq. Do not edit.",
        f"# add_subdirectory(path/to/this/folder) then target_link_libraries(your_app PRIVATE {lib}).",
        f"# {symbol}_ops.h also needs TFLite Micro's headers (tensorflow/lite/micro/...) on the include path.",
        "cmake_minimum_required(VERSION 3.13)",
        f'option({opt} "Compile the C99 array ({c_source_name}) instead of the C++ one ({cc_source})" OFF)',
        f"if({opt})",
        f"  project({lib} LANGUAGES C)",
        f"  add_library({lib} STATIC {c_source_name})",
        "else()",
        f"  project({lib} LANGUAGES CXX)",
        f"  add_library({lib} STATIC {cc_source})",
        f"  target_compile_features({lib} PRIVATE cxx_std_11)",
        "endif()",
        f"target_include_directories({lib} PUBLIC ${{CMAKE_CURRENT_SOURCE_DIR}})", ""])
    library_json = json.dumps({
        "name": lib, "version": version,
        "description": f"The {symbol} model for TFLite Micro (array, header, op resolver), generated by edgeq",
        "frameworks": "*", "platforms": "*",
        "headers": headers,
        "build": {"srcDir": ".", "includeDir": ".", "srcFilter": ["-<*>", f"+<{cc_source}>"]},
    }, indent=2) + "\n"
    module_yml = f"# Generated by edgeq. Do not edit. Add this folder to ZEPHYR_EXTRA_MODULES (or west.yml).\nname: {lib}\nbuild:\n  cmake: zephyr\n"
    zephyr_cmake = "\n".join([
        "# Generated by edgeq. Do not edit. The Zephyr module's build: the C99 array and its header.",
        f"zephyr_library_named({lib})",
        f"zephyr_library_sources(${{CMAKE_CURRENT_LIST_DIR}}/../{c_source_name})",
        "zephyr_include_directories(${CMAKE_CURRENT_LIST_DIR}/..)", ""])
    return {"CMakeLists.txt": cmake, "library.json": library_json, "zephyr/module.yml": module_yml,
            "zephyr/CMakeLists.txt": zephyr_cmake}


def resolver_ops(ops) -> tuple[list[tuple[str, str]], list[str]]:
    """(op, method) for each op with a MicroMutableOpResolver method, and the ops without one."""
    ops = sorted(set(ops))
    return [(o, RESOLVER_METHODS[o]) for o in ops if o in RESOLVER_METHODS], [o for o in ops if o not in RESOLVER_METHODS]


def ops_header(symbol: str, ops) -> str:
    """MODEL_ops.h (C++): registers exactly the model's ops on a MicroMutableOpResolver sized to them."""
    prefix = symbol.upper()
    guard = f"EDGEQ_{prefix}_OPS_H_"
    known, unknown = resolver_ops(ops)
    lines = [
        "// Generated by edgeq. Do not edit. C++ (TFLite Micro's op resolver is a C++ class).",
        f"#ifndef {guard}", f"#define {guard}", "",
        '#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"', "",
        f"// The model's ops: {', '.join(o for o, _ in known) or 'none'}.",
        *[f"// {o} has no MicroMutableOpResolver method: register it with AddBuiltin or AddCustom." for o in unknown],
        f"#define {prefix}_OP_COUNT {len(known)}",
        f"typedef tflite::MicroMutableOpResolver<{prefix}_OP_COUNT> {prefix}_OpResolver;", "",
        f"inline TfLiteStatus {symbol}_register_ops({prefix}_OpResolver& resolver) {{",
        *[f"  if (resolver.{m}() != kTfLiteOk) return kTfLiteError;" for _, m in known],
        "  return kTfLiteOk;", "}", "", f"#endif  // {guard}", "",
    ]
    return "\n".join(lines)
