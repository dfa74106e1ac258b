"""The edgeq command line: compile, plan, inspect, targets, profile, devices, build.

    edgeq compile model.onnx --target ort --calib calib.npz --val val.npz
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import click

from edgeq import __version__
from edgeq.errors import EdgeqError
from edgeq.schemes import SCHEMES

TARGET_HELP = "Target to compile for (repeat, or a,b, for several; all: every target). `edgeq targets` lists them."


def _in_range(lo, hi=None, why: str = ""):
    """A click callback refusing a number outside lo..hi (hi None: no upper end) in edgeq's one line."""

    def check(ctx, param, value):
        if value is None:
            return value
        if not (lo <= value and (hi is None or value <= hi)) or value != value:
            flag = max(param.opts, key=len)
            span = f"{lo}..{hi}" if hi is not None else f"{lo} or more"
            raise EdgeqError(f"{flag} {value}: give {span}{f' ({why})' if why else ''}")
        return value

    return check


def _threads(ctx, param, value):
    if value == 1 and not isinstance(value, bool):  # the default: no need to import the runtimes to check it
        return 1
    from edgeq.runners import check_threads

    return check_threads(value)


def parse_targets(specs) -> list[str]:
    """--target a,b == --target a --target b; `all` is every target edgeq.lower.target_names() lists;
    an empty or blank name (--target '', 'ort,') is refused."""
    from edgeq.lower import expand_all, target_names

    names = [t.strip() for spec in specs for t in spec.split(",")]
    if any(not t for t in names):
        bad = next(spec for spec in specs if not spec.strip() or any(not t.strip() for t in spec.split(",")))
        raise EdgeqError(f"--target {bad!r}: an empty target name; choose from {', '.join(target_names())} "
                         "(several: --target ort,tflite, or all)")
    return expand_all(names)


def _json(obj) -> str:
    """Valid JSON always: a number that overflowed prints as null (compile's report says so in its warnings)."""
    from edgeq.report import finite_copy

    return json.dumps(finite_copy(obj)[0], indent=2, sort_keys=True, allow_nan=False)


