"""report.html: self-contained, renders in headless Chromium with no console errors, charts drawn."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import onnx
import pytest

from edgeq.report.html import SCRIPT, write_html
from tests.models import small_cnn, small_cnn_data

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install -y chromium)")


def chromium(tmp_path, url: str, *args: str) -> subprocess.CompletedProcess:
    """Headless Chromium with nothing from the network and a fresh profile."""
    profile = tmp_path / f"chromium-profile-{len(list(tmp_path.glob('chromium-profile-*')))}"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
           "--enable-logging=stderr", "--v=0", "--virtual-time-budget=3000", *args, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def console_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ":CONSOLE" in ln or "Uncaught" in ln]


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    from edgeq.pipeline import compile as edgeq_compile

    d = tmp_path_factory.mktemp("html")
    onnx.save(small_cnn(), d / "small.onnx")
    np.savez(d / "calib.npz", input=small_cnn_data(64))
    report = edgeq_compile(str(d / "small.onnx"), "ort", calib=str(d / "calib.npz"), out=str(d / "out"),
                           devices=["pixel8", "iphone_a17pro", "snapdragon_8gen3"], latency_runs=10)
    # the size-accuracy points a bit allocation explores (the quantization engine adds them)
    report["tradeoff"] = [{"bytes": 900, "accuracy": 0.80, "label": "4-bit"}, {"bytes": 1300, "accuracy": 0.86, "label": "6-bit"},
                          {"bytes": 1800, "accuracy": 0.87, "label": "8-bit"}]
    write_html(report, d / "out")
    return d / "out"


def test_html_is_self_contained(report_dir):
    html = (report_dir / "report.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html), "nothing may load from the network"
    report = json.loads((report_dir / "report.json").read_text())
    for name in ("size", "host-latency", "device-latency-ort", "energy-ort", "battery-ort", "bits-per-layer", "tradeoff"):
        assert f'data-chart="{name}"' in html, name
    assert report["targets"][0]["target"] in html and "Assumed device numbers" in html


def test_renders_in_chromium_without_console_errors(report_dir, tmp_path):
    url = (report_dir / "report.html").as_uri()
    dom = chromium(tmp_path, url, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert console_lines(dom.stderr) == [], console_lines(dom.stderr)
    assert re.search(r'<pre id="js-errors" class="warn"></pre>', dom.stdout), "script errors were written into the page"
    charts = int(re.search(r'data-charts="(\d+)"', dom.stdout).group(1))
    rendered = int(re.search(r'data-charts-rendered="(\d+)"', dom.stdout).group(1))
    assert charts >= 7 and rendered == charts, (charts, rendered)

    shot = report_dir / "report.png"
    r = chromium(tmp_path, url, "--window-size=1200,2400", f"--screenshot={shot}")
    assert r.returncode == 0 and shot.is_file(), r.stderr[-2000:]
    from PIL import Image

    img = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3)
    bar_blue = np.all(np.abs(img.astype(int) - [0x4E, 0x79, 0xA7]) < 8, axis=1).sum()
    bar_orange = np.all(np.abs(img.astype(int) - [0xF2, 0x8E, 0x2B]) < 8, axis=1).sum()
    assert bar_blue > 2000 and bar_orange > 500, "the screenshot shows the bars of the charts"


def test_error_detection_works(tmp_path):
    """The checks above would catch a broken page: a script error shows in the DOM and on stderr."""
    page = tmp_path / "broken.html"
    page.write_text(f"<html><head><script>{SCRIPT}</script></head><body><pre id='js-errors'></pre>"
                    "<script>undefined_function();</script></body></html>")
    r = chromium(tmp_path, page.as_uri(), "--dump-dom")
    assert "undefined_function is not defined" in r.stdout
    assert console_lines(r.stderr)
