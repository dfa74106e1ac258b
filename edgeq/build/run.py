"""`edgeq build`: every entry x target of the config through the compile pipeline, cached and gated.

Each (entry, target) compiles into ENTRY_OUT/TARGET/ (artifacts, plan.json, report.json) with the config's
folder as the working folder, so report.json's paths are the same wherever the project is checked out.
Cache hits are restored in this process; misses run in up to `jobs` worker processes. build.json at the
build root lists, per entry and target, the artifacts (paths relative to the build root, sha256), the gates
with their measured values, cache hit / miss and seconds.

An entry's `copy_to` folders receive its artifacts once they passed their gates (cache hits too); a coreml
copy also writes edgeq-inputs.xcfilelist / edgeq-outputs.xcfilelist beside the config for Xcode.

Exit codes: 0 ok, 1 a bug in edgeq, 2 a user error (config, model, data), 3 a quality gate failed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

from edgeq import __version__
from edgeq.build import cache
from edgeq.build.config import BuildConfig, Entry
from edgeq.errors import EdgeqError

EXIT_OK, EXIT_BUG, EXIT_USER, EXIT_GATE = 0, 1, 2, 3


@contextlib.contextmanager
def working_dir(path: Path):
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def compile_entry(root: Path, entry: Entry, target: str) -> None:
    """One target of one entry, exactly as `edgeq compile` with the entry's flags would, from the config's folder.

    It compiles into a fresh hidden folder that then replaces ENTRY_OUT/TARGET whole: no file of an earlier
    build stays beside the new ones (nor reaches the cache), and a failed compile leaves the old folder."""
    import shutil
    import uuid

    from edgeq.cli import compile as compile_command
    from edgeq.cli import compile_options
    from edgeq.pipeline import run_compile

    dest = Path(entry.out) / target
    tmp = dest.with_name(f".{target}.build-{uuid.uuid4().hex[:8]}")
    with working_dir(root):
        args = entry.compile_args(target)
        args[args.index("--out") + 1] = tmp.as_posix()
        params = dict(compile_command.make_context("compile", args).params)
        params.pop("as_json")
        params.pop("quiet")
        params.pop("output_file")
        model = params.pop("model")
        opts = compile_options(model, progress=False, **params)
        try:
            run_compile(model, opts)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        cache.replace_dir(tmp, dest)


def build_miss(root: str, entry: Entry, target: str, key: str | None) -> dict:
    """A worker's job: compile, then store in the cache. Returns the outcome (an EdgeqError as its message)."""
    start = time.perf_counter()
    try:
        compile_entry(Path(root), entry, target)
    except EdgeqError as e:
        return {"status": "error", "error": str(e), "seconds": round(time.perf_counter() - start, 3)}
    if key is not None:
        cache.store(key, Path(root) / entry.out / target)
    return {"status": "ok", "seconds": round(time.perf_counter() - start, 3)}


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    if path.is_dir():  # an .mlpackage: its files' relative names and bytes, sorted
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(f.relative_to(path).as_posix().encode() + b"\0" + hashlib.sha256(f.read_bytes()).digest())
    else:
        h.update(path.read_bytes())
    return h.hexdigest()


def measure_gates(gates: dict, t: dict) -> list[dict]:
    """Each gate with its limit, the measured value and pass / fail (a value that cannot be measured fails)."""
    v = t["verify"]
    out = []
    for gate, limit in gates.items():
        if gate == "latency_device":
            continue
        if gate == "max_latency_ms":
            device = gates.get("latency_device")
            if device is None:
                measured, metric = t["latency_ms"]["quant_p50"], "ms p50 measured on this host"
            else:
                est = (((t.get("profile") or {}).get("devices") or {}).get(device) or {}).get("quant") or {}
                measured, metric = est.get("latency_ms"), f"ms estimated on {device}"
            ok = measured is not None and measured <= limit
        elif gate == "max_drop":
            if v.get("accuracy_float") is not None and v.get("accuracy_quant") is not None:
                measured, metric = 100 * (v["accuracy_float"] - v["accuracy_quant"]), "accuracy points"
            elif v.get("top1_agreement") is not None:
                measured, metric = 100 * (1 - v["top1_agreement"]), "top-1 agreement points"
            else:
                measured, metric = None, "no labels and no top-1 agreement (not a classifier output)"
            ok = measured is not None and measured <= limit
        elif gate == "min_sqnr_db":
            measured, metric = v.get("sqnr_db"), "dB output SQNR"
            ok = measured is not None and measured >= limit
        else:
            measured, metric = t["bytes"], "bytes"
            ok = measured <= limit
        out.append({"gate": gate, "limit": limit, "measured": None if measured is None else round(measured, 4),
                    "unit": metric, "passed": bool(ok)})
    return out


