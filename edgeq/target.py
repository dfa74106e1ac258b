"""A Target: one backend, built from its TOML (checked whole at load) and its lowering module.

The pipeline, planning, `inspect` and the profiler ask a Target, never a lowering module
directly and never with `hasattr`:

    target.spec            what targets/<name>.toml says it holds (TargetSpec, every key typed)
    target.ops             the op table (ONNX op -> lowering function)
    target.view(graph)     the graph as the target lowers it (e.g. LiteRT binds the batch)
    target.check_graph     does the normalized graph fit (before calibration)
    target.check_plan      can it hold this plan (capabilities from the spec, then the module's own)
    target.plan_for        the plan this target lowers: a pure function of (plan, options, devices)
    target.lower           writes the artifact
    target.storage         the bytes each weight takes in the artifact (quant/size.py sums it)
    target.payload         those bytes read back from a written artifact
    target.cross_checks    a second runtime / the plan's simulation, or None
    target.runner          runs an artifact on the target's runtime
    target.read            reads a written artifact back for `edgeq profile` (its module's read_artifact)
    target.int8_kernels    op types its runtime runs as integer kernels (its module's INT8_KERNELS), or None
    target.fused_after     {op: activations its kernel applies itself} beyond conv/matmul (FUSED_AFTER)

This module imports no lowering and no runtime: quant and profile read a target's spec and
storage rule through it without pulling coremltools or LiteRT in.
"""

from __future__ import annotations

import importlib
import tomllib
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path

from edgeq.errors import EdgeqError, PlanError
from edgeq.schemes import SCHEMES
from edgeq.schemes import of as scheme_of

TARGET_MODULES = {
    "ort": "edgeq.lower.ort",
    "tflite": "edgeq.lower.tflite",
    "tflm": "edgeq.lower.tflm",
    "coreml": "edgeq.lower.coreml",
}

# Per-channel storage a format adds beyond the plan's codes and float32 scales (quant/size.py).
PARAM_BYTES_KEYS = {"weight_scale": int, "weight_zero_point": int, "bias_scale": int, "bias_zero_point": int,
                    "bias_bytes": int, "float_bytes": int, "code_containers": list, "linear_code_containers": list,
                    "palette_code_containers": list, "linear_lut_bits": list, "source": str}
DEFAULT_PARAM_BYTES = {"weight_scale": 0, "weight_zero_point": 0, "bias_scale": 4, "bias_zero_point": 0,
                       "code_containers": [1, 2, 3, 4, 5, 6, 7, 8], "float_bytes": 4, "bias_bytes": 4}


@dataclass(frozen=True)
class TargetOption:
    """One option a target reads (targets/<name>.toml [options.KEY]): the CLI flag and its type."""

    key: str  # the key in the options dict the lowering reads
    flag: str  # e.g. "--min-os", or "--reduce-range/--no-reduce-range" for a bool
    type: str  # choice | int | flag | bool
    help: str
    choices: tuple[str, ...] = ()
    min: int | None = None
    max: int | None = None

    def check(self, value, target: str) -> None:
        """An API caller's value, checked as the CLI flag would check it."""
        bad = (self.type == "choice" and value not in self.choices
               or self.type == "int" and (isinstance(value, bool) or not isinstance(value, int) or not self.min <= value <= self.max)
               or self.type in ("flag", "bool") and not isinstance(value, bool))
        if bad:
            want = {"choice": f"one of {', '.join(self.choices)}", "int": f"an integer in {self.min}..{self.max}"}.get(self.type, "true or false")
            raise PlanError(f"{target} option {self.key}={value!r} ({self.flag.split('/')[0]}): give {want}")


OPTION_KEYS = {"flag": str, "type": str, "help": str, "choices": list, "min": int, "max": int}


def parse_options(table: dict, source: str) -> tuple[TargetOption, ...]:
    out = []
    for key, d in table.items():
        if not isinstance(d, dict):
            raise EdgeqError(f"{source}: options.{key} must be a table ([options.{key}] with flag, help and type)")
        for k, v in d.items():
            if k not in OPTION_KEYS or not isinstance(v, OPTION_KEYS[k]):
                raise EdgeqError(f"{source}: options.{key}.{k} is not one of {', '.join(OPTION_KEYS)} with the right type")
        if d.get("type") not in ("choice", "int", "flag", "bool") or "flag" not in d or "help" not in d:
            raise EdgeqError(f"{source}: options.{key} needs flag, help and a type of choice, int, flag or bool")
        if d["type"] == "int" and ("min" not in d or "max" not in d or d["min"] > d["max"]):
            raise EdgeqError(f"{source}: options.{key} (int) needs min <= max")
        if d["type"] == "choice" and not (d.get("choices") and all(isinstance(c, str) for c in d["choices"])):
            raise EdgeqError(f"{source}: options.{key} (choice) needs a list of string choices")
        out.append(TargetOption(key, d["flag"], d["type"], d["help"], tuple(d.get("choices", ())), d.get("min"), d.get("max")))
    return tuple(out)


