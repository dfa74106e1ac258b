"""Neural Engine residency, estimated per ONNX node from targets/coreml.toml.

Core ML decides placement at load time, per device and OS, and does not say why; this is an
estimate from published observations (the sources are in the table), reported as one.
"""

from __future__ import annotations

import numpy as np

from edgeq.graph import Graph, node_name
from edgeq.quant.plan import QuantPlan
from edgeq.target import target_data


def estimate_residency(graph: Graph, plan: QuantPlan, min_os: str, folded: set[str] = frozenset()) -> dict:
    table = target_data("coreml").get("neural_engine", {})
    fallback_ops = set(table.get("fallback_ops", []))
    max_rank = int(table.get("max_rank", 5))
    max_dim = int(table.get("max_dim", 16384))
    per_node, fallbacks = [], 0
    for k, n in enumerate(graph.nodes):
        if node_name(n, k) in folded:
            continue  # computed at compile time: not in the program
        reason = None
        if n.op_type in fallback_ops:
            reason = table.get("fallback_why", {}).get(n.op_type, "op not run by the Neural Engine")
        elif n.op_type in ("Conv", "ConvTranspose") and any(d != 1 for d in _attr(n, "dilations", [])):
            reason = "dilated convolution"
        else:
            for o in n.output:
                shape = graph.shape(o) or ()
                dims = [d for d in shape if isinstance(d, int)]
                if len(shape) > max_rank:
                    reason = f"rank {len(shape)} > {max_rank}"
                elif dims and max(dims) > max_dim:
                    reason = f"a dimension of {max(dims)} > {max_dim}"
                elif graph.dtype(o) not in (None, "float32", "float16"):
                    reason = f"{graph.dtype(o)} tensor (the Neural Engine computes in fp16/int8)"
        if reason:
            fallbacks += 1
        per_node.append({"node": node_name(n, k), "op": n.op_type, "unit": "cpu_or_gpu" if reason else "neural_engine",
                         **({"why": reason} if reason else {})})
    int8_acts = plan.mode == "static" and any(a.bits == 8 for a in plan.activations.values())
    return {
        "estimate": True,
        "note": "estimate: Core ML places ops at load time per device and OS; this is not a measurement",
        "expected_fallbacks": fallbacks,
        "nodes": len(per_node),
        "int8_activations": (table.get("int8_activation_note", "") if int8_acts else None),
        "per_node": per_node,
        "sources": sorted(set(table.get("sources", {}).values())),
    }


def _attr(n, name, default):
    from edgeq.graph import get_attr

    v = get_attr(n, name, default)
    return list(np.asarray(v).ravel()) if v is not None else default
