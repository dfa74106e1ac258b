"""samples/build/edgeq.toml (the Fashion CNN x ort, tflite, tflm, coreml; the ViT x ort, tflite, coreml) as an app would build it: cold, then from
the README's Xcode and Gradle snippets (cache hits, byte-identical), then a deliberately strict gate (exit 3)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "samples"
README = (ROOT / "README.md").read_text()


def snippet(lang: str, after: str) -> str:
    """The first ```lang block after the README line starting with `after`."""
    start = README.index(after)
    m = re.compile(rf"```{lang}\n(.*?)```", re.S).search(README, start)
    return m.group(1)


def tree_bytes(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_readme_shows_the_sample_config():
    sample = (SAMPLES / "build" / "edgeq.toml").read_text()
    assert snippet("toml", "## Build integration") == sample[sample.index("[[model]]"):]


def test_sample_project_builds_cached_and_gated(tmp_path):
    app = tmp_path / "app"  # an app project: its ML config in ml/, the model beside it
    shutil.copytree(SAMPLES / "build", app / "ml", ignore=shutil.ignore_patterns("build", "build.json"))
    for f in ("fashion_cnn.onnx", "fashion_vit.onnx", "fashion_calib.npz", "fashion_val.npz"):
        shutil.copy(SAMPLES / f, app / f)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "EDGEQ_CACHE_DIR": str(tmp_path / "cache"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}

    cold = subprocess.run([sys.executable, "-m", "edgeq", "build", "ml", "-j", "1"], cwd=app, env=env, capture_output=True, text=True)
    assert cold.returncode == 0, cold.stderr
    build = json.loads((app / "ml" / "build.json").read_text())
    targets, vit = build["entries"][0]["targets"], build["entries"][1]["targets"]
    assert [(t["status"], t["cache"]) for t in targets + vit] == [("ok", "miss")] * 7
    assert [t["target"] for t in targets] == ["ort", "tflite", "tflm", "coreml"]
    assert [t["artifact"] for t in targets] == ["build/fashion/ort/fashion_cnn.ort.onnx", "build/fashion/tflite/fashion_cnn.tflite",
                                                "build/fashion/tflm/fashion_cnn.micro.tflite", "build/fashion/coreml/fashion_cnn.mlpackage"]
    assert [t["artifact"] for t in vit] == ["build/vit/ort/fashion_vit.ort.onnx", "build/vit/tflite/fashion_vit.tflite",
                                            "build/vit/coreml/fashion_vit.mlpackage"]
    for t in targets + vit:
        drop = next(g for g in t["gates"] if g["gate"] == "max_drop")
        assert drop["unit"] == "accuracy points" and drop["passed"]
    before = tree_bytes(app / "ml" / "build")

    # copy_to (not in the cache key): the app's assets folder and a firmware folder receive the artifacts.
    toml = (app / "ml" / "edgeq.toml").read_text()
    (app / "ml" / "edgeq.toml").write_text(toml.replace("options = { act_bits = 8 }\n", "options = { act_bits = 8 }\ncopy_to = { "
                                                        'tflite = "../src/main/assets", tflm = "../firmware/fashion", coreml = "../App" }\n', 1))

    # The README's Xcode Run Script phase, as Xcode runs it (bash, SRCROOT set): every target restored.
    xcode = subprocess.run(["bash", "-e", "-c", snippet("sh", "**Xcode**")], env={**env, "SRCROOT": str(app)},
                           capture_output=True, text=True)
    assert xcode.returncode == 0, xcode.stderr
    targets = json.loads((app / "ml" / "build.json").read_text())["entries"][0]["targets"]
    assert [t["cache"] for e in json.loads((app / "ml" / "build.json").read_text())["entries"] for t in e["targets"]] == ["hit"] * 7
    assert [t.get("copied_to") for t in targets] == [None, "../src/main/assets/fashion_cnn.tflite",
                                                     "../firmware/fashion/fashion_cnn.micro.tflite", "../App/fashion_cnn.mlpackage"]
    assert tree_bytes(app / "src/main/assets") == {"fashion_cnn.tflite": before["fashion/tflite/fashion_cnn.tflite"]}
    firmware = tree_bytes(app / "firmware/fashion")
    shipped = [a["path"].removeprefix("build/") for a in targets[2]["artifacts"]]
    assert {f"fashion/tflm/{k}": v for k, v in firmware.items()} == {
        k: before[k] for k in shipped if k not in ("fashion/tflm/plan.json", "fashion/tflm/report.json")}
    assert {"fashion_cnn_model_data.c", "CMakeLists.txt", "library.json", "zephyr/module.yml"} <= set(firmware)
    assert tree_bytes(app / "App/fashion_cnn.mlpackage") == {k.removeprefix("fashion/coreml/fashion_cnn.mlpackage/"): v
                                                             for k, v in before.items() if k.startswith("fashion/coreml/fashion_cnn.mlpackage/")}
    # The Xcode file lists the README's Run Script phase names, in $(SRCROOT) form, listing paths that exist.
    inputs = (app / "ml" / "edgeq-inputs.xcfilelist").read_text().splitlines()
    outputs = (app / "ml" / "edgeq-outputs.xcfilelist").read_text().splitlines()
    assert inputs == ["$(SRCROOT)/fashion_cnn.onnx", "$(SRCROOT)/fashion_calib.npz", "$(SRCROOT)/fashion_val.npz", "$(SRCROOT)/ml/edgeq.toml"]
    assert outputs == ["$(SRCROOT)/App/fashion_cnn.mlpackage"]
    assert all(Path(p.replace("$(SRCROOT)", str(app))).exists() for p in inputs + outputs)
    for name in ("edgeq-inputs.xcfilelist", "edgeq-outputs.xcfilelist"):
        assert f"$(SRCROOT)/ml/{name}" in README  # the snippet's Input / Output File Lists name these files
    assert tree_bytes(app / "ml" / "build") == before
    (app / "ml" / "edgeq.toml").write_text(toml)

    # The README's Gradle task: its workingDir and commandLine, exactly.
    gradle = snippet("groovy", "**Gradle**")
    assert 'preBuild.dependsOn("edgeqBuild")' in gradle
    workdir = re.search(r'workingDir = file\("([^"]+)"\)', gradle).group(1)
    command = re.findall(r'"([^"]+)"', re.search(r"commandLine (.*)", gradle).group(1))
    assert command == ["edgeq", "build"]
    r = subprocess.run(command, cwd=app / workdir, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert tree_bytes(app / "ml" / "build") == before

    # A deliberately strict gate: exit 3, one line per target, artifacts kept (from the cache: gates are not in the key).
    toml = (app / "ml" / "edgeq.toml").read_text().replace("min_sqnr_db = 25", "min_sqnr_db = 60")
    (app / "ml" / "edgeq.toml").write_text(toml)
    r = subprocess.run(command, cwd=app / workdir, env=env, capture_output=True, text=True)
    assert r.returncode == 3, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("edgeq: gate failed:")]
    assert [ln.split(":")[2].strip() for ln in lines] == ["fashion ort", "fashion tflite", "fashion tflm", "fashion coreml",
                                                         "vit ort", "vit tflite", "vit coreml"]
    assert all("min_sqnr_db = 60, measured " in ln for ln in lines)
    build = json.loads((app / "ml" / "build.json").read_text())
    assert [t["status"] for e in build["entries"] for t in e["targets"]] == ["failed"] * 7
    assert tree_bytes(app / "ml" / "build") == before


def test_sample_vit_is_refused_for_tflm_naming_the_missing_kernel(tmp_path):
    """The sample's ViT has no tflm target: TFLite Micro has no GELU kernel, and the error says so."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "edgeq", "compile", SAMPLES / "fashion_vit.onnx", "--target", "tflm",
                        "--calib", SAMPLES / "fashion_calib.npz", "--out", tmp_path / "out", "--quiet", "--act-bits", "8"],
                       env=env, capture_output=True, text=True)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "no TFLite Micro kernel for GELU" in r.stderr
    assert "no GELU kernel" in (SAMPLES / "build" / "edgeq.toml").read_text()
