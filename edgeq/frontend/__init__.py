"""Front end: anything the user hands in becomes a checked, shape-inferred Graph."""

from __future__ import annotations

from pathlib import Path

from edgeq.errors import ModelError
from edgeq.frontend.onnx_file import bind_input_shapes, finish, load_onnx, parse_input_shapes
from edgeq.graph import Graph

__all__ = ["load", "parse_input_shapes", "bind_input_shapes"]


def load(model, input_shapes: dict[str, tuple] | None = None, example_inputs=None) -> Graph:
    """Load a path (.onnx, .pt2) or a torch.nn.Module (with example_inputs) as a Graph."""
    if isinstance(model, Graph):
        return finish(model.model, model.source, input_shapes)
    if isinstance(model, str | Path):
        path = Path(model)
        if not path.exists():
            raise ModelError(f"{path}: no such file; pass the path of an .onnx or .pt2 model")
        if path.is_dir() or path.suffix in (".tflite", ".mlpackage", ".ort"):
            what = "a folder" if path.is_dir() and path.suffix != ".mlpackage" else "a compiled artifact"
            raise ModelError(f"{path}: {what}, not a model; pass the .onnx or .pt2 model "
                             "(`edgeq profile` reads the artifacts edgeq wrote)")
        if path.suffix == ".pt2":
            from edgeq.frontend.torch_export import load_pt2

            return finish(load_pt2(path), str(path), input_shapes)
        if path.suffix in (".pt", ".pth", ".pkl", ".bin"):
            raise ModelError(
                f"{path}: pickled PyTorch files are not loaded (they can run code); save the model with "
                "torch.export.save(...) as .pt2, or export it to .onnx"
            )
        return finish(load_onnx(path), str(path), input_shapes)
    if type(model).__module__.startswith("onnx") and hasattr(model, "graph"):
        return finish(model, "<ModelProto>", input_shapes)
    if hasattr(model, "forward") and hasattr(model, "parameters"):
        from edgeq.frontend.torch_export import export_module

        if example_inputs is None:
            raise ModelError("a torch.nn.Module needs example_inputs=(tensor, ...) to be exported")
        return finish(export_module(model, example_inputs), type(model).__name__, input_shapes)
    raise ModelError(f"cannot load a model from {type(model).__name__}; pass an .onnx/.pt2 path or an nn.Module")


RECURRENT_OPS = ("LSTM", "GRU", "RNN")


def check_leading_dim_is_batch(graph: Graph) -> None:
    """edgeq splits data into samples along a symbolic leading dim, taking it for a batch. When
    that dim is the time axis of a recurrent layer (silero-vad's sequence model: frames carry
    state from one to the next), splitting would change what the model computes."""
    from edgeq.graph import get_attr, node_name

    leading = {s.shape[0]: s.name for s in graph.inputs if s.shape and isinstance(s.shape[0], str)}
    for k, n in enumerate(graph.nodes):
        if n.op_type not in RECURRENT_OPS or not leading:
            continue
        shape = graph.shape(n.input[0]) or ()
        time_axis = 1 if get_attr(n, "layout", 0) == 1 else 0
        dim = shape[time_axis] if len(shape) > time_axis else None
        if dim in leading:
            name = leading[dim]
            rest = ",".join(str(d) if isinstance(d, int) else "1" for d in next(s.shape for s in graph.inputs if s.name == name)[1:])
            raise ModelError(f"{graph.source}: the leading dim '{dim}' of input '{name}' is the time axis of {n.op_type} "
                             f"'{node_name(n, k)}', not a batch, so edgeq cannot split it into samples; bind it with "
                             f"--input-shape {name}=T,{rest} (T steps per inference; the data's rows are then read T at a time)")
