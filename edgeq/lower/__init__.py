"""Lowerings: one module per target, each with a table from ONNX op to a lowering.

A target module provides:
    NAME, OPS: dict[str, callable]      the op table (listable: `edgeq inspect --target X`)
    lower(graph, plan, out_dir, stem, options) -> Artifact
and optionally check_plan, adjust_plan, lowering_view, check_graph, cross_checks and
weight_storage. The rest of edgeq reaches a module only through `edgeq.target.Target`, which
resolves those hooks once. Modules are imported on first use, so a target's heavy dependency is
only needed when used.
"""

from __future__ import annotations

from edgeq.target import TARGET_MODULES, available, get_target, target_data  # noqa: F401  (re-exported)


def target_names() -> list[str]:
    return [name for name in TARGET_MODULES if available(name)]


def expand_all(names: list[str]) -> list[str]:
    """`all` in a target list becomes every available target (in target_names() order); no name twice."""
    out: list[str] = []
    for n in names:
        for t in (target_names() if n == "all" else [n]):
            if t not in out:
                out.append(t)
    return out


# Shape arithmetic a target without dynamic shapes can only take once it folds to constants.
SHAPE_OPS = {"Shape", "ConstantOfShape", "Range", "Size", "NonZero"}


def lowered_view(graph, name: str):
    """The graph as target `name` lowers it (`lowering_view`: e.g. LiteRT binds the batch and
    folds the shape arithmetic); the graph itself for targets without one."""
    return get_target(name).view(graph)


def unlowerable(graph, name: str, view=None) -> list[tuple[int, object]]:
    """(index, node) of every node of the lowered view whose op the target's table lacks."""
    table = get_target(name).ops
    g = view if view is not None else lowered_view(graph, name)
    return [(k, n) for k, n in enumerate(g.nodes) if n.op_type not in table]


def check_lowerable(graph, name: str) -> None:
    """Before any calibration: every op of the normalized graph has a lowering on `name`."""
    from edgeq.errors import UnsupportedOpError
    from edgeq.graph import node_name

    view = lowered_view(graph, name)  # computed once: the op table and check_graph both read it
    missing = unlowerable(graph, name, view)
    if not missing:
        get_target(name).check_graph(graph, view)  # e.g. tflm: does it fit a microcontroller
        return
    k, n = missing[0]
    ops = sorted({m.op_type for _, m in missing})
    hint = f"{len(missing)} node(s) of {', '.join(ops)} cannot lower; `edgeq inspect MODEL --target {name}` lists them"
    if n.op_type in SHAPE_OPS:
        unbound = [f"{s.name}{list(s.shape)}" for s in graph.inputs if not s.is_static()]
        cause = (f"its value depends on the unbound dims of {', '.join(unbound)}: bind them with --input-shape"
                 if unbound else "it computes a shape edgeq could not fold to a constant")
        hint = f"{cause} ({hint})"
    raise UnsupportedOpError(node_name(n, k), n.op_type, name, hint)
