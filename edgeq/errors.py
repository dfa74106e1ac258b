"""User errors. Each message names the file, node or op and says what to do.

The CLI prints an EdgeqError as one line and exits 2; anything else is a bug (exit 1).
"""


class EdgeqError(Exception):
    """A mistake in what the user handed in, with the fix in the message."""


class ModelError(EdgeqError):
    """The model file cannot be read, checked or run."""


class CalibrationError(EdgeqError):
    """Calibration or validation data does not fit the model."""


class PlanError(EdgeqError):
    """A quantization plan is malformed, or asks for what the target cannot hold."""


class UnsupportedOpError(EdgeqError):
    """A node whose op the chosen target has no lowering for."""

    def __init__(self, node: str, op: str, target: str, hint: str = ""):
        self.node, self.op, self.target = node, op, target
        fix = hint or f"run `edgeq inspect MODEL --target {target}` to list the ops {target} can lower"
        super().__init__(f"node '{node}': op {op} has no {target} lowering; {fix}")


class MissingExtraError(EdgeqError):
    """An optional dependency is not installed."""
