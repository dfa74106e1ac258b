"""edgeq build: config, build.json, cache (cold, warm, shared, LRU), gates, --keep-going. Real runtimes, small CNN."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest

from edgeq.build import cache
from edgeq.build.config import ConfigError, load_config
from tests.models import small_cnn, small_cnn_data

ROOT = Path(__file__).resolve().parents[2]

TOML = """
[[model]]
name = "small"
source = "small.onnx"
calib = "calib.npz"
targets = ["ort", "tflite"]
options = { act_bits = 8 }
[model.gates]
min_sqnr_db = 20
max_drop = 5
max_bytes = "{max_bytes}"
"""


def make_project(folder: Path, max_bytes: str = "100KB", toml: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(small_cnn(), folder / "small.onnx")
    np.savez(folder / "calib.npz", input=small_cnn_data(48))
    (folder / "edgeq.toml").write_text(toml if toml is not None else TOML.replace("{max_bytes}", max_bytes))
    return folder


def run_build(folder: Path, *args, cache_dir: Path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "EDGEQ_CACHE_DIR": str(cache_dir)}
    return subprocess.run([sys.executable, "-m", "edgeq", "build", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=folder)


def tree_bytes(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_cold_then_warm_build_restores_byte_identical(tmp_path):
    proj, cache_dir = make_project(tmp_path / "app"), tmp_path / "cache"
    r = run_build(proj, "-j", "1", cache_dir=cache_dir)
    assert r.returncode == 0, r.stderr
    assert "[1/1] small:" in r.stderr
    cold = json.loads((proj / "build.json").read_text())
    (entry,) = cold["entries"]
    assert [t["target"] for t in entry["targets"]] == ["ort", "tflite"]
    for t in entry["targets"]:
        assert t["cache"] == "miss" and t["status"] == "ok"
        assert {g["gate"] for g in t["gates"]} == {"min_sqnr_db", "max_drop", "max_bytes"}
        assert all(g["passed"] and g["measured"] is not None for g in t["gates"])
        for a in t["artifacts"]:  # relative to the build root, hashes of what is on disk
            assert not Path(a["path"]).is_absolute()
            assert hashlib.sha256((proj / a["path"]).read_bytes()).hexdigest() == a["sha256"]
        assert (proj / t["artifact"]).is_file()
    before = tree_bytes(proj / "build")
    assert "small/ort/small.ort.onnx" in before and "small/tflite/small.tflite" in before
    assert len(list((cache_dir / "build").iterdir())) == 2  # one key per entry x target

    r = run_build(proj, cache_dir=cache_dir)
    assert r.returncode == 0, r.stderr
    warm = json.loads((proj / "build.json").read_text())
    assert [t["cache"] for t in warm["entries"][0]["targets"]] == ["hit", "hit"]
    assert tree_bytes(proj / "build") == before  # byte-identical, reports included
    assert [a for t in warm["entries"][0]["targets"] for a in t["artifacts"]] == \
        [a for t in cold["entries"][0]["targets"] for a in t["artifacts"]]

    # A warm build loads no runtime (what keeps it well under a second): no onnx, onnxruntime, LiteRT import.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "EDGEQ_CACHE_DIR": str(cache_dir)}
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "edgeq", "build"], cwd=proj, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    imported = {ln.split("|")[-1].strip() for ln in r.stderr.splitlines() if ln.startswith("import time:")}
    assert not imported & {"onnx", "onnxruntime", "ai_edge_litert", "tflite_micro", "coremltools"}

    # A second checkout sharing the cache folder restores from it, byte for byte.
    other = tmp_path / "ci" / "checkout2"
    shutil.copytree(proj, other, ignore=shutil.ignore_patterns("build", "build.json"))
    r = run_build(other, cache_dir=cache_dir)
    assert r.returncode == 0, r.stderr
    assert [t["cache"] for t in json.loads((other / "build.json").read_text())["entries"][0]["targets"]] == ["hit", "hit"]
    assert tree_bytes(other / "build") == before

    # A changed input is a miss: a different calibration set is a different key.
    np.savez(other / "calib.npz", input=small_cnn_data(48, seed=7))
    r = run_build(other, cache_dir=cache_dir)
    assert r.returncode == 0, r.stderr
    assert [t["cache"] for t in json.loads((other / "build.json").read_text())["entries"][0]["targets"]] == ["miss", "miss"]
    assert len(list((cache_dir / "build").iterdir())) == 4
    r = run_build(proj, "--no-cache", cache_dir=cache_dir)
    assert r.returncode == 0, r.stderr
    assert [t["cache"] for t in json.loads((proj / "build.json").read_text())["entries"][0]["targets"]] == ["off", "off"]
    assert len(list((cache_dir / "build").iterdir())) == 4  # --no-cache neither reads nor writes it


def test_key_covers_options_target_toml_and_version(tmp_path, monkeypatch):
    proj = make_project(tmp_path / "app")
    entry = load_config(None, cwd=proj).entries[0]
    key = cache.build_key(entry, "ort", proj)
    assert cache.build_key(entry, "ort", proj) == key
    assert cache.build_key(entry, "tflite", proj) != key
    entry.options = {"act_bits": 16}
    assert cache.build_key(entry, "ort", proj) != key
    entry.options = {"act_bits": 8}
    monkeypatch.setattr(cache, "target_toml", lambda t: b"weight_bits = [8]\n")
    assert cache.build_key(entry, "ort", proj) != key
    monkeypatch.undo()
    monkeypatch.setattr(cache, "__version__", "999")
    assert cache.build_key(entry, "ort", proj) != key
    monkeypatch.undo()
    onnx.save(small_cnn(seed=3), proj / "small.onnx")
    assert cache.build_key(entry, "ort", proj) != key


def test_key_covers_this_cpus_host_calibration(tmp_path, monkeypatch):
    """report.json's host estimate follows this CPU's calibration cache: writing one is a miss."""
    from edgeq.host_numbers import write_cache

    monkeypatch.setenv("EDGEQ_CACHE_DIR", str(tmp_path / "cache"))
    proj = make_project(tmp_path / "app")
    entry = load_config(None, cwd=proj).entries[0]
    key = cache.build_key(entry, "ort", proj)
    write_cache({"cpu": {"bandwidth": {"value": 30.0, "unit": "GB/s", "source": "measured by the test"}}})
    assert cache.build_key(entry, "ort", proj) != key


def test_failed_gate_exits_3_keeps_artifacts(tmp_path):
    proj = make_project(tmp_path / "app", max_bytes="100")
    toml = (proj / "edgeq.toml").read_text()
    (proj / "edgeq.toml").write_text(toml.replace("max_drop = 5", "max_drop = 5\nmax_latency_ms = 0.000001"))
    r = run_build(proj, "-j", "1", "--no-cache", cache_dir=tmp_path / "cache")
    assert r.returncode == 3, r.stderr
    failed = [ln for ln in r.stderr.splitlines() if ln.startswith("edgeq: gate failed:")]
    assert len(failed) == 4  # one line per failed gate: ort and tflite both exceed 100 bytes and 1 ns
    assert failed[0].startswith("edgeq: gate failed: small ort: max_latency_ms = 1e-06, measured ")
    assert failed[0].endswith(" ms p50 measured on this host")
    assert failed[1].startswith("edgeq: gate failed: small ort: max_bytes = 100, measured ")
    build = json.loads((proj / "build.json").read_text())
    assert build["exit_code"] == 3
    for t in build["entries"][0]["targets"]:
        assert t["status"] == "failed"
        assert [g["passed"] for g in t["gates"] if g["gate"] == "max_bytes"] == [False]
        assert t["gates"][0]["passed"]  # SQNR still fine
        assert (proj / t["artifact"]).is_file()  # kept


TWO = """
[[model]]
name = "broken"
source = "broken.onnx"
calib = "calib.npz"
targets = ["ort"]

