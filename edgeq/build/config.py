"""edgeq.toml (or [tool.edgeq] in pyproject.toml): the models `edgeq build` compiles, checked up front.

    [[model]]
    name = "fashion"
    source = "fashion_cnn.onnx"
    calib = "fashion_calib.npz"
    val = "fashion_val.npz"
    targets = ["ort", "tflite"]          # or "all"
    options = { act_bits = 8 }
    out = "build/fashion"                # relative to this file's folder
    [model.gates]
    max_drop = 1.0                       # points of accuracy (of top-1 agreement without labels)
    min_sqnr_db = 25
    max_bytes = "400KB"
    max_latency_ms = 2.0                 # host p50 measured on the build machine,
    latency_device = "pixel8"            # or this device's estimate (one of the entry's devices)
    [model.copy_to]                      # after a build that passed its gates (and on cache hits):
    tflite = "app/src/main/assets"       # the artifact into this folder (relative to this file's folder);
    coreml = "ios/App"                   # coreml also writes edgeq-inputs/-outputs.xcfilelist beside this file

Every mistake is one line naming the key (`edgeq.toml: model[0].targets: unknown target 'foo'`; entries
count from 0), raised before anything is compiled.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from edgeq.errors import EdgeqError


class ConfigError(EdgeqError):
    """A mistake in edgeq.toml / [tool.edgeq]: exit 2, one line naming the key."""


# options key -> (compile flag, kind). Only what maps safely onto a compile flag: no --metric (imports user
# code), no --plan / --force (a build is made from its config alone), no --no-cache (`edgeq build --no-cache`).
OPTION_FLAGS: dict[str, tuple[str, str]] = {
    "act_bits": ("--act-bits", "value"), "weight_bits": ("--weight-bits", "value"), "avg_bits": ("--avg-bits", "value"),
    "max_bits": ("--max-bits", "value"), "size_budget": ("--size-budget", "value"), "mode": ("--mode", "value"),
    "rounding": ("--rounding", "value"), "scheme": ("--scheme", "value"), "granularity": ("--granularity", "value"),
    "block_size": ("--block-size", "value"), "codebook": ("--codebook", "value"), "calib_method": ("--calib-method", "value"),
    "keep_float": ("--keep-float", "list"), "bits": ("--bits", "list"), "io_dtype": ("--io-dtype", "value"),
    "io_layout": ("--io-layout", "value"), "fallback": ("--fallback", "value"), "weights_dtype": ("--weights-dtype", "value"),
    "android_api": ("--android-api", "value"), "min_os": ("--min-os", "value"), "coreml_precision": ("--coreml-precision", "value"),
    "reduce_range": ("--reduce-range", "switch"), "int4": ("--int4", "flag"), "ort_format": ("--no-ort-format", "negated"),
    "seed": ("--seed", "value"), "threads": ("--threads", "value"), "rate": ("--rate", "value"),
}
GATES = ("max_drop", "min_sqnr_db", "max_bytes", "max_latency_ms", "latency_device")
ENTRY_KEYS = ("name", "source", "calib", "val", "targets", "devices", "input_shape", "options", "out", "gates", "copy_to")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass
class Entry:
    index: int
    name: str
    source: str  # as written, relative to the config's folder
    calib: str
    val: str | None
    targets: list[str]
    devices: list[str] = field(default_factory=list)
    input_shape: dict[str, list[int]] = field(default_factory=dict)
    options: dict = field(default_factory=dict)
    out: str = ""
    gates: dict = field(default_factory=dict)  # gate -> limit (max_bytes in bytes)
    copy_to: dict[str, str] = field(default_factory=dict)  # target -> folder (relative to the config's folder)

    def compile_args(self, target: str) -> list[str]:
        """`edgeq compile` arguments for one target (paths relative to the config's folder)."""
        args = [self.source, "--target", target, "--calib", self.calib, "--out", f"{self.out}/{target}"]
        if self.val:
            args += ["--val", self.val]
        for d in self.devices:
            args += ["--device", d]
        for name, dims in self.input_shape.items():
            args += ["--input-shape", f"{name}={','.join(map(str, dims))}"]
        return args + option_args(self.options)


@dataclass
class BuildConfig:
    path: Path  # the file read
    root: Path  # its folder: the build root (build.json, relative paths)
    entries: list[Entry]


def option_args(options: dict) -> list[str]:
    args: list[str] = []
    for key, value in options.items():
        flag, kind = OPTION_FLAGS[key]
        if kind == "list":
            for v in value:
                args += [flag, str(v)]
        elif kind == "switch":
            args.append(flag if value else flag.replace("--", "--no-", 1))
        elif kind == "flag":
            args += [flag] if value else []
        elif kind == "negated":
            args += [] if value else [flag]
        else:
            args += [flag, str(value)]
    return args


def find_config(arg: str | None, cwd: Path | None = None) -> tuple[Path, dict]:
    """The config file and its table: ARG (a file or a folder), else edgeq.toml, else pyproject.toml's [tool.edgeq]."""
    base = Path(cwd or Path.cwd())
    candidates = [base / "edgeq.toml", base / "pyproject.toml"]
    if arg is not None:
        p = base / arg
        if p.is_dir():
            candidates = [p / "edgeq.toml", p / "pyproject.toml"]
        elif not p.is_file():
            raise ConfigError(f"{arg}: no such config file; give an edgeq.toml, a pyproject.toml with [tool.edgeq], or their folder")
        else:
            candidates = [p]
    for p in candidates:
        if not p.is_file():
            continue
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"{p}: not valid TOML ({str(e).splitlines()[0]})") from None
        if p.name == "pyproject.toml":
            table = data.get("tool", {}).get("edgeq")
            if table is None:
                if arg is not None and p == candidates[-1] and len(candidates) == 1:
                    raise ConfigError(f"{p}: no [tool.edgeq] table; add one with [[tool.edgeq.model]] entries")
                continue
            return p, table
        return p, data
    raise ConfigError(f"no edgeq.toml (or pyproject.toml with [tool.edgeq]) in {base}; write one with [[model]] entries "
                      "(README: Build integration)")