def one_line(text: str) -> str:
    """A newline inside a message (a file name with one) is shown escaped, as repr would."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


def _fail(e: EdgeqError):
    message = one_line(str(e))  # one line, always
    click.echo(f"edgeq: error: {message}", err=True)
    sys.exit(2)


class EdgeqGroup(click.Group):
    """User mistakes print one line and exit 2; only bugs show a traceback."""

    def invoke(self, ctx):
        # Libraries' Python warnings (numpy overflow while folding, deprecations) are not for the user:
        # what matters reaches the report's warnings, and an error stays one line.
        warnings.simplefilter("ignore")
        try:
            return super().invoke(ctx)
        except EdgeqError as e:
            _fail(e)


@click.group(cls=EdgeqGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgeq")
def main():
    """edgeq compiles a trained network into small, verified artifacts for devices.

    \b
    Typical use:
      edgeq inspect model.onnx                    what is in the model, what each target can lower
      edgeq plan model.onnx --calib calib.npz     write the quantization plan (plan.json) to edit
      edgeq compile model.onnx --target ort --calib calib.npz --val val.npz
    """


def _model_options(f):
    f = click.option("--input-shape", "input_shapes", multiple=True, metavar="NAME=D0,D1,...",
                     help="Bind an input's dynamic dims, e.g. input=1,1,28,28. A symbolic batch dim may stay unbound.")(f)
    return f


def _data_options(f):
    f = click.option("--seed", default=0, show_default=True, help="Seed for random data and any sampling.")(f)
    f = click.option("--val", type=click.Path(), default=None,
                     help="Validation data (.npz with an optional 'labels' array). Default: hold back 20% of --calib.")(f)
    f = click.option("--calib", type=str, default=None,
                     help="Calibration data: .npz (keys = input names), a folder of .npy, or 'random' (meaningless ranges).")(f)
    return f


def _quant_options(f):
    """Mixed-precision flags (edgeq/quant/mixed.py); none given = the uniform int8 recipe."""
    opts = [
        click.option("--no-cache", "no_cache", is_flag=True, default=None, help="Recompute cached measurements (layer sensitivities, activation precision) instead of reusing ~/.cache/edgeq."),
        click.option("--act-bits", default=None, metavar="8|16|auto",
                     help="Activation bits (static mode). auto (default): int8, widened to int16 or float only where measured sensitivity needs it."),
        click.option("--codebook", type=click.Choice(["kmeans", "nf4"]), default=None, help="Palette codebook (--scheme palette)."),
        click.option("--block-size", type=int, default=None, callback=_in_range(1, 1 << 20), help="Block size for per_block (or channels per palette group)."),
        click.option("--granularity", type=click.Choice(["per_tensor", "per_channel", "per_block"]), default=None,
                     help="Weight scale granularity (default per_channel)."),
        click.option("--scheme", type=click.Choice(list(SCHEMES)), default=None,
                     help="Weight scheme: " + "; ".join(f"{s.name}: {s.help}" for s in SCHEMES.values())
                     + ". Default symmetric."),
        click.option("--rounding", type=click.Choice(["nearest", "gptq", "awq"]), default=None,
                     help="Weight rounding: nearest, GPTQ error compensation, or AWQ channel scaling."),
        click.option("--weight-only", "weight_only", is_flag=True, default=None, help="Same as --mode weight_only."),
        click.option("--mode", type=click.Choice(["static", "weight_only", "dynamic"]), default=None,
                     help="static: weights + activations; weight_only: activations float; dynamic: ORT runtime activations."),
        click.option("--calib-method", type=click.Choice(["minmax", "percentile", "entropy", "mse", "auto"]), default=None,
                     help="Activation range observer (auto: per tensor, the lowest quantization error)."),
        click.option("--bits", "bits_overrides", multiple=True, metavar="PATTERN=B", help="Bits for matching layers, e.g. 'conv1=8'."),
        click.option("--keep-float", multiple=True, metavar="PATTERN", help="Keep matching layers float, e.g. 'classifier*'."),
        click.option("--metric", default=None, metavar="MODULE:FUNCTION",
                     help="Metric for --max-drop: FUNCTION(outputs, labels) -> float, higher is better."),
        click.option("--max-drop", default=None, metavar="PCT", help="Smallest plan whose metric drops at most this much, e.g. 1%."),
        click.option("--size-budget", default=None, metavar="SIZE", help="Weights + params budget, e.g. 300KB."),
        click.option("--avg-bits", type=float, default=None, callback=_in_range(2, 8, "weights take 2..8 bits"), help="Average weight bits; bits per layer by sensitivity."),
        click.option("--weight-bits", type=int, default=None, callback=_in_range(2, 8, "weights take 2..8 bits"), help="Bits for every weight when no budget is given (default 8)."),
        click.option("--max-bits", type=int, default=None, callback=_in_range(2, 8, "weights take 2..8 bits"),
                     help="Highest weight bits to use (7 avoids int8 saturation in ORT's kernels on x86 without VNNI)."),
    ]
    for o in opts:
        f = o(f)
    return f


QUANT_KEYS = ("no_cache", "act_bits", "codebook", "block_size", "granularity", "scheme", "rounding", "weight_only", "mode",
              "calib_method", "bits_overrides", "keep_float", "metric", "max_drop", "size_budget", "avg_bits", "weight_bits",
              "max_bits")


def _pop_quant(kw: dict):
    """Take the mixed-precision flags out of kw; a QuantOptions, or None when none was given."""
    from edgeq.quant.act_precision import parse_act_bits
    from edgeq.quant.mixed import QuantOptions

    v = {k: kw.pop(k, None) for k in QUANT_KEYS}
    q = QuantOptions(
        bits=v["weight_bits"] or 8, avg_bits=v["avg_bits"], size_budget=v["size_budget"], max_drop=v["max_drop"],
        metric=v["metric"], keep_float=list(v["keep_float"] or []), bits_overrides=list(v["bits_overrides"] or []),
        calib_method=v["calib_method"] or "minmax", mode="weight_only" if v["weight_only"] else v["mode"] or "static",
        rounding=v["rounding"] or "nearest", scheme=v["scheme"] or "symmetric", granularity=v["granularity"] or "per_channel",
        block_size=v["block_size"], codebook=v["codebook"], act_bits=parse_act_bits(v["act_bits"] or "auto"),
        use_cache=not v["no_cache"], max_bits=v["max_bits"])
    return None if q == QuantOptions() else q  # an explicit --act-bits 8 is kept: it turns auto off


def _options(model, targets, calib, val, out, input_shapes, seed, **kw):
    from edgeq.frontend import parse_input_shapes
    from edgeq.pipeline import Options

    return Options(targets=parse_targets(targets) or ["ort"], calib=calib, val=val, out=Path(out),
                   input_shapes=parse_input_shapes(input_shapes), seed=seed, **kw)


def target_flags(f):
    """One flag per option a target declares (targets/<name>.toml [options.KEY]), prefixed in --help
    with the targets that read it; the value reaches the lowering as options[KEY]."""
    from edgeq.target import all_options

    for opt, names in reversed(all_options()):
        kind = {"choice": click.Choice(list(opt.choices)), "int": click.IntRange(opt.min, opt.max)}.get(opt.type)
        extra = {"is_flag": True} if opt.type == "flag" else {"type": kind} if kind is not None else {}
        f = click.option(opt.flag, opt.key, default=None, help=f"{'/'.join(names)}: {opt.help}", **extra)(f)
    return f


@main.command()
@click.argument("model", type=click.Path())
@click.option("--target", "-t", "targets", multiple=True, default=["ort"], show_default=True, help=TARGET_HELP)
@_data_options
@click.option("--plan", type=click.Path(), default=None, help="Apply this plan.json exactly instead of calibrating a new one.")
@click.option("--force", is_flag=True, help="Apply --plan even if it was made for another model (sha256) or target.")
@click.option("--out", "-o", default="out", show_default=True, help="Output folder (written only when everything succeeds).")
@_model_options
@click.option("--threads", default=1, show_default=True, callback=_threads, help="Threads for the runtimes when verifying and timing.")
@click.option("--no-ort-format", is_flag=True, help="Do not write the .ort (ORT Mobile) file beside the .onnx artifact.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout (no table, no progress bars).")
@click.option("--quiet", "-q", is_flag=True, help="No table and no progress bars; warnings still go to stderr, one line each.")
@click.option("--output-file", "output_file", type=click.Path(), default=None,
              help="One target only: also copy its artifact to exactly this path (for build tools that want one file).")
@target_flags
@click.option("--device", "devices", multiple=True, metavar="NAME",
              help="Also estimate latency, energy and battery on this device (repeat; `edgeq devices` lists them).")
@click.option("--rate", default="30/s", show_default=True, help="Inference rate for battery use per hour, e.g. 30/s or 120/min.")
@_quant_options
def compile(model, targets, calib, val, plan, force, out, input_shapes, threads, no_ort_format, as_json, quiet, seed,  # noqa: A001
            output_file=None, **target_kw):
    """Quantize MODEL (.onnx or .pt2), lower it for each target, verify and profile it.

    \b
    Writes into --out: the artifact per target (e.g. MODEL.ort.onnx and MODEL.ort),
    plan.json (the quantization plan used) and report.json (every number shown).
    """
    from edgeq.pipeline import run_compile
    from edgeq.report import relative_paths, table

    if output_file is not None and len(parse_targets(targets)) != 1:
        raise EdgeqError(f"--output-file {output_file}: give exactly one --target (got {', '.join(parse_targets(targets))}); "
                         "with several, read each artifact's path from report.json")
    opts = compile_options(model, targets, calib, val, plan, force, out, input_shapes, threads, no_ort_format, seed,
                           progress=not (as_json or quiet) and sys.stderr.isatty(), **target_kw)
    report = run_compile(model, opts)
    if output_file is not None:
        copy_artifact(opts.out / report["targets"][0]["artifact"], Path(output_file))
    if as_json:
        click.echo(json.dumps(relative_paths(report, opts.out.resolve()), indent=2, sort_keys=True))
    elif quiet:
        for w in report.get("warnings", []):
            click.echo(f"edgeq: warning: {one_line(str(w))}", err=True)
    else:
        click.echo(table(report))


def copy_artifact(src: Path, dest: Path) -> None:
    """Copy an artifact (a file, or a folder such as an .mlpackage) to exactly DEST, replacing what is there."""
    import shutil

    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_dir() and not dest.is_symlink():
        shutil.rmtree(dest)
    elif dest.exists() or dest.is_symlink():
        dest.unlink()
    if src.is_dir():
        shutil.copytree(src, dest)
    else:
        shutil.copyfile(src, dest)


def compile_options(model, targets, calib, val, plan, force, out, input_shapes, threads, no_ort_format, seed, progress,
                    **target_kw):
    """The pipeline Options for `edgeq compile`'s parsed parameters (edgeq build parses its config's options
    with the same command, so both check them the same way)."""
    from edgeq.profile import parse_rate

    quant = _pop_quant(target_kw)
    profiling = {"devices": list(target_kw.pop("devices")), "rate": parse_rate(target_kw.pop("rate"))}
    return _options(model, targets, calib, val, out, input_shapes, seed, plan=plan, force=force, threads=threads,
                    ort_format=not no_ort_format, progress=progress,
                    target_options={k: v for k, v in target_kw.items() if v is not None}, quant=quant, **profiling)


@main.command()
@click.argument("model", type=click.Path())
@click.option("--target", "-t", "targets", multiple=True, default=["ort"], show_default=True, help=TARGET_HELP)
@_data_options
@click.option("--out", "-o", default="out", show_default=True, help="Folder for plan.json.")
@_model_options
@click.option("--json", "as_json", is_flag=True, help="Print the plan on stdout as well.")
@_quant_options
def plan(model, targets, calib, val, out, input_shapes, as_json, seed, **quant_kw):
    """Calibrate MODEL and write only the quantization plan (OUT/plan.json).

    Edit it (bits, scales, float layers) and apply it with `edgeq compile --plan`.
    """
    from edgeq.pipeline import write_plan

    opts = _options(model, targets, calib, val, out, input_shapes, seed, progress=not as_json and sys.stderr.isatty(),
                    quant=_pop_quant(quant_kw))
    p = write_plan(model, opts)
    if as_json:
        click.echo(p.to_json(), nl=False)
    else:
        click.echo(f"wrote {Path(out) / 'plan.json'}: {len(p.weights)} weights, {len(p.activations)} activations, "
                   f"{p.avg_weight_bits():.2f} average weight bits")


@main.command()
@click.argument("model", type=click.Path())
@click.option("--target", "-t", "targets", multiple=True, help="Only these targets (default: all).")
@_model_options
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def inspect(model, targets, input_shapes, as_json):
    """Show MODEL's inputs, outputs, op counts and params, and which ops each target can lower."""
    from edgeq.frontend import parse_input_shapes
    from edgeq.inspect import inspect_model, render

    info = inspect_model(model, parse_targets(targets), parse_input_shapes(input_shapes))
    click.echo(_json(info) if as_json else render(info))


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def targets(as_json):
    """List the targets edgeq can compile for and what each can hold."""
    from edgeq.inspect import list_targets

    info = list_targets()
    if as_json:
        click.echo(json.dumps(info, indent=2, sort_keys=True))
        return
    for t in info:
        click.echo(f"{t['name']:<8} {t['description']}")
        click.echo(f"{'':<8} weights {t['weight_bits']} bits ({', '.join(t['weight_schemes'])}; "
                   f"{', '.join(t['weight_granularity'])}), activations {t['activation_bits']} bits ({t['activation_dtype']}), "
                   f"{t['ops']} ops, writes {t['artifact']}, runs on {t['runtime']}")
        if t["options"]:
            click.echo(f"{'':<8} options: {' '.join(t['options'].values())}")
        for os_name, holds in t["deployments"].items():
            click.echo(f"{'':<8} {os_name}: weights {'; '.join(holds.get('weights', []))}")


