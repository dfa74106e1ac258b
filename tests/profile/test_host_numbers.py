"""The host profile's numbers follow the CPU it runs on: a calibration cache entry for this CPU
is used, one for another CPU is not, a corrupt one is a one-line error naming the file."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from edgeq.cli import main
from edgeq.devices import load_device
from edgeq.errors import EdgeqError
from edgeq.graph import Graph
from edgeq.host_numbers import cache_path, write_cache
from edgeq.hostcpu import cache_key, cpu_info, parse_cpuinfo
from edgeq.profile import HOST_DEVICE, profile_model
from tests.models import small_cnn, small_cnn_data

X86 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 1
model name\t: AMD EPYC 7B13
flags\t\t: fpu sse sse2 avx fma avx2 bmi2
"""
ARM = """processor\t: 0
BogoMIPS\t: 50.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
CPU implementer\t: 0x41
CPU part\t: 0xd0c
"""


def test_key_follows_the_features():
    avx2 = parse_cpuinfo(X86, "x86_64", 2)
    vnni = parse_cpuinfo(X86.replace("avx2", "avx2 avx512f avx512_vnni"), "x86_64", 2)
    assert avx2["flags"] == ["avx2"] and vnni["flags"] == ["avx2", "avx512_vnni", "avx512f"]
    assert avx2["model"] == "AMD EPYC 7B13" and avx2["id"] == "family 25 model 1"
    assert cache_key(avx2) != cache_key(vnni)
    assert cache_key(avx2) == cache_key(parse_cpuinfo(X86, "x86_64", 64))  # cores: the profile is 1 thread
    # aarch64: features under 'Features', the int8 dot product is asimddp; the core named by its part id
    dot, plain = parse_cpuinfo(ARM, "aarch64", 4), parse_cpuinfo(ARM.replace(" asimddp", ""), "aarch64", 4)
    assert dot["flags"] == ["asimd", "asimddp"] and plain["flags"] == ["asimd"] and "part 0xd0c" in dot["id"]
    assert cache_key(dot) != cache_key(plain)
    for info in (avx2, vnni, dot):
        assert "/" not in cache_key(info) and " " not in cache_key(info)


def other_cpu() -> dict:
    """A CPU that is not this one: this one's reading with one throughput feature flipped."""
    here = cpu_info()
    flags = set(here["flags"]) ^ {"avx512_vnni" if here["arch"] in ("x86_64", "amd64") else "asimddp"}
    return {**here, "flags": sorted(flags)}


def shipped_numbers(factor: float) -> dict:
    """The shipped cpu unit's peak ops, bandwidth and fixed costs, scaled: a calibration of a faster CPU."""
    dev = load_device(HOST_DEVICE)
    cpu = dev.units["cpu"]
    out = {f"peak_ops.{k}": {"value": q.value * factor, "unit": q.unit, "source": "measured on this CPU by the test"}
           for k, q in cpu.peak_ops.items()}
    out["bandwidth"] = {"value": cpu.bandwidth.value * factor, "unit": cpu.bandwidth.unit, "source": "measured by the test"}
    for k in ("call_overhead", "op_overhead"):  # a small model's time is mostly fixed costs
        q = getattr(cpu, k)
        out[k] = {"value": q.value / factor, "unit": q.unit, "source": "measured by the test"}
    return {"cpu": out}


def float_estimate_ms() -> float:
    graph = Graph(small_cnn())
    return profile_model(graph, None, "onnx", [HOST_DEVICE], 30.0)["devices"][HOST_DEVICE]["quant"]["latency_ms"]


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEQ_CACHE_DIR", str(tmp_path))
    return tmp_path


def test_cache_for_this_cpu_is_used(cache_dir):
    shipped_ms = float_estimate_ms()
    assert load_device(HOST_DEVICE).host_numbers["from"] == "shipped"
    path = write_cache(shipped_numbers(4.0), measured="today")
    assert path == cache_path() and path.parent == cache_dir / "host"
    dev = load_device(HOST_DEVICE)  # the file's stamp is part of the load: no restart needed
    assert dev.host_numbers["from"] == "cache" and dev.host_numbers["file"] == str(path)
    assert dev.units["cpu"].peak_ops["int8"].source == "measured on this CPU by the test"
    assert not dev.units["cpu"].peak_ops["int8"].assumed
    # numbers the entry does not give stay another CPU's, marked assumed
    eff = dev.units["cpu"].efficiency["dense_fp32"]
    assert eff.assumed and "not on this CPU" in eff.source
    assert not dev.units["cpu"].energy_per_mac["int8"].assumed
    assert float_estimate_ms() < 0.9 * shipped_ms  # 4x the throughput: a faster estimate


