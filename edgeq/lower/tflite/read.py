"""Costs of a .tflite file, read through LiteRT's own interpreter (ops, tensors, shapes).

LiteRT ops already carry their fused activation, so each op is one kernel. The float
comparison is the same op list at fp32 with 4-byte tensors and no QUANTIZE/DEQUANTIZE.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from edgeq.artifact import Artifact, IOSpec, ReadArtifact
from edgeq.errors import ModelError
from edgeq.op_cost import OpCost, work
from edgeq.runners import captured_stderr

VIEWS = {"RESHAPE", "SQUEEZE", "EXPAND_DIMS"}
BOUNDARY = {"QUANTIZE", "DEQUANTIZE"}
POOLS = {"MEAN", "SUM", "AVERAGE_POOL_2D", "MAX_POOL_2D", "REDUCE_MAX"}


def check_flatbuffer(path: Path) -> None:
    """The whole file parsed with the schema before LiteRT sees it: LiteRT's Python interpreter does not
    verify the flatbuffer, and a truncated or corrupt one segfaults it while loading (found by
    bench/atheris_loaders.py). Python reports an offset past the end as an exception instead."""
    from edgeq.lower.tflite.schema import FILE_IDENTIFIER, read_model

    data = path.read_bytes()
    try:
        if data[4:8] != FILE_IDENTIFIER:
            raise ValueError(f"no {FILE_IDENTIFIER.decode()} file identifier")
        model = read_model(data)
        if not model.subgraphs:
            raise ValueError("no subgraph")
        for b in model.buffers or []:
            if b.offset and b.offset + b.size > len(data):  # data stored after the flatbuffer (models over 2 GB)
                raise ValueError(f"a buffer at {b.offset} + {b.size} runs past the end ({len(data)} bytes)")
    except Exception as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise ModelError(f"{path}: not a readable TFLite model ({reason}); re-run `edgeq compile` to rewrite it") from None


def _interpreter(path: Path):
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError:
        raise ModelError(f"{path}: profiling .tflite needs ai-edge-litert (pip install ai-edge-litert)") from None
    check_flatbuffer(path)
    try:
        with captured_stderr():
            interp = Interpreter(model_path=str(path), experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
            interp.allocate_tensors()
    except Exception as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise ModelError(f"{path}: not a readable TFLite model ({reason}); re-run `edgeq compile` to rewrite it") from None
    return interp


def _work(op: str, ins: list[dict], out_el: int) -> tuple[int, int, str]:
    """LiteRT ops onto edgeq.op_cost's classes (weights are [O, kh, kw, I], depthwise [1, kh, kw, O])."""
    w = [int(d) for d in ins[1]["shape"]] if len(ins) > 1 else []
    if op == "CONV_2D" and len(w) == 4:
        return work("dense", out_el, w[1] * w[2] * w[3])
    if op == "DEPTHWISE_CONV_2D" and len(w) == 4:
        return work("depthwise", out_el, w[1] * w[2])
    if op == "FULLY_CONNECTED" and len(w) == 2:  # [O, I]
        return work("dense", out_el, w[1])
    if op == "BATCH_MATMUL":
        return work("dense", out_el, int(ins[0]["shape"][-1]))
    if op == "TRANSPOSE_CONV" and len(ins) > 2:  # inputs: output shape, weights [O, kh, kw, I], x
        wt = [int(d) for d in ins[1]["shape"]]
        return work("transposed", out_el, wt[0] * wt[1] * wt[2], in_elements=int(np.prod(ins[2]["shape"])))
    if op == "UNIDIRECTIONAL_SEQUENCE_LSTM":  # gate weights [H, I] and recurrent weights [H, H]: one column per MAC
        return work("recurrent", out_el, sum(int(d["shape"][1]) for d in ins[1:] if len(d["shape"]) == 2), window=4)
    if op in POOLS:  # counted per input element
        return work("reduce", out_el, in_elements=int(np.prod(ins[0]["shape"])))
    if op == "SOFTMAX":
        return work("softmax", out_el)
    return work("elementwise", out_el)


