"""ONNX backend node tests through a target, in float: pass / wrong / error / refused per op and per target.

    python bench/conformance.py --target tflite|tflm|coreml|ort|all [--filter conv] [--json out.json]

Each case of Debian's libonnx-testdata (/usr/share/libonnx-testdata/data/node/test_*/)
whose ops are all in the target's op table (`OPS`: the selection is generated from the
registry) is loaded like any model, lowered with a float plan (no bits), run on the
target's runtime through make_runner (Core ML off macOS: the MIL reference executor;
tflm: TFLite Micro's Python interpreter) and compared with the expected outputs (rtol
1e-3, atol 1e-5). Parameter inputs (weights, pads, axes, clip bounds, see PARAM_INPUTS)
are frozen to the case's values first, as a deployed model holds them; dims the model
leaves unbound are bound to the case's data, as `--input-shape` does.

Each case ends in one OUTCOMES class: `pass`; `wrong` (lowered and ran, wrong answer or
shape: the serious class, a user would get it silently); `error` (an exception that is no
EdgeqError, a runtime crash or a timeout: a bug); `refused` (a clean EdgeqError such as
UnsupportedOpError: the user is told). Target-specific handling is data (TARGET_OPTIONS).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import traceback
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgeq.errors import EdgeqError  # noqa: E402
from edgeq.lower import expand_all, get_target  # noqa: E402
from edgeq.quant.plan import QuantPlan  # noqa: E402
from edgeq.runners import make_runner  # noqa: E402

NODE_TESTS = Path("/usr/share/libonnx-testdata/data/node")
IGNORED_OPS = {"Constant", "Identity"}  # removed by edgeq's normalization passes
# Cases whose expected outputs no runtime can reproduce: they draw random numbers.
RANDOM_OPS = {"Bernoulli", "Multinomial", "RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike"}
RTOL, ATOL = 1e-3, 1e-5
OUTCOMES = ("pass", "wrong", "error", "refused")
# Lowering options per target, under any --option. Conformance checks what each op computes, so
# Core ML runs in fp32 (fp16 rounding alone exceeds rtol 1e-3; it is a precision choice, not an op's
# semantics) and ort skips the .ort file (a packaging step in a child process; the runner runs the .onnx).
TARGET_OPTIONS = {"coreml": {"coreml_precision": "fp32"}, "ort": {"ort_format": False}}
# Inputs the op spec treats as parameters: a deployed model holds them as constants (LiteRT and
# Core ML need them so), so the bench freezes them to the case's values. Data inputs stay inputs.
PARAM_INPUTS = {
    "Conv": (1, 2), "ConvTranspose": (1, 2), "Clip": (1, 2), "Slice": (1, 2, 3, 4), "Pad": (1, 2, 3),
    "ReduceSum": (1,), "ReduceMean": (1,), "ReduceMax": (1,), "ReduceMin": (1,), "Resize": (1, 2, 3),
    "Reshape": (1,), "Squeeze": (1,), "Unsqueeze": (1,), "Split": (1,), "LayerNormalization": (1, 2),
    "PRelu": (1,), "Gemm": (1, 2), "LSTM": (1, 2, 3, 4, 5, 6, 7), "Expand": (1,),
}


def snake(op: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", op).lower()


def case_ops(model: onnx.ModelProto) -> set[str]:
    return {n.op_type for n in model.graph.node} - IGNORED_OPS


def label(name: str, ops: set[str]) -> str:
    """The op a case tests: its only op, or the op its name starts with."""
    if len(ops) == 1:
        return next(iter(ops))
    for op in sorted(ops, key=len, reverse=True):
        if name.startswith(f"test_{snake(op)}"):
            return op
    return "+".join(sorted(ops))


def read_pb(path: Path) -> np.ndarray:
    t = onnx.TensorProto()
    t.ParseFromString(path.read_bytes())
    return numpy_helper.to_array(t)


def frozen(model: onnx.ModelProto, values: dict[str, np.ndarray]) -> onnx.ModelProto:
    """The model with its parameter inputs (weights, pads, axes, bounds...) turned into initializers."""
    params = set()
    for n in model.graph.node:
        for k, name in enumerate(n.input):
            if name and k in PARAM_INPUTS.get(n.op_type, ()):
                params.add(name)
    m = onnx.ModelProto()
    m.CopyFrom(model)
    keep = [i for i in m.graph.input if i.name not in params or m.ir_version < 4]  # IR < 4 lists initializers as inputs
    del m.graph.input[:]
    m.graph.input.extend(keep)
    m.graph.initializer.extend(numpy_helper.from_array(values[p], p) for p in sorted(params) if p in values)
    return m


def run_case(mod, case: Path, work: Path, options: dict | None = None) -> tuple[bool, str]:
    """(True, "") when every output of every data set matches, (False, why) when one differs; an
    exception (an EdgeqError when edgeq refuses) when the case does not lower or run. `options`
    defaults to the target's TARGET_OPTIONS under the bench's --option values."""
    from edgeq.frontend import load
    from edgeq.passes import run_passes

    if options is None:
        options = {**TARGET_OPTIONS.get(mod.NAME, {}), **json.loads(os.environ.get("EDGEQ_TARGET_OPTIONS", "{}"))}
    model = onnx.load(case / "model.onnx")
    inputs = [i.name for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    outputs = [o.name for o in model.graph.output]
    for ds in sorted(case.glob("test_data_set_*")):
        values = {name: read_pb(ds / f"input_{k}.pb") for k, name in enumerate(inputs) if (ds / f"input_{k}.pb").exists()}
        try:
            graph = run_passes(load(frozen(model, values)))
        except EdgeqError as e:  # an unbound dim: bound to the case's data, as `--input-shape` does for a user
            if "unbound dynamic dim" not in str(e):
                raise
            m = frozen(model, values)
            graph = run_passes(load(m, input_shapes={i.name: values[i.name].shape for i in m.graph.input if i.name in values}))
        plan = QuantPlan(model_sha256=graph.sha256(), target=mod.NAME, mode="static")
        artifact = mod.lower(graph, plan, work / ds.name, case.name, options)
        feeds = {s.name: values[s.name] for s in graph.inputs}
        got = make_runner(artifact).run(feeds)
        for k, name in enumerate(outputs):
            want = read_pb(ds / f"output_{k}.pb")
            have = np.asarray(got[name])
            if have.shape != want.shape:
                return False, f"{ds.name}: output '{name}' shape {list(have.shape)} != expected {list(want.shape)}"
            if not np.allclose(have.astype(np.float64), want.astype(np.float64), rtol=RTOL, atol=ATOL, equal_nan=True):
                err = float(np.max(np.abs(have.astype(np.float64) - want.astype(np.float64))))
                return False, f"{ds.name}: output '{name}' max abs error {err:.3g}"
    return True, ""


def outcome(mod, case: Path, work: Path, options: dict | None = None) -> tuple[str, str]:
    """(one of OUTCOMES, why) for a case on a target, in this process."""
    try:
        ok, why = run_case(mod, case, work, options)
    except EdgeqError as e:
        return "refused", f"{type(e).__name__}: {e}"
    except Exception as e:  # a bug or a runtime's own refusal: listed, not hidden
        msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else traceback.format_exc(limit=1)
        return "error", f"{type(e).__name__}: {msg}"
    return ("pass", "") if ok else ("wrong", why)


def uncheckable(model: onnx.ModelProto) -> str | None:
    """Why the bench cannot check a case (None when it can): edgeq runs numeric tensors, and a random
    draw has no expected value."""
    for v in (*model.graph.input, *model.graph.output):
        if not v.type.HasField("tensor_type"):
            return f"'{v.name}' is no tensor ({v.type.WhichOneof('value')})"
        if v.type.tensor_type.elem_type == onnx.TensorProto.STRING:
            return f"'{v.name}' is a string tensor"
    for n in model.graph.node:
        if n.op_type in RANDOM_OPS or (n.op_type == "Dropout" and len(n.input) > 2 and n.input[2]):
            return f"{n.op_type} draws random numbers" + (" (training_mode)" if n.op_type == "Dropout" else "")
    return None


def node_cases(filter_text: str = "", skipped: dict | None = None) -> list[tuple[Path, frozenset[str]]]:
    """(case folder, its ops) of every checkable node test with a model and expected outputs, by name;
    `skipped` collects {case: why} of the uncheckable ones."""
    out = []
    for case in sorted(NODE_TESTS.glob("test_*")):
        if filter_text not in case.name or not (case / "model.onnx").exists():
            continue
        if not list(case.glob("test_data_set_*/output_0.pb")):
            continue  # a case without data checks nothing
        try:
            model = onnx.load(case / "model.onnx")
        except Exception:
            continue
        why = uncheckable(model)
        if why is not None and skipped is not None:
            skipped[case.name] = why
        if why is None and case_ops(model):
            out.append((case, frozenset(case_ops(model))))
    return out


def target_cases(target: str, cases: list[tuple[Path, frozenset[str]]]) -> list[tuple[Path, frozenset[str]]]:
    """The cases whose ops are all in the target's op registry."""
    table = set(get_target(target).OPS)
    return [(case, ops) for case, ops in cases if ops <= table]


