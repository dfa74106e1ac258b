"""Static shapes and the NCHW -> NHWC layout decision, made once for the whole graph.

LiteRT's convolution, pooling and resize kernels take NHWC. ONNX tensors are NCHW.
Every rank-4 activation may exist in two layouts: "onnx" (as the ONNX graph has it) and
"nhwc" (channels last). Layout-aware ops (conv, pool, resize, elementwise, concat, ...)
work in NHWC and remap their axes; shape ops that need ONNX order (Reshape, Flatten)
get it back, by a free RESHAPE when only size-1 dims move (e.g. after global pooling).
So a TRANSPOSE appears only where a tensor really crosses layouts: at the model
boundary (or nowhere, with io_layout=nhwc).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from edgeq.errors import ModelError
from edgeq.graph import Graph, node_name

TO_NHWC = (0, 2, 3, 1)
TO_NCHW = (0, 3, 1, 2)


def perm_to(layout: str, rank: int) -> tuple[int, ...]:
    """Axes of the ONNX tensor in the order the layout stores them."""
    return TO_NHWC if layout == "nhwc" and rank == 4 else tuple(range(rank))


def stored_shape(shape, layout: str) -> list[int]:
    return [int(shape[a]) for a in perm_to(layout, len(shape))]


def axis_in(layout: str, axis: int, rank: int) -> int:
    """Where ONNX axis `axis` sits in the stored layout."""
    axis = axis % rank if rank else 0
    return perm_to(layout, rank).index(axis)


def is_free_transpose(shape, perm) -> bool:
    """True when a transpose only moves size-1 dims (a RESHAPE does it)."""
    moved = [perm[k] for k in range(len(perm)) if shape[perm[k]] != 1]
    return moved == sorted(moved)


def static_graph(graph: Graph, batch: int = 1) -> Graph:
    """A copy with the symbolic batch bound and shape arithmetic folded to constants.

    LiteRT holds static shapes: the artifact runs one sample at a time (the runner loops),
    so Shape -> Slice -> Concat -> Reshape chains become a constant Reshape.
    """
    from edgeq.passes import PASSES, infer

    g = graph.copy()
    for i in g.model.graph.input:
        if i.name in g.init_names:
            continue
        dims = i.type.tensor_type.shape.dim
        if dims and not (dims[0].HasField("dim_value") and dims[0].dim_value > 0):
            dims[0].Clear()
            dims[0].dim_value = batch
    g = infer(g)
    for _ in range(8):
        changed = _fold_shapes(g)
        g = PASSES["fold_constants"](g)
        g = PASSES["remove_dead_nodes"](g)
        g = infer(g)
        if not changed:
            break
    return g


def _fold_shapes(g: Graph) -> bool:
    changed = False
    keep = []
    for n in g.model.graph.node:
        shape = g.shape(n.input[0]) if n.op_type in ("Shape", "Size") and n.input else None
        if shape is not None and all(isinstance(d, int) for d in shape):
            if n.op_type == "Shape":
                start = next((onnx.helper.get_attribute_value(a) for a in n.attribute if a.name == "start"), 0)
                end = next((onnx.helper.get_attribute_value(a) for a in n.attribute if a.name == "end"), len(shape))
                value = np.asarray(shape[start:end], np.int64)
            else:
                value = np.asarray(int(np.prod(shape)), np.int64)
            g.model.graph.initializer.append(numpy_helper.from_array(value, n.output[0]))
            changed = True
        else:
            keep.append(n)
    del g.model.graph.node[:]
    g.model.graph.node.extend(keep)
    g.refresh()
    return changed


def check_static(g: Graph, target: str) -> None:
    """Every tensor LiteRT will allocate needs a known shape."""
    for k, n in enumerate(g.nodes):
        for o in n.output:
            if not o:
                continue
            shape = g.shape(o)
            if shape is None or not all(isinstance(d, int) for d in shape):
                raise ModelError(
                    f"{g.source}: node '{node_name(n, k)}' ({n.op_type}) output '{o}' has a dynamic shape {list(shape or [])} "
                    f"that {target} cannot hold; bind the inputs with --input-shape or export the model with static shapes")
