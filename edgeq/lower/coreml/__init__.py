"""Core ML target: an ML program (.mlpackage) built with coremltools' MIL builder from ONNX.

Weights use Core ML's compressed-weight ops filled with the plan's own values (weights.py),
W8A8 activations become quantize/dequantize pairs from edgeq's calibration (iOS 17+), and the
deployment target is the lowest that holds the plan unless `min_os` says otherwise. On Linux
the artifact is verified by the MIL reference executor (mil_exec/), which runs the saved
program; on macOS `coremltools` predict is available as `coreml_predict` too.
"""

from __future__ import annotations

import platform
import time
from pathlib import Path

import numpy as np

from edgeq.artifact import Artifact, IOSpec
from edgeq.compare import compare, lsb_agreement, run_check
from edgeq.errors import CalibrationError, UnsupportedOpError
from edgeq.graph import Graph, node_name
from edgeq.lower.coreml.deploy import MIN_OS, PRECISIONS, plan_needs, resolve_options  # noqa: F401  (the package's names)
from edgeq.lower.coreml.package import quiet_coremltools
from edgeq.quant.plan import QuantPlan
from edgeq.runners import in_chunks, register_runner
from edgeq.target import target_data

quiet_coremltools()

from edgeq.lower.coreml.ops import NN_OPS  # noqa: E402  (after the logging is quieted)
from edgeq.lower.coreml.ops_logic import LOGIC_OPS  # noqa: E402
from edgeq.lower.coreml.ops_rnn import RNN_OPS  # noqa: E402
from edgeq.lower.coreml.ops_tensor import TENSOR_OPS  # noqa: E402
from edgeq.lower.coreml.program import BOUNDARY_DTYPES, build_program, static_shape  # noqa: E402
from edgeq.lower.coreml.read import read_coreml as read_artifact  # noqa: E402, F401  (Target hook)
from edgeq.lower.coreml.storage import stored_payload, weight_storage  # noqa: E402, F401  (Target hooks)

NAME = "coreml"
DESCRIPTION = target_data("coreml").get("description", "")
OPS = dict(sorted({**NN_OPS, **TENSOR_OPS, **LOGIC_OPS, **RNN_OPS}.items()))
def check_plan(graph: Graph, plan: QuantPlan, options: dict | None = None) -> None:
    resolve_options(plan, options)
    for k, n in enumerate(graph.nodes):
        if n.domain not in ("", "ai.onnx") or n.op_type not in OPS:
            raise UnsupportedOpError(node_name(n, k), n.op_type, NAME)


def lower(graph: Graph, plan: QuantPlan, out_dir: Path, stem: str, options: dict | None = None) -> Artifact:
    from edgeq.lower.coreml.package import save_package
    from edgeq.lower.coreml.residency import estimate_residency

    check_plan(graph, plan, options)
    min_os, precision = resolve_options(plan, options)
    prog, ctx = build_program(graph, plan, min_os, precision, OPS)
    path = Path(out_dir) / f"{stem}.mlpackage"
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"edgeq.plan_sha256": plan.sha256(), "edgeq.model_sha256": plan.model_sha256, "edgeq.min_os": min_os,
            "edgeq.compute_precision": precision}
    save_package(prog, path, min_os, precision, meta)
    notes = list(ctx.notes)
    if any(a.bits == 16 for a in plan.activations.values()):
        notes.append("16-bit activations run in fp16 (Core ML has no int16 activations)")
    batch_bound = any(s.shape and not isinstance(s.shape[0], int) for s in graph.inputs)
    if batch_bound:
        notes.append("symbolic batch bound to 1 in the program (one sample per Core ML prediction)")
    for s in graph.inputs:
        if BOUNDARY_DTYPES.get(s.dtype) == "int32":
            notes.append(f"{s.dtype} input '{s.name}' is int32 in the program (Core ML has no {s.dtype} inputs); "
                         "the runner converts at the boundary and rejects values outside int32")
        elif s.dtype in BOUNDARY_DTYPES:
            notes.append(f"{s.dtype} input '{s.name}' is float32 in the program (Core ML has no {s.dtype} inputs); "
                         "the runner converts at the boundary, losing precision beyond float32's 24-bit mantissa")
    return Artifact(
        target=NAME, path=path, files=[path],
        inputs=[IOSpec(s.name, list(static_shape(s.shape)), BOUNDARY_DTYPES.get(s.dtype, s.dtype)) for s in graph.inputs],
        outputs=[IOSpec(s.name, list(static_shape(s.shape)), s.dtype) for s in graph.outputs],
        plan_sha256=plan.sha256(), model_sha256=plan.model_sha256, notes=sorted(set(notes)),
        extra={"min_os": min_os, "compute_precision": precision, "batch_bound": batch_bound, "weight_ops": ctx.weight_ops,
               "neural_engine": estimate_residency(graph, plan, min_os, ctx.folded)},
    )


