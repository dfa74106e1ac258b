"""The content-addressed build cache: one folder per (entry, target) key under $EDGEQ_CACHE_DIR/build/.

key = sha256 of the model's bytes, the calibration and validation bytes, the entry's options, the target's
TOML text (edgeq/targets/<target>.toml), the devices' TOML, edgeq's version, the runtime packages' versions and
whether the host CPU has an int8 dot product (ort's weight grid depends on it). A hit copies the stored output folder back,
byte for byte; the least recently used keys are evicted past EDGEQ_BUILD_CACHE_MB (default 2048).
Two build folders (two checkouts, two CI jobs) sharing one cache folder restore from each other.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from functools import cache
from pathlib import Path

from edgeq import __version__

USED = ".edgeq_used"  # its mtime is the key's last use (atime is unreliable: relatime, noatime)
KEY_VERSION = 1


def cache_dir() -> Path:
    return Path(os.environ.get("EDGEQ_CACHE_DIR", Path.home() / ".cache" / "edgeq")) / "build"


def cache_cap_bytes() -> int:
    from edgeq.build.config import ConfigError

    raw = os.environ.get("EDGEQ_BUILD_CACHE_MB", "2048")
    try:
        mb = float(raw)
    except ValueError:
        mb = -1
    if not mb >= 0:
        raise ConfigError(f"EDGEQ_BUILD_CACHE_MB={raw!r}: give a size in megabytes, 0 or more")
    return int(mb * 1024 * 1024)


def target_toml(target: str) -> bytes:
    from importlib import resources

    path = resources.files("edgeq.targets").joinpath(f"{target}.toml")
    return path.read_bytes() if path.is_file() else b""


RUNTIMES = ("numpy", "onnx", "onnxruntime", "ai-edge-litert", "tflite-micro", "coremltools")


@cache
def runtime_versions() -> dict[str, str]:
    """The installed versions of the packages that compile and verify (read from their metadata, not imported)."""
    from importlib import metadata

    out = {}
    for name in RUNTIMES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def device_toml(name: str) -> bytes:
    from importlib import resources

    path = resources.files("edgeq.targets").joinpath("devices").joinpath(f"{name}.toml")
    return path.read_bytes() if path.is_file() else b""


def _hash_path(h, path: Path) -> None:
    """A file's bytes, or a folder's files (relative names and bytes, in sorted order)."""
    if path.is_dir():
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(f.relative_to(path).as_posix().encode() + b"\0")
            _hash_file(h, f)
    elif path.is_file():
        _hash_file(h, path)


def _hash_file(h, path: Path) -> None:
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    h.update(b"\0")


def build_key(entry, target: str, root: Path) -> str:
    h = hashlib.sha256()
    fields = {"key_version": KEY_VERSION, "edgeq": __version__, "target": target,
              "source": entry.source, "calib": entry.calib, "val": entry.val,  # as written: they appear in report.json
              "options": entry.options, "devices": entry.devices, "input_shape": entry.input_shape}
    fields["runtimes"] = dict(runtime_versions())
    from edgeq.hostcpu import int8_dot, is_x86

    # ort's 7-bit weight decision (and its note in plan.json) follows the host CPU's int8 dot product
    fields["host"] = {"x86": is_x86(), "int8_dot": int8_dot()}
    h.update(json.dumps(fields, sort_keys=True).encode() + b"\0")
    h.update(target_toml(target) + b"\0")
    from edgeq.host_numbers import cache_path
    from edgeq.profile import HOST_DEVICE

    for d in dict.fromkeys([*entry.devices, HOST_DEVICE]):  # the device profiles the report's estimates come from
        h.update(device_toml(d) + b"\0")
    _hash_path(h, cache_path())  # this CPU's calibrated host numbers, when bench/calibrate_host.py wrote them
    src = root / entry.source
    _hash_path(h, src)
    for data in (src.with_name(src.name + ".data"),):  # ONNX external data beside the model (the usual name)
        _hash_path(h, data)
    for p in (entry.calib, entry.val):
        if p and p != "random":
            _hash_path(h, root / p)
    return h.hexdigest()


def lookup(key: str) -> Path | None:
    d = cache_dir() / key
    if not (d / "out").is_dir():
        return None
    touch(d)
    return d / "out"


def touch(d: Path) -> None:
    (d / USED).touch()
    now = time.time()
    os.utime(d / USED, (now, now))


def restore(stored: Path, dest: Path) -> None:
    """Copy the stored folder to dest, replacing it as one rename (dest never half-written)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.restore-{uuid.uuid4().hex[:8]}")
    try:
        shutil.copytree(stored, tmp, copy_function=shutil.copyfile)
    except (FileNotFoundError, shutil.Error):
        shutil.rmtree(tmp, ignore_errors=True)
        raise FileNotFoundError(stored) from None
    replace_dir(tmp, dest)


def replace_dir(new: Path, dest: Path) -> None:
    old = None
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old-{uuid.uuid4().hex[:8]}")
        os.rename(dest, old)
    os.rename(new, dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def store(key: str, src: Path) -> None:
    """Keep a copy of src under the key (atomically: another build may read the cache at the same time)."""
    root = cache_dir()
    d = root / key
    if (d / "out").is_dir():
        touch(d)
        return
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{key}.tmp-{uuid.uuid4().hex[:8]}"
    shutil.copytree(src, tmp / "out", copy_function=shutil.copyfile)
    (tmp / "key.json").write_text(json.dumps({"edgeq": __version__, "key_version": KEY_VERSION}) + "\n")
    touch(tmp)
    try:
        os.rename(tmp, d)
    except OSError:  # another build stored the same key first: same bytes
        shutil.rmtree(tmp, ignore_errors=True)
    evict(keep=key)


def folder_bytes(d: Path) -> int:
    return sum(p.stat().st_size for p in d.rglob("*") if p.is_file())


def evict(keep: str | None = None, cap: int | None = None) -> list[str]:
    """Remove least recently used keys until the cache fits the cap; returns the keys removed."""
    cap = cache_cap_bytes() if cap is None else cap
    root = cache_dir()
    if not root.is_dir():
        return []
    keys = []
    for d in root.iterdir():
        if d.is_dir() and not d.name.startswith("."):
            used = d / USED
            keys.append((used.stat().st_mtime if used.exists() else 0.0, d.name, folder_bytes(d)))
    total = sum(k[2] for k in keys)
    removed = []
    for _, name, size in sorted(keys):
        if total <= cap:
            break
        if name == keep:
            continue
        shutil.rmtree(root / name, ignore_errors=True)
        total -= size
        removed.append(name)
    return removed
