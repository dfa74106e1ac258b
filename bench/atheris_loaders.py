"""Coverage-guided fuzzing (atheris, libFuzzer) of the loaders that parse the bytes a user hands in.

    pip install atheris                     # optional: not in any extra, not run by CI
    python bench/atheris_loaders.py --target onnx -atheris_runs=20000
    python bench/atheris_loaders.py --target plan -max_total_time=300
    python bench/atheris_loaders.py --target profile-tflite -atheris_runs=5000 -rss_limit_mb=3000

Targets (each reads one file written from the fuzzer's bytes):

    onnx            edgeq.frontend.load on a .onnx (onnx_file checks, normalization passes, shapes)
    plan            QuantPlan.load on a plan.json (JSON, the schema, validate)
    profile-onnx    edgeq.profile.read.read_artifact on a .onnx / .ort.onnx (QDQ read back, or float)
    profile-tflite  read_artifact on a .tflite (the tflite Target's read hook, LiteRT's interpreter)

The oracle is edgeq's promise for bad input: the loader returns, or raises an EdgeqError with a
one-line message. Any other exception is a finding: libFuzzer prints its traceback and writes the
input to crash-<sha1> (replay: python bench/atheris_loaders.py --target T crash-<sha1>). A hard
crash inside a native runtime (a segfault in LiteRT) ends the run the same way.

Seeds: the small CNN of tests/models.py serialized, and the plan / .ort.onnx / .tflite edgeq
compiles from it (made once in --work, default $TMPDIR/edgeq-atheris). libFuzzer keeps its
corpus there too, so a second run continues where the first stopped. Only edgeq's own modules
are instrumented. Mutations are structure-aware half of the time (one protobuf sub-message of the
ONNX model, one value of the plan's JSON) so they get past the parsers, else plain byte edits.
Everything after the first `--target T` / `--work DIR` goes to libFuzzer (-atheris_runs=N,
-max_total_time=S, -rss_limit_mb=MB, -timeout=S, corpus folders).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import random
import sys
import tempfile
import warnings
from pathlib import Path

import atheris
import onnx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Only modules imported inside this block are instrumented; edgeq imports many lazily (passes,
# lowerings, readers), so every edgeq module is imported here, not just the loaders.
with atheris.instrument_imports(include=["edgeq"]):
    import edgeq

    for _mod in pkgutil.walk_packages(edgeq.__path__, "edgeq."):
        if "torch" not in _mod.name:  # the .pt2 frontend: torch is slow to import and no loader here reads it
            try:
                importlib.import_module(_mod.name)
            except ImportError:  # an optional runtime (coremltools, tflite_micro) is not installed
                pass
    from edgeq.errors import EdgeqError
    from edgeq.frontend import load
    from edgeq.profile.read import read_artifact
    from edgeq.quant.plan import QuantPlan

SUFFIX = {"onnx": ".onnx", "plan": ".json", "profile-onnx": ".onnx", "profile-tflite": ".tflite"}
LOADER = {"onnx": load, "plan": QuantPlan.load, "profile-onnx": read_artifact, "profile-tflite": read_artifact}
# Values an edit of a plan makes: floats for ints, text for numbers, out of range, empty containers.
NEAR = [None, True, 0, -1, 1, 2.0, 8.0, 0.5, 1e39, 10**30, "8", "", "x", [], {}, [1.0], float("nan")]


def make_seeds(work: Path) -> dict[str, list[Path]]:
    """The small CNN, and the plan and artifacts `edgeq compile` makes from it (once per --work)."""
    import edgeq
    from tests.models import small_cnn, small_cnn_data

    seeds = work / "seeds"
    out = seeds / "out"
    if not (out / "model.tflite").exists():
        seeds.mkdir(parents=True, exist_ok=True)
        onnx.save(small_cnn(), seeds / "model.onnx")
        edgeq.compile(str(seeds / "model.onnx"), target=["ort", "tflite"], calib={"input": small_cnn_data(32)},
                      out=str(out), threads=1)
    return {"onnx": [seeds / "model.onnx"], "plan": [out / "plan.json"],
            "profile-onnx": [seeds / "model.onnx", out / "model.ort.onnx"], "profile-tflite": [out / "model.tflite"]}


def onnx_parts(model: onnx.ModelProto) -> list:
    g = model.graph
    return [*g.node, *g.initializer, *g.input, *g.output, *g.value_info, *(a for n in g.node for a in n.attribute),
            *model.opset_import, g]


def mutate_onnx(data: bytes, max_size: int, seed: int) -> bytes:
    """Half the time: libFuzzer's byte edits on one node / initializer / value info, re-serialized."""
    rng = random.Random(seed)
    if rng.random() < 0.5:
        try:
            model = onnx.ModelProto.FromString(data)
            part = rng.choice(onnx_parts(model))
            blob = part.SerializeToString()
            part.ParseFromString(atheris.Mutate(blob, len(blob) + 64))
            out = model.SerializeToString()
            if len(out) <= max_size:
                return out
        except Exception:  # not (or no longer) a ModelProto: plain byte edits below
            pass
    return atheris.Mutate(data, max_size)