def _details(path: Path, interp) -> tuple[dict, list, list, list]:
    """(tensors by index, ops, input details, output details) as LiteRT reports them. A corrupt file can
    load and still fail here: a name that is not UTF-8 raises UnicodeDecodeError when it is read."""
    try:
        tensors = {t["index"]: t for t in interp.get_tensor_details()}
        ops = [o for o in interp._get_ops_details() if o["op_name"] != "DELEGATE"]  # noqa: SLF001 (LiteRT's only op listing)
        return tensors, ops, interp.get_input_details(), interp.get_output_details()
    except Exception as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise ModelError(f"{path}: not a readable TFLite model ({reason}); re-run `edgeq compile` to rewrite it") from None


def read_tflite(path: Path) -> ReadArtifact:
    tensors, ops, in_details, out_details = _details(path, _interpreter(path))
    if not ops:
        raise ModelError(f"{path}: the TFLite model has no operators")
    produced = {int(i) for o in ops for i in o["outputs"]}
    graph_in = {d["index"] for d in in_details}

    def nbytes(i: int, width: int | None = None) -> int:
        t = tensors[i]
        return int(np.prod(t["shape"])) * (width or np.dtype(t["dtype"]).itemsize)

    quant, flt = [], []
    for o in ops:
        idx = [int(i) for i in o["inputs"] if int(i) >= 0]
        acts = [i for i in idx if i in produced or i in graph_in]
        consts = [i for i in idx if i not in acts]
        outs = [int(i) for i in o["outputs"]]
        op = o["op_name"]
        name = f"{tensors[outs[0]]['name']} ({op})"
        out_el = int(np.prod(tensors[outs[0]]["shape"]))
        dtype = np.dtype(tensors[acts[0]]["dtype"]) if acts else np.dtype(np.float32)
        precision = "int8" if dtype in (np.int8, np.uint8) else "int16" if dtype == np.int16 else "fp32"
        names_in, names_out = tuple(tensors[i]["name"] for i in acts), tuple(tensors[i]["name"] for i in outs)
        if op in VIEWS:
            c = OpCost(name, op, "view", precision, 0, 0, 0, 0, 0, names_in, names_out)
            quant.append(c)
            flt.append(dataclasses.replace(c, precision="fp32"))
            continue
        if op in BOUNDARY:
            quant.append(OpCost(name, op, "boundary", "int8", 0, out_el, 0, sum(nbytes(i) for i in acts),
                                sum(nbytes(i) for i in outs), names_in, names_out))
            continue  # the float model has no quantize/dequantize
        macs, other, kind = _work(op, [tensors[i] for i in idx], out_el)
        quant.append(OpCost(name, op, kind, precision, macs, other, sum(nbytes(i) for i in consts),
                            sum(nbytes(i) for i in acts), sum(nbytes(i) for i in outs), names_in, names_out))
        flt.append(OpCost(name, op, kind, "fp32", macs, other, sum(nbytes(i, 4) for i in consts),
                          sum(nbytes(i, 4) for i in acts), sum(nbytes(i, 4) for i in outs), names_in, names_out))
    by_name = {t["name"]: i for i, t in tensors.items()}
    # the float model reads the graph input directly, where the int8 one quantizes it first
    alias = {c.outputs[0]: c.inputs[0] for c in quant if c.op == "QUANTIZE" and c.inputs}
    flt = [dataclasses.replace(c, inputs=tuple(alias.get(t, t) for t in c.inputs)) for c in flt]

    def size_quant(t: str) -> int:
        return nbytes(by_name[t]) if t in by_name else 0

    def size_float(t: str) -> int:
        return nbytes(by_name[t], 4) if t in by_name else 0

    def spec(d: dict) -> IOSpec:
        scale, zp = d.get("quantization", (0.0, 0))
        dt = np.dtype(d["dtype"]).name
        if dt.startswith("int") or dt.startswith("uint"):
            return IOSpec(d["name"], [int(x) for x in d["shape"]], dt, float(scale), int(zp))
        return IOSpec(d["name"], [int(x) for x in d["shape"]], dt)

    artifact = Artifact("tflite", Path(path), [Path(path)], [spec(d) for d in in_details], [spec(d) for d in out_details])
    ins, outs = [d["name"] for d in in_details], [d["name"] for d in out_details]
    return ReadArtifact(Path(path), "tflite", None, None, (quant, flt, size_quant, size_float, ins, outs), artifact,
                        quantized_io=any(c.precision in ("int8", "int16") for c in quant))
