"""The edgeq command line: compile, plan, inspect, targets.

    edgeq compile model.onnx --target ort --calib calib.npz --val val.npz
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from edgeq import __version__
from edgeq.errors import EdgeqError

TARGET_HELP = "Target to compile for (repeat for several). `edgeq targets` lists them."


def _fail(e: EdgeqError):
    click.echo(f"edgeq: error: {e}", err=True)
    sys.exit(2)


class EdgeqGroup(click.Group):
    """User mistakes print one line and exit 2; only bugs show a traceback."""

    def invoke(self, ctx):
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


def _options(model, targets, calib, val, out, input_shapes, seed, **kw):
    from edgeq.frontend import parse_input_shapes
    from edgeq.pipeline import Options

    return Options(targets=list(targets) or ["ort"], calib=calib, val=val, out=Path(out),
                   input_shapes=parse_input_shapes(input_shapes), seed=seed, **kw)


@main.command()
@click.argument("model", type=click.Path())
@click.option("--target", "-t", "targets", multiple=True, default=["ort"], show_default=True, help=TARGET_HELP)
@_data_options
@click.option("--plan", type=click.Path(), default=None, help="Apply this plan.json exactly instead of calibrating a new one.")
@click.option("--out", "-o", default="out", show_default=True, help="Output folder (written only when everything succeeds).")
@_model_options
@click.option("--threads", default=1, show_default=True, help="Threads for the runtimes when verifying and timing.")
@click.option("--no-ort-format", is_flag=True, help="Do not write the .ort (ORT Mobile) file beside the .onnx artifact.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout (no table, no progress bars).")
def compile(model, targets, calib, val, plan, out, input_shapes, threads, no_ort_format, as_json, seed):  # noqa: A001
    """Quantize MODEL (.onnx or .pt2), lower it for each target, verify and profile it.

    \b
    Writes into --out: the artifact per target (e.g. MODEL.ort.onnx and MODEL.ort),
    plan.json (the quantization plan used) and report.json (every number shown).
    """
    from edgeq.pipeline import run_compile
    from edgeq.report import table

    opts = _options(model, targets, calib, val, out, input_shapes, seed, plan=plan, threads=threads,
                    ort_format=not no_ort_format, progress=not as_json and sys.stderr.isatty())
    report = run_compile(model, opts)
    click.echo(json.dumps(report, indent=2, sort_keys=True) if as_json else table(report))


@main.command()
@click.argument("model", type=click.Path())
@click.option("--target", "-t", "targets", multiple=True, default=["ort"], show_default=True, help=TARGET_HELP)
@_data_options
@click.option("--out", "-o", default="out", show_default=True, help="Folder for plan.json.")
@_model_options
@click.option("--json", "as_json", is_flag=True, help="Print the plan on stdout as well.")
def plan(model, targets, calib, val, out, input_shapes, as_json, seed):
    """Calibrate MODEL and write only the quantization plan (OUT/plan.json).

    Edit it (bits, scales, float layers) and apply it with `edgeq compile --plan`.
    """
    from edgeq.pipeline import write_plan

    opts = _options(model, targets, calib, val, out, input_shapes, seed, progress=not as_json and sys.stderr.isatty())
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

    info = inspect_model(model, list(targets), parse_input_shapes(input_shapes))
    click.echo(json.dumps(info, indent=2, sort_keys=True) if as_json else render(info))


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
        click.echo(f"{'':<8} weights {t['weight_bits']} bits, activations {t['activation_bits']} bits, "
                   f"{t['ops']} ops, runs on {t['runtime']}")


if __name__ == "__main__":
    main()
