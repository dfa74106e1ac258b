"""edgeq: compile trained networks into small, verified, profiled artifacts for devices."""

__version__ = "0.1.0"


def compile(model, target="ort", calib=None, val=None, out="out", **kw):  # noqa: A001
    """Compile an .onnx/.pt2 path or a torch.nn.Module (pass example_inputs=...).

    Returns the report (the same dict written to out/report.json).
    """
    from edgeq.pipeline import compile as _compile

    return _compile(model, target=target, calib=calib, val=val, out=out, **kw)
