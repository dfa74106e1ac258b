"""The pipeline: frontend -> passes -> quant -> lower -> verify -> profile -> report.

Each stage is called here once, in order; nothing else knows the whole sequence. All
files go to a staging folder first and move into `out` only when every target succeeded.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from edgeq import __version__
from edgeq.artifact import path_bytes
from edgeq.compare import compare
from edgeq.devices import load_devices
from edgeq.errors import CalibrationError, EdgeqError
from edgeq.fileio import StagingDir, check_out_dir, write_text
from edgeq.frontend import check_leading_dim_is_batch, load
from edgeq.frontend.onnx_file import check_graph_weights_finite
from edgeq.frontend.quantized import check_not_quantized
from edgeq.graph import Graph
from edgeq.lower import check_lowerable, expand_all, get_target, target_data
from edgeq.passes import run_passes
from edgeq.profile import measure_pair, one_sample, profile_artifact
from edgeq.progress import progress_bar, stage
from edgeq.quant.act_precision import before_plan
from edgeq.quant.build import check_channel_axes
from edgeq.quant.data import Dataset, load_dataset, random_dataset
from edgeq.quant.mixed import QuantOptions, build_mixed_plan, refresh_plan
from edgeq.quant.plan import QuantPlan
from edgeq.quant.quality import data_warnings
from edgeq.quant.simulate import plan_graph
from edgeq.quant.size import predicted_bytes
from edgeq.report import finite_copy, write_report
from edgeq.report.html import write_html
from edgeq.runners import OrtRunner, batch_size_for, check_runnable, check_threads, make_runner, run_batches
from edgeq.verify import SLOWER_WARN, quality_warnings, reference_samples
from edgeq.verify.cross import first


@dataclass
class Options:
    targets: list[str] = field(default_factory=lambda: ["ort"])
    calib: object = None  # path, dict, Dataset or "random"
    val: object = None
    plan: str | Path | None = None
    out: Path = Path("out")
    input_shapes: dict | None = None
    example_inputs: object = None
    threads: int = 1
    latency_runs: int = 50
    ort_format: bool = True
    progress: bool = False
    seed: int = 0
    target_options: dict = field(default_factory=dict)
    quant: object = None  # edgeq.quant.mixed.QuantOptions (bits, budgets, rounding); None = uniform int8
    devices: list[str] = field(default_factory=list)  # device profiles to estimate on (targets/devices/*.toml)
    rate: float = 30.0  # inferences per second, for battery per hour
    force: bool = False  # apply --plan even if it was made for another model or target


def model_stem(model) -> str:
    """The name every artifact of this model starts with: the file name without its last suffix
    (a.b_v2.0.onnx -> a.b_v2.0), so models that differ after a dot do not overwrite each other."""
    if isinstance(model, str | Path):
        return Path(model).stem or Path(model).name
    return type(model).__name__.lower()


def float_artifact(target, graph, folder: Path, model_sha256: str = "float", options: dict | None = None):
    """The model lowered by `target` with every weight and activation float: the same runtime's
    baseline (compile's slower-than-float check, bench/calibrate_host.py's float kernels)."""
    return target.lower(graph, QuantPlan(model_sha256, target=target.name, mode="weight_only"), folder, "float", options or {})


def float_on_target(target, graph, plan, runner, feeds: dict, opts) -> tuple[dict, dict] | None:
    """(float, quantized) latency with the float model lowered by the same target and timed
    beside the artifact: onnxruntime's float is another runtime (LiteRT's int8 can be slower than
    float onnxruntime and still faster than a float .tflite). None when it does not lower or load:
    the warning then keeps onnxruntime's float as its baseline."""
    try:
        with tempfile.TemporaryDirectory() as d:
            art = float_artifact(target, graph, Path(d), plan.model_sha256, {"ort_format": opts.ort_format, **opts.target_options})
            return measure_pair(make_runner(art, opts.threads), runner, feeds, runs=opts.latency_runs)
    except Exception:  # noqa: BLE001  (an optional baseline: a runtime that cannot take the float model must not fail a verified compile)
        return None


def prepare(model, opts: Options) -> Graph:
    """Load, check and normalize; a compile that cannot succeed fails here, before calibration."""
    graph = load(model, opts.input_shapes, opts.example_inputs)
    check_not_quantized(graph, graph.source)
    check_runnable(graph)
    graph = run_passes(graph)
    check_leading_dim_is_batch(graph)
    for name in opts.targets:
        check_lowerable(graph, name)
    return graph


