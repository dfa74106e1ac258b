"""QuantPlan: the contract between the quantizer and the lowerings, and a file users edit.

Everything a lowering needs is in the plan, per tensor, by name; a lowering never
re-derives scales. `edgeq plan` writes it as plan.json (stable key order, exact floats);
`edgeq compile --plan` reads it back and applies exactly what it says.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from edgeq.errors import PlanError
from edgeq.fileio import dumps_json

PLAN_VERSION = 1
SCHEMES = ("symmetric", "asymmetric", "palette")
GRANULARITIES = ("per_tensor", "per_channel", "per_block")


@dataclass
class WeightPlan:
    """One weight tensor of one layer. bits=None keeps it float."""

    tensor: str
    node: str
    op: str
    shape: list[int]
    bits: int | None = 8
    scheme: str = "symmetric"
    granularity: str = "per_channel"
    axis: int | None = 0
    block_size: int | None = None
    rounding: str = "nearest"
    scale: list[float] | None = None
    zero_point: list[int] | None = None
    palette: list[list[float]] | None = None
    bias: str | None = None  # bias tensor: int32, scale = input_scale * weight_scale[c]
    input: str | None = None  # the activation this weight multiplies (for the bias scale)
    # Added by the mixed-precision engine (edgeq/quant/weights.py holds the math):
    # per_block: blocks of block_size run along `axis` (the input dim); `scale`/`zero_point` are the
    #   C-order flattening of shape[axis] -> ceil(shape[axis] / block_size) (DequantizeLinear-21 layout).
    # palette: per_tensor -> one palette; per_channel -> one per group of block_size (default 1)
    #   channels along `axis`; codebook says how it was made (kmeans | nf4).
    codebook: str | None = None
    scale_bits: int | None = None  # double quantization: `scale` holds values on an unsigned grid
    scale_scale: list[float] | None = None  # ... of this step, one per 256 scales (bitsandbytes-style)
    derived: dict | None = None  # settings the parameters were computed for (an edit re-derives them)

    def payload_bits(self) -> int:
        """Bits the weight values take (excluding scales), for size predictions."""
        n = int(np.prod(self.shape))
        return n * (self.bits if self.bits else 32)


@dataclass
class ActivationPlan:
    """One activation tensor. bits=None keeps it float."""

    tensor: str
    bits: int | None = 8
    signed: bool = True
    scale: float = 1.0
    zero_point: int = 0
    min: float = 0.0
    max: float = 0.0
    observer: str = "minmax"
    shared_with: str | None = None  # copied from this tensor (shape ops keep their input's grid)


@dataclass
class QuantPlan:
    model_sha256: str
    target: str | None = None
    mode: str = "static"  # static (weights + activations) | weight_only | dynamic
    weights: dict[str, WeightPlan] = field(default_factory=dict)
    activations: dict[str, ActivationPlan] = field(default_factory=dict)
    calibration: dict = field(default_factory=dict)  # source, samples, observer, warnings
    constraints: dict = field(default_factory=dict)  # what the target allowed
    budget: dict = field(default_factory=dict)
    predicted: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # Weights the quantizer rewrote (GPTQ-rounded values, AWQ-scaled layers): {name: {shape, b64}}
    # float32 little-endian. Lowerings see them in place of the model's initializers.
    tensors: dict = field(default_factory=dict)

    # -- summaries -------------------------------------------------------------------
    def avg_weight_bits(self) -> float:
        total = sum(int(np.prod(w.shape)) for w in self.weights.values())
        if total == 0:
            return 32.0
        return sum(w.payload_bits() for w in self.weights.values()) / total

    # -- (de)serialization ---------------------------------------------------------
    def to_dict(self) -> dict:
        d = asdict(self)
        d["version"] = PLAN_VERSION
        return _finite(d)

    def to_json(self) -> str:
        return dumps_json(self.to_dict())

    def sha256(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    @classmethod
    def from_dict(cls, d: dict, source: str = "plan") -> QuantPlan:
        if not isinstance(d, dict) or d.get("version") != PLAN_VERSION:
            raise PlanError(f"{source}: not an edgeq plan (version {PLAN_VERSION}); write one with `edgeq plan MODEL`")
        try:
            weights = {k: _build(WeightPlan, v, f"{source}: weights['{k}']") for k, v in d.get("weights", {}).items()}
            acts = {k: _build(ActivationPlan, v, f"{source}: activations['{k}']") for k, v in d.get("activations", {}).items()}
            kw = {f.name: d[f.name] for f in fields(cls) if f.name in d and f.name not in ("weights", "activations")}
            plan = cls(weights=weights, activations=acts, **kw)
        except TypeError as e:
            raise PlanError(f"{source}: malformed plan ({e}); regenerate it with `edgeq plan MODEL`") from None
        plan.validate(source)
        return plan

    @classmethod
    def load(cls, path: Path) -> QuantPlan:
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except FileNotFoundError:
            raise PlanError(f"{path}: no such plan file; write one with `edgeq plan MODEL --out DIR`") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise PlanError(f"{path}: not valid JSON ({e}); fix the edit or regenerate it with `edgeq plan MODEL`") from None
        return cls.from_dict(d, str(path))

    def validate(self, source: str = "plan") -> None:
        for name, w in self.weights.items():
            where = f"{source}: weight '{name}' (node '{w.node}')"
            if w.bits is not None and not (isinstance(w.bits, int) and 2 <= w.bits <= 8):
                raise PlanError(f"{where}: bits {w.bits!r} is not 2..8 or null (float)")
            if w.scheme not in SCHEMES:
                raise PlanError(f"{where}: scheme '{w.scheme}' is not one of {SCHEMES}")
            if w.granularity not in GRANULARITIES:
                raise PlanError(f"{where}: granularity '{w.granularity}' is not one of {GRANULARITIES}")
            if w.bits is not None and w.scheme != "palette" and not w.scale and w.derived is None:
                raise PlanError(f"{where}: {w.bits}-bit {w.scheme} weights need 'scale'")
            if w.scale is not None and any(not np.isfinite(s) or s <= 0 for s in w.scale):
                raise PlanError(f"{where}: every scale must be a positive finite number")
            if w.bits is not None and w.scheme == "palette" and not w.palette and w.derived is not None:
                raise PlanError(f"{where}: palette weights need 'palette' (or remove 'derived' to recompute it)")
            if w.granularity == "per_block" and not (isinstance(w.block_size, int) and w.block_size > 0):
                raise PlanError(f"{where}: per_block weights need a positive integer 'block_size'")
        for name, a in self.activations.items():
            where = f"{source}: activation '{name}'"
            if a.bits not in (None, 8, 16):
                raise PlanError(f"{where}: bits {a.bits!r} is not 8, 16 or null (float)")
            if not (np.isfinite(a.scale) and a.scale > 0):
                raise PlanError(f"{where}: scale must be a positive finite number")

    def check_against(self, graph, source: str = "plan") -> None:
        """The plan must name only tensors the (normalized) model has."""
        inits = graph.init_names
        for name, w in self.weights.items():
            if name not in inits:
                raise PlanError(f"{source}: weight '{name}' (node '{w.node}') is not in the model; was the plan made for another model?")
            if list(graph.initializer(name).shape) != list(w.shape):
                raise PlanError(f"{source}: weight '{name}' has shape {list(graph.initializer(name).shape)} in the model, {w.shape} in the plan")
        known = set(graph.specs) | {i.name for i in graph.inputs}
        for name in self.activations:
            if name not in known:
                raise PlanError(f"{source}: activation '{name}' is not a tensor of the model; was the plan made for another model?")


TENSOR_SECTIONS = {"weights": "weight", "activations": "activation", "tensors": "tensor"}


def _finite(d: dict) -> dict:
    """Non-finite numbers never reach JSON: in a weight's or activation's parameters they are an error
    naming the tensor; in the plan's metrics (predicted, budget, calibration) they become null."""

    def walk(v, path: list):
        if isinstance(v, dict):
            return {k: walk(x, [*path, k]) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [walk(x, [*path, i]) for i, x in enumerate(v)]
        if isinstance(v, float | np.floating) and not np.isfinite(v):
            if path and path[0] in TENSOR_SECTIONS and len(path) > 2:
                field_path = str(path[2]) + "".join(f"[{p}]" for p in path[3:])
                raise PlanError(f"{TENSOR_SECTIONS[path[0]]} '{path[1]}': {field_path} is {v}; the model's weights or the "
                                "calibration data overflow float32 there; fix the weights or the data's scale")
            return None
        return v

    return walk(d, [])


def _build(cls, value: dict, where: str):
    if not isinstance(value, dict):
        raise PlanError(f"{where}: expected an object")
    names = {f.name for f in fields(cls)}
    unknown = set(value) - names
    if unknown:
        raise PlanError(f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(names)}")
    return cls(**value)
