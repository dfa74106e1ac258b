"""TFLite Micro target: the LiteRT flatbuffer as a C array for microcontrollers, plus a manifest.

Writes MODEL.micro.tflite, MODEL_model_data.cc / .h (a 16-byte aligned const array; the header is C99 and
C++, with the arena size and I/O quantization as #defines: tflm_package.py), MODEL_ops.h (registers the
model's ops on a MicroMutableOpResolver) and
MODEL.tflm.json (I/O shapes and quantization parameters, sha256, the op list for a
MicroMutableOpResolver, and the tensor arena size TFLite Micro's recording allocator
reports when the model is loaded in its Python interpreter). I/O is int8 by default:
an MCU application feeds the plan's grid directly.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from edgeq.artifact import Artifact
from edgeq.errors import ModelError, PlanError
from edgeq.fileio import dumps_json, write_bytes, write_text
from edgeq.graph import Graph, node_name
from edgeq.lower import tflite as T
from edgeq.lower.tflm_package import build_glue, c99_source, c_header, c_source, ops_header
from edgeq.quant.plan import QuantPlan
from edgeq.runners import captured_stderr, register_runner
from edgeq.target import target_data

NAME = "tflm"
DESCRIPTION = target_data("tflm").get("description", "")
OPS = T.OPS
INT8_KERNELS = T.INT8_KERNELS
FUSED_AFTER = T.FUSED_AFTER
lowering_view = T.lowering_view
# Bytes added to the measured arena: the recording counts no slack for alignment on the device.
ARENA_MARGIN = target_data("tflm")["arena_margin_bytes"]


def _options(plan: QuantPlan, options: dict | None) -> dict:
    options = dict(options or {})
    options.setdefault("int4", False)  # TFLite Micro kernels take int8 filters; 4-bit stays on the int8 grid
    widths = {a.bits for a in plan.activations.values() if a.bits}
    if "io_dtype" not in options and plan.mode == "static" and widths == {8}:
        options["io_dtype"] = target_data(NAME)["io_dtype_default"]  # an MCU application feeds the plan's grid
    return options


def adjust_plan(graph: Graph, plan: QuantPlan, options: dict | None = None) -> None:
    T.adjust_plan(graph, plan, options)


def weight_storage(graph: Graph, plan: QuantPlan, options: dict | None = None) -> dict:
    return T.weight_storage(graph, plan, _options(plan, options))  # LiteRT's rule, without INT4


stored_payload = T.stored_payload


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def check_graph(graph: Graph, static: Graph) -> None:
    """Before calibration: int8 weights (one byte per parameter of `graph` at least) must fit the
    flash, and the largest single op's int8 inputs + outputs in `static` (the graph as lowered,
    `lowering_view`; a lower bound on the arena) the SRAM."""
    caps = target_data(NAME)
    flash, sram = caps["mcu_flash_bytes"], caps["mcu_arena_bytes"]
    why = "use --target tflite for phones and Linux boards, or a smaller model or input"
    if graph.param_count() > flash:
        raise ModelError(f"{graph.source}: {graph.param_count():,} parameters need at least {_mib(graph.param_count())} "
                         f"of flash as int8; TFLite Micro targets microcontrollers with up to {_mib(flash)} "
                         f"(targets/tflm.toml mcu_flash_bytes): {why}")
    need, where = 0, None
    for k, n in enumerate(static.nodes):
        names = [t for t in (*n.input, *n.output) if t and not static.is_const(t)]
        size = sum(int(np.prod(static.shape(t))) for t in dict.fromkeys(names) if static.shape(t) is not None
                   and all(isinstance(d, int) for d in static.shape(t)))
        if size > need:
            need, where = size, node_name(n, k)
    if need > sram:
        raise ModelError(f"{graph.source}: node '{where}' alone holds {_mib(need)} of int8 activations; TFLite Micro "
                         f"targets microcontrollers with up to {_mib(sram)} of SRAM (targets/tflm.toml mcu_arena_bytes): {why}")
    peak = live_int8_peak(static)
    if peak["peak_activation_bytes"] > sram:
        raise ModelError(f"{graph.source}: at node '{peak['peak_at']}' the int8 activations still needed hold "
                         f"{_mib(peak['peak_activation_bytes'])} at once (the least arena TFLite Micro can plan); "
                         f"microcontrollers have up to {_mib(sram)} of SRAM (targets/tflm.toml mcu_arena_bytes): {why}")


def live_int8_peak(static: Graph) -> dict:
    """The most int8 activation bytes live at one op, in execution order (profile/memory.py's
    liveness, views aliased): a lower bound on TFLite Micro's arena, known before calibration."""
    from edgeq.op_cost import Sizer, op_costs, peak_activation_bytes

    sizer = Sizer(static, None, 1)
    return peak_activation_bytes(op_costs(static), sizer.numel, [s.name for s in static.inputs], [s.name for s in static.outputs])