def test_cache_for_another_cpu_is_ignored(cache_dir):
    write_cache(shipped_numbers(4.0), info=other_cpu())
    assert len(list((cache_dir / "host").iterdir())) == 1
    dev = load_device(HOST_DEVICE)
    assert dev.host_numbers["from"] == "shipped" and dev.units["cpu"].peak_ops["int8"].assumed
    assert "not this one" in dev.description


@pytest.mark.parametrize("text", ["[cpu\nkey = ", "[cpu]\nkey = 'x'\n[units.cpu]\nbandwidth = 3\n", "\xff\xfe"])
def test_corrupt_cache_is_a_one_line_error(cache_dir, text):
    path = cache_path()
    path.parent.mkdir(parents=True)
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(EdgeqError) as e:
        load_device(HOST_DEVICE)
    assert str(path) in str(e.value) and "\n" not in str(e.value) and "calibrate_host.py" in str(e.value)


def test_entry_with_a_bare_number_or_a_foreign_key(cache_dir):
    key = json.dumps(cache_key())
    path = cache_path()
    path.parent.mkdir(parents=True)
    for body, match in ((f"[cpu]\nkey = {key}\n[units.cpu]\nbandwidth = 3\n", "bare number"),
                        (f"[cpu]\nkey = {key}\n[units.cpu]\nidle_power = {{ value = 1, unit = 'W', source = 'x' }}\n", "not a CPU-dependent"),
                        (f"[cpu]\nkey = {key}\n[units.npu]\nbandwidth = {{ value = 1, unit = 'GB/s', source = 'x' }}\n", "not a CPU-dependent")):
        path.write_text(body)
        with pytest.raises(EdgeqError, match=match):
            load_device(HOST_DEVICE)


def test_compile_reports_where_host_numbers_came_from(cache_dir, tmp_path):
    """A real compile (onnxruntime): report.json names the host numbers' origin, and a corrupt
    cache stops it before any work with one line naming the file."""
    model, calib = tmp_path / "small.onnx", tmp_path / "calib.npz"
    onnx.save(small_cnn(), model)
    np.savez(calib, input=small_cnn_data(16))
    write_cache(shipped_numbers(2.0))
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["compile", str(model), "--target", "ort", "--calib", str(calib), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    host = json.loads((out / "report.json").read_text())["targets"][0]["profile"]["devices"][HOST_DEVICE]
    assert host["host_numbers"]["from"] == "cache" and host["host_numbers"]["file"] == str(cache_path())
    cache_path().write_text("not toml [")
    result = CliRunner().invoke(main, ["compile", str(model), "--target", "ort", "--calib", str(calib), "--out", str(tmp_path / "o2")])
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and str(cache_path()) in lines[0], result.output
    assert not (tmp_path / "o2").exists()


def test_calibrate_host_entry_covers_every_measured_number(cache_dir):
    """What bench/calibrate_host.py --litert --write-cache writes replaces every CPU-dependent
    number, LiteRT's float kernels included."""
    from bench.calibrate_host import cache_units

    n = {k: 1e-6 for k in ("per_op", "call", "litert_call")}
    n.update(peak_fp32=1e11, peak_int8=4e11, dram=2e10, onchip=8e10, eff_elementwise=0.1, eff_recurrent_fp32=0.5,
             litert_eff_recurrent_fp32=0.2, half_rows_fp32=10.0, half_rows_int8=1.0, litert_half_rows_int8=3.0,
             litert_eff_elementwise=0.2, litert_half_rows_fp32=5.0)
    for key in ("dense_fp32", "depthwise_fp32", "dense_int8", "depthwise_int8"):
        n[f"kernel_{key}"], n[f"eff_{key}"] = 1e-6, 0.5
    for key in ("dense_fp32", "depthwise_fp32", "dense_int8", "depthwise_int8"):
        n[f"litert_kernel_{key}"], n[f"litert_eff_{key}"] = 1e-6, 0.5
    write_cache(cache_units(n, "measured by the test"))
    dev = load_device(HOST_DEVICE)
    assert dev.host_numbers["from"] == "cache"
    assumed = {a["number"].split(".", 1)[1] for a in dev.assumed()}
    # onchip_bytes comes from sysfs where the kernel gives the L2 size; powers are guesses anyway
    assert {a for a in assumed if "power" not in a and "onchip_bytes" not in a} == set()
    assert dev.units["litert"].peak_ops["int8"].value == 400.0