def _worker(conn, target: str) -> None:
    """Runs cases sent over `conn`; a runtime that aborts kills only this process."""
    mod = get_target(target)
    with tempfile.TemporaryDirectory() as tmp:
        while True:
            case = conn.recv()
            if case is None:
                return
            conn.send(outcome(mod, Path(case), Path(tmp) / Path(case).name))


class Worker:
    def __init__(self, target: str):
        import multiprocessing as mp

        self.target, self.mp = target, mp.get_context("spawn")
        self.start()

    def start(self) -> None:
        self.conn, child = self.mp.Pipe()
        self.proc = self.mp.Process(target=_worker, args=(child, self.target), daemon=True)
        self.proc.start()

    def run(self, case: Path, timeout: float = 120) -> tuple[str, str]:
        self.conn.send(str(case))
        if self.conn.poll(timeout):
            try:
                return self.conn.recv()
            except EOFError:
                self.proc.join(5)
        code = self.proc.exitcode
        self.proc.kill()
        self.proc.join()
        self.start()
        return "error", f"runtime crashed (exit {code})" if code is not None else f"timed out after {timeout:.0f} s"

    def close(self) -> None:
        self.conn.send(None)
        self.proc.join(5)


def run_target(target: str, cases: list[tuple[Path, frozenset[str]]]) -> dict[str, list[tuple[str, str, str]]]:
    """{op label: [(case, outcome, why)]} for the target's cases, each in a worker process."""
    results: dict[str, list] = defaultdict(list)
    worker = Worker(target)
    for case, ops in target_cases(target, cases):
        got, why = worker.run(case)
        results[label(case.name, ops)].append((case.name, got, why))
    worker.close()
    return dict(results)


