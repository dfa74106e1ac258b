"""Runners: one way to run a model on a real runtime, feeding and returning float arrays.

Calibration runs the float graph here, verify runs every artifact here, profile times
them here. Each target registers a factory in RUNNERS (lowering modules do it for their
runtime); a runner takes {input: float array} and returns {output: float array}.

Contract for every runner: `run(feeds)` accepts any number of samples along the leading
axis (a runtime with a fixed batch loops inside), takes and returns float arrays (an
artifact with int8 I/O quantizes/dequantizes inside the runner with the artifact's own
parameters), and has `load_seconds` (time to load the artifact) and `reference_executor` (True when
it is not the target's own runtime but a stand-in, e.g. Core ML off macOS: its timings say nothing
about a device, and it may be too slow to verify every sample).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from functools import cache

import numpy as np
import onnx
import onnxruntime as ort

from edgeq.errors import EdgeqError, ModelError

RUNNERS: dict[str, Callable] = {}

# onnxruntime's own logger prints "[E:onnxruntime:...]" lines before the exception edgeq turns into its
# one-line error; only fatal ones are left (the session options below say the same per session).
ort.set_default_logger_severity(4)
THREADS_PER_CORE = 4


class captured_stderr:
    """Capture what native code writes to file descriptor 2 (LiteRT's "INFO: Created TensorFlow Lite XNNPACK
    delegate for CPU.", TFLite Micro's reports) while the block runs; `.text` holds it afterwards. An error
    then reaches the user as edgeq's one line, never after a runtime's log lines."""

    def __enter__(self) -> captured_stderr:
        import os
        import sys
        import tempfile

        sys.stderr.flush()
        self.text = ""
        self._file = tempfile.TemporaryFile(mode="w+b")
        self._saved = os.dup(2)
        os.dup2(self._file.fileno(), 2)
        return self

    def __exit__(self, *exc) -> None:
        import ctypes
        import os

        try:
            ctypes.CDLL(None).fflush(None)  # C stdio buffers, before fd 2 goes back
        except (OSError, AttributeError):
            pass
        os.dup2(self._saved, 2)
        os.close(self._saved)
        self._file.seek(0)
        self.text = self._file.read().decode(errors="replace")
        self._file.close()


def check_threads(threads, flag: str = "--threads") -> int:
    """A thread count a runtime can take: at least 1, at most 4 per core of this machine (beyond
    that the runtimes only add memory and contention; onnxruntime allocates per thread)."""
    import os

    cap = (os.cpu_count() or 1) * THREADS_PER_CORE
    if isinstance(threads, bool) or not isinstance(threads, int | np.integer) or not 1 <= threads <= cap:
        raise EdgeqError(f"{flag} {threads}: give 1..{cap} ({THREADS_PER_CORE} per core of this machine's {os.cpu_count()} "
                         "cores; more threads only add memory and contention)")
    return int(threads)


def register_runner(target: str):
    def deco(factory):
        RUNNERS[target] = factory
        return factory

    return deco


@cache
def ort_cpu_ops() -> frozenset[tuple[str, str]]:
    """(domain, op) of every kernel onnxruntime's CPU provider has (asked from onnxruntime)."""
    from onnxruntime.capi import onnxruntime_pybind11_state as C

    return frozenset((k.domain or "ai.onnx", k.op_name)
                     for k in C.get_all_opkernel_def() if k.provider == "CPUExecutionProvider")


def check_runnable(graph) -> None:
    """Fail early, naming the node, when onnxruntime has no kernel for an op."""
    from edgeq.graph import node_name

    ops = ort_cpu_ops()
    local_functions = {(f.domain, f.name) for f in graph.model.functions}
    for k, n in enumerate(graph.nodes):
        domain = n.domain or "ai.onnx"
        if (domain, n.op_type) == ("ai.onnx", "Constant"):  # no kernel: onnxruntime turns it into an initializer
            continue
        if (domain, n.op_type) not in ops and (n.domain, n.op_type) not in local_functions \
                and not _has_function_body(n, graph.opset):  # onnxruntime expands those (e.g. HardSwish-14)
            raise ModelError(f"{graph.source}: node '{node_name(n, k)}': op {domain}::{n.op_type} has no onnxruntime CPU kernel; "
                             "replace it with standard ONNX ops (or a function) before compiling")


def _has_function_body(node, opset: int) -> bool:
    """An ONNX op defined by a function body: onnxruntime inlines it instead of registering a kernel."""
    try:
        schema = onnx.defs.get_schema(node.op_type, opset, node.domain or "")
    except Exception:
        return False
    return bool(schema.has_function or schema.has_context_dependent_function)


def ort_session(model, threads: int = 1, optimize: bool | str = True, source: str = "model", optimized_path: str | None = None,
                extra_config: dict | None = None) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = check_threads(threads)
    so.inter_op_num_threads = 1
    so.log_severity_level = 4  # errors reach the user as edgeq's one line (the exception), not as ORT's log
    # optimize: True (all), False (none) or "basic" (constant folding and node eliminations only:
    # results identical to none, measured on the fake-quant simulator; fusions change rounding)
    levels = {True: ort.GraphOptimizationLevel.ORT_ENABLE_ALL, False: ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
              "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC}
    so.graph_optimization_level = levels[optimize]
    if optimized_path:
        so.optimized_model_filepath = optimized_path
    for k, v in (extra_config or {}).items():
        so.add_session_config_entry(k, v)
    try:
        return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise ModelError(f"{source}: onnxruntime cannot run it: {_ort_reason(str(e))}") from None


def _ort_reason(msg: str) -> str:
    m = re.search(r"Could not find an implementation for (\w+)\((\d+)\) node with name '([^']*)'", msg)
    if m:
        return f"node '{m.group(3)}': op {m.group(1)} (opset {m.group(2)}) has no CPU kernel; replace the op or export with a supported opset"
    m = re.search(r"Node \(([^)]*)\) Op \((\w+)\)", msg)
    if m:
        return f"node '{m.group(1)}': op {m.group(2)}: {msg.strip().splitlines()[-1][:200]}"
    return msg.strip().splitlines()[0][:300]


class OrtRunner:
    """An onnxruntime session that takes and returns {name: array}."""

    reference_executor = False

    def __init__(self, model, threads: int = 1, optimize: bool | str = True, source: str = "model", outputs: list[str] | None = None):
        self.source = source
        start = time.perf_counter()
        self.session = ort_session(model, threads, optimize, source)
        self.load_seconds = time.perf_counter() - start
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = outputs or [o.name for o in self.session.get_outputs()]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            values = self.session.run(self.output_names, {k: feeds[k] for k in self.input_names})
        except Exception as e:
            raise ModelError(f"{self.source}: onnxruntime failed while running: {_ort_reason(str(e))}") from None
        return dict(zip(self.output_names, values))

    def run_batches(self, dataset, batch_size: int) -> dict[str, np.ndarray]:
        return run_batches(self, dataset, batch_size)


def run_batches(runner, dataset, batch_size: int, on_batch=None, extra: dict | None = None) -> dict[str, np.ndarray]:
    """Run a whole dataset through any runner, concatenating each output along the sample axis;
    on_batch(n) is told each batch's size (for a progress bar); `extra` feeds go with every batch
    (a simulator's weights or fake-quant switches)."""
    parts: dict[str, list] = {}
    for feeds in dataset.batches(batch_size):
        for k, v in runner.run({**feeds, **(extra or {})}).items():
            parts.setdefault(k, []).append(v)
        if on_batch:
            on_batch(len(next(iter(feeds.values()))))
    return {k: np.concatenate(v) for k, v in parts.items()}


def in_chunks(feeds: dict, step: int, invoke) -> dict[str, np.ndarray]:
    """`invoke` on `step` leading rows of every feed at a time, outputs concatenated: the one loop for
    runtimes whose program holds a fixed batch (LiteRT, TFLite Micro, Core ML's executor)."""
    n = len(next(iter(feeds.values())))
    parts: dict[str, list] = {}
    for i in range(0, n, step):
        for k, v in invoke({k: v[i : i + step] for k, v in feeds.items()}).items():
            parts.setdefault(k, []).append(np.asarray(v))
    return {k: np.concatenate(v) if len(v) > 1 else v[0] for k, v in parts.items()}


def batch_size_for(graph, preferred: int = 32) -> int:
    """Batch along the leading axis when it is symbolic; else the model's own batch."""
    sizes = [s.shape[0] for s in graph.inputs if s.shape]
    if all(isinstance(d, str) for d in sizes):
        return preferred
    return int(next(d for d in sizes if isinstance(d, int)))


def make_runner(artifact, threads: int = 1):
    """A runner for an artifact on its own runtime (registered by its target)."""
    if artifact.target not in RUNNERS:
        raise ModelError(f"no runtime registered for target '{artifact.target}'")
    return RUNNERS[artifact.target](artifact, check_threads(threads))
