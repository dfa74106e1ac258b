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
    aliases = lift_1d(g)
    if aliases:
        g = infer(g)
    if any(n.op_type == "LSTM" for n in g.nodes):  # state in / final cell state out: unrolled (passes/rnn.py)
        from edgeq.passes.rnn import unroll_lstms

        g = infer(unroll_lstms(g))
    g = PASSES["fold_shapes"](g)  # the same shape folding the normalization passes run, now with the batch bound
    if fuse_erf_gelu(g):  # after the last shape inference: opset < 20 has no Gelu to infer
        g.refresh()
    g.records["lift_1d"] = sorted(aliases.items())  # (new name, original): lifted_plan reads them
    return g


def fuse_erf_gelu(g: Graph) -> bool:
    """x * (erf(x / sqrt 2) + 1) * 0.5, as torch exports nn.GELU, into one Gelu node.

    LiteRT has no ERF; its GELU has float, int8 and XNNPACK kernels. The fused node keeps
    the last Mul's output name, so the plan's grids for x and the output still apply.
    """
    def const(name: str) -> float | None:
        v = g.initializer(name) if g.is_const(name) else None
        return float(v) if v is not None and v.size == 1 else None

    def only_user(name: str, op: str):
        users = g.consumers.get(name, [])
        outputs = {o.name for o in g.model.graph.output}
        return users[0] if len(users) == 1 and users[0].op_type == op and name not in outputs else None

    drop, fused = set(), {}
    for erf in g.nodes:
        div = g.producer.get(erf.input[0]) if erf.op_type == "Erf" else None
        # x / sqrt 2, or x * (1 / sqrt 2) as the divide_as_multiply pass writes it
        scale = {"Div": np.sqrt(2), "Mul": 1 / np.sqrt(2)}.get(div.op_type) if div is not None else None
        if scale is None or not g.is_const(div.input[1]) or not np.isclose(const(div.input[1]) or 0, scale, rtol=1e-5):
            continue
        x = div.input[0]
        add = only_user(erf.output[0], "Add")
        if add is None or const(add.input[1] if add.input[0] == erf.output[0] else add.input[0]) != 1.0:
            continue
        mul = only_user(add.output[0], "Mul")
        if mul is None or x not in mul.input or only_user(div.output[0], "Erf") is not erf:
            continue
        half = only_user(mul.output[0], "Mul")
        if half is None or const(half.input[1] if half.input[0] == mul.output[0] else half.input[0]) != 0.5:
            continue
        drop.update(n.output[0] for n in (div, erf, add, mul))
        fused[half.output[0]] = onnx.helper.make_node("Gelu", [x], [half.output[0]], name=f"{half.name or half.output[0]}_gelu")
    if not fused:
        return False
    nodes = [fused.get(n.output[0], n) for n in g.model.graph.node if n.output[0] not in drop]
    del g.model.graph.node[:]
    g.model.graph.node.extend(nodes)
    return True


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


LIFTED_1D = ("Conv", "ConvTranspose", "MaxPool", "AveragePool")


PULLED_1D = ("Relu", "Clip", "LeakyRelu", "HardSigmoid", "Sigmoid", "Tanh", "HardSwish")


