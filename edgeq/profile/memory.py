"""Peak memory: activation liveness over the execution order, plus the weights.

A tensor is live from the op that writes it (graph inputs: from the start) to the last
op that reads it (graph outputs: to the end). The peak is the largest sum of live bytes
at any op, counting that op's inputs and outputs together — what an arena planner
without in-place reuse needs. Views (Reshape, Flatten, ...) alias their input.
"""

from __future__ import annotations

from collections.abc import Callable

from edgeq.op_cost import OpCost


def peak_activation_bytes(costs: list[OpCost], size_of: Callable[[str], int], graph_inputs: list[str],
                          graph_outputs: list[str]) -> dict:
    alias: dict[str, str] = {}
    for c in costs:
        if c.kind == "view" and c.inputs:
            for o in c.outputs:
                alias[o] = alias.get(c.inputs[0], c.inputs[0])

    def root(t: str) -> str:
        return alias.get(t, t)

    first: dict[str, int] = {root(t): -1 for t in graph_inputs}
    last: dict[str, int] = {}
    for i, c in enumerate(costs):
        for t in c.outputs:
            first.setdefault(root(t), i)
        for t in c.inputs:
            last[root(t)] = i
    end = len(costs)
    for t in graph_outputs:
        last[root(t)] = end
    size = {t: size_of(t) for t in first}
    peak, at = 0, None
    for i in range(-1, end + 1):
        live = sum(size[t] for t in first if first[t] <= i <= last.get(t, first[t]))
        if live > peak:
            peak, at = live, i
    where = costs[at].name if at is not None and 0 <= at < end else ("inputs" if at == -1 else "outputs")
    return {"peak_activation_bytes": int(peak), "peak_at": where}


def memory_summary(costs: list[OpCost], size_of: Callable[[str], int], graph_inputs: list[str], graph_outputs: list[str]) -> dict:
    act = peak_activation_bytes(costs, size_of, graph_inputs, graph_outputs)
    weights = sum(c.weight_bytes for c in costs)
    return {**act, "weight_bytes": int(weights), "peak_bytes": int(act["peak_activation_bytes"] + weights)}
