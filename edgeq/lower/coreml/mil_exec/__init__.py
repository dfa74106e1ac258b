"""MIL reference executor: loads a saved .mlpackage's program and runs it with numpy.

It reads `Data/com.apple.CoreML/model.mlmodel` (the Model protobuf holding the ML program)
and `weights/weight.bin` (MIL blob storage: per blob a 64-byte header — sentinel 0xDEADBEEF,
data type, byte size, data offset — then the data; sub-byte types packed LSB first). Constants
and the compressed-weight `constexpr_*` ops are materialized at load time, as Core ML does;
every other op runs per call through the registry in ops.py (one numpy function per MIL op).
Each op computes in float32 and its result is stored in the op's declared output type, so an
fp16 program keeps fp16 intermediates as Core ML does.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from edgeq.errors import ModelError
from edgeq.lower.coreml.mil_exec import nn, rnn  # noqa: F401  (register their ops)
from edgeq.lower.coreml.mil_exec.ops import MIL_OPS, to_dtype, unpack_bits

MODEL_FILE = Path("Data/com.apple.CoreML/model.mlmodel")
BLOB_SENTINEL = 0xDEADBEEF

# MILSpec.DataType -> numpy storage, and the sub-byte widths (see MIL.proto in coremltools).
NP_DTYPES = {1: np.bool_, 10: np.float16, 11: np.float32, 12: np.float64, 21: np.int8, 22: np.int16, 23: np.int32,
             24: np.int64, 31: np.uint8, 32: np.uint16, 33: np.uint32, 34: np.uint64}
SUB_BYTE = {25: (4, True), 35: (4, False), 36: (2, False), 37: (1, False), 38: (6, False), 39: (3, False)}


def storage_dtype(data_type: int):
    if data_type in SUB_BYTE:
        return np.int8 if SUB_BYTE[data_type][1] else np.uint8
    if data_type == 2:
        return object  # strings
    return NP_DTYPES[data_type]


def decode_bytes(raw: bytes, data_type: int, count: int) -> np.ndarray:
    if data_type in SUB_BYTE:
        nbits, signed = SUB_BYTE[data_type]
        v = unpack_bits(np.frombuffer(raw, np.uint8), nbits, count)
        return (v.astype(np.int8) - ((v >= 2 ** (nbits - 1)) * 2**nbits).astype(np.int8)) if signed else v
    return np.frombuffer(raw, NP_DTYPES[data_type], count=count).copy()


class BlobFile:
    def __init__(self, path: Path):
        self.data = Path(path).read_bytes()

    def read(self, offset: int, data_type: int, count: int) -> np.ndarray:
        sentinel, _, size, data_offset = struct.unpack_from("<IIQQ", self.data, offset)
        if sentinel != BLOB_SENTINEL:
            raise ModelError(f"weight.bin: no blob header at offset {offset}; the .mlpackage is damaged")
        return decode_bytes(self.data[data_offset : data_offset + size], data_type, count)


def decode_value(value, blobs) -> np.ndarray | str:
    """A MILSpec.Value (immediate or in weight.bin) as numpy (a str for string scalars)."""
    tt = value.type.tensorType
    shape = tuple(int(d.constant.size) for d in tt.dimensions)
    count = int(np.prod(shape)) if shape else 1
    if value.WhichOneof("value") == "blobFileValue":
        arr = blobs(value.blobFileValue.fileName).read(value.blobFileValue.offset, tt.dataType, count)
        return arr.reshape(shape)
    t = value.immediateValue.tensor
    field = t.WhichOneof("value")
    if field == "strings":
        vals = list(t.strings.values)
        return vals[0] if not shape else np.array(vals, object).reshape(shape)
    if field == "bytes":
        return decode_bytes(t.bytes.values, tt.dataType, count).reshape(shape)
    vals = getattr(t, field).values if field else []
    return np.asarray(list(vals), storage_dtype(tt.dataType)).reshape(shape)


class MILProgram:
    """The `main` function of a saved ML program, ready to run on numpy arrays."""

    def __init__(self, package: Path):
        from coremltools.proto import Model_pb2

        self.path = Path(package)
        spec = Model_pb2.Model()
        try:
            spec.ParseFromString((self.path / MODEL_FILE).read_bytes())
        except FileNotFoundError:
            raise ModelError(f"{self.path}: not an .mlpackage (no {MODEL_FILE})") from None
        if spec.WhichOneof("Type") != "mlProgram":
            raise ModelError(f"{self.path}: not an ML program (a {spec.WhichOneof('Type')} model)")
        fn = spec.mlProgram.functions["main"]
        self.opset = fn.opset
        block = fn.block_specializations[fn.opset]
        self.inputs = [(i.name, storage_dtype(i.type.tensorType.dataType)) for i in fn.inputs]
        self.output_names = list(block.outputs)
        self._blobs: dict[str, BlobFile] = {}
        self.consts: dict[str, object] = {}
        self.steps: list[tuple] = []  # (op type, {arg: value | name | [..]}, [(output name, dtype)])
        for op in block.operations:
            self._add(op)

    def _blob(self, file_name: str) -> BlobFile:
        rel = file_name.replace("@model_path/", "")
        if rel not in self._blobs:
            self._blobs[rel] = BlobFile(self.path / MODEL_FILE.parent / rel)
        return self._blobs[rel]

    def _add(self, op) -> None:
        outs = [(o.name, storage_dtype(o.type.tensorType.dataType)) for o in op.outputs]
        if op.type == "const":
            self.consts[outs[0][0]] = decode_value(op.attributes["val"], self._blob)
            return
        args = {}
        for key, arg in op.inputs.items():
            bound = [("value", decode_value(b.value, self._blob)) if b.WhichOneof("binding") == "value" else ("name", b.name)
                     for b in arg.arguments]
            args[key] = bound
        for key, val in op.attributes.items():  # iOS 16 constexpr ops keep their operands as attributes
            if key != "name":
                args[key] = [("value", decode_value(val, self._blob))]
        if op.type not in MIL_OPS:
            raise ModelError(f"{self.path}: MIL op '{op.type}' ({outs[0][0]}) has no reference implementation in edgeq")
        if op.type.startswith("constexpr_"):  # decompressed once, at load, like Core ML
            self.step(self.consts, op.type, args, outs)
            return
        self.steps.append((op.type, args, outs))

    @staticmethod
    def _resolve(args: dict, env: dict) -> dict:
        out = {}
        for key, bound in args.items():
            vals = [v if kind == "value" else env[v] for kind, v in bound]
            out[key] = vals if len(vals) > 1 or key in ("values",) else vals[0]
        return out

    @staticmethod
    def _store(env: dict, op_type: str, kwargs: dict, outs: list) -> None:
        result = MIL_OPS[op_type](**kwargs)
        results = result if isinstance(result, tuple) else (result,)
        for (name, dtype), r in zip(outs, results):
            env[name] = to_dtype(r, dtype) if dtype is not object else r

    def run(self, feeds: dict[str, np.ndarray], stacked: int = 0) -> dict[str, np.ndarray]:
        """Run once. `stacked` = N runs N samples of a batch-1 program at once: reshapes to a
        leading 1 keep the leading N (the caller checks the result against single runs)."""
        env = dict(self.consts)
        for name, dtype in self.inputs:
            if name not in feeds:
                raise ModelError(f"{self.path}: missing input '{name}'")
            env[name] = np.asarray(feeds[name]).astype(dtype)
        for op_type, args, outs in self.steps:
            self.step(env, op_type, args, outs, stacked)
        return {k: env[k] for k in self.output_names}

    def step(self, env: dict, op_type: str, args: dict, outs: list, stacked: int = 0) -> None:
        """One op into `env`; an op the reference cannot run (or a corrupt program's op) is a ModelError naming it."""
        try:
            kwargs = self._resolve(args, env)
            if stacked and op_type == "reshape" and len(kwargs["shape"]) and int(kwargs["shape"][0]) == 1 \
                    and np.shape(kwargs["x"])[:1] == (stacked,):
                kwargs["shape"] = [stacked, *[int(d) for d in kwargs["shape"][1:]]]
            self._store(env, op_type, kwargs, outs)
        except ModelError:
            raise
        except Exception as e:
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise ModelError(f"{self.path}: MIL op '{op_type}' ({outs[0][0] if outs else '?'}) failed in the reference executor "
                             f"({reason}); re-run `edgeq compile` if the package was changed") from None

    def run_positional(self, arrays: list[np.ndarray], stacked: int = 0) -> list[np.ndarray]:
        out = self.run({name: a for (name, _), a in zip(self.inputs, arrays)}, stacked)
        return [out[k] for k in self.output_names]

    def op_types(self) -> list[str]:
        return [s[0] for s in self.steps]
