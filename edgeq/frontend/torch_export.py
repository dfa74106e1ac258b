"""PyTorch in: nn.Module + example inputs, or a .pt2 from torch.export.save, to ONNX.

Never torch.load a user's pickle: .pt2 archives are read by torch.export.load.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import onnx

from edgeq.errors import MissingExtraError, ModelError

INSTALL_HINT = "install the PyTorch extra: pip install 'edgeq[torch]' (torch==2.13.0 and onnxscript)"


def _torch():
    try:
        import torch
    except ImportError:
        raise MissingExtraError(f"PyTorch models need torch; {INSTALL_HINT}") from None
    return torch


def _to_onnx(program_or_module, args, dynamic_shapes=None) -> onnx.ModelProto:
    torch = _torch()
    try:
        import onnxscript  # noqa: F401
    except ImportError:
        raise MissingExtraError(f"exporting PyTorch to ONNX needs onnxscript; {INSTALL_HINT}") from None
    with warnings.catch_warnings(), _quiet():
        warnings.simplefilter("ignore")
        prog = torch.onnx.export(
            program_or_module, args, dynamo=True, opset_version=18, dynamic_shapes=dynamic_shapes,
            optimize=True, verbose=False,
        )
    model = onnx.ModelProto()
    model.CopyFrom(prog.model_proto)
    # Strip the exporter's per-run metadata so the same module gives identical bytes.
    del model.metadata_props[:]
    model.producer_name, model.producer_version = "edgeq-torch-export", ""
    return model


class _quiet:
    """The dynamo exporter prints progress and logs warnings; keep the CLI's output clean."""

    def __enter__(self):
        import contextlib

        self._loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
        self._levels = [lg.level for lg in self._loggers]
        for lg in self._loggers:
            lg.setLevel(logging.ERROR)
        self._cm = contextlib.redirect_stdout(io.StringIO())
        return self._cm.__enter__()

    def __exit__(self, *exc):
        for lg, level in zip(self._loggers, self._levels):
            lg.setLevel(level)
        return self._cm.__exit__(*exc)


def export_module(module, example_inputs) -> onnx.ModelProto:
    torch = _torch()
    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    module = module.eval()
    try:
        return _to_onnx(module, tuple(example_inputs))
    except Exception as e:
        raise ModelError(f"{type(module).__name__}: torch.onnx.export failed: {str(e).splitlines()[0]}") from None


class PickleRefused(Exception):
    pass


@contextlib.contextmanager
def no_pickles():
    """torch.export.load falls back to full unpickling for some archive entries
    (torch.load(weights_only=False), pickle.loads): a user's file must never run code, so
    while it loads, torch.load is held to weights_only=True and plain unpickling refuses."""
    import pickle

    torch = _torch()
    real_load, real_loads = torch.load, pickle.loads
    real_obj = getattr(torch._C, "_pickle_load_obj", None)

    def safe_load(f, *args, **kwargs):
        kwargs["weights_only"] = True
        return real_load(f, *args, **kwargs)

    def refuse(*args, **kwargs):
        raise PickleRefused("the archive holds pickled Python objects")

    torch.load, pickle.loads = safe_load, refuse
    if real_obj is not None:
        torch._C._pickle_load_obj = refuse
    try:
        yield
    finally:
        torch.load, pickle.loads = real_load, real_loads
        if real_obj is not None:
            torch._C._pickle_load_obj = real_obj


def load_pt2(path: Path) -> onnx.ModelProto:
    torch = _torch()
    try:
        with no_pickles(), _quiet():  # torch logs a traceback for a corrupt archive; the error below says it in one line
            program = torch.export.load(str(path))
    except Exception as e:
        if isinstance(e, PickleRefused) or "weights_only" in str(e) or "Unsupported global" in str(e):
            raise ModelError(f"{path}: the archive needs arbitrary pickled objects, which edgeq does not load (they can run "
                             "code); export plain tensors with torch.export.save, or pass an .onnx") from None
        raise ModelError(f"{path}: not a torch.export archive ({str(e).splitlines()[0] if str(e) else type(e).__name__}); save it with torch.export.save") from None
    try:
        return _to_onnx(program, program.example_inputs[0] if program.example_inputs else ())
    except Exception as e:
        raise ModelError(f"{path}: exporting the program to ONNX failed: {str(e).splitlines()[0]}") from None
