"""The CPU this process runs on, read at run time (machines differ from run to run: one has
AVX2 only, the next AVX-512 VNNI), never assumed in code or data."""

from __future__ import annotations

import os
import platform
import re
from functools import cache
from pathlib import Path

# x86 instructions that multiply int8 pairs straight into 32-bit sums (no 16-bit saturation).
X86_INT8_DOT = ("avx512_vnni", "avx_vnni", "amx_int8")
# The features kept (and shown): the ones that change int8 / float kernel throughput, so the host
# calibration cache is keyed on them. asimddp is aarch64's int8 dot product (SDOT/UDOT).
SHOWN = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "neon", "asimd", "asimddp", "i8mm")


def parse_cpuinfo(text: str, arch: str, cores: int = 1) -> dict:
    """/proc/cpuinfo text -> {model, id, arch, cores, flags}. x86 lists features as 'flags',
    aarch64 as 'Features'; aarch64 often has no 'model name', so its implementer/part ids
    name the core. Only the first processor's block is read (all cores alike here)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip().lower(), value.strip())
    flags = set((fields.get("flags") or fields.get("features") or "").split())
    model = fields.get("model name") or fields.get("hardware") or platform.processor() or arch
    if "cpu family" in fields:  # the model name can be generic in a VM ("AMD EPYC"): the ids tell generations apart
        ident = f"family {fields['cpu family']} model {fields.get('model', '?')}"
    elif "cpu part" in fields:
        ident = f"implementer {fields.get('cpu implementer', '?')} part {fields['cpu part']}"
    else:
        ident = ""
    return {"model": model, "id": ident, "arch": arch, "cores": cores, "flags": sorted(flags & set(SHOWN))}


@cache
def cpu_info() -> dict:
    text = ""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        pass
    return parse_cpuinfo(text, platform.machine().lower(), os.cpu_count() or 1)


def is_x86(info: dict | None = None) -> bool:
    return (info or cpu_info())["arch"] in ("x86_64", "amd64", "i686", "i386")


def int8_dot(info: dict | None = None) -> bool:
    """Whether int8 matmul kernels here sum pairs without saturating (VNNI on x86; ARM's
    kernels widen to 32 bits)."""
    info = info or cpu_info()
    return not is_x86(info) or any(f in info["flags"] for f in X86_INT8_DOT)


def cache_key(info: dict | None = None) -> str:
    """A file-name-safe key for numbers measured on this kind of CPU: model name, family/part
    ids, architecture and the throughput features (core count left out: the host profile is
    1 thread)."""
    info = info or cpu_info()
    words = [info["model"], info.get("id", ""), info["arch"], "+".join(info["flags"]) or "noflags"]
    return "_".join(re.sub(r"[^a-z0-9+]+", "-", w.lower()).strip("-") for w in words if w)


def l2_bytes(cpu: int = 0) -> int | None:
    """The level-2 cache one core sees, from sysfs (None where the kernel does not say)."""
    base = Path(f"/sys/devices/system/cpu/cpu{cpu}/cache")
    for index in sorted(base.glob("index*")):
        try:
            if (index / "level").read_text().strip() == "2" and (index / "type").read_text().strip() in ("Unified", "Data"):
                size = (index / "size").read_text().strip().upper()
                return int(size[:-1]) * {"K": 1024, "M": 1024**2}[size[-1]] if size[-1] in "KM" else int(size)
        except (OSError, ValueError):
            return None
    return None


def describe(info: dict | None = None) -> str:
    info = info or cpu_info()
    ident = f", {info['id']}" if info.get("id") else ""
    return f"{info['model']} ({info['arch']}{ident}, {info['cores']} cores; {', '.join(info['flags']) or 'no SIMD flags read'})"