@main.command()
@click.argument("artifact", type=click.Path())
@click.option("--device", "devices", multiple=True, metavar="NAME", help="Device to estimate on (repeat; `edgeq devices` lists them).")
@click.option("--rate", default="30/s", show_default=True, help="Inference rate for battery use per hour, e.g. 30/s or 120/min.")
@click.option("--threads", default=1, show_default=True, callback=_threads, help="Threads for the host runtime when timing.")
@click.option("--runs", default=50, show_default=True, callback=_in_range(1, 1_000_000), help="Timed runs on the host (after warm-up).")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def profile(artifact, devices, rate, threads, runs, as_json):
    """Size, host latency (measured) and per-device latency, energy, battery, memory (estimated).

    ARTIFACT is any .ort.onnx, .tflite or .mlpackage edgeq wrote, or a plain float .onnx model.
    """
    from edgeq.devices import load_devices
    from edgeq.profile import parse_rate, profile_path
    from edgeq.profile.text import render_profile

    load_devices(devices)  # unknown device: fail before any work
    prof = profile_path(artifact, list(devices), parse_rate(rate), threads=threads, runs=runs)
    click.echo(_json(prof) if as_json else render_profile(prof))


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def devices(as_json):
    """List the device profiles (targets/devices/*.toml) `--device` accepts."""
    from edgeq.devices import device_names, load_device

    info = [{"name": n, "description": load_device(n).description, "units": sorted(load_device(n).units),
             "assumed_numbers": len(load_device(n).assumed()), "numbers": len(load_device(n).quantities)} for n in device_names()]
    if as_json:
        click.echo(json.dumps(info, indent=2, sort_keys=True))
        return
    for d in info:
        click.echo(f"{d['name']:<17} {d['description']}")
        click.echo(f"{'':<17} units {', '.join(d['units'])}; {d['assumed_numbers']} of {d['numbers']} numbers assumed")


