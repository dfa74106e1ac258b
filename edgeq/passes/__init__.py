"""Graph normalization passes: each a named unit in a registry, testable alone.

A pass takes a Graph and returns a Graph (it may edit the one it was given). None may
change what the float model computes beyond float rounding; tests check each one.
"""

from __future__ import annotations

from edgeq.graph import Graph
from edgeq.passes import basic, batchnorm, rnn, sentinel, shapes  # noqa: F401  (importing them registers their passes)
from edgeq.passes.registry import PASSES, infer, register  # noqa: F401  (the package's names)

# The normalization every compile runs, in order.
DEFAULT_PIPELINE = ("constants_to_initializers", "remove_identity", "fold_constants", "fold_shapes", "fold_batchnorm",
                    "batchnorm_to_affine", "divide_as_multiply", "sentinel_masks", "remove_dead_nodes", "unshare_biases")


def run_passes(graph: Graph, names=DEFAULT_PIPELINE) -> Graph:
    for name in names:
        graph = PASSES[name](graph)
        graph.refresh()
    return infer(graph)