[[model]]
name = "small"
source = "small.onnx"
calib = "calib.npz"
targets = ["ort"]
options = { act_bits = 8 }
"""


@pytest.mark.parametrize("keep_going", [False, True])
def test_error_stops_the_build_unless_keep_going(tmp_path, keep_going):
    proj = make_project(tmp_path / "app", toml=TWO)
    (proj / "broken.onnx").write_bytes(b"not a model")
    r = run_build(proj, "-j", "1", *(["--keep-going"] if keep_going else []), cache_dir=tmp_path / "cache")
    assert r.returncode == 2, r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("edgeq: error:")]
    assert len(errors) == 1 and errors[0].startswith("edgeq: error: broken ort: ")
    build = json.loads((proj / "build.json").read_text())
    assert build["entries"][0]["targets"][0]["status"] == "error"
    assert build["entries"][1]["targets"][0]["status"] == ("ok" if keep_going else "skipped")
    assert (proj / "build/small/ort/small.ort.onnx").is_file() == keep_going


def test_parallel_processes_and_pyproject_config(tmp_path):
    proj = make_project(tmp_path / "app", toml="")
    (proj / "edgeq.toml").unlink()
    (proj / "pyproject.toml").write_text(
        "[project]\nname = 'app'\n\n[[tool.edgeq.model]]\nname = 'a'\nsource = 'small.onnx'\ncalib = 'calib.npz'\n"
        "targets = 'ort'\nout = 'models/a'\noptions = { act_bits = 8 }\n\n"
        "[[tool.edgeq.model]]\nname = 'b'\nsource = 'small.onnx'\ncalib = 'calib.npz'\ntargets = ['tflite']\n"
        "out = 'models/b'\noptions = { act_bits = 8, io_dtype = 'int8' }\ndevices = ['pixel8']\n"
        "gates = { max_latency_ms = 1000, latency_device = 'pixel8' }\n")
    r = run_build(proj, "-j", "2", "--no-cache", "--quiet", cache_dir=tmp_path / "cache")
    assert r.returncode == 0, r.stderr
    assert "[1/2]" not in r.stderr  # --quiet: no progress lines
    build = json.loads((proj / "build.json").read_text())
    assert build["config"] == "pyproject.toml"
    assert [(e["name"], e["targets"][0]["artifact"]) for e in build["entries"]] == \
        [("a", "models/a/ort/small.ort.onnx"), ("b", "models/b/tflite/small.tflite")]
    (gate,) = build["entries"][1]["targets"][0]["gates"]
    assert gate["gate"] == "max_latency_ms" and gate["unit"] == "ms estimated on pixel8"
    assert 0 < gate["measured"] <= 1000 and gate["passed"]


@pytest.mark.parametrize("entry, message", [
    ('targets = ["ort", "foo"]', "edgeq.toml: model[0].targets: unknown target 'foo'"),
    ("options = { act_bits = 8, colour = 'red' }", "edgeq.toml: model[0].options.colour: unknown option"),
    ("options = { weight_bits = 9 }", "edgeq.toml: model[0].options.weight_bits: --weight-bits 9: give 2..8"),
    ("options = { io_dtype = 'int4' }", "edgeq.toml: model[0].options.io_dtype: "),
    ("options = { int4 = 'yes' }", "edgeq.toml: model[0].options.int4: expected true or false"),
    ('val = "missing.npz"', "edgeq.toml: model[0].val: no such file or folder 'missing.npz'"),
    ("input_shape = { input = [1, 0, 12, 12] }", "edgeq.toml: model[0].input_shape.input: expected a list of positive"),
    ("devices = ['toaster']", "edgeq.toml: model[0].devices: unknown device 'toaster'"),
    ("colour = 1", "edgeq.toml: model[0].colour: unknown key"),
    ("gates = { min_sqnr_db = 'high' }", "edgeq.toml: model[0].gates.min_sqnr_db: expected a number"),
    ("gates = { max_latency = 3 }", "edgeq.toml: model[0].gates.max_latency: unknown gate"),
    ("gates = { max_latency_ms = 3, latency_device = 'pixel8' }", "edgeq.toml: model[0].gates.latency_device: 'pixel8' is not among"),
])
def test_config_errors_name_the_key(tmp_path, entry, message):
    assert_config_error(tmp_path, entry, message)


def assert_config_error(tmp_path, entry: str, message: str) -> None:
    """The small model's entry plus `entry` lines is refused with one line starting with `message`."""
    toml = f'[[model]]\nname = "small"\nsource = "small.onnx"\ncalib = "calib.npz"\n{entry}\n'
    proj = make_project(tmp_path / "app", toml=toml)
    with pytest.raises(ConfigError) as e:
        load_config(None, cwd=proj)
    assert str(e.value).startswith(message)
    assert "\n" not in str(e.value)


