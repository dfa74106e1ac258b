"""The CPU this process runs on, read at run time (machines differ from run to run: one has
AVX2 only, the next AVX-512 VNNI), never assumed in code or data."""

from __future__ import annotations

import os
import platform
from functools import cache
from pathlib import Path

# x86 instructions that multiply int8 pairs straight into 32-bit sums (no 16-bit saturation).
X86_INT8_DOT = ("avx512_vnni", "avx_vnni", "amx_int8")
SHOWN = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "neon", "asimd", "asimddp", "i8mm")


@cache
def cpu_info() -> dict:
    text = ""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        pass
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip().lower(), value.strip())
    flags = set((fields.get("flags") or fields.get("features") or "").split())
    arch = platform.machine().lower()
    model = fields.get("model name") or fields.get("hardware") or platform.processor() or arch
    return {"model": model, "arch": arch, "cores": os.cpu_count() or 1, "flags": sorted(flags & set(SHOWN))}


def is_x86(info: dict | None = None) -> bool:
    return (info or cpu_info())["arch"] in ("x86_64", "amd64", "i686", "i386")


def int8_dot(info: dict | None = None) -> bool:
    """Whether int8 matmul kernels here sum pairs without saturating (VNNI on x86; ARM's
    kernels widen to 32 bits)."""
    info = info or cpu_info()
    return not is_x86(info) or any(f in info["flags"] for f in X86_INT8_DOT)


def describe(info: dict | None = None) -> str:
    info = info or cpu_info()
    return f"{info['model']} ({info['arch']}, {info['cores']} cores; {', '.join(info['flags']) or 'no SIMD flags read'})"
