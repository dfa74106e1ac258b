"""Fuzz the edgeq command line: every mutated input must end in `ok` or one clean `edgeq: error:` line.

    python bench/fuzz.py                    # 300 cases, seed 0
    python bench/fuzz.py --cases 5000       # the full run
    python bench/fuzz.py --cases 40 --classes plan,flags --keep /tmp/fuzz-failures

Each case writes its inputs into a fresh folder (the small CNN of tests/models.py, its data, a plan,
compiled artifacts, then one mutation), runs `python -m edgeq.cli ...` there as a subprocess with a
time limit and TMPDIR inside the folder, and is classified:

    ok          exit 0
    clean       exit 2, stderr exactly one `edgeq: error: ...` line (or click's usage message for a
                malformed flag: `Usage: ...` + `Error: ...`), nothing new on disk
    traceback   exit 1 / a Python traceback
    hang        still running at --timeout (killed)
    leftover    on failure something was written (the output folder, a staging folder, a temp file,
                a changed existing output folder); on success a staging folder or temp file remains
    multiline   exit 2 with anything besides the one error line (a runtime's log, a warning)

The mutation classes: bytes (flips, truncation of the .onnx), structure (ONNX graph edits), external
(external-data entries), data (calibration / validation arrays and labels), flags, plan (plan.json
edits), artifact (`profile` / `inspect` on mutated compiled artifacts), output (-o paths). Cases are
drawn round-robin over the classes from one seeded generator: the same --seed gives the same cases.
Prints the table (class x outcome) and, for each bad case, its command and first stderr line; exit
status 1 when any case is bad.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.models import small_cnn, small_cnn_data  # noqa: E402

OUTCOMES = ("ok", "clean", "traceback", "hang", "leftover", "multiline")
BAD = ("traceback", "hang", "leftover", "multiline")
TEMP_MARKS = (".staging.", ".edgeq-probe.", ".tmp")


def available_targets() -> list[str]:
    mods = {"ort": "onnxruntime", "tflite": "ai_edge_litert", "tflm": "tflite_micro", "coreml": "coremltools"}
    return [t for t, m in mods.items() if importlib.util.find_spec(m) is not None]


@dataclass
class Case:
    cls: str
    name: str
    argv: list[str]
    files: dict = field(default_factory=dict)  # relative path -> bytes | str | None (a folder)


@dataclass
class Result:
    case: Case
    outcome: str
    rc: int | None
    seconds: float
    stderr: str
    why: str = ""


# -- the base inputs -------------------------------------------------------------------------

def make_base(base: Path, targets: list[str], timeout: float) -> dict[str, bytes]:
    """model.onnx, calib.npz, val.npz, plan.json and one compiled artifact per target, as bytes."""
    base.mkdir(parents=True, exist_ok=True)
    onnx.save(small_cnn(), base / "model.onnx")
    np.savez(base / "calib.npz", input=small_cnn_data(32))
    np.savez(base / "val.npz", input=small_cnn_data(16, seed=3), labels=np.arange(16) % 10)
    run_cli(["plan", "model.onnx", "--calib", "calib.npz", "-o", "p"], base, timeout)
    shutil.copy(base / "p" / "plan.json", base / "plan.json")
    run_cli(["compile", "model.onnx", "--calib", "calib.npz", "--target", ",".join(t for t in targets if t != "coreml"),
             "--act-bits", "8", "-o", "art", "--json"], base, timeout)
    files = {p.name: p.read_bytes() for p in (base / "model.onnx", base / "calib.npz", base / "val.npz", base / "plan.json")}
    if "coreml" in targets:
        run_cli(["compile", "model.onnx", "--calib", "calib.npz", "--target", "coreml", "--act-bits", "8", "-o", "art",
                 "--json"], base, timeout)
    for p in sorted((base / "art").glob("model.*")):
        if p.is_file() and p.suffix in (".onnx", ".tflite", ".ort"):
            files[p.name] = p.read_bytes()
        elif p.suffix == ".mlpackage":  # a folder: every file by its path inside the case folder
            files.update({str(f.relative_to(base / "art")): f.read_bytes() for f in sorted(p.rglob("*")) if f.is_file()})
    return files


def run_cli(argv: list[str], cwd: Path, timeout: float, env: dict | None = None):
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    proc = subprocess.Popen([sys.executable, "-m", "edgeq.cli", *argv], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
        return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return None, "", ""


# -- mutation classes ------------------------------------------------------------------------

def _model() -> onnx.ModelProto:
    return small_cnn()


def _save(m: onnx.ModelProto) -> bytes:
    return m.SerializeToString()


def _compile(rng, targets, *extra) -> list[str]:
    return ["compile", "model.onnx", "--calib", "calib.npz", "--target", str(rng.choice(targets)), "-o", "out", *extra]


def gen_bytes(rng, base, targets) -> Case:
    data = bytearray(base["model.onnx"])
    kind = str(rng.choice(["flip", "truncate", "zeros", "garbage"]))
    if kind == "flip":
        for _ in range(int(rng.integers(1, 8))):
            i = int(rng.integers(len(data)))
            data[i] ^= 1 << int(rng.integers(8))
    elif kind == "truncate":
        data = data[: int(rng.integers(0, len(data)))]
    elif kind == "zeros":
        i = int(rng.integers(len(data)))
        data[i : i + int(rng.integers(1, 64))] = bytes(min(64, len(data) - i))
    else:
        data = bytearray(rng.integers(0, 256, int(rng.integers(1, 4096)), dtype=np.uint8).tobytes())
    cmd = str(rng.choice(["compile", "inspect"]))
    argv = _compile(rng, targets) if cmd == "compile" else ["inspect", "model.onnx"]
    return Case("bytes", kind, argv, {"model.onnx": bytes(data)})


def _structural(rng, m: onnx.ModelProto) -> str:
    g = m.graph
    kinds = ["swap_inputs", "drop_node", "huge_pads", "group", "kernel_shape", "no_outputs", "output_is_input",
             "shadow_input", "nan_weight", "big_weight", "bn_negative_var", "bad_dim", "unknown_input", "dup_output",
             "opset", "fixed_batch", "dtype", "attr_garbage"]
    kind = str(rng.choice(kinds))
    conv = g.node[0]
    init = {t.name: t for t in g.initializer}
    if kind == "swap_inputs":
        n = g.node[int(rng.integers(len(g.node)))]
        if len(n.input) >= 2:
            n.input[0], n.input[1] = n.input[1], n.input[0]
    elif kind == "drop_node":
        del g.node[int(rng.integers(len(g.node)))]
    elif kind == "huge_pads":
        for a in conv.attribute:
            if a.name == "pads":
                a.ints[:] = [_pick(rng, [-5, 10**6, 2**40])] * 4
    elif kind == "group":
        conv.attribute.append(helper.make_attribute("group", int(rng.choice([0, 3, -1, 1000]))))
    elif kind == "kernel_shape":
        conv.attribute.append(helper.make_attribute("kernel_shape", [int(rng.choice([0, 5, 99]))] * 2))
    elif kind == "no_outputs":
        del g.output[:]
    elif kind == "output_is_input":
        del g.node[:]
        del g.initializer[:]
        g.output[0].CopyFrom(g.input[0])
    elif kind == "shadow_input":
        g.initializer.append(numpy_helper.from_array(np.zeros((1, 1, 12, 12), np.float32), g.input[0].name))
    elif kind == "nan_weight":
        t = init["conv1.w"]
        a = numpy_helper.to_array(t).copy()
        a.flat[0] = float(rng.choice([np.nan, np.inf]))
        t.CopyFrom(numpy_helper.from_array(a, t.name))
    elif kind == "big_weight":
        t = init[str(rng.choice(sorted(init)))]
        a = numpy_helper.to_array(t).copy()
        a[...] = float(rng.choice([1e38, -3e38, 1e30]))
        t.CopyFrom(numpy_helper.from_array(a, t.name))
    elif kind == "bn_negative_var":
        t = init["bn.var"]
        t.CopyFrom(numpy_helper.from_array(np.full(numpy_helper.to_array(t).shape, float(rng.choice([-1.0, 0.0])), np.float32), t.name))
        bn = next(n for n in g.node if n.op_type == "BatchNormalization")
        bn.attribute.append(helper.make_attribute("epsilon", 0.0))
    elif kind == "bad_dim":
        d = g.input[0].type.tensor_type.shape.dim[int(rng.integers(1, 4))]
        d.dim_value = _pick(rng, [0, 1, 2**31, 10**9])
    elif kind == "unknown_input":
        g.node[int(rng.integers(len(g.node)))].input[0] = "does_not_exist"
    elif kind == "dup_output":
        g.node[1].output[0] = g.node[0].output[0]
    elif kind == "opset":
        m.opset_import[0].version = int(rng.choice([1, 6, 30, 999]))
    elif kind == "fixed_batch":
        g.input[0].type.tensor_type.shape.dim[0].dim_value = 4
    elif kind == "dtype":
        g.input[0].type.tensor_type.elem_type = int(rng.choice([TensorProto.INT8, TensorProto.STRING, TensorProto.DOUBLE]))
    else:
        n = g.node[int(rng.integers(len(g.node)))]
        n.attribute.append(helper.make_attribute(str(rng.choice(["strides", "dilations", "axis", "alpha"])),
                                                 _pick(rng, [-3, 0, 7, 2**31])))
    return kind


def gen_structure(rng, base, targets) -> Case:
    m = _model()
    kind = _structural(rng, m)
    argv = _compile(rng, targets) if rng.random() < 0.85 else ["inspect", "model.onnx"]
    return Case("structure", kind, argv, {"model.onnx": _save(m)})


def gen_external(rng, base, targets) -> Case:
    with tempfile.TemporaryDirectory() as d:
        onnx.save(_model(), Path(d) / "model.onnx", save_as_external_data=True, location="model.data", size_threshold=0)
        raw = onnx.load(Path(d) / "model.onnx", load_external_data=False)
        data = (Path(d) / "model.data").read_bytes()
    kind = str(rng.choice(["nul", "long", "negative_offset", "text_length", "huge_length", "escape", "absolute",
                           "missing_file", "truncated_file", "folder"]))
    t = next(t for t in raw.graph.initializer if t.external_data)
    entries = {e.key: e for e in t.external_data}
    files: dict = {"model.data": data}
    if kind == "nul":
        entries["location"].value = "model\0.data"
    elif kind == "long":
        entries["location"].value = "w" * int(rng.choice([256, 300, 5000])) + ".data"
    elif kind == "negative_offset":
        entries.get("offset", t.external_data.add(key="offset", value="0")).value = str(-_pick(rng, [1, 8, 10**6]))
    elif kind == "text_length":
        entries.get("length", t.external_data.add(key="length", value="0")).value = str(rng.choice(["lots", "1e3", "", "0x10"]))
    elif kind == "huge_length":
        entries.get("length", t.external_data.add(key="length", value="0")).value = str(2**62)
    elif kind == "escape":
        entries["location"].value = "../" * int(rng.integers(1, 6)) + "etc/passwd"
    elif kind == "absolute":
        entries["location"].value = "/etc/hostname"
    elif kind == "missing_file":
        files = {}
    elif kind == "truncated_file":
        files = {"model.data": data[: len(data) // 3]}
    else:
        files = {"model.data": None}
    files["model.onnx"] = _save(raw)
    argv = _compile(rng, targets) if rng.random() < 0.7 else ["inspect", "model.onnx"]
    return Case("external", kind, argv, files)


def _npz(**arrays) -> bytes:
    import io

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def gen_data(rng, base, targets) -> Case:
    x = small_cnn_data(16)
    kind = str(rng.choice(["shape", "rank", "dtype", "nan", "huge", "empty", "object", "strings", "raw_member",
                           "labels_nan", "labels_str", "labels_range", "labels_count", "missing_key", "not_zip",
                           "npy_folder", "single_sample"]))
    which = str(rng.choice(["--calib", "--val"]))
    files: dict = {}
    arg = "bad.npz"
    if kind == "shape":
        files[arg] = _npz(input=np.zeros((4, 1, int(rng.integers(1, 30)), 12), np.float32))
    elif kind == "rank":
        files[arg] = _npz(input=np.zeros((4, 12), np.float32))
    elif kind == "dtype":
        files[arg] = _npz(input=x.astype(str(rng.choice(["int32", "uint8", "complex64", "bool"]))))
    elif kind == "nan":
        y = x.copy()
        y.flat[int(rng.integers(y.size))] = float(rng.choice([np.nan, np.inf, -np.inf]))
        files[arg] = _npz(input=y)
    elif kind == "huge":
        with np.errstate(over="ignore"):  # 3e38 x a value above 1.13 is inf: that is part of the case
            files[arg] = _npz(input=(x * float(rng.choice([3e38, 1e30, 1e-40]))).astype(np.float32))
    elif kind == "empty":
        files[arg] = _npz(input=x[:0])
    elif kind == "object":
        files[arg] = _npz(input=x, meta=np.array([{"a": 1}], dtype=object))
    elif kind == "strings":
        files[arg] = _npz(input=np.array([["a"]] * 4))
    elif kind == "raw_member":
        files[arg] = _npz(input=x)
        import io

        buf = io.BytesIO(files[arg])
        with zipfile.ZipFile(buf, "a") as z:
            z.writestr("notes.txt", "hello")
        files[arg] = buf.getvalue()
    elif kind == "labels_nan":
        files[arg] = _npz(input=x, labels=np.full(16, np.nan))
    elif kind == "labels_str":
        files[arg] = _npz(input=x, labels=np.array(["cat"] * 16))
    elif kind == "labels_range":
        files[arg] = _npz(input=x, labels=np.full(16, int(rng.choice([-1, 10, 10**9]))))
    elif kind == "labels_count":
        files[arg] = _npz(input=x, labels=np.zeros(3, np.int64))
    elif kind == "missing_key":
        files[arg] = _npz(other=x, more=x)
    elif kind == "not_zip":
        files[arg] = b"PK\x03\x04" + rng.integers(0, 256, 200, dtype=np.uint8).tobytes()
    elif kind == "npy_folder":
        arg = "npys"
        files["npys"] = None
        files["npys/a.npy"] = _npy(np.zeros((1, 12, 12), np.float32))
        files["npys/b.npy"] = _npy(np.zeros((2, 5), np.float32))
    else:
        files[arg] = _npz(input=x[0])
    argv = ["compile", "model.onnx", "--target", str(rng.choice(targets)), "-o", "out"]
    argv += ["--calib", arg] if which == "--calib" else ["--calib", "calib.npz", "--val", arg]
    return Case("data", kind, argv, files)


def _npy(a) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


FLAG_VALUES = {
    "--weight-bits": ["-1", "0", "1", "9", "100", "x", "8"],
    "--avg-bits": ["0", "1.5", "9", "nan", "inf", "-3", "4"],
    "--max-bits": ["0", "1", "16", "99", "-2", "7"],
    "--block-size": ["-4", "0", "1", "3", "100000000"],
    "--threads": ["0", "-3", "100000", "2", "x"],
    "--target": ["", " ", "ort,", ",", "vax", "ORT", "ort,ort"],
    "--input-shape": ["input=99999999999999999999,1,12,12", "input=0,1,12,12", "input=-1,1,12,12", "input=1,1,12",
                      "nope=1,1,12,12", "input=2147483647,1,12,12", "=1", "input=", "input=1,1,12,12"],
    "--rate": ["1e999/s", "0/s", "-1/s", "nan", "fast", "30/fortnight", "1e12/s", "120/min"],
    "--act-bits": ["4", "32", "auto", "x", "16"],
    "--seed": ["-1", "99999999999999999999999", "x"],
    "--bits": ["conv1=0", "conv1=99", "nomatch=4", "conv1", "*=3"],
    "--keep-float": ["nomatch", "*", "["],
    "--size-budget": ["0", "-1KB", "lots", "1e999KB", "1B", "10KB"],
    "--max-drop": ["-1%", "200%", "x", "nan%", "1%"],
    "--metric": ["os:system", "nomodule:f", "x", "math:pi"],
    "--device": ["nope", "", "pixel8"],
    "--granularity": ["per_block", "per_tensor"],
    "--scheme": ["palette", "asymmetric"],
    "--rounding": ["gptq", "awq"],
    "--calib-method": ["entropy", "percentile"],
}


def gen_flags(rng, base, targets) -> Case:
    flags = sorted(FLAG_VALUES)
    chosen = rng.choice(flags, size=int(rng.integers(1, 3)), replace=False)
    extra = []
    for f in chosen:
        extra += [str(f), str(rng.choice(FLAG_VALUES[str(f)]))]
    cmd = str(rng.choice(["compile", "compile", "compile", "plan", "profile"]))
    if cmd == "profile":
        art = [k for k in base if k.endswith((".tflite", ".ort.onnx"))] or ["model.onnx"]
        pf = [f for f in extra[::2] if f in ("--rate", "--threads", "--device")]
        argv = ["profile", str(rng.choice(art))]
        for f in pf:
            argv += [f, extra[extra.index(f) + 1]]
        argv += ["--runs", str(rng.choice(["0", "-1", "2", "x"]))]
    elif cmd == "plan":
        argv = ["plan", "model.onnx", "--calib", "calib.npz", "-o", "out",
                *[x for i in range(0, len(extra), 2) if extra[i] not in ("--rate", "--threads", "--device")
                  for x in extra[i : i + 2]]]
    else:
        argv = ["compile", "model.onnx", "--calib", "calib.npz", "-o", "out", *extra]
        if "--target" not in extra:
            argv += ["--target", str(rng.choice(targets))]
    return Case("flags", " ".join(extra)[:60], argv)


def _pick(rng, values: list):
    return values[int(rng.integers(len(values)))]


def _random_json(rng, depth=0):
    kind = int(rng.integers(0, 8 if depth < 2 else 7))
    if kind == 7:
        return [_random_json(rng, depth + 1)]
    return [None, True, "x", _pick(rng, [1e308, -0.0, 3.5, 1e-320]), _pick(rng, [-1, 0, 500, 2**70]), [], {}][kind]


def gen_plan(rng, base, targets) -> Case:
    plan = json.loads(base["plan.json"])
    kind = str(rng.choice(["leaf", "leaf", "leaf", "delete", "unknown_key", "truncate", "deep", "folder", "mode",
                           "zero_point", "rename", "sha", "target", "weights_list", "scale_string", "short_list", "axis"]))
    text = None
    w = next(iter(plan["weights"].values()))
    a = next(iter(plan["activations"].values()))
    if kind == "leaf":
        paths = []

        def walk(v, path):
            if isinstance(v, dict):
                for k, x in v.items():
                    walk(x, [*path, k])
            elif isinstance(v, list):
                for i, x in enumerate(v[:4]):
                    walk(x, [*path, i])
            else:
                paths.append(path)

        walk(plan, [])
        path = paths[int(rng.integers(len(paths)))]
        ref = plan
        for p in path[:-1]:
            ref = ref[p]
        ref[path[-1]] = _random_json(rng)
        kind = "leaf " + ".".join(map(str, path))[:50]
    elif kind == "delete":
        sect = plan[str(rng.choice(["weights", "activations"]))]
        obj = next(iter(sect.values()))
        obj.pop(str(rng.choice(sorted(obj))))
    elif kind == "unknown_key":
        w["surprise"] = 1
    elif kind == "truncate":
        t = json.dumps(plan)
        text = t[: int(rng.integers(len(t)))]
    elif kind == "deep":
        n = int(rng.choice([1000, 100000]))
        text = "[" * n + "]" * n
    elif kind == "mode":
        plan["mode"] = str(rng.choice(["foo", "", "STATIC"]))
    elif kind == "zero_point":
        if rng.random() < 0.5:
            a["zero_point"] = _pick(rng, [500, -1000, 2**40])
        else:
            w["zero_point"] = [int(rng.choice([1000, -200]))] * len(w.get("scale") or [1])
    elif kind == "rename":
        plan["weights"]["nope"] = plan["weights"].pop(next(iter(plan["weights"])))
    elif kind == "sha":
        plan["model_sha256"] = "0" * 64
    elif kind == "target":
        plan["target"] = str(rng.choice(["tflite", "coreml", "vax"]))
    elif kind == "weights_list":
        plan["weights"] = []
    elif kind == "scale_string":
        w["scale"][0] = "big"
    elif kind == "short_list":
        w["scale"] = w["scale"][:1] if w.get("scale") else [1.0]
    else:
        w["axis"] = int(rng.choice([9, -9, 3]))
    files = {"edited.json": None} if kind == "folder" else {"edited.json": text if text is not None else json.dumps(plan)}
    target = plan.get("target") if isinstance(plan.get("target"), str) and rng.random() < 0.8 else None
    return Case("plan", kind, _compile(rng, [target] if target in targets else targets, "--plan", "edited.json"), files)


def gen_artifact(rng, base, targets) -> Case:
    names = [k for k in base if k.endswith((".tflite", ".ort.onnx", ".ort"))] or ["model.onnx"]
    package = sorted(k for k in base if k.startswith("model.mlpackage/"))
    name = str(rng.choice(names + (["model.mlpackage"] if package else [])))
    member = str(rng.choice(package)) if name == "model.mlpackage" else name  # the file inside that is mutated
    data = bytearray(base[member])
    kind = str(rng.choice(["flip", "truncate", "intact"])) if data else "intact"
    if kind == "flip":
        for _ in range(int(rng.integers(1, 16))):
            i = int(rng.integers(len(data)))
            data[i] ^= 1 << int(rng.integers(8))
    elif kind == "truncate":
        data = data[: int(rng.integers(len(data)))]
    cmd = str(rng.choice(["profile", "profile", "inspect"]))
    argv = ["profile", name, "--runs", "3"] if cmd == "profile" else ["inspect", name]
    if cmd == "profile" and rng.random() < 0.5:
        argv += ["--device", str(rng.choice(["pixel8", "cortex_m7", "rpi5"]))]
    return Case("artifact", f"{kind} {member}", argv, {member: bytes(data)})


def gen_output(rng, base, targets) -> Case:
    kind = str(rng.choice(["file", "under_file", "proc", "empty", "newline", "long", "existing_folder", "dev_null", "deep"]))
    files: dict = {"taken": "mine"}  # an existing output folder's files are compared before and after (classify)
    out = {"file": "taken", "under_file": "taken/sub", "proc": "/proc/edgeq_fuzz", "empty": "",
           "newline": "out\nx", "long": "o" * 300, "existing_folder": "out", "dev_null": "/dev/null",
           "deep": "/".join(["d"] * 50)}[kind]
    if kind == "existing_folder":
        files["out"] = None
        files["out/keep.txt"] = "mine"
    cmd = str(rng.choice(["compile", "plan"]))
    argv = [cmd, "model.onnx", "--calib", str(rng.choice(["calib.npz", "missing.npz"])), "-o", out]
    return Case("output", kind, argv, files)


GENERATORS = {"bytes": gen_bytes, "structure": gen_structure, "external": gen_external, "data": gen_data,
              "flags": gen_flags, "plan": gen_plan, "artifact": gen_artifact, "output": gen_output}


# -- running and classifying -----------------------------------------------------------------

def _tree(root: Path) -> dict[str, float]:
    return {str(p.relative_to(root)): (p.stat().st_mtime if p.is_file() else 0.0) for p in root.rglob("*")}


def write_case(case: Case, base: dict, d: Path) -> None:
    for name, data in base.items():
        (d / name).parent.mkdir(parents=True, exist_ok=True)
        (d / name).write_bytes(data)
    for rel, data in sorted(case.files.items()):
        p = d / rel
        if data is None:
            if p.exists() and not p.is_dir():
                p.unlink()
            p.mkdir(parents=True, exist_ok=True)
        else:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data.encode() if isinstance(data, str) else data)
    (d / "tmp").mkdir(exist_ok=True)


def interpreter_tmp_files(work: Path) -> set[str]:
    """What importing the runtimes alone leaves in TMPDIR (onnxruntime writes a `.ses` file there): not edgeq's doing."""
    d = work / "bare"
    (d / "tmp").mkdir(parents=True)
    subprocess.run([sys.executable, "-c", "import onnxruntime"], cwd=d, env={**os.environ, "TMPDIR": str(d / "tmp")}, check=False)
    return {str(p.relative_to(d)) for p in (d / "tmp").rglob("*")}


