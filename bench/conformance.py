"""ONNX backend node tests through a target, in float: pass rate per op, failures listed.

    python bench/conformance.py --target tflite [--filter conv] [--json out.json]

Each case of Debian's libonnx-testdata (/usr/share/libonnx-testdata/data/node/test_*/)
whose ops are all in the target's op table is loaded like any model, lowered with a
float plan (no bits), run on the target's runtime and compared with the expected
outputs (rtol 1e-3, atol 1e-5). Parameter inputs (weights, pads, axes, clip bounds, see
PARAM_INPUTS) are frozen to the case's values first, as a deployed model holds them; dims
the model leaves unbound are bound to the case's data, as `--input-shape` does. Target-agnostic: it uses only get_target, lower and
make_runner. A case that fails to lower counts as a failure and is listed with why.
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
from edgeq.lower import get_target  # noqa: E402
from edgeq.quant.plan import QuantPlan  # noqa: E402
from edgeq.runners import make_runner  # noqa: E402

NODE_TESTS = Path("/usr/share/libonnx-testdata/data/node")
IGNORED_OPS = {"Constant", "Identity"}  # removed by edgeq's normalization passes
RTOL, ATOL = 1e-3, 1e-5
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


def run_case(mod, case: Path, work: Path) -> tuple[bool, str]:
    from edgeq.frontend import load
    from edgeq.passes import run_passes

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
        artifact = mod.lower(graph, plan, work / ds.name, case.name, json.loads(os.environ.get("EDGEQ_TARGET_OPTIONS", "{}")))
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


def _worker(conn, target: str) -> None:
    """Runs cases sent over `conn`; a runtime that aborts kills only this process."""
    mod = get_target(target)
    with tempfile.TemporaryDirectory() as tmp:
        while True:
            case = conn.recv()
            if case is None:
                return
            try:
                ok, why = run_case(mod, Path(case), Path(tmp) / Path(case).name)
            except EdgeqError as e:
                ok, why = False, f"not lowered: {e}"
            except Exception as e:  # a bug or a runtime refusal: listed, not hidden
                msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else traceback.format_exc(limit=1)
                ok, why = False, f"{type(e).__name__}: {msg}"
            conn.send((ok, why))


class Worker:
    def __init__(self, target: str):
        import multiprocessing as mp

        self.target, self.mp = target, mp.get_context("spawn")
        self.start()

    def start(self) -> None:
        self.conn, child = self.mp.Pipe()
        self.proc = self.mp.Process(target=_worker, args=(child, self.target), daemon=True)
        self.proc.start()

    def run(self, case: Path, timeout: float = 120) -> tuple[bool, str]:
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
        return False, f"runtime crashed (exit {code})" if code is not None else f"timed out after {timeout:.0f} s"

    def close(self) -> None:
        self.conn.send(None)
        self.proc.join(5)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="tflite", help="tflite | coreml | ort | any registered target")
    ap.add_argument("--filter", default="", help="only cases whose directory name contains this")
    ap.add_argument("--json", dest="json_path", default=None, help="also write the results as JSON here")
    ap.add_argument("--option", dest="options", action="append", default=[], metavar="KEY=VALUE",
                    help="a target option passed to lower, e.g. coreml_precision=fp32 (repeat)")
    args = ap.parse_args(argv)
    os.environ["EDGEQ_TARGET_OPTIONS"] = json.dumps(dict(o.split("=", 1) for o in args.options))  # seen by the workers
    mod = get_target(args.target)
    results: dict[str, list] = defaultdict(list)
    worker = Worker(args.target)
    for case in sorted(NODE_TESTS.glob("test_*")):
        if args.filter not in case.name or not (case / "model.onnx").exists():
            continue
        if not list(case.glob("test_data_set_*/output_0.pb")):
            continue  # a case without data checks nothing
        try:
            ops = case_ops(onnx.load(case / "model.onnx"))
        except Exception:
            continue
        if not ops or not ops <= set(mod.OPS):
            continue
        ok, why = worker.run(case)
        results[label(case.name, ops)].append((case.name, ok, why))
    worker.close()
    total = sum(len(v) for v in results.values())
    passed = sum(ok for v in results.values() for _, ok, _ in v)
    print(f"ONNX node conformance, target {args.target}: {passed}/{total} cases pass ({100 * passed / max(total, 1):.1f} %)\n")
    print(f"{'op':<28}{'pass':>6}{'cases':>7}{'rate':>9}")
    for op in sorted(results):
        v = results[op]
        p = sum(ok for _, ok, _ in v)
        print(f"{op:<28}{p:>6}{len(v):>7}{100 * p / len(v):>8.0f}%")
    failures = [(name, why) for v in results.values() for name, ok, why in v if not ok]
    if failures:
        print(f"\nfailures ({len(failures)}):")
        for name, why in sorted(failures):
            print(f"  {name}: {why}")
    if args.json_path:
        Path(args.json_path).write_text(json.dumps({"target": args.target, "passed": passed, "total": total, "cases": {
            op: [{"case": n, "pass": ok, "why": why} for n, ok, why in v] for op, v in sorted(results.items())}}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