def target_result(root: Path, entry: Entry, target: str) -> dict:
    """Artifacts and gates of a built target, read from its report.json."""
    import json

    out = root / entry.out / target
    report = json.loads((out / "report.json").read_text())
    t = next(x for x in report["targets"] if x["target"] == target)
    files = [*t["files"], "plan.json", "report.json"]
    artifacts = [{"path": (out / f).relative_to(root).as_posix(), "sha256": file_sha256(out / f)} for f in files if (out / f).exists()]
    gates = measure_gates(entry.gates, t)
    return {"report": (out / "report.json").relative_to(root).as_posix(), "artifact": (out / t["artifact"]).relative_to(root).as_posix(),
            "artifacts": artifacts, "gates": gates, "warnings": report.get("warnings", [])}


def run_build(config: BuildConfig, jobs: int | None = None, use_cache: bool = True, keep_going: bool = False,
              echo=None, quiet: bool = False) -> tuple[dict, int]:
    """Build every entry x target; returns (build.json's content, exit code). Writes build.json.
    echo(text, err=True) prints the progress, error and gate lines (default: click.echo, on stderr)."""
    from edgeq.fileio import dumps_json, write_text

    if echo is None:
        import click

        echo = click.echo

    root = config.root
    jobs = max(1, min(jobs or os.cpu_count() or 1, os.cpu_count() or 1))  # bounded by the machine's cores
    if use_cache:
        cache.cache_cap_bytes()  # a malformed EDGEQ_BUILD_CACHE_MB: refused before any work
    results: dict[tuple[int, str], dict] = {}
    todo = []
    stop = False
    for e in config.entries:  # cache hits first, here: a copy each
        for t in e.targets:
            key = cache.build_key(e, t, root) if use_cache else None
            stored = cache.lookup(key) if key is not None else None
            start = time.perf_counter()
            try:
                if stored is not None:
                    cache.restore(stored, root / e.out / t)
            except FileNotFoundError:  # another build evicted the key while this one copied it: compile
                stored = None
            if stored is not None:
                results[(e.index, t)] = {"status": "ok", "cache": "hit", "key": key, "seconds": round(time.perf_counter() - start, 3)}
            else:
                todo.append((e, t, key))
    done_entries: set[int] = set()

    def finish(e: Entry, t: str, outcome: dict, key):
        nonlocal stop
        results[(e.index, t)] = {**outcome, "cache": "miss" if key else "off", "key": key}
        if outcome["status"] == "error":
            echo(f"edgeq: error: {e.name} {t}: {_one_line(outcome['error'])}", err=True)
            stop = stop or not keep_going

    def report_entries():
        for e in config.entries:
            if e.index not in done_entries and all((e.index, t) in results for t in e.targets):
                done_entries.add(e.index)
                if not quiet:
                    parts = [f"{t} {results[(e.index, t)]['cache']} {results[(e.index, t)]['seconds']:.1f}s"
                             + ("" if results[(e.index, t)]["status"] == "ok" else f" {results[(e.index, t)]['status']}")
                             for t in e.targets]
                    echo(f"[{len(done_entries)}/{len(config.entries)}] {e.name}: {', '.join(parts)}", err=True)

    report_entries()
    if todo and (jobs == 1 or len(todo) == 1):
        for e, t, key in todo:
            if stop:
                break
            finish(e, t, build_miss(str(root), e, t, key), key)
            report_entries()
    elif todo:
        import multiprocessing

        with ProcessPoolExecutor(max_workers=min(jobs, len(todo)), mp_context=multiprocessing.get_context("spawn")) as pool:
            pending = {pool.submit(build_miss, str(root), e, t, key): (e, t, key) for e, t, key in todo}
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for f in done:
                    e, t, key = pending.pop(f)
                    finish(e, t, f.result(), key)  # a bug in a worker raises here: exit 1 with its traceback
                report_entries()
                if stop:
                    for f in pending:
                        f.cancel()
                    pending = {f: v for f, v in pending.items() if not f.cancelled()}
    for e in config.entries:
        for t in e.targets:
            results.setdefault((e.index, t), {"status": "skipped", "cache": None, "key": None, "seconds": 0.0,
                                              "error": "not built: an earlier entry failed (--keep-going builds the rest)"})
    build, code = assemble(config, results, echo)
    copy_artifacts(config, build)
    write_text(root / "build.json", dumps_json(build))
    return build, code