def counts(results: dict[str, list]) -> dict[str, int]:
    """cases, each outcome, and failed (wrong + error: neither a pass nor a clean refusal)."""
    n = {k: sum(got == k for v in results.values() for _, got, _ in v) for k in OUTCOMES}
    return {"cases": sum(len(v) for v in results.values()), **n, "failed": n["wrong"] + n["error"]}


def print_ops(target: str, results: dict[str, list]) -> None:
    c = counts(results)
    print(f"ONNX node conformance, target {target}: {c['pass']}/{c['cases']} cases pass ({100 * c['pass'] / max(c['cases'], 1):.1f} %)\n")
    print(f"{'op':<28}{'pass':>6}{'cases':>7}{'rate':>9}{'wrong':>7}{'error':>7}{'refused':>9}")
    for op in sorted(results):
        o = counts({op: results[op]})
        print(f"{op:<28}{o['pass']:>6}{o['cases']:>7}{100 * o['pass'] / o['cases']:>8.0f}%{o['wrong']:>7}{o['error']:>7}{o['refused']:>9}")


def print_targets(by_target: dict[str, dict]) -> None:
    print(f"{'target':<10}{'cases':>7}{'passed':>8}{'failed':>8}{'(wrong)':>9}{'(error)':>9}{'refused':>9}")
    for target, results in by_target.items():
        c = counts(results)
        print(f"{target:<10}{c['cases']:>7}{c['pass']:>8}{c['failed']:>8}{c['wrong']:>9}{c['error']:>9}{c['refused']:>9}")
    print("failed = wrong answers (lowered and ran) + errors (no clean EdgeqError: a bug, a crash); refused = a clean EdgeqError")


def print_failures(target: str, results: dict[str, list]) -> None:
    titles = {"wrong": "WRONG ANSWERS", "error": "errors (not a clean refusal)", "refused": "refused cleanly"}
    for kind, title in titles.items():
        rows = sorted((name, why) for v in results.values() for name, got, why in v if got == kind)
        if rows:
            print(f"\n{target}: {title} ({len(rows)}):")
            for name, why in rows:
                print(f"  {name}: {why}")


def target_json(target: str, results: dict[str, list]) -> dict:
    c = counts(results)
    return {"target": target, "passed": c["pass"], "total": c["cases"], "failed": c["failed"], "wrong": c["wrong"],
            "error": c["error"], "refused": c["refused"],
            "cases": {op: [{"case": n, "pass": got == "pass", "outcome": got, "why": why} for n, got, why in v]
                      for op, v in sorted(results.items())}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="tflite", help="tflite | tflm | coreml | ort | all (every available target)")
    ap.add_argument("--filter", default="", help="only cases whose directory name contains this")
    ap.add_argument("--json", dest="json_path", default=None, help="also write the results as JSON here")
    ap.add_argument("--option", dest="options", action="append", default=[], metavar="KEY=VALUE",
                    help="a target option passed to lower, e.g. coreml_precision=fp16 (repeat; over TARGET_OPTIONS)")
    args = ap.parse_args(argv)
    os.environ["EDGEQ_TARGET_OPTIONS"] = json.dumps(dict(o.split("=", 1) for o in args.options))  # seen by the workers
    targets = expand_all([args.target])
    for t in targets:
        get_target(t)  # an unknown target: one line before any work
    skipped: dict[str, str] = {}
    cases = node_cases(args.filter, skipped)
    by_target = {t: run_target(t, cases) for t in targets}
    for t, results in by_target.items():
        if len(targets) == 1:
            print_ops(t, results)
        print_failures(t, results)
    print(f"\nskipped: {len(skipped)} cases the bench cannot check (random draws; sequence, optional or string I/O)\n")
    print_targets(by_target)
    if args.json_path:
        blobs = {t: target_json(t, r) for t, r in by_target.items()}
        out = blobs[targets[0]] if len(targets) == 1 else {
            "targets": blobs, "passed": sum(b["passed"] for b in blobs.values()), "total": sum(b["total"] for b in blobs.values())}
        out["skipped"] = dict(sorted(skipped.items()))
        Path(args.json_path).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
