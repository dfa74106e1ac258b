"""Peak memory: activation liveness over the execution order, plus the weights.

A tensor is live from the op that writes it (graph inputs: from the start) to the last
op that reads it (graph outputs: to the end). The peak is the largest sum of live bytes
at any op, counting that op's inputs and outputs together — what an arena planner
without in-place reuse needs. Views (Reshape, Flatten, ...) alias their input.
"""

from __future__ import annotations

from collections.abc import Callable

# the liveness itself lives in op_cost, below lower: TFLite Micro's early arena check reads it too
from edgeq.op_cost import OpCost, peak_activation_bytes


def memory_summary(costs: list[OpCost], size_of: Callable[[str], int], graph_inputs: list[str], graph_outputs: list[str]) -> dict:
    act = peak_activation_bytes(costs, size_of, graph_inputs, graph_outputs)
    weights = sum(c.weight_bytes for c in costs)
    return {**act, "weight_bytes": int(weights), "peak_bytes": int(act["peak_activation_bytes"] + weights)}