@dataclass(frozen=True)
class TargetSpec:
    """targets/<name>.toml. Every key has a reader; an unknown key is an error at load."""

    name: str
    description: str
    runtime: str
    artifact: str
    weight_bits: tuple[int, ...]
    weight_granularity: tuple[str, ...]
    activation_bits: tuple[int, ...]
    weight_schemes: tuple[str, ...] = ()  # () : every registered scheme (held_schemes), now and later
    modes: tuple[str, ...] = ("static", "weight_only", "dynamic")
    activation_dtype: str = "float"  # the integer type of quantized activations (inspect, targets list)
    one_integer_width: bool = False  # a model runs one activation width (LiteRT: int8, or int16x8 throughout)
    auto_wide_bits: int | None = None  # --act-bits auto keeps sensitive activations at this width, not float
    param_bytes: dict = field(default_factory=dict)
    options: tuple[TargetOption, ...] = ()
    extra: dict = field(default_factory=dict)  # target-specific tables, read by that target's module
    sources: dict = field(default_factory=dict)

    def held_schemes(self) -> tuple[str, ...]:
        return self.weight_schemes or tuple(SCHEMES)

    def storage_format(self) -> dict:
        return {**DEFAULT_PARAM_BYTES, **{k: v for k, v in self.param_bytes.items() if k != "source"}}


TYPED_KEYS = {"name": str, "description": str, "runtime": str, "artifact": str, "weight_bits": list,
              "weight_granularity": list, "activation_bits": list, "weight_schemes": list, "modes": list,
              "activation_dtype": str, "param_bytes": dict, "sources": dict, "options": dict,
              "one_integer_width": bool, "auto_wide_bits": int}
# Keys a target's own module reads (the module named, so an unread key has an owner to ask).
EXTRA_KEYS = {
    "ort": {"min_opset": int},                                          # lower/ort.py lower
    "tflite": {"native_int4_ops": list, "nnapi": dict, "gpu": dict,     # lower/tflite/weights.py, where.py
               "nnapi_deprecated_from_android": int},
    "tflm": {"io_dtype_default": str, "arena_margin_bytes": int,        # lower/tflm.py
             "mcu_flash_bytes": int, "mcu_arena_bytes": int},
    "coreml": {"min_os": dict, "neural_engine": dict,  # edgeq targets (inspect.py), residency.py
               "palette_bits": list},  # check_plan_capabilities
}


def parse_spec(name: str, data: dict, source: str) -> TargetSpec:
    allowed = {**TYPED_KEYS, **EXTRA_KEYS.get(name, {})}
    for key, value in data.items():
        if key not in allowed:
            raise EdgeqError(f"{source}: unknown key '{key}'; a target file holds {', '.join(sorted(allowed))}")
        if not isinstance(value, allowed[key]) or isinstance(value, bool) and allowed[key] is not bool:
            raise EdgeqError(f"{source}: '{key}' must be a {allowed[key].__name__}, got {type(value).__name__}")
    for key in ("weight_bits", "activation_bits", "weight_granularity", "weight_schemes", "modes"):
        want = int if key.endswith("_bits") else str
        if key in data and not all(isinstance(v, want) and not isinstance(v, bool) for v in data[key]):
            raise EdgeqError(f"{source}: '{key}' must list {want.__name__}s")
    for key in ("name", "description", "runtime", "artifact", "weight_bits", "weight_granularity", "activation_bits"):
        if key not in data:
            raise EdgeqError(f"{source}: missing key '{key}'")
    unknown = [s for s in data.get("weight_schemes", []) if s not in SCHEMES]
    if unknown:
        raise EdgeqError(f"{source}: weight_schemes {unknown} are not registered schemes ({', '.join(SCHEMES)}: edgeq/quant/schemes.py)")
    if data["name"] != name:
        raise EdgeqError(f"{source}: name '{data['name']}' differs from the file name '{name}'")
    for key, value in data.get("param_bytes", {}).items():
        if key not in PARAM_BYTES_KEYS:
            raise EdgeqError(f"{source}: unknown key 'param_bytes.{key}'; it holds {', '.join(sorted(PARAM_BYTES_KEYS))}")
        if not isinstance(value, PARAM_BYTES_KEYS[key]):
            raise EdgeqError(f"{source}: 'param_bytes.{key}' must be a {PARAM_BYTES_KEYS[key].__name__}")
    plain = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in TYPED_KEYS and k != "options"}
    return TargetSpec(**plain, options=parse_options(data.get("options", {}), source), extra={k: v for k, v in data.items() if k not in TYPED_KEYS})