def assemble(config: BuildConfig, results: dict, echo) -> tuple[dict, int]:
    root = config.root
    entries, errors, gate_failures = [], 0, 0
    for e in config.entries:
        targets = []
        for t in e.targets:
            r = results[(e.index, t)]
            item = {"target": t, "status": r["status"], "cache": r["cache"], "cache_key": r["key"], "seconds": r["seconds"]}
            if r["status"] == "ok":
                item.update(target_result(root, e, t))
                failed = [g for g in item["gates"] if not g["passed"]]
                for g in failed:
                    echo(f"edgeq: gate failed: {e.name} {t}: {g['gate']} = {g['limit']}, measured {g['measured']} {g['unit']}", err=True)
                gate_failures += len(failed)
                item["status"] = "failed" if failed else "ok"
            else:
                errors += r["status"] == "error"
                item["error"] = r.get("error")
            targets.append(item)
        entries.append({"name": e.name, "source": e.source, "out": Path(e.out).as_posix(), "targets": targets})
    code = EXIT_USER if errors else EXIT_GATE if gate_failures else EXIT_OK
    build = {"edgeq_version": __version__, "config": config.path.relative_to(root).as_posix(), "exit_code": code,
             "exit_codes": {"0": "ok", "1": "bug in edgeq", "2": "user error", "3": "quality gate failed"},
             "entries": entries}
    return build, code


XCODE_INPUTS, XCODE_OUTPUTS = "edgeq-inputs.xcfilelist", "edgeq-outputs.xcfilelist"


def copy_artifacts(config: BuildConfig, build: dict) -> None:
    """Copy each target that passed its gates (its artifact and the files beside it: .ort, the TFLite Micro package)
    into its copy_to folder (noted as `copied_to` in build.json), and for
    coreml copies write the Xcode file lists. An unchanged artifact is not rewritten (only touched), so Xcode and
    Gradle see no change to rebuild from."""
    root = config.root
    inputs, outputs = [], []
    for e, item in zip(config.entries, build["entries"], strict=True):
        for t in item["targets"]:
            folder = e.copy_to.get(t["target"])
            if folder is None:
                continue
            src = root / t["artifact"] if t.get("artifact") else None
            dest = root / folder / src.name if src is not None else None
            if t["target"] == "coreml":
                inputs += [root / e.source, *[root / p for p in (e.calib, e.val) if p and p != "random"]]
                outputs.append(dest if dest is not None else root / folder)
            if t["status"] != "ok":
                continue
            out = root / e.out / t["target"]
            for a in t["artifacts"]:  # the artifact and its companions (.ort, the firmware package), not plan/report
                rel = (root / a["path"]).relative_to(out)
                if rel.as_posix() in ("plan.json", "report.json"):
                    continue
                to = root / folder / rel
                if not to.exists() or file_sha256(to) != a["sha256"]:
                    copy_path(root / a["path"], to)
                else:
                    os.utime(to)
            t["copied_to"] = os.path.relpath(dest, root).replace(os.sep, "/")
    if outputs:
        from edgeq.fileio import write_text

        write_text(root / XCODE_INPUTS, xcfilelist([*dict.fromkeys(inputs), config.path]))
        write_text(root / XCODE_OUTPUTS, xcfilelist(outputs))


def xcfilelist(paths) -> str:
    """One path a line; under $SRCROOT (set when Xcode runs the phase) as $(SRCROOT)/..., so the lists can be
    committed with the project, else absolute."""
    srcroot = os.environ.get("SRCROOT")
    lines = []
    for p in paths:
        p = Path(p).resolve()
        if srcroot and Path(srcroot).resolve() in p.parents:
            lines.append("$(SRCROOT)/" + p.relative_to(Path(srcroot).resolve()).as_posix())
        else:
            lines.append(p.as_posix())
    return "\n".join(lines) + "\n"


def copy_path(src: Path, dest: Path) -> None:
    """Replace DEST with a copy of SRC (a file, or a folder such as an .mlpackage) through a temporary sibling."""
    import shutil
    import uuid

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.edgeq-{uuid.uuid4().hex[:8]}")
    if src.is_dir():
        shutil.copytree(src, tmp)
    else:
        shutil.copyfile(src, tmp)
    if dest.is_dir() and not dest.is_symlink():
        shutil.rmtree(dest)
    elif dest.exists() or dest.is_symlink():
        dest.unlink()
    os.replace(tmp, dest)


def _one_line(text: str) -> str:
    return text.replace("\r", "\\r").replace("\n", "\\n")