IGNORED: set[str] = set()


def classify(case: Case, rc, stderr: str, before: dict, after: dict) -> tuple[str, str]:
    if rc is None:
        return "hang", "killed at the time limit"
    if rc == 1 or "Traceback (most recent call last)" in stderr:
        last = [ln for ln in stderr.splitlines() if ln.strip()][-1:] or ["exit 1"]
        return "traceback", last[0][:200]
    new = sorted(set(after) - set(before) - IGNORED)
    temps = [p for p in new if any(m in Path(p).name for m in TEMP_MARKS) or p.startswith("tmp/")]
    if temps:
        return "leftover", f"left behind: {temps[:3]}"
    if rc != 0:
        changed = [p for p in before if p not in after or (after[p] != before[p] and before[p])]
        if new or changed:
            return "leftover", f"written on failure: {(new + changed)[:3]}"
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    if rc == 0:
        return "ok", ""
    usage = any(ln.startswith("Usage:") for ln in lines) and any(ln.startswith("Error:") for ln in lines)
    if rc == 2 and (usage or (len(lines) == 1 and lines[0].startswith("edgeq: error: "))):
        return "clean", ""
    return "multiline", " | ".join(lines[:3])[:300]


def run_case(case: Case, base: dict, work: Path, index: int, timeout: float) -> Result:
    d = work / f"case{index:05d}"
    d.mkdir(parents=True)
    write_case(case, base, d)
    before = _tree(d)
    start = time.perf_counter()
    rc, _, err = run_cli(case.argv, d, timeout, env={"TMPDIR": str(d / "tmp")})
    seconds = time.perf_counter() - start
    outcome, why = classify(case, rc, err, before, _tree(d))
    return Result(case, outcome, rc, seconds, err, why)