def json_paths(tree, path=()):
    yield path
    if isinstance(tree, dict | list):
        for k, v in (tree.items() if isinstance(tree, dict) else enumerate(tree)):
            yield from json_paths(v, (*path, k))


def mutate_json(data: bytes, max_size: int, seed: int) -> bytes:
    """Half the time: one value of the JSON replaced (a NEAR value, or its own text byte-edited)."""
    rng = random.Random(seed)
    if rng.random() < 0.5:
        try:
            tree = json.loads(data)
            path = rng.choice([p for p in json_paths(tree) if p])
            parent = tree
            for k in path[:-1]:
                parent = parent[k]
            if rng.random() < 0.6:
                parent[path[-1]] = rng.choice(NEAR)
            else:
                text = json.dumps(parent[path[-1]]).encode()
                parent[path[-1]] = json.loads(atheris.Mutate(text, len(text) + 16))
            out = json.dumps(tree, indent=1).encode()
            if len(out) <= max_size:
                return out
        except Exception:  # not JSON, no value to replace, or the edit is not JSON: byte edits below
            pass
    return atheris.Mutate(data, max_size)


def one_input(loader, path: Path):
    def test(data: bytes) -> None:
        path.write_bytes(data)
        try:
            loader(path)
        except EdgeqError as e:
            message = str(e)
            if not message.strip() or "\n" in message or "\r" in message:
                raise AssertionError(f"{type(e).__name__} message is not one line: {message!r}") from None

    return test


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", required=True, choices=sorted(LOADER))
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "edgeq-atheris")
    args, libfuzzer = ap.parse_known_args()
    warnings.simplefilter("ignore")  # as the CLI does: libraries' warnings are not findings
    os.environ.setdefault("EDGEQ_CACHE_DIR", str(args.work / "cache"))
    seeds = make_seeds(args.work)
    corpus = args.work / "corpus" / args.target
    corpus.mkdir(parents=True, exist_ok=True)
    for s in seeds[args.target]:
        (corpus / f"seed-{s.name}").write_bytes(s.read_bytes())
    scratch = Path(tempfile.mkdtemp(prefix="edgeq-atheris-"))
    test = one_input(LOADER[args.target], scratch / f"input{SUFFIX[args.target]}")
    mutator = mutate_json if args.target == "plan" else mutate_onnx if "onnx" in args.target else None
    replay = any(not a.startswith("-") and Path(a).is_file() for a in libfuzzer)  # crash files: no corpus
    argv = [sys.argv[0], *libfuzzer, *([] if replay else [str(corpus)])]
    if mutator is None:
        atheris.Setup(argv, test)
    else:
        atheris.Setup(argv, test, custom_mutator=mutator)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