def lift_1d(g: Graph) -> dict[str, str]:
    """1-D Conv / ConvTranspose / pools as their 2-D form on an [N, C, 1, L] view (LiteRT is 2-D).

    Unsqueeze(axis 2) -> the 2-D op with a height-1 window -> Squeeze(axis 2), in ONNX itself,
    so the lowering sees only 2-D windows. An activation that is the op's only consumer moves
    inside (before the Squeeze) so the kernel can still fuse it. Returns {new name: original}
    for every tensor the lift renamed: the plan's grids and weight entries apply to them as to
    the originals (lifted_plan), so a lifted layer stays as integer as the plan says.
    """
    from onnx import helper

    aliases: dict[str, str] = {}
    nodes, pulled = [], set()
    inits = {t.name: t for t in g.model.graph.initializer}
    outputs = {o.name for o in g.model.graph.output}
    for n in g.model.graph.node:
        if id(n) in pulled:
            continue
        shape = g.shape(n.input[0]) if n.op_type in LIFTED_1D else None
        w = inits.get(n.input[1]) if n.op_type in ("Conv", "ConvTranspose") and len(n.input) > 1 else None
        if shape is None or len(shape) != 3 or (n.op_type in ("Conv", "ConvTranspose") and w is None):
            nodes.append(n)
            continue
        axes = f"{n.name or n.output[0]}_lift_axes"
        as_input = g.opset >= 13  # Unsqueeze / Squeeze take axes as an input from opset 13
        if as_input:
            g.model.graph.initializer.append(numpy_helper.from_array(np.asarray([2], np.int64), axes))
        kw = {} if as_input else {"axes": [2]}
        x4, y4 = f"{n.input[0]}_as_2d", f"{n.output[0]}_as_2d"
        aliases[x4], aliases[y4] = n.input[0], n.output[0]
        nodes.append(helper.make_node("Unsqueeze", [n.input[0], axes][: 1 + as_input], [x4], name=f"{n.name}_lift", **kw))
        inputs = [x4, *n.input[1:]]
        if w is not None:
            w4 = numpy_helper.to_array(w)
            w4 = w4.reshape(w4.shape[0], w4.shape[1], 1, w4.shape[2])
            g.model.graph.initializer.append(numpy_helper.from_array(w4, f"{w.name}_as_2d"))
            inputs[1] = f"{w.name}_as_2d"
            aliases[inputs[1]] = w.name
        attrs = {}
        for a in n.attribute:
            v = helper.get_attribute_value(a)
            if a.name in ("kernel_shape", "strides", "dilations", "output_padding"):
                v = [1 if a.name != "output_padding" else 0, *v]
            elif a.name == "pads":
                v = [0, v[0], 0, v[1]]
            elif a.name == "output_shape":
                v = [1, *v]
            attrs[a.name] = v
        nodes.append(helper.make_node(n.op_type, inputs, [y4, *n.output[1:]], name=n.name, **attrs))
        last, last4 = n.output[0], y4
        users = g.consumers.get(n.output[0], [])
        if (len(users) == 1 and n.output[0] not in outputs and users[0].op_type in PULLED_1D
                and all(g.is_const(i) for i in users[0].input[1:] if i)):
            u = users[0]
            pulled.add(id(u))
            last, last4 = u.output[0], f"{u.output[0]}_as_2d"
            aliases[last4] = last
            nodes.append(helper.make_node(u.op_type, [y4, *u.input[1:]], [last4], name=u.name, domain=u.domain,
                                          **{a.name: helper.get_attribute_value(a) for a in u.attribute}))
        nodes.append(helper.make_node("Squeeze", [last4, axes][: 1 + as_input], [last], name=f"{n.name}_unlift", **kw))
    if aliases:
        del g.model.graph.node[:]
        g.model.graph.node.extend(nodes)
        g.refresh()
    return aliases


def lifted_plan(plan, aliases: dict[str, str]):
    """The plan with every tensor lift_1d renamed given its original's entry (grid, weight
    parameters; a lifted weight only gains a height-1 dim, so its channel axis is unchanged)."""
    from dataclasses import replace

    if not aliases:
        return plan
    acts, weights = dict(plan.activations), dict(plan.weights)
    for new, old in aliases.items():
        if old in plan.activations:
            a = plan.activations[old]
            acts[new] = replace(a, tensor=new, shared_with=a.shared_with or old)
        if old in plan.weights:
            wp = plan.weights[old]
            weights[new] = replace(wp, tensor=new, shape=[*wp.shape[:2], 1, *wp.shape[2:]])
    return replace(plan, activations=acts, weights=weights)