def check_plan(graph: Graph, plan: QuantPlan, options: dict | None = None) -> None:
    if (options or {}).get("weights") == "float16":  # measured: AllocateTensors fails on the float16 DEQUANTIZE
        raise PlanError("--weights-dtype float16: TFLite Micro has no float16 DEQUANTIZE kernel; use --weights-dtype "
                        "float32 or quantized weights for --target tflm (or --target tflite)")
    T.check_plan(graph, plan, _options(plan, options))


def lower(graph: Graph, plan: QuantPlan, out_dir: Path, stem: str, options: dict | None = None) -> Artifact:
    check_plan(graph, plan, options)
    options = _options(plan, options)
    data, ctx = T.build(graph, plan, options)
    arena = arena_bytes(data, graph.source)  # TFLite Micro itself says whether it can run every op
    if arena > target_data(NAME)["mcu_arena_bytes"]:
        raise ModelError(f"{graph.source}: TFLite Micro needs a {_mib(arena)} tensor arena for this model; microcontrollers "
                         f"have up to {_mib(target_data(NAME)['mcu_arena_bytes'])} of SRAM (targets/tflm.toml "
                         "mcu_arena_bytes): use --target tflite, or a smaller input")
    total = arena_that_loads(data, arena)
    out_dir = Path(out_dir)
    path = out_dir / f"{stem}.micro.tflite"  # beside a --target tflite artifact of the same model
    write_bytes(path, data)
    artifact = T.artifact_for(path, ctx, plan, graph, target=NAME)
    symbol = c_identifier(stem)
    header, source, manifest_path = out_dir / f"{stem}_model_data.h", out_dir / f"{stem}_model_data.cc", out_dir / f"{stem}.tflm.json"
    ops_path = out_dir / f"{stem}_ops.h"
    write_text(header, c_header(symbol, len(data), total, artifact.inputs, artifact.outputs))
    write_text(source, c_source(symbol, header.name, data))
    write_text(ops_path, ops_header(symbol, ctx.w.op_names))
    c99 = out_dir / f"{stem}_model_data.c"
    write_text(c99, c99_source(symbol, header.name, data))
    glue = build_glue(symbol, source.name, c99.name, [header.name, ops_path.name], f"0.0.0+{artifact.sha256()[:12]}")
    glue_paths = []
    for rel, text in glue.items():
        (out_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        write_text(out_dir / rel, text)
        glue_paths.append(out_dir / rel)
    manifest = {
        "model": path.name, "sha256": artifact.sha256(), "bytes": len(data),
        "c_array": {"source": source.name, "header": header.name, "symbol": f"{symbol}_model", "alignment": 16,
                    "c99_source": c99.name},
        "build_glue": sorted(glue),
        "ops_header": {"file": ops_path.name, "function": f"{symbol}_register_ops", "resolver": f"{symbol.upper()}_OpResolver"},
        "arena_bytes_measured": arena, "arena_bytes": total,
        "inputs": [s.to_json() for s in artifact.inputs], "outputs": [s.to_json() for s in artifact.outputs],
        "ops": sorted(set(ctx.w.op_names)), "plan_sha256": plan.sha256(),
    }
    write_text(manifest_path, dumps_json(manifest))
    artifact.files += [source, c99, header, ops_path, *glue_paths, manifest_path]
    artifact.extra.update(tflm_arena_bytes=total, tflm_manifest=str(manifest_path))
    return artifact


def c_identifier(stem: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_]", "_", stem)  # C identifiers are ASCII
    return s if not s[:1].isdigit() else f"m_{s}"


def arena_bytes(data: bytes, source: str = "model") -> int:
    """Total arena from TFLite Micro's allocation report (printed by the C++ side on stderr)."""
    from tflite_micro import runtime

    sys.stderr.flush()
    with tempfile.TemporaryFile(mode="w+b") as cap:
        saved = os.dup(2)
        try:
            os.dup2(cap.fileno(), 2)
            # the target's whole SRAM: tflite_micro's default (10x the model's bytes) is too small for a model with
            # few weights and large activations, which then failed to load as if an op were missing
            interp = runtime.Interpreter.from_bytes(data, arena_size=target_data(NAME)["mcu_arena_bytes"])
            interp.print_allocations()
        except RuntimeError as e:
            reason = str(e).strip().splitlines()[-1][:200] if str(e).strip() else "load failed"
            _flush_c_stdio()
            cap.seek(0)
            printed = cap.read().decode(errors="replace")
            missing = sorted(set(re.findall(r"Didn't find op for builtin opcode '(\w+)'", printed)))
            lines = [line.strip() for line in printed.splitlines() if line.strip()]
            if missing:  # what TFLite Micro printed: the op it has no kernel for
                reason = f"{reason}: no TFLite Micro kernel for {', '.join(missing)}"
            elif lines:  # or why a kernel refused to prepare (e.g. "Positions of type 'INT64' are not supported by gather.")
                reason = f"{reason}: {'; '.join(lines[-2:])[:300]}"
            raise ModelError(f"{source}: TFLite Micro cannot run the lowered model ({reason}); "
                             "check its ops against TFLite Micro's kernels, or use --target tflite") from None
        finally:
            _flush_c_stdio()  # the C++ side prints through stdio
            os.dup2(saved, 2)
            os.close(saved)
        cap.seek(0)
        text = cap.read().decode(errors="replace")
    m = re.search(r"Arena allocation total (\d+) bytes", text)
    if not m:
        raise ModelError("TFLite Micro did not report an arena size for the model")
    return int(m.group(1))


def arena_that_loads(data: bytes, measured: int) -> int:
    """The measured arena plus ARENA_MARGIN, the margin doubled until TFLite Micro loads the model in it.
    The recording's total leaves out the memory planner's scratch (per buffer, freed after planning):
    measured on a 9-op MaxPool with dilations, 2,480 bytes recorded, 3,568 needed."""
    from tflite_micro import runtime

    cap, margin = target_data(NAME)["mcu_arena_bytes"], ARENA_MARGIN
    while True:
        size = min(measured + margin, cap)
        try:
            with captured_stderr():  # TFLite Micro prints each failed allocation
                runtime.Interpreter.from_bytes(data, arena_size=size)
            return size
        except RuntimeError:
            if size == cap:
                raise ModelError(f"TFLite Micro cannot load the model in a {_mib(cap)} arena, the most "
                                 "targets/tflm.toml allows (mcu_arena_bytes): use --target tflite") from None
            margin *= 2


def _flush_c_stdio() -> None:
    import ctypes

    ctypes.CDLL(None).fflush(None)


class MicroRunner:
    """tflite_micro.runtime.Interpreter over the artifact's bytes, one sample at a time."""

    reference_executor = True  # TFLite Micro's reference kernels: host timings say nothing about an MCU

    def __init__(self, artifact: Artifact, threads: int = 1):
        from tflite_micro import runtime

        start = time.perf_counter()
        arena = artifact.extra.get("tflm_arena_bytes")
        self.interpreter = runtime.Interpreter.from_bytes(Path(artifact.path).read_bytes(), arena_size=arena)
        self.load_seconds = time.perf_counter() - start
        self.artifact = artifact
        self.nhwc = artifact.extra.get("io_layout") == "nhwc"

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        def invoke(chunk: dict) -> dict:
            self.interpreter.reset()  # variable tensors (LSTM state) back to zero: each ONNX call starts fresh
            failed = None
            with captured_stderr() as log:  # a kernel that lacks a dtype says so here (e.g. "Input type UINT8 (3) not supported.")
                try:
                    for k, spec in enumerate(self.artifact.inputs):
                        self.interpreter.set_input(T.to_artifact(chunk[spec.name], spec, self.nhwc), k)
                    self.interpreter.invoke()
                except (RuntimeError, ValueError) as e:  # ValueError: the Python binding has no such input dtype (uint16)
                    failed = e
            if failed is not None:
                why = "; ".join(line.strip() for line in log.text.splitlines() if line.strip()) or str(failed).strip()
                raise ModelError(f"{Path(self.artifact.path).name}: TFLite Micro cannot run the model ({why[:300]}): its kernels "
                                 "lack an op or dtype of it; use --target tflite") from None
            return {spec.name: T.from_artifact(np.array(self.interpreter.get_output(k)), spec, self.nhwc)
                    for k, spec in enumerate(self.artifact.outputs)}

        return T.run_in_batches(self.artifact, feeds, invoke)


def cross_checks(artifact: Artifact, graph: Graph, plan: QuantPlan, feeds: dict, ref: dict, got: dict) -> dict:
    """TFLite Micro against LiteRT's built-in kernels on the same flatbuffer, and the plan's simulation."""
    return T.cross_checks(artifact, graph, plan, feeds, ref, got, builtin_key="litert_builtin_kernels")


@register_runner(NAME)
def make_runner(artifact: Artifact, threads: int = 1) -> MicroRunner:
    return MicroRunner(artifact, threads)