def make_cases(n: int, seed: int, classes: list[str], base: dict, targets: list[str]) -> list[Case]:
    rng = np.random.default_rng(seed)
    return [GENERATORS[classes[k % len(classes)]](rng, base, targets) for k in range(n)]


def table(results: list[Result], classes: list[str]) -> str:
    counts = Counter((r.case.cls, r.outcome) for r in results)
    w = max(len(c) for c in [*classes, "class", "total"])
    lines = [f"{'class':<{w}}  " + "  ".join(f"{o:>9}" for o in OUTCOMES) + f"  {'cases':>6}"]
    for c in [*classes, "total"]:
        row = [sum(v for (k, o), v in counts.items() if o == out and (c == "total" or k == c)) for out in OUTCOMES]
        lines.append(f"{c:<{w}}  " + "  ".join(f"{x:>9}" for x in row) + f"  {sum(row):>6}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per case")
    ap.add_argument("--jobs", type=int, default=1, help="cases run at once")
    ap.add_argument("--classes", default=",".join(GENERATORS), help="comma-separated subset of " + ",".join(GENERATORS))
    ap.add_argument("--targets", default=None, help="targets to draw from (default: every installed one)")
    ap.add_argument("--keep", type=Path, default=None, help="copy each bad case's folder here")
    ap.add_argument("--json", type=Path, default=None, help="write every result here")
    args = ap.parse_args(argv)
    classes = [c for c in args.classes.split(",") if c]
    unknown = set(classes) - set(GENERATORS)
    if unknown:
        ap.error(f"unknown classes {sorted(unknown)}")
    targets = args.targets.split(",") if args.targets else available_targets()
    with tempfile.TemporaryDirectory(prefix="edgeq-fuzz.") as w:
        work = Path(w)
        IGNORED.update(interpreter_tmp_files(work))
        base = make_base(work / "base", targets, max(args.timeout, 120))
        cases = make_cases(args.cases, args.seed, classes, base, targets)
        t0 = time.perf_counter()
        with ThreadPoolExecutor(max(1, args.jobs)) as pool:
            results = list(pool.map(lambda kc: run_case(kc[1], base, work, kc[0], args.timeout), enumerate(cases)))
        bad = [r for r in results if r.outcome in BAD]
        if args.keep:
            for r in bad:
                k = results.index(r)
                shutil.copytree(work / f"case{k:05d}", args.keep / f"case{k:05d}", dirs_exist_ok=True)
    print(table(results, classes))
    print(f"\n{len(results)} cases in {time.perf_counter() - t0:.0f} s (seed {args.seed}, targets {','.join(targets)}); "
          f"{len(bad)} bad")
    for r in bad:
        print(f"  [{r.outcome}] {r.case.cls}/{r.case.name}: edgeq {' '.join(map(repr, r.case.argv))}\n      {r.why}")
    if args.json:
        args.json.write_text(json.dumps([{"class": r.case.cls, "name": r.case.name, "argv": r.case.argv, "outcome": r.outcome,
                                          "rc": r.rc, "seconds": round(r.seconds, 2), "why": r.why,
                                          "stderr": r.stderr.strip().splitlines()[:3]} for r in results], indent=1))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