@cache
def target_spec(name: str) -> TargetSpec:
    """targets/<name>.toml, checked whole (unknown keys, types, the name)."""
    try:
        path = resources.files("edgeq.targets").joinpath(f"{name}.toml")
    except ModuleNotFoundError:  # a source checkout run without installing: targets/ beside edgeq/
        path = Path(__file__).resolve().parents[1] / "targets" / f"{name}.toml"
    if not path.is_file():
        raise EdgeqError(f"no target file targets/{name}.toml")
    return parse_spec(name, tomllib.loads(path.read_text()), f"targets/{name}.toml")


def all_options() -> list[tuple[TargetOption, list[str]]]:
    """Every target's options, once per key, with the targets that read it (for the CLI's flags).
    Two targets declaring one key must declare it alike."""
    seen: dict[str, tuple[TargetOption, list[str]]] = {}
    for name in TARGET_MODULES:
        for opt in target_spec(name).options:
            if opt.key in seen:
                first, names = seen[opt.key]
                if (first.flag, first.type, first.choices) != (opt.flag, opt.type, opt.choices):
                    raise EdgeqError(f"targets/{name}.toml: options.{opt.key} differs from targets/{names[0]}.toml's")
                names.append(name)
            else:
                seen[opt.key] = (opt, [name])
    return list(seen.values())


def target_data(name: str) -> dict:
    """The spec as a plain dict (the TOML's keys), for code that reads one fact."""
    s = target_spec(name)
    return {"name": s.name, "description": s.description, "runtime": s.runtime, "artifact": s.artifact,
            "weight_bits": list(s.weight_bits), "weight_granularity": list(s.weight_granularity),
            "activation_bits": list(s.activation_bits), "weight_schemes": list(s.held_schemes()), "modes": list(s.modes),
            "activation_dtype": s.activation_dtype, "param_bytes": dict(s.param_bytes), "sources": dict(s.sources),
            "one_integer_width": s.one_integer_width, "auto_wide_bits": s.auto_wide_bits,
            **s.extra}


def available(name: str) -> bool:
    return name in TARGET_MODULES and importlib.util.find_spec(TARGET_MODULES[name]) is not None


def read_suffixes() -> dict[str, str]:
    """{file suffix: target} for targets whose artifact is one file or folder with its own suffix
    (targets/<name>.toml `artifact`); the target's `read` reads it back. A target sharing another's
    suffix (tflm's .tflite) is read by the first."""
    out: dict[str, str] = {}
    for name in TARGET_MODULES:
        suffix = target_spec(name).artifact
        if suffix.startswith(".") and suffix.count(".") == 1 and " " not in suffix:
            out.setdefault(suffix, name)
    return out


def _no_check(*_args, **_kw) -> None:
    return None


