"""report.json names files where they are after the compile (relative to the output folder), and
artifact names keep the model's full stem."""

import json
import shutil
from pathlib import Path

from click.testing import CliRunner

from edgeq.artifact import Artifact
from edgeq.cli import main
from edgeq.pipeline import model_stem


def _strings(obj):
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v)
    elif isinstance(obj, str):
        yield obj


def test_model_stem_keeps_every_dot_but_the_suffix():
    assert model_stem("dir/a.b_v2.0.onnx") == "a.b_v2.0"
    assert model_stem(Path("ch_ppocr_mobile_v2.0_cls_infer.onnx")) == "ch_ppocr_mobile_v2.0_cls_infer"
    assert model_stem("m.pt2") == "m"


def test_relocate_moves_paths_in_the_target_facts(tmp_path):
    staging, out = tmp_path / ".out.staging.x", tmp_path / "out"
    art = Artifact("tflm", staging / "m.micro.tflite", files=[staging / "m.micro.tflite", staging / "m.tflm.json"],
                   extra={"tflm_manifest": str(staging / "m.tflm.json"), "tflm_arena_bytes": 10, "io_layout": "nchw"})
    art.relocate(staging, out)
    assert art.extra == {"tflm_manifest": str(out / "m.tflm.json"), "tflm_arena_bytes": 10, "io_layout": "nchw"}


def test_report_paths_exist_after_the_compile(tmp_path, small_model, small_calib):
    model = tmp_path / "a.b_v2.0.onnx"
    shutil.copy(small_model, model)
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["compile", str(model), "--calib", str(small_calib), "-o", str(out), "--json"])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("a.")) == ["a.b_v2.0.ort", "a.b_v2.0.ort.onnx"]
    for report in (json.loads((out / "report.json").read_text()), json.loads(r.output)):
        t = report["targets"][0]
        assert t["artifact"] == "a.b_v2.0.ort.onnx" and t["ort_file"] == "a.b_v2.0.ort"
        assert t["files"] == ["a.b_v2.0.ort.onnx", "a.b_v2.0.ort"]
        assert not [s for s in _strings(report["targets"]) if ".staging." in s]
        for p in (t["artifact"], t["ort_file"], *t["files"]):
            assert (out / p).is_file(), p
    assert not [p for p in tmp_path.iterdir() if ".staging." in p.name]