def load_config(arg: str | None = None, cwd: Path | None = None) -> BuildConfig:
    path, table = find_config(arg, cwd)
    return parse_config(table, path)


def parse_config(table: dict, path: Path) -> BuildConfig:
    root = path.resolve().parent
    prefix = "tool.edgeq." if path.name == "pyproject.toml" else ""

    def err(key: str, what: str):
        raise ConfigError(f"{path.name}: {prefix}{key}: {what}")

    for k in table:
        if k != "model":
            err(k, "unknown key (an edgeq config holds [[model]] entries)")
    models = table.get("model")
    if not isinstance(models, list) or not models or not all(isinstance(m, dict) for m in models):
        err("model", "expected one or more [[model]] tables")
    entries, names = [], set()
    for i, m in enumerate(models):
        e = parse_entry(m, i, root, lambda k, w, i=i: err(f"model[{i}].{k}", w))
        if e.name in names:
            err(f"model[{i}].name", f"'{e.name}' is used by an earlier entry; names must be unique")
        names.add(e.name)
        entries.append(e)
    outs = [(e.index, (root / e.out).resolve()) for e in entries]
    for i, o in outs:
        for j, p in outs:
            if i < j and (o == p or o in p.parents or p in o.parents):
                err(f"model[{j}].out", f"'{entries[j].out}' overlaps model[{i}].out '{entries[i].out}'; give each entry its own folder")
    return BuildConfig(path=path.resolve(), root=root, entries=entries)