def boundary_feeds(artifact_inputs: list[IOSpec], feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each feed in the program's input dtype: int32 where the ONNX model takes int64/uint8/...
    (refusing values int32 cannot hold instead of wrapping them), float32 for float64."""
    out = dict(feeds)
    for spec in artifact_inputs:
        v = out.get(spec.name)
        if v is None:
            continue
        v, want = np.asarray(v), np.dtype(spec.dtype)
        if v.dtype.kind in "iu" and want == np.int32 and v.dtype != np.int32:
            info = np.iinfo(np.int32)
            if v.size and (v.min() < info.min or v.max() > info.max):
                raise CalibrationError(f"input '{spec.name}': values outside int32 ({v.min()}..{v.max()}); "
                                       "Core ML programs take int32 inputs")
            v = v.astype(np.int32)
        elif v.dtype.kind == "f" and want == np.float32 and v.dtype != np.float32:
            v = v.astype(np.float32)
        out[spec.name] = v
    return out


def onnx_outputs(artifact_outputs: list[IOSpec], outs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Program outputs (fp16/fp32/int32/bool) in the ONNX output dtype for integer, bool and float64
    outputs (the program wrapped narrow integers already); float32 for float16 and float32 ones."""
    dtypes = {s.name: s.dtype for s in artifact_outputs}
    res = {}
    for k, v in outs.items():
        dtype = dtypes.get(k, "float32")
        res[k] = np.asarray(v, dtype if dtype in ("float64", "bool") or dtype.startswith(("int", "uint")) else np.float32)
    return res


class MILRunner:
    """Runs the saved program in the numpy MIL reference executor.

    A program with a bound symbolic batch holds one sample; the runner first tries all samples
    stacked (much faster in numpy) and keeps that only if the first and last samples match
    their single-sample runs; otherwise it runs sample by sample. Feeds are converted to the types
    the program takes (`boundary_feeds`), outputs back to the ONNX types (`onnx_outputs`).
    """

    reference_executor = True  # not Core ML: its host timings say nothing about device speed

    def __init__(self, artifact: Artifact):
        from edgeq.lower.coreml.mil_exec import MILProgram

        start = time.perf_counter()
        self.program = MILProgram(artifact.path)
        self.load_seconds = time.perf_counter() - start
        self.inputs, self.outputs = artifact.inputs, artifact.outputs
        self.input_names = [s.name for s in artifact.inputs]
        self.output_names = [s.name for s in artifact.outputs]
        shapes = [s.shape for s in artifact.inputs if s.shape]
        self.chunk = 1 if artifact.extra.get("batch_bound") else (int(shapes[0][0]) if shapes else 0)
        self.stacking_ok: bool | None = None  # None: not checked yet

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return onnx_outputs(self.outputs, self._run(boundary_feeds(self.inputs, feeds)))

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The program holds a fixed leading dim (1 for a bound symbolic batch): feed it that many at a time."""
        if any(np.ndim(v) == 0 for v in feeds.values()):  # a scalar input is [1] in the program: nothing to batch
            outs = self.program.run_positional([np.reshape(feeds[k], (-1,)) if np.ndim(feeds[k]) == 0 else feeds[k]
                                                for k in self.input_names])
            return dict(zip(self.output_names, outs))
        n = len(next(iter(feeds.values()))) if self.input_names else 1
        step = self.chunk if self.chunk and n % self.chunk == 0 else n
        if step == n:
            outs = self.program.run_positional([feeds[k] for k in self.input_names])
            return dict(zip(self.output_names, outs))
        if self.chunk == 1 and self.stacking_ok is not False:
            stacked = self._stacked(feeds, n)
            if stacked is not None:
                return stacked
        return in_chunks({k: feeds[k] for k in self.input_names}, step,
                         lambda f: dict(zip(self.output_names, self.program.run_positional([f[k] for k in self.input_names]))))

    def _stacked(self, feeds: dict, n: int) -> dict | None:
        try:
            outs = self.program.run_positional([feeds[k] for k in self.input_names], stacked=n)
        except Exception:
            outs = None
        ok = outs is not None and all(np.shape(v)[:1] == (n,) for v in outs)
        if ok and self.stacking_ok is None:  # checked once per runner, on the first and last sample
            for i in {0, n - 1}:
                single = self.program.run_positional([feeds[k][i : i + 1] for k in self.input_names])
                ok = ok and all(np.allclose(np.asarray(a[i : i + 1], np.float32), np.asarray(b, np.float32), rtol=1e-3, atol=1e-4)
                                for a, b in zip(outs, single))
        if n > 1:
            self.stacking_ok = ok
        return dict(zip(self.output_names, outs)) if ok else None


class CoreMLPredictRunner:
    """Core ML itself through coremltools (macOS only)."""

    reference_executor = False

    def __init__(self, artifact: Artifact):
        import coremltools as ct

        start = time.perf_counter()
        self.model = ct.models.MLModel(str(artifact.path))
        self.load_seconds = time.perf_counter() - start
        spec = self.model.get_spec()
        self.inputs, self.outputs = artifact.inputs, artifact.outputs
        self.input_map = dict(zip([s.name for s in artifact.inputs], [i.name for i in spec.description.input]))
        self.output_map = dict(zip([s.name for s in artifact.outputs], [o.name for o in spec.description.output]))

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feeds = boundary_feeds(self.inputs, feeds)
        n = len(next(iter(feeds.values())))
        parts: dict[str, list] = {k: [] for k in self.output_map}
        for i in range(n):
            out = self.model.predict({m: feeds[k][i : i + 1] for k, m in self.input_map.items()})
            for k, m in self.output_map.items():
                parts[k].append(np.asarray(out[m]))
        return onnx_outputs(self.outputs, {k: np.concatenate(v) for k, v in parts.items()})


def can_predict() -> bool:
    return platform.system() == "Darwin"


def cross_checks(artifact: Artifact, graph: Graph, plan: QuantPlan, feeds: dict, ref: dict, got: dict) -> dict:
    """On macOS, Core ML itself (coremltools predict) beside the MIL reference executor verify ran:
    its fidelity to float, and how far it is from the executor."""
    if not can_predict():
        return {"coreml_predict": {"skipped": "coremltools runs Core ML models only on macOS; verified in the MIL reference executor"}}

    def predict() -> dict:
        predicted = CoreMLPredictRunner(artifact).run(feeds)
        return {**compare(ref, predicted), "vs_reference_executor": lsb_agreement(got, predicted, plan)}

    return {"coreml_predict": run_check(predict)}


@register_runner(NAME)
def make_runner(artifact: Artifact, threads: int = 1) -> MILRunner:
    return MILRunner(artifact)
