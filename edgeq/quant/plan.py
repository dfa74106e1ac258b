"""QuantPlan: the contract between the quantizer and the lowerings, and a file users edit.

Everything a lowering needs is in the plan, per tensor, by name; a lowering never
re-derives scales. `edgeq plan` writes it as plan.json (stable key order, exact floats);
`edgeq compile --plan` reads it back and applies exactly what it says.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, fields
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np

from edgeq import schemes
from edgeq.errors import PlanError
from edgeq.fileio import dumps_json

PLAN_VERSION = 1
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

    # How the parameter groups lie; exactly one holds. A per-channel entry without an axis is one
    # group (per-tensor), and a per-block entry always has an axis (validation says so).
    @property
    def per_tensor(self) -> bool:
        return self.granularity == "per_tensor" or self.axis is None

    @property
    def per_channel(self) -> bool:
        return self.granularity == "per_channel" and self.axis is not None

    @property
    def per_block(self) -> bool:
        return self.granularity == "per_block" and self.axis is not None

    @property
    def channels_per_group(self) -> int:
        """Channels that share one parameter group per channel: a palette may share one table
        across block_size channels; a linear grid has one scale per channel."""
        return self.block_size if schemes.of(self).palette and self.block_size else 1

    def param_shape(self, shape=None) -> tuple[int, ...]:
        """Shape of the parameter array (one scale / zero point / palette per group) under the
        granularity, for this weight's shape (or `shape`): the one rule that slicing weights into
        groups (quant/weights.py) and checking a plan's lists read."""
        shape = list(self.shape if shape is None else shape)
        if self.per_tensor or not shape:
            return (1,)
        ax = self.axis % len(shape)
        if self.per_channel:
            return (-(-shape[ax] // self.channels_per_group),)
        shape[ax] = -(-shape[ax] // self.block_size) if self.block_size else 1  # per_block, along axis
        return tuple(shape)

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
    def from_dict(cls, d: dict, source: str = "plan", check: bool = True) -> QuantPlan:
        """`check=False` only for a plan edgeq itself just wrote (the schema pass costs seconds on a
        large model); every plan read from a file is checked."""
        if not isinstance(d, dict) or d.get("version") != PLAN_VERSION:
            raise PlanError(f"{source}: not an edgeq plan (version {PLAN_VERSION}); write one with `edgeq plan MODEL`")
        if check:
            check_schema(d, source)
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
        if path.is_dir():
            raise PlanError(f"{path}: is a folder; pass the plan file itself (e.g. {path / 'plan.json'})")
        try:
            if path.stat().st_size > MAX_PLAN_BYTES:
                raise PlanError(f"{path}: {path.stat().st_size:,} bytes is not a plan (at most {MAX_PLAN_BYTES >> 20} MiB); "
                                "pass the plan.json `edgeq plan` wrote")
            d = json.loads(path.read_text())
        except FileNotFoundError:
            raise PlanError(f"{path}: no such plan file; write one with `edgeq plan MODEL --out DIR`") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise PlanError(f"{path}: not valid JSON ({e}); fix the edit or regenerate it with `edgeq plan MODEL`") from None
        except RecursionError:
            raise PlanError(f"{path}: JSON nested too deeply to be a plan; regenerate it with `edgeq plan MODEL`") from None
        except OSError as e:
            raise PlanError(f"{path}: cannot read the plan ({e.strerror or type(e).__name__})") from None
        return cls.from_dict(d, str(path))

    def validate(self, source: str = "plan") -> None:
        from edgeq.quant.weights import needs_derive

        for name, w in self.weights.items():
            where = f"{source}: weight '{name}' (node '{w.node}')"
            if w.tensor != name:
                raise PlanError(f"{where}: 'tensor' says '{w.tensor}'; a weight's key and its 'tensor' must be the same name")
            if w.scheme not in schemes.SCHEMES:
                raise PlanError(f"{where}: scheme {w.scheme!r} is not one of {', '.join(schemes.SCHEMES)}")
            rank = len(w.shape)
            if w.axis is not None and not -rank <= w.axis < max(rank, 1):
                raise PlanError(f"{where}: axis {w.axis} is outside the weight's {rank} dims {w.shape}")
            if w.derived is None or not needs_derive(w):  # an edited weight gets new parameters (refresh_plan)
                _check_layout(w, where)
            if w.bits is not None and not (isinstance(w.bits, int) and 2 <= w.bits <= 8):
                raise PlanError(f"{where}: bits {w.bits!r} is not 2..8 or null (float)")
            if w.granularity not in GRANULARITIES:
                raise PlanError(f"{where}: granularity '{w.granularity}' is not one of {GRANULARITIES}")
            if w.bits is not None and schemes.of(w).linear and not w.scale and w.derived is None:
                raise PlanError(f"{where}: {w.bits}-bit {w.scheme} weights need 'scale'")
            if w.scale is not None and not all(_positive_float32(s) for s in w.scale):
                raise PlanError(f"{where}: every scale must be a positive finite number")
            if w.bits is not None and schemes.of(w).palette and not w.palette and w.derived is not None:
                raise PlanError(f"{where}: palette weights need 'palette' (or remove 'derived' to recompute it)")
            if w.granularity == "per_block" and not (isinstance(w.block_size, int) and w.block_size > 0):
                raise PlanError(f"{where}: per_block weights need a positive integer 'block_size'")
        for name, t in self.tensors.items():
            _check_tensor(t, f"{source}: tensor '{name}'")
        for name, a in self.activations.items():
            where = f"{source}: activation '{name}'"
            if a.bits not in (None, 8, 16):
                raise PlanError(f"{where}: bits {a.bits!r} is not 8, 16 or null (float)")
            if not _positive_float32(a.scale):
                raise PlanError(f"{where}: scale must be a positive finite number")
            if a.tensor != name:
                raise PlanError(f"{where}: 'tensor' says '{a.tensor}'; an activation's key and its 'tensor' must be the same name")
            if a.bits is not None:
                lo, hi = (-(2 ** (a.bits - 1)), 2 ** (a.bits - 1) - 1) if a.signed else (0, 2**a.bits - 1)
                if not lo <= a.zero_point <= hi:
                    raise PlanError(f"{where}: zero_point {a.zero_point} is outside {lo}..{hi} "
                                    f"({'signed' if a.signed else 'unsigned'} {a.bits}-bit)")

    def check_made_for(self, graph, targets: list[str], source: str = "plan", force: bool = False) -> None:
        """A plan applies to the model and target it was made for; --force (force=True) applies it anyway."""
        if force:
            return
        if self.model_sha256 and self.model_sha256 != graph.sha256():
            raise PlanError(f"{source}: made for another model (model_sha256 {self.model_sha256[:12]}..., this model "
                            f"{graph.sha256()[:12]}...; the same --input-shape matters); write a plan for this model "
                            "with `edgeq plan`, or pass --force to apply it anyway")
        if self.target is not None and list(targets) != [self.target]:
            raise PlanError(f"{source}: made for target '{self.target}', compiling for {', '.join(targets)}; write one with "
                            f"`edgeq plan MODEL --target {targets[0]}`, or pass --force to apply it anyway")

    def check_against(self, graph, source: str = "plan") -> None:
        """The plan must name only tensors the (normalized) model has."""
        inits = graph.init_names
        for name, w in self.weights.items():
            if name not in inits:
                raise PlanError(f"{source}: weight '{name}' (node '{w.node}') is not in the model; was the plan made for another model?")
            if list(graph.initializer(name).shape) != list(w.shape):
                raise PlanError(f"{source}: weight '{name}' has shape {list(graph.initializer(name).shape)} in the model, {w.shape} in the plan")
        known = set(graph.specs) | {i.name for i in graph.inputs}
        for name, a in self.activations.items():
            if name not in known:
                raise PlanError(f"{source}: activation '{name}' is not a tensor of the model; was the plan made for another model?")
            if a.shared_with is not None and a.shared_with not in self.activations:
                raise PlanError(f"{source}: activation '{name}': shared_with '{a.shared_with}' is not an activation of the plan")
        for name, t in self.tensors.items():  # rewritten weights (GPTQ, AWQ) replace the model's, shape for shape
            if name not in inits:
                raise PlanError(f"{source}: tensor '{name}' is not a weight of the model; was the plan made for another model?")
            if list(graph.initializer(name).shape) != list(t["shape"]):
                raise PlanError(f"{source}: tensor '{name}' has shape {list(graph.initializer(name).shape)} in the model, "
                                f"{t['shape']} in the plan")
        tensors = inits | known | set(graph.producer)
        for name, w in self.weights.items():
            for key in ("bias", "input"):
                ref = getattr(w, key)
                if ref is not None and ref not in tensors:
                    raise PlanError(f"{source}: weight '{name}': {key} '{ref}' is not a tensor of the model")


MAX_PLAN_BYTES = 256 << 20  # a plan holds scales, not weights (GPTQ tensors included, far below this)


@cache
def _schema_text() -> str:
    return resources.files("edgeq.quant").joinpath("plan_schema.json").read_text()


def plan_schema() -> dict:
    """The JSON Schema of plan.json (edgeq/quant/plan_schema.json, shipped in the wheel), with the
    scheme names the registry holds now (edgeq/schemes.py)."""
    schema = json.loads(_schema_text())
    schema["$defs"]["weight"]["properties"]["scheme"]["enum"] = list(schemes.SCHEMES)
    return schema


def check_schema(d: dict, source: str) -> None:
    """Validate against the schema; the error names the JSON path (weights.conv1.scale[3]: expected a number)."""
    import jsonschema

    validator = _strict_integers(jsonschema)(plan_schema())
    in_order = sorted(validator.iter_errors(d), key=lambda e: [(0, p, "") if isinstance(p, int) else (1, 0, p) for p in e.absolute_path])
    error = jsonschema.exceptions.best_match(in_order)
    if error is not None:  # of equally relevant errors, the first in document order
        error = next(e for e in in_order if len(e.absolute_path) == len(error.absolute_path) and e.validator == error.validator)
    if error is None:
        return
    path = "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else str(p)) for i, p in enumerate(error.absolute_path))
    raise PlanError(f"{source}: {path or 'top level'}: {_schema_message(error)}; fix the edit or regenerate it with `edgeq plan MODEL`")


@cache
def _strict_integers(jsonschema):
    """Draft 2020-12 with "integer" meaning a JSON integer: the standard counts 8.0 as one, and Python
    then shapes, indexes and names types with a float (reshape((8.0, 1)) fails, f"int{8.0}")."""
    base = jsonschema.Draft202012Validator
    checker = base.TYPE_CHECKER.redefine("integer", lambda _, v: isinstance(v, int) and not isinstance(v, bool))
    return jsonschema.validators.extend(base, type_checker=checker)


_TYPE_NAMES = {"number": "a number", "integer": "an integer", "string": "a string", "array": "a list", "object": "an object",
               "null": "null", "boolean": "true or false"}


def _schema_message(error) -> str:
    v = error.validator
    if v == "type":
        types = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        return "expected " + " or ".join(_TYPE_NAMES.get(t, t) for t in types) + f", got {_short(error.instance)}"
    if v in ("enum", "const"):
        allowed = error.validator_value if v == "enum" else [error.validator_value]
        return f"{_short(error.instance)} is not one of {', '.join(json.dumps(a) for a in allowed)}"
    if v in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        word = {"minimum": "at least", "maximum": "at most", "exclusiveMinimum": "above", "exclusiveMaximum": "below"}[v]
        return f"{_short(error.instance)} must be {word} {error.validator_value}"
    if v == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        return f"unknown key(s) {extra}; allowed: {sorted(error.schema.get('properties', {}))}"
    return error.message[:200]


def _short(value) -> str:
    text = json.dumps(value) if not isinstance(value, float | int) or isinstance(value, bool) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _check_layout(w: WeightPlan, where: str) -> None:
    """axis within the shape, as many scales / zero points as the granularity needs, zero points on the grid."""
    if w.bits is None or w.scale is None or schemes.of(w).palette:
        return
    want = int(np.prod(w.param_shape()))
    if len(w.scale) != want:
        raise PlanError(f"{where}: {len(w.scale)} scale(s); {w.granularity} on axis {w.axis} of shape {w.shape} needs {want}")
    if w.zero_point is not None:
        if len(w.zero_point) != want:
            raise PlanError(f"{where}: {len(w.zero_point)} zero point(s) for {want} scale(s)")
        lo, hi = -(2 ** (w.bits - 1)), 2 ** (w.bits - 1) - 1
        bad = [z for z in w.zero_point if not lo <= z <= hi]
        if bad:
            raise PlanError(f"{where}: zero_point {bad[0]} is outside {lo}..{hi} (signed {w.bits}-bit)")


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


def _check_tensor(t: dict, where: str) -> None:
    """A rewritten weight (simulate.encode_tensor): base64 of exactly its shape's float32 values."""
    try:
        data = base64.b64decode(t["b64"], validate=True)
    except (binascii.Error, ValueError):
        raise PlanError(f"{where}: 'b64' is not base64; regenerate the plan with `edgeq plan MODEL`") from None
    want = 4 * math.prod(t["shape"])
    if len(data) != want:
        raise PlanError(f"{where}: 'b64' holds {len(data):,} bytes; shape {t['shape']} of float32 needs {want:,}")


def _positive_float32(v) -> bool:
    """A scale float32 can hold: a finite number above 0 and at most float32's largest (a huge JSON int too)."""
    try:
        return not isinstance(v, bool) and 0 < float(v) <= float(np.finfo(np.float32).max)
    except (TypeError, ValueError, OverflowError):
        return False


def _build(cls, value: dict, where: str):
    if not isinstance(value, dict):
        raise PlanError(f"{where}: expected an object")
    names = {f.name for f in fields(cls)}
    unknown = set(value) - names
    if unknown:
        raise PlanError(f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(names)}")
    return cls(**value)