def test_config_error_exits_2_in_one_line(tmp_path):
    proj = make_project(tmp_path / "app", toml='[[model]]\nname = "small"\nsource = "small.onnx"\ncalib = "calib.npz"\ntargets = ["foo"]\n')
    r = run_build(proj, cache_dir=tmp_path / "cache")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == ["edgeq: error: edgeq.toml: model[0].targets: unknown target 'foo'; "
                                             "choose from ort, tflite, tflm, coreml or \"all\""]
    assert not (proj / "build.json").exists()
    r = run_build(tmp_path, cache_dir=tmp_path / "cache")  # no config at all
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "edgeq.toml" in r.stderr


def test_lru_eviction_by_last_use(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEQ_CACHE_DIR", str(tmp_path))
    for k, age in [("old", 300), ("mid", 200), ("new", 100)]:
        src = tmp_path / f"src_{k}"
        src.mkdir()
        (src / "a.bin").write_bytes(bytes(1000))
        cache.store(k, src)
        used = cache.cache_dir() / k / cache.USED
        os.utime(used, (time.time() - age, time.time() - age))
    assert cache.lookup("old") is not None  # a hit makes "old" the most recently used
    assert cache.evict(cap=2500) == ["mid"]
    assert sorted(p.name for p in cache.cache_dir().iterdir()) == ["new", "old"]
    monkeypatch.setenv("EDGEQ_BUILD_CACHE_MB", "0")
    src = tmp_path / "src_last"
    src.mkdir()
    (src / "a.bin").write_bytes(b"x")
    cache.store("last", src)  # storing evicts past the cap, never the key just stored
    assert [p.name for p in cache.cache_dir().iterdir()] == ["last"]


def test_key_evicted_during_restore_is_compiled(tmp_path, monkeypatch):
    """Another build's eviction can remove a key between lookup and copy: the entry compiles instead."""
    from edgeq.build.run import run_build as build

    monkeypatch.setenv("EDGEQ_CACHE_DIR", str(tmp_path / "cache"))
    proj = make_project(tmp_path / "app", toml=TOML.replace("{max_bytes}", "100KB").replace('["ort", "tflite"]', '["ort"]'))
    monkeypatch.setattr(cache, "lookup", lambda key: tmp_path / "cache" / "gone" / "out")
    result, code = build(load_config(None, cwd=proj), jobs=1)  # progress on stderr through click.echo
    assert code == 0
    assert [t["cache"] for t in result["entries"][0]["targets"]] == ["miss"]
    assert (proj / "build/small/ort/small.ort.onnx").is_file()
    assert not [p for p in (proj / "build/small").iterdir() if p.name.startswith(".")]  # no restore leftovers
