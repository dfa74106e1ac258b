"""`edgeq profile` and `compile --device`: the report keys, and one-line errors with exit 2."""

from __future__ import annotations

import json

from click.testing import CliRunner

from edgeq.cli import main


def run(args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(result, match):
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("edgeq: error: ") and match in lines[0], result.output


def test_compile_report_has_profile(small_compiled):
    report, out, _ = small_compiled
    t = report["targets"][0]
    assert {"float_p50", "quant_p50", "quant_load"} <= set(t["latency_ms"])  # the contract is untouched
    prof = t["profile"]
    assert {"pixel8", "iphone_a17pro", "rpi5", "host_x86_64"} <= set(prof["devices"])
    for k in ("p50_ms", "p90_ms", "p99_ms", "load_ms"):
        assert prof["host_measured"][k] > 0
    cmp = prof["host_predicted_vs_measured"]["quant"]
    assert abs(cmp["ratio"] - cmp["predicted_ms"] / cmp["measured_ms"]) < 1e-3
    assert prof["assumed"]["pixel8"], "the report lists the assumed numbers"
    assert {o["name"] for o in prof["ops"]} >= {"conv1", "dw", "fc"}
    assert all(o["unit"]["pixel8"] == "cpu" for o in prof["ops"])
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["targets"][0]["profile"]["devices"].keys() == prof["devices"].keys()
    assert (out / "report.html").is_file()


def test_profile_command(small_compiled):
    report, _, model = small_compiled
    r = run(["profile", report["targets"][0]["artifact"], "--device", "pixel8", "--device", "cortex_m7",
             "--rate", "120/min", "--runs", "5", "--json"])
    assert r.exit_code == 0, r.output
    prof = json.loads(r.output)
    assert prof["target"] == "ort" and prof["quantized"] and prof["rate_per_s"] == 2.0
    assert prof["devices"]["pixel8"]["quant"]["latency_ms"] > 0
    assert "skipped" in prof["devices"]["cortex_m7"]  # an ORT model does not run on the MCU
    assert prof["host_measured"]["runs"] == 5
    r = run(["profile", model, "--device", "rpi4"])
    assert r.exit_code == 0 and "rpi4" in r.output and "host measured" in r.output, r.output


def test_bad_input_one_line_exit_2(tmp_path, small_compiled):
    report, _, model = small_compiled
    art = report["targets"][0]["artifact"]
    one_line_error(run(["profile", art, "--device", "pixel9"]), "unknown device 'pixel9'; known devices:")
    one_line_error(run(["profile", art, "--rate", "0/s"]), "must be above 0")
    one_line_error(run(["profile", art, "--rate", "fast"]), "--rate 'fast'")
    bad = tmp_path / "bad.ort.onnx"
    bad.write_bytes(b"\x00\xff" * 300)
    one_line_error(run(["profile", bad]), "bad.ort.onnx: not a readable ONNX model")
    out = tmp_path / "out"
    r = run(["compile", model, "--calib", "random", "--device", "pixel9", "--out", out])
    one_line_error(r, "unknown device 'pixel9'")
    assert not out.exists()
    one_line_error(run(["compile", model, "--calib", "random", "--rate", "0", "--out", out]), "must be above 0")