def make_plan(graph: Graph, opts: Options) -> tuple[Graph, QuantPlan, Dataset, Dataset, dict]:
    """Load data, calibrate, build the shared plan. Returns (graph, plan, calib, val, data facts):
    the graph after the passes that need data (sentinel masks, SmoothQuant), which is what the plan
    is for; the graph given is not changed.

    The plan is the same for one target or several (each target's own plan is derived from it
    by `plan_for_target`); it is not changed after this returns."""
    if opts.calib is None and opts.plan is None:
        raise CalibrationError("no calibration data: pass --calib FILE.npz (or a folder of .npy), or --calib random to accept meaningless ranges")
    check_graph_weights_finite(graph)  # what folding produced, before any number is derived from it
    facts: dict = {"warnings": []}
    calib = load_dataset(opts.calib, graph, "--calib", opts.seed) if opts.calib is not None else None
    val = load_dataset(opts.val, graph, "--val", opts.seed) if opts.val is not None else None
    if calib is not None and val is None:
        if len(calib) >= 2:
            calib, val = calib.split(0.2)
            facts["validation_note"] = f"no --val given: the last {len(val)} of the {len(calib) + len(val)} calibration samples were held back for verification"
        else:
            val = calib
            facts["validation_note"] = "no --val given and a single calibration sample: verified on the calibration sample itself"
    if val is None:
        val = random_dataset(graph.inputs, 16, opts.seed)
        facts["validation_note"] = "no --val or --calib: verified on random inputs, so only fidelity (not accuracy) is meaningful"
    act = before_plan(graph, calib, opts)  # --act-bits checked; sentinel masks scaled (quant/act_precision.py)
    opts, graph = act.opts, act.graph
    if opts.plan is not None:
        plan = QuantPlan.load(Path(opts.plan))
        plan.check_made_for(graph, opts.targets, str(opts.plan), force=opts.force)
        plan.check_against(graph, str(opts.plan))
        check_channel_axes(graph, plan, str(opts.plan))
        for t in refresh_plan(graph, plan):  # edited layers get parameters for their new settings
            facts["warnings"].append(f"plan: weight '{t}' was edited; its parameters were re-derived (round-to-nearest; "
                                     "to apply hand-set parameters instead, remove its 'derived')")
    else:  # one recipe: uniform int8 is the mixed recipe's default
        q = opts.quant if opts.quant is not None else QuantOptions(act_bits=8)
        allowed = sorted(set.intersection(*[set(target_data(t).get("weight_bits", range(2, 9))) for t in opts.targets]))
        # target=None: the shared plan does not depend on how many targets were given (plan_for_target adds it)
        plan = build_mixed_plan(graph, calib, None, allowed, q, lambda label, n: progress_bar(label, n, opts.progress))
    act.after_plan(graph, plan, calib, facts)  # --act-bits auto: int8 / int16 / float per activation
    if calib is not None and calib.random:
        facts["warnings"] += calib.notes
    if calib is not None and len(calib) < 32 and not calib.random:
        facts["warnings"].append(f"calibration set is small ({len(calib)} samples); ranges may not cover real inputs (32+ recommended)")
    with stage("checking calibration coverage", opts.progress):
        facts["warnings"] += data_warnings(graph, plan, calib, val)  # degenerate data, validation coverage
    # The plan as plan.json holds it (sorted names): lowerings walk it in that order, so
    # `compile --plan plan.json` lowers byte-for-byte what this compile lowers.
    return graph, QuantPlan.from_dict(json.loads(plan.to_json()), check=False), calib, val, facts


def adjust_for_target(graph: Graph, plan: QuantPlan, target, opts: Options) -> QuantPlan:
    """Let a target set what its kernels require (softmax output grid, ORT's 7-bit weights): a new plan."""
    return target.plan_for(graph, plan, {**opts.target_options, "devices": list(opts.devices)})


def plan_for_target(graph: Graph, plan: QuantPlan, target, opts: Options) -> tuple[QuantPlan, bool]:
    """(the plan `target` lowers, whether it differs from the shared plan): a pure function of the
    shared plan, the target and the options, the same for one target or several. Applying it to its
    own result changes nothing, so `compile --plan` of either plan file lowers the same plan.

    A plan that differs is the target's own (its `target` names it, plan.TARGET.json holds it);
    one that does not is the shared plan itself, so the artifact names plan.json's hash."""
    own = adjust_for_target(graph, plan, target, opts)
    if own.sha256() == plan.sha256():
        return own, False
    own.target = target.name
    return own, True


def target_plans(graph: Graph, lowered: Graph, plan: QuantPlan, targets, opts: Options) -> list[tuple[QuantPlan, bool]]:
    """Every target's plan, each checked against what the target holds (on `lowered`, the graph the
    targets lower) before anything is lowered."""
    out = []
    for target in targets:
        tplan, own = plan_for_target(graph, plan, target, opts)
        target.check_plan(lowered, tplan, opts.target_options)
        out.append((tplan, own))
    return out


