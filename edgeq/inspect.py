"""`edgeq inspect` and `edgeq targets`: what is in a model, what each target can lower."""

from __future__ import annotations

from edgeq.frontend import load
from edgeq.frontend.quantized import quantized_ops
from edgeq.graph import node_name
from edgeq.lower import get_target, target_data, target_names, unlowerable
from edgeq.passes import run_passes
from edgeq.target import target_spec


def list_targets() -> list[dict]:
    out = []
    for name in target_names():
        data = target_data(name)
        try:
            n_ops = len(get_target(name).OPS)
        except Exception:  # a target whose optional dependency is missing
            n_ops = 0
        out.append({"name": name, "description": data["description"], "runtime": data["runtime"],
                    "artifact": data["artifact"], "weight_bits": data["weight_bits"],
                    "weight_granularity": data["weight_granularity"], "weight_schemes": data["weight_schemes"],
                    "activation_bits": data["activation_bits"], "activation_dtype": data["activation_dtype"],
                    "modes": data["modes"], "ops": n_ops,
                    "options": {o.key: o.flag for o in target_spec(name).options},
                    # what each deployment target holds, where the format has several (Core ML's min_os)
                    "deployments": {k: v for k, v in data.get("min_os", {}).items() if k != "sources"}})
    return out


def inspect_model(model, targets: list[str], input_shapes: dict | None = None) -> dict:
    graph = load(model, input_shapes)
    info = {
        "model": str(model),
        "opset": graph.opset,
        "inputs": [s.to_json() for s in graph.inputs],
        "outputs": [s.to_json() for s in graph.outputs],
        "params": graph.param_count(),
        "op_counts": graph.op_counts(),
        "targets": {},
    }
    # Targets lower the normalized graph (BatchNorm folded, Identity/Dropout gone).
    normalized = run_passes(graph.copy())
    info["normalized_op_counts"] = normalized.op_counts()
    info["quantized_ops"] = quantized_ops(graph)
    for name in targets or target_names():
        table = get_target(name).ops
        missing = sorted({f"{n.op_type} ({node_name(n, k)})" for k, n in unlowerable(normalized, name)})
        info["targets"][name] = {
            "lowerable": sorted(op for op in normalized.op_counts() if op in table),
            "missing": missing,
            "supported_ops": sorted(table),
        }
    return info


def render(info: dict) -> str:
    lines = [f"{info['model']}  (opset {info['opset']}, {info['params']:,} params)"]
    for s in info["inputs"]:
        lines.append(f"  input  {s['name']}: {s['dtype']} {s['shape']}")
    for s in info["outputs"]:
        lines.append(f"  output {s['name']}: {s['dtype']} {s['shape']}")
    lines.append("  ops: " + ", ".join(f"{op} x{n}" for op, n in info["op_counts"].items()))
    lines.append("  after normalization: " + ", ".join(f"{op} x{n}" for op, n in info["normalized_op_counts"].items()))
    if info.get("quantized_ops"):
        lines.append("  already quantized: " + ", ".join(f"{op} x{n}" for op, n in info["quantized_ops"].items())
                     + " (compile refuses it: pass the float model it was quantized from)")
    for name, t in info["targets"].items():
        status = "all ops lower" if not t["missing"] else f"cannot lower: {', '.join(t['missing'])}"
        lines.append(f"  {name}: {status}  ({len(t['supported_ops'])} ops in its table)")
    return "\n".join(lines)
