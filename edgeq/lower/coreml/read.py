"""Costs of an .mlpackage, from its ML program run once in edgeq's MIL reference executor.

Running the program on zeros gives every intermediate's shape and dtype; conv/linear/matmul
MACs follow from those. Core ML fuses a conv's activation and, in W8A8 programs, the
quantize/dequantize pairs around integer ops, so those cost nothing here; an op whose input
comes from a dequantize computes in int8. Weight bytes are the package's weight blob shared
out by element count (the blob holds them compressed: palettes, int8, fp16).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeq.artifact import Artifact, IOSpec, ReadArtifact, path_bytes
from edgeq.errors import ModelError
from edgeq.op_cost import OpCost, work

VIEWS = {"reshape", "squeeze", "expand_dims", "identity"}
FUSED = {"relu", "clip", "sigmoid", "tanh", "leaky_relu", "relu6"}
WEIGHTED = {"conv", "conv_transpose", "linear", "matmul"}
QDQ = {"quantize", "dequantize"}


def _program(path: Path):
    try:
        from edgeq.lower.coreml.mil_exec import MODEL_FILE, MILProgram
    except ImportError as e:
        raise ModelError(f"{path}: profiling .mlpackage needs coremltools (pip install coremltools): {e.name}") from None
    try:
        from coremltools.proto import Model_pb2

        spec = Model_pb2.Model()
        spec.ParseFromString((Path(path) / MODEL_FILE).read_bytes())
        return MILProgram(Path(path)), spec
    except ModelError:
        raise
    except Exception as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise ModelError(f"{path}: not a readable .mlpackage ({reason}); re-run `edgeq compile` to rewrite it") from None


def read_coreml(path: Path) -> ReadArtifact:
    prog, spec = _program(path)
    fn = spec.mlProgram.functions["main"]
    shapes = {i.name: [int(d.constant.size) for d in i.type.tensorType.dimensions] for i in fn.inputs}
    env = dict(prog.consts)
    for name, dtype in prog.inputs:
        env[name] = np.zeros(shapes[name], dtype)
    producer: dict[str, str] = {}
    consumers: dict[str, int] = {}
    for op_type, args, outs in prog.steps:
        prog.step(env, op_type, args, outs)
        for o, _ in outs:
            producer[o] = op_type
        for bound in args.values():
            for kind, v in bound:
                if kind == "name":
                    consumers[v] = consumers.get(v, 0) + 1

    def arr(name):
        return env.get(name) if isinstance(env.get(name), np.ndarray) else None

    const_elems = sum(v.size for v in prog.consts.values() if isinstance(v, np.ndarray) and v.size > 16)
    blob = sum(path_bytes(f) for f in Path(path).rglob("*.bin"))
    per_elem = blob / const_elems if const_elems else 0.0
    quant, flt = [], []
    for op_type, args, outs in prog.steps:
        names = {a: [v for kind, v in b if kind == "name"] for a, b in args.items()}
        acts = [v for vs in names.values() for v in vs if v not in prog.consts and arr(v) is not None]
        consts = [v for vs in names.values() for v in vs if v in prog.consts and arr(v) is not None and arr(v).size > 16]
        out = arr(outs[0][0])
        out_el = int(out.size) if out is not None else 0
        name = f"{outs[0][0]} ({op_type})"
        x = arr(names.get("x", acts[:1])[0]) if (names.get("x") or acts) else None
        precision = ("int8" if acts and producer.get(acts[0]) == "dequantize"
                     else "fp16" if x is not None and x.dtype == np.float16 else "fp32")
        macs, other, kind = work("elementwise", out_el)
        w = arr(names["weight"][0]) if names.get("weight") else None
        if op_type == "conv" and w is not None and x is not None:
            groups = int(np.asarray(prog._resolve({"g": args["groups"]}, env)["g"])) if "groups" in args else 1  # noqa: SLF001
            macs, other, kind = work("depthwise" if groups > 1 and groups == x.shape[1] else "dense", out_el, int(np.prod(w.shape[1:])))
        elif op_type == "conv_transpose" and w is not None and x is not None:
            macs, other, kind = work("transposed", out_el, int(np.prod(w.shape[1:])), in_elements=int(x.size))
        elif op_type == "linear" and w is not None:
            macs, other, kind = work("dense", out_el, int(w.shape[-1]))
        elif op_type == "matmul" and x is not None:
            macs, other, kind = work("dense", out_el, int(x.shape[-1]))
        elif op_type == "lstm" and x is not None and names.get("weight_hh"):  # x [T, B, I]; weight_hh [4H, H] per direction
            dirs = 2 if names.get("weight_hh_back") else 1
            hidden = int(arr(names["weight_hh"][0]).shape[1])
            macs, other, kind = work("recurrent", int(x.shape[0] * x.shape[1]) * dirs * hidden, 4 * (int(x.shape[2]) + hidden), window=4)
        elif op_type.startswith("reduce_"):
            macs, other, kind = work("reduce", out_el, in_elements=int(x.size) if x is not None else out_el)
        if op_type in VIEWS:
            kind, macs, other = "view", 0, 0
        elif op_type in QDQ or (op_type in FUSED and acts and producer.get(acts[0]) in WEIGHTED and consumers.get(acts[0]) == 1):
            kind, macs, other = "fused", 0, 0
        elif op_type == "cast":
            kind = "boundary"
        wbytes = int(sum(arr(c).size for c in consts) * per_elem)
        in_b = sum(arr(a).nbytes for a in acts)
        out_b = sum(arr(o).nbytes for o, _ in outs if arr(o) is not None)
        free = kind in ("view", "fused")
        c = OpCost(name, op_type, kind, precision, macs, other, 0 if free else wbytes, 0 if free else in_b,
                   0 if free else out_b, tuple(acts), tuple(o for o, _ in outs))
        quant.append(c)
        if op_type not in QDQ and op_type != "cast":
            flt.append(OpCost(name, op_type, kind, "fp32", macs, other, 0 if free else sum(4 * arr(c_).size for c_ in consts),
                              0 if free else sum(4 * arr(a).size for a in acts),
                              0 if free else sum(4 * arr(o).size for o, _ in outs if arr(o) is not None), c.inputs, c.outputs))

    def size_quant(t: str) -> int:
        return int(arr(t).nbytes) if arr(t) is not None else 0

    def size_float(t: str) -> int:
        return 4 * int(arr(t).size) if arr(t) is not None else 0

    ins = [n for n, _ in prog.inputs]
    artifact = Artifact("coreml", Path(path), [Path(path)], [IOSpec(n, shapes[n], np.dtype(d).name) for n, d in prog.inputs],
                        [IOSpec(o, list(arr(o).shape) if arr(o) is not None else [], "float32") for o in prog.output_names])
    return ReadArtifact(Path(path), "coreml", None, None, (quant, flt, size_quant, size_float, ins, list(prog.output_names)),
                        artifact, quantized_io=any(c.precision == "int8" for c in quant) or blob < 0.75 * 4 * const_elems)