@main.command()
@click.argument("config", required=False, type=click.Path())
@click.option("--no-cache", "no_cache", is_flag=True, help="Compile every entry again instead of restoring it from the build cache.")
@click.option("--keep-going", "-k", is_flag=True, help="After an error, build the other entries (default: stop at the first).")
@click.option("--jobs", "-j", default=None, type=int, callback=_in_range(1, 4096),
              help="Parallel compile processes (default and most: the machine's cores).")
@click.option("--quiet", "-q", is_flag=True, help="No progress lines; errors and failed gates still go to stderr.")
def build(config, no_cache, keep_going, jobs, quiet):
    """Compile every model of edgeq.toml (or pyproject.toml's [tool.edgeq]) for its targets.

    \b
    CONFIG: a config file or its folder (default: the current folder).
    Writes each entry's artifacts into its `out` folder and build.json beside the config.
    Exit status: 0 ok, 1 a bug in edgeq, 2 a user error, 3 a quality gate failed.
    """
    from edgeq.build.config import load_config
    from edgeq.build.run import run_build

    cfg = load_config(config)
    _, code = run_build(cfg, jobs=jobs, use_cache=not no_cache, keep_going=keep_going, echo=click.echo, quiet=quiet)
    sys.exit(code)


if __name__ == "__main__":
    main()