class Target:
    """One backend: its spec, its lowering module's functions, and what the pipeline asks of both."""

    def __init__(self, name: str, module):
        self.name = self.NAME = name
        self.spec = target_spec(name)
        self.module = module
        self.DESCRIPTION = self.spec.description
        self.ops: dict = module.OPS
        self.OPS = self.ops  # the name lowering modules and benches already use
        self.lower = module.lower
        self._view = getattr(module, "lowering_view", None)  # optional hooks, resolved once here
        self._check_graph = getattr(module, "check_graph", _no_check)
        self._check_plan = getattr(module, "check_plan", _no_check)
        self._adjust_plan = getattr(module, "adjust_plan", None)
        self._cross_checks = getattr(module, "cross_checks", None)
        # required: the writer's own rule (a target with none binds quant.size.generic_storage to its
        # spec's formats); the fallback is not here, so this module needs nothing from quant
        self._storage = module.weight_storage
        self._payload = getattr(module, "stored_payload", None)
        self._read = getattr(module, "read_artifact", None)
        kernels = getattr(module, "INT8_KERNELS", None)
        self.int8_kernels: frozenset | None = frozenset(kernels) if kernels is not None else None  # None: every op
        self.fused_after: dict = dict(getattr(module, "FUSED_AFTER", {}))  # op -> activations its kernel applies

    def __repr__(self) -> str:
        return f"Target({self.name!r})"

    def view(self, graph):
        return self._view(graph) if self._view is not None else graph

    def check_graph(self, graph, view) -> None:
        self._check_graph(graph, view)

    def check_options(self, options: dict | None) -> None:
        """The values of the options this target declares (others belong to other targets)."""
        if options is not None and not isinstance(options, dict):
            raise PlanError(f"target options must be a dict of option names to values, got {type(options).__name__}")
        for opt in self.spec.options:
            value = (options or {}).get(opt.key)
            if value is not None:
                opt.check(value, self.name)

    def check_plan(self, graph, plan, options: dict | None = None) -> None:
        """The module's own checks (their messages name the target's terms), then the spec's
        capabilities (bits, granularity, scheme, mode, activation widths) for everything else."""
        self._check_plan(graph, plan, options or {})
        check_plan_capabilities(self.spec, plan)

    def plan_for(self, graph, plan, options: dict | None = None):
        """The plan this target lowers: a new plan (the input is never changed), with the ranges and
        grids the target's kernels require (softmax output grids, ORT's 7-bit weights on some CPUs)."""
        own = type(plan).from_dict(plan.to_dict())  # a QuantPlan, copied without importing quant
        if self._adjust_plan is not None:
            self._adjust_plan(graph, own, dict(options or {}))
        return own

    def adjusts_plans(self) -> bool:
        return self._adjust_plan is not None

    def cross_checks(self, artifact, graph, plan, feeds, ref, got) -> dict | None:
        if self._cross_checks is None:
            return None
        return self._cross_checks(artifact, graph, plan, feeds, ref, got)

    def storage(self, graph, plan, options: dict | None = None) -> dict:
        """{tensor: bytes}: what each planned weight (codes + its parameters) and its bias take in
        this target's artifact: the module's `weight_storage`, the one rule its writer stores by."""
        return self._storage(graph, plan, options or {})

    def payload(self, artifact) -> int | None:
        """Bytes of the constants in a written artifact, read back from it (what storage predicts)."""
        return self._payload(artifact) if self._payload is not None else None

    def read(self, path):
        """An artifact.ReadArtifact: the costs, I/O and runnable Artifact of a file this target wrote."""
        if self._read is None:
            raise EdgeqError(f"the {self.name} target cannot read its artifacts back")
        return self._read(path)

    def runner(self, artifact, threads: int = 1):
        from edgeq.runners import make_runner

        return make_runner(artifact, threads)


def check_plan_capabilities(spec: TargetSpec, plan) -> None:
    """A plan asks only for what the target's spec says it holds."""
    if plan.mode not in spec.modes:
        raise PlanError(f"mode '{plan.mode}': the {spec.name} target holds {', '.join(spec.modes)}")
    for w in plan.weights.values():
        if w.bits is None:
            continue
        where = f"weight '{w.tensor}' (node '{w.node}')"
        palette = scheme_of(w).palette
        held = spec.extra.get("palette_bits", spec.weight_bits) if palette else spec.weight_bits
        if w.bits not in held:
            raise PlanError(f"{where}: {w.bits} bits; the {spec.name} target holds {list(held)}")
        if w.granularity not in spec.weight_granularity:
            raise PlanError(f"{where}: {w.granularity} weights; the {spec.name} target holds {', '.join(spec.weight_granularity)}")
        if palette and not any(SCHEMES[s].palette for s in spec.held_schemes()):
            raise PlanError(f"{where}: the {spec.name} target has no palette (LUT) weights, only linear ones; "
                            "use --target coreml or a linear scheme")
        if w.scheme not in spec.held_schemes():
            raise PlanError(f"{where}: the {spec.name} target holds {', '.join(spec.held_schemes())} weights, not {w.scheme}")
    if plan.mode == "static":
        for a in plan.activations.values():
            if a.bits is not None and a.bits not in spec.activation_bits:
                raise PlanError(f"activation '{a.tensor}': {a.bits} bits; the {spec.name} target holds "
                                f"{', '.join(map(str, spec.activation_bits))} (or null: float)")


@cache
def get_target(name: str) -> Target:
    if name not in TARGET_MODULES or not available(name):
        names = ", ".join(n for n in TARGET_MODULES if available(n))
        raise EdgeqError(f"unknown target '{name}'; choose one of {names} (`edgeq targets` lists them)")
    try:
        module = importlib.import_module(TARGET_MODULES[name])
    except ImportError as e:
        raise EdgeqError(f"target '{name}' needs the package '{e.name}'; install it with pip install 'edgeq[{name}]'") from None
    return Target(name, module)