def compile(model, target="ort", calib=None, val=None, out="out", **kw) -> dict:  # noqa: A001
    """Compile a model (path, ModelProto or nn.Module) for one or more targets; returns the report."""
    targets = expand_all([target] if isinstance(target, str) else list(target))  # "all": every target
    opts = Options(targets=targets, calib=calib, val=val, out=Path(out), **kw)
    return run_compile(model, opts)


def run_compile(model, opts: Options) -> dict:
    check_out_dir(opts.out)  # an output path that cannot be written: fail before any work
    check_threads(opts.threads)
    targets = [get_target(t) for t in opts.targets]  # unknown target: fail before any work
    for target in targets:
        target.check_options(opts.target_options)  # an API caller's option values, as the CLI flags check them
    load_devices(opts.devices)  # unknown device: fail before any work
    with stage("loading and checking the model", opts.progress):
        graph = prepare(model, opts)
    graph, plan, calib, val, facts = make_plan(graph, opts)
    lowered = plan_graph(graph, plan)  # the float graph, with the plan's GPTQ/AWQ-rewritten weights
    tplans = target_plans(graph, lowered, plan, targets, opts)  # the shared plan itself is never changed from here on
    stem = model_stem(model)
    float_runner = OrtRunner(graph.serialize(), threads=opts.threads, source=graph.source)
    bs = batch_size_for(graph)
    with stage("running the float model on the validation data", opts.progress):
        ref = float_runner.run_batches(val, bs)
    entries = []
    with StagingDir(opts.out) as staging:
        for name, target, (tplan, own_plan) in zip(opts.targets, targets, tplans):
            if own_plan:
                write_text(staging.path / f"plan.{name}.json", tplan.to_json())  # what this target lowered, exactly
            with stage(f"lowering to {name}", opts.progress):
                artifact = target.lower(lowered, tplan, staging.path, stem, {"ort_format": opts.ort_format, **opts.target_options})
                payload = target.payload(artifact)  # the constants as written, read back from the artifact
                runner = make_runner(artifact, opts.threads)
            vset, vref = val, ref
            n = reference_samples(lowered, len(val)) if runner.reference_executor else len(val)
            if n < len(val):
                vset = val.take(slice(0, n))  # numpy executors: a bounded share
                vref = float_runner.run_batches(vset, bs)
                artifact.notes.append(f"verified on the first {len(vset)} of {len(val)} validation samples: {name} runs in "
                                      "edgeq's reference executor here, which is slow on a model this large")
            with progress_bar(f"verifying {name}", len(vset), opts.progress) as bar:
                got = run_batches(runner, vset, bs, bar.update)
            verify = {**compare(vref, got, vset.labels), "samples": len(vset)}
            with stage(f"cross-checking and timing {name}", opts.progress):
                cross = target.cross_checks(artifact, lowered, tplan, first(vset.arrays), first(vref), first(got))
                if cross is not None:  # a second runtime or the plan's simulation, on the first samples
                    verify["cross_checks"] = cross
                # Alternating with the float graph: both see the same machine noise.
                reference = runner.reference_executor  # timings say nothing about the device: few runs
                feeds = one_sample(val, batch_size_for(graph, 1))
                float_lat, quant_lat = measure_pair(float_runner, runner, feeds,
                                                    warmup=0 if reference else 5, runs=1 if reference else opts.latency_runs)
                same = None
                if not reference and quant_lat["p50"] > SLOWER_WARN * float_lat["p50"] and not isinstance(runner, OrtRunner):
                    same = float_on_target(target, lowered, tplan, runner, feeds, opts)
            entries.append(target_entry(artifact, graph, tplan, verify, float_lat, quant_lat, runner, opts, staging.path))
            # judged against its own runtime's float where that was timed, as a user of that runtime would
            base, mine = same if same is not None else (float_lat, quant_lat)
            facts["warnings"] += quality_warnings(name, verify, base["p50"], mine["p50"], timed=not reference,
                                                  baseline=f"the float model on {name}'s runtime" if same else "float on this host")
            entries[-1]["predicted_bytes"] = predicted_bytes(lowered, tplan, name, opts.target_options)
            entries[-1]["bytes_vs_predicted"] = round(entries[-1]["bytes"] / max(entries[-1]["predicted_bytes"]["total"], 1), 4)
            if payload is not None:
                entries[-1]["payload_bytes"] = payload
                entries[-1]["payload_vs_predicted"] = round(payload / max(entries[-1]["predicted_bytes"]["total"], 1), 4)
            if own_plan:
                entries[-1]["plan_file"] = str(opts.out.resolve() / f"plan.{name}.json")
            entries[-1]["profile"] = profile_artifact(artifact, lowered, tplan, opts.devices, opts.rate, quant_lat, float_lat,
                                                      runner.load_seconds, opts.threads, opts.target_options)
            if same is not None:
                entries[-1]["profile"]["host_measured"]["float_target_p50_ms"] = round(same[0]["p50"], 5)
        report, non_finite = finite_copy(build_report(graph, plan, calib, val, facts, entries, model))
        report["warnings"] += non_finite
        write_text(staging.path / "plan.json", plan.to_json())
        write_report(report, staging.path, root=opts.out.resolve())  # paths relative to the output folder
        write_html(report, staging.path)
    return report