def parse_entry(m: dict, index: int, root: Path, err) -> Entry:
    from edgeq.lower import expand_all, target_names

    for k in m:
        if k not in ENTRY_KEYS:
            err(k, f"unknown key; an entry takes {', '.join(ENTRY_KEYS)}")
    name = _string(m, "name", err, required=True)
    if not NAME.match(name):
        err("name", f"'{name}' must be letters, digits, '.', '_' or '-' (it names folders)")
    source = _string(m, "source", err, required=True)
    if not (root / source).is_file():
        err("source", f"no such file '{source}' (relative to {root})")
    calib = _string(m, "calib", err, required=True)
    if calib != "random" and not (root / calib).exists():
        err("calib", f"no such file or folder '{calib}' (or give \"random\")")
    val = _string(m, "val", err)
    if val is not None and not (root / val).exists():
        err("val", f"no such file or folder '{val}'")
    targets = m.get("targets", ["ort"])
    if isinstance(targets, str):
        targets = [targets]
    if not isinstance(targets, list) or not targets or not all(isinstance(t, str) for t in targets):
        err("targets", "expected \"all\" or a list of target names")
    for t in targets:
        if t != "all" and t not in target_names():
            err("targets", f"unknown target '{t}'; choose from {', '.join(target_names())} or \"all\"")
    devices = m.get("devices", [])
    if not isinstance(devices, list) or not all(isinstance(d, str) for d in devices):
        err("devices", "expected a list of device names (`edgeq devices` lists them)")
    if devices:
        from edgeq.devices import device_names

        known = device_names()
        for d in devices:
            if d not in known:
                err("devices", f"unknown device '{d}'; `edgeq devices` lists them")
    shapes = m.get("input_shape", {})
    if not isinstance(shapes, dict):
        err("input_shape", "expected a table: input name = [dims]")
    for k, dims in shapes.items():
        if not isinstance(dims, list) or not dims or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in dims):
            err(f"input_shape.{k}", "expected a list of positive integers, e.g. [1, 1, 28, 28]")
    options = m.get("options", {})
    if not isinstance(options, dict):
        err("options", "expected a table")
    for k, v in options.items():
        if k not in OPTION_FLAGS:
            err(f"options.{k}", f"unknown option; known: {', '.join(sorted(OPTION_FLAGS))}")
        kind = OPTION_FLAGS[k][1]
        if kind in ("switch", "flag", "negated") and not isinstance(v, bool):
            err(f"options.{k}", "expected true or false")
        if kind == "list" and not (isinstance(v, list) and all(isinstance(x, str) for x in v)):
            err(f"options.{k}", "expected a list of strings")
        if kind == "value" and (isinstance(v, bool) or not isinstance(v, str | int | float)):
            err(f"options.{k}", "expected a string or a number")
    out = _string(m, "out", err) or f"build/{name}"
    gates = parse_gates(m.get("gates", {}), err)
    if gates.get("latency_device") not in (None, "host_x86_64", *devices):
        err("gates.latency_device", f"'{gates['latency_device']}' is not among the entry's devices; add it to devices")
    targets = expand_all(targets)
    copy_to = m.get("copy_to", {})
    if not isinstance(copy_to, dict):
        err("copy_to", "expected a table: target = folder, e.g. { tflite = \"app/src/main/assets\" }")
    for t, folder in copy_to.items():
        if t not in targets:
            err(f"copy_to.{t}", f"'{t}' is not among the entry's targets ({', '.join(targets)})")
        if not isinstance(folder, str) or not folder.strip():
            err(f"copy_to.{t}", "expected a folder (a non-empty string, relative to the config's folder)")
        if Path(folder).is_absolute():
            err(f"copy_to.{t}", f"'{folder}' is absolute; give a folder relative to the config's folder")
        dest, own = (root / folder).resolve(), (root / out).resolve()
        if dest == own or own in dest.parents:
            err(f"copy_to.{t}", f"'{folder}' is inside the entry's out folder '{out}', which each build replaces")
    entry = Entry(index=index, name=name, source=source, calib=calib, val=val, targets=targets,
                  devices=devices, input_shape=shapes, options=options, out=out, gates=gates, copy_to=copy_to)
    check_options(entry, err)
    return entry


def parse_gates(gates, err) -> dict:
    if not isinstance(gates, dict):
        err("gates", "expected a table ([model.gates])")
    out = {}
    for k, v in gates.items():
        if k not in GATES:
            err(f"gates.{k}", f"unknown gate; known: {', '.join(GATES)}")
        if k == "latency_device":
            if not isinstance(v, str) or "max_latency_ms" not in gates:
                err(f"gates.{k}", "expected a device name (one of the entry's devices, or host_x86_64) beside max_latency_ms")
            out[k] = v
            continue
        if k == "max_bytes" and isinstance(v, str):
            from edgeq.quant.allocate import parse_size

            try:
                v = parse_size(v)
            except EdgeqError as e:
                err(f"gates.{k}", str(e))
        if isinstance(v, bool) or not isinstance(v, int | float) or v != v:
            err(f"gates.{k}", "expected a number" + (" or a size such as \"400KB\"" if k == "max_bytes" else ""))
        if k in ("max_drop", "max_bytes") and v < 0:
            err(f"gates.{k}", "expected 0 or more")
        out[k] = v
    return out


def check_options(entry: Entry, err) -> None:
    """Parse the entry's options with `edgeq compile`'s own flags, so they are checked the same way."""
    import click

    from edgeq.cli import compile as compile_command

    for key, value in entry.options.items():
        try:
            compile_command.make_context("compile", ["model.onnx", *option_args({key: value})])
        except click.exceptions.ClickException as e:
            err(f"options.{key}", e.format_message().replace("\n", " "))
        except EdgeqError as e:
            err(f"options.{key}", str(e))


def _string(m: dict, key: str, err, required: bool = False) -> str | None:
    v = m.get(key)
    if v is None:
        if required:
            err(key, "required")
        return None
    if not isinstance(v, str) or not v.strip():
        err(key, "expected a non-empty string")
    return v
