"""Progress on a terminal: every stage of a compile says it started and how long it took, so a long
one is never silent (the bars count samples; the stage lines cover work of unknown length)."""

from __future__ import annotations

import re

import edgeq


def test_every_stage_of_a_compile_is_announced_with_its_seconds(small_model, small_calib, tmp_path, capsys):
    edgeq.compile(str(small_model), target=["ort", "tflite"], calib=str(small_calib), out=tmp_path / "out", progress=True)
    err = capsys.readouterr().err
    for label in ("loading and checking the model", "checking calibration coverage",
                  "running the float model on the validation data", "lowering to ort", "lowering to tflite",
                  "cross-checking and timing ort", "cross-checking and timing tflite"):
        assert re.search(re.escape(label) + r" \.\.\. \d+\.\d s", err), (label, err)


def test_no_stage_lines_without_progress(small_model, small_calib, tmp_path, capsys):
    edgeq.compile(str(small_model), target="ort", calib=str(small_calib), out=tmp_path / "out")
    assert " ... " not in capsys.readouterr().err