def target_entry(artifact, graph, plan, verify, float_lat, quant_lat, runner, opts, staging_root) -> dict:
    out = opts.out.resolve()
    artifact.relocate(staging_root, out)
    return {
        "target": artifact.target,
        "artifact": str(artifact.path),
        "files": [str(f) for f in artifact.files],
        "bytes": _bytes_at(artifact, staging_root, out),
        # every file the target wrote, each on its own (the .ort beside the .onnx, tflm's C sources)
        "file_bytes": [{"file": str(f), "bytes": path_bytes(staging_root / Path(f).relative_to(out))} for f in artifact.files],
        "float_bytes": graph.float_bytes(),
        "avg_weight_bits": round(plan.avg_weight_bits(), 3),
        "verify": verify,
        "latency_ms": {
            "float_p50": round(float_lat["p50"], 4), "quant_p50": round(quant_lat["p50"], 4),
            "float_p90": round(float_lat["p90"], 4), "quant_p90": round(quant_lat["p90"], 4),
            "float_p99": round(float_lat["p99"], 4), "quant_p99": round(quant_lat["p99"], 4),
            "batch": 1, "threads": opts.threads, "runs": quant_lat["runs"],
            "quant_load": round(runner.load_seconds * 1e3, 3),
        },
        "plan_sha256": artifact.plan_sha256,
        # what the target decided for its own plan and why (e.g. ort_weight_grid: 8-bit or the 7-bit grid)
        "plan_constraints": {k: v for k, v in plan.constraints.items() if isinstance(v, str)},
        "notes": artifact.notes,
        **{k: v for k, v in artifact.extra.items() if v is not None},
    }


def _bytes_at(artifact, staging_root: Path, out: Path) -> int:
    return path_bytes(staging_root / Path(artifact.path).relative_to(out))


def build_report(graph, plan, calib, val, facts, entries, model) -> dict:
    return {
        "edgeq_version": __version__,
        "model": {
            "path": str(model) if isinstance(model, str | Path) else type(model).__name__,
            "sha256": graph.sha256(),
            "inputs": [s.to_json() for s in graph.inputs],
            "outputs": [s.to_json() for s in graph.outputs],
            "params": graph.param_count(),
            "op_counts": graph.op_counts(),
        },
        "calibration": {
            "source": calib.source if calib is not None else None,
            "samples": len(calib) if calib is not None else 0,
            "random": bool(calib is not None and calib.random),
            "observer": plan.calibration.get("observer"),
        },
        "validation": {"source": val.source, "samples": len(val), "labels": val.labels is not None,
                       "note": facts.get("validation_note")},
        "plan": {"mode": plan.mode, "weights": len(plan.weights), "activations": len(plan.activations),
                 "avg_weight_bits": round(plan.avg_weight_bits(), 3), "sha256": plan.sha256(),
                 "layers_by_bits": {("float" if b is None else str(b)): sum(1 for w in plan.weights.values() if w.bits == b)
                                    for b in sorted({w.bits for w in plan.weights.values()}, key=lambda b: b or 99)},
                 "predicted": plan.predicted, "budget": {k: v for k, v in plan.budget.items() if k != "sensitivity"}},
        "warnings": facts["warnings"],
        "act_precision": facts.get("act_precision"),  # activations kept wide, sentinel / SmoothQuant rewrites
        "targets": entries,
    }


def write_plan(model, opts: Options) -> QuantPlan:
    """`edgeq plan`: everything up to the plan, written as plan.json."""
    check_out_dir(opts.out)
    for t in opts.targets:
        get_target(t)
    graph = prepare(model, opts)
    _, plan, *_ = make_plan(graph, opts)  # the shared plan; compile derives each target's own from it
    with StagingDir(opts.out) as staging:
        write_text(staging.path / "plan.json", plan.to_json())
    return plan


__all__ = ["compile", "run_compile", "write_plan", "Options", "EdgeqError"]
