"""Where each op of a .tflite runs: XNNPACK (as the interpreter reports), NNAPI, the GPU delegate.

XNNPACK is measured: the ai-edge-litert Interpreter with its default delegate lists the
DELEGATE nodes it made; the ops inside their partitions ran on XNNPACK, the rest on
LiteRT's built-in kernels. NNAPI and GPU come from the tables in targets/tflite.toml.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from edgeq.target import target_data

NNAPI_DEPRECATION = (f"NNAPI is deprecated from Android {target_data('tflite')['nnapi_deprecated_from_android']}: LiteRT's "
                     "NNAPI delegate may be missing or fall back to the CPU on new devices; prefer XNNPACK (CPU) or the GPU delegate")


def xnnpack_partition(path: Path) -> list[tuple[str, bool]]:
    """(op name, delegated to XNNPACK) for every operator of the model, in order."""
    from ai_edge_litert.interpreter import Interpreter

    from edgeq.errors import ModelError
    from edgeq.runners import captured_stderr

    with captured_stderr():  # the XNNPACK delegate's INFO line
        try:
            interp = Interpreter(model_path=str(path))
            interp.allocate_tensors()
        except (RuntimeError, ValueError) as e:  # e.g. XNNPACK refuses a kernel of a corrupt or odd model
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise ModelError(f"{path}: LiteRT cannot prepare the lowered model ({reason}); check the model's weights "
                             "and the plan's scales, or use another --target") from None
    ops = interp._get_ops_details()  # the only per-node view the Python API exposes
    original = [o for o in ops if o["op_name"] != "DELEGATE"]
    producer = {int(t): o["index"] for o in original for t in o["outputs"]}
    inside: set[int] = set()
    for d in (o for o in ops if o["op_name"] == "DELEGATE"):
        boundary = {int(t) for t in d["inputs"]}
        stack = [int(t) for t in d["outputs"]]
        seen: set[int] = set()
        while stack:  # walk back from the partition's outputs to its inputs
            t = stack.pop()
            if t in seen or t in boundary or t not in producer:
                continue
            seen.add(t)
            node = producer[t]
            inside.add(node)
            stack.extend(int(i) for i in ops[node]["inputs"] if int(i) >= 0)
    return [(o["op_name"], o["index"] in inside) for o in original]


def where_it_runs(path: Path, android_api: int | None = None) -> tuple[dict, list[str]]:
    """Per builtin op type: count, XNNPACK-delegated count, NNAPI min API, GPU delegate support."""
    data = target_data("tflite")
    nnapi, gpu = data.get("nnapi", {}), set(data.get("gpu", {}).get("ops", []))
    partition = xnnpack_partition(path)
    total, delegated = Counter(op for op, _ in partition), Counter(op for op, d in partition if d)
    quantized = any(op in ("QUANTIZE", "DEQUANTIZE") for op, _ in partition)
    per_op = {}
    for op in sorted(total):
        api = nnapi.get("min_api", {}).get(op)
        per_op[op] = {"count": total[op], "xnnpack": delegated[op], "nnapi_min_api": api, "gpu": op in gpu}
    notes = []
    summary = {"ops": sum(total.values()), "xnnpack_delegated": sum(delegated.values()), "per_op": per_op}
    if android_api is not None:
        floor = nnapi.get("int8_min_api", 30) if quantized else 27
        missing = sorted(op for op, v in per_op.items() if v["nnapi_min_api"] is None or max(v["nnapi_min_api"], floor) > android_api)
        summary["nnapi"] = {"android_api": android_api, "cpu_fallback_ops": missing}
        notes.append(NNAPI_DEPRECATION)  # whenever NNAPI is targeted
    return summary, notes
