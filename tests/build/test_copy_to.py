"""copy_to: an entry's artifacts copied into app folders after a build that passed its gates (and on cache hits),
and for coreml the Xcode file lists (edgeq-inputs/-outputs.xcfilelist) beside the config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.build.test_build import assert_config_error, make_project, run_build

COREML = """
[[model]]
name = "small"
source = "small.onnx"
calib = "calib.npz"
targets = ["coreml"]
options = { act_bits = 8 }
copy_to = { coreml = "ios/App" }
[model.gates]
max_bytes = "{max_bytes}"
"""


def resolve(line: str, srcroot: Path) -> Path:
    return Path(line.replace("$(SRCROOT)", str(srcroot)))


def test_coreml_copy_and_xcode_file_lists(tmp_path, monkeypatch):
    proj = make_project(tmp_path / "app" / "ml", toml=COREML.replace("{max_bytes}", "1MB"))
    srcroot = tmp_path / "app"  # the Xcode project's folder, as Xcode sets it for a Run Script phase
    monkeypatch.setenv("SRCROOT", str(srcroot))  # run_build's subprocess inherits it
    r = run_build(proj, cache_dir=tmp_path / "cache")
    monkeypatch.delenv("SRCROOT")
    assert r.returncode == 0, r.stderr
    t = json.loads((proj / "build.json").read_text())["entries"][0]["targets"][0]
    assert t["copied_to"] == "ios/App/small.mlpackage"
    package = proj / "ios/App/small.mlpackage"
    built = proj / t["artifact"]
    files = sorted(p.relative_to(package).as_posix() for p in package.rglob("*") if p.is_file())
    assert files and files == sorted(p.relative_to(built).as_posix() for p in built.rglob("*") if p.is_file())
    assert all((package / f).read_bytes() == (built / f).read_bytes() for f in files)

    inputs = (proj / "edgeq-inputs.xcfilelist").read_text().splitlines()
    outputs = (proj / "edgeq-outputs.xcfilelist").read_text().splitlines()
    assert inputs == ["$(SRCROOT)/ml/small.onnx", "$(SRCROOT)/ml/calib.npz", "$(SRCROOT)/ml/edgeq.toml"]
    assert outputs == ["$(SRCROOT)/ml/ios/App/small.mlpackage"]
    assert all(resolve(p, srcroot).exists() for p in inputs + outputs)

    # A cache hit copies again only what changed: the unchanged package is not rewritten (Xcode sees no change).
    weights = next(p for p in package.rglob("*") if p.is_file())
    before = weights.stat().st_mtime_ns
    r = run_build(proj, cache_dir=tmp_path / "cache")
    assert r.returncode == 0, r.stderr
    t = json.loads((proj / "build.json").read_text())["entries"][0]["targets"][0]
    assert t["cache"] == "hit" and t["copied_to"] == "ios/App/small.mlpackage"
    assert weights.stat().st_mtime_ns == before
    outputs = (proj / "edgeq-outputs.xcfilelist").read_text().splitlines()  # without SRCROOT: absolute paths
    assert outputs == [str((package).resolve())]

    # A failed gate copies nothing into a new folder (the app keeps what it had).
    (proj / "edgeq.toml").write_text(COREML.replace("{max_bytes}", "1KB").replace("ios/App", "ios/Other"))
    r = run_build(proj, cache_dir=tmp_path / "cache")
    assert r.returncode == 3
    t = json.loads((proj / "build.json").read_text())["entries"][0]["targets"][0]
    assert t["status"] == "failed" and "copied_to" not in t and not (proj / "ios/Other").exists()


@pytest.mark.parametrize("copy_to, message", [
    ('{ coreml = "x" }', "edgeq.toml: model[0].copy_to.coreml: 'coreml' is not among the entry's targets"),
    ('{ ort = "" }', "edgeq.toml: model[0].copy_to.ort: expected a folder"),
    ('{ ort = "/abs/dir" }', "edgeq.toml: model[0].copy_to.ort: '/abs/dir' is absolute"),
    ('{ ort = "build/small/assets" }', "edgeq.toml: model[0].copy_to.ort: 'build/small/assets' is inside the entry's out"),
    ('"assets"', "edgeq.toml: model[0].copy_to: expected a table"),
])
def test_copy_to_errors_name_the_key(tmp_path, copy_to, message):
    assert_config_error(tmp_path, f'targets = ["ort"]\ncopy_to = {copy_to}', message)
