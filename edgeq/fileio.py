"""Atomic, deterministic file writes: a temporary name, then a rename."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from edgeq.errors import EdgeqError


def write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode())


def dumps_json(obj) -> str:
    """Stable JSON: sorted keys, fixed indent, trailing newline, exact float repr."""
    return json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n"


def check_out_dir(out, flag: str = "--out") -> Path:
    """Refuse an output folder that cannot be written, before any work: an existing regular file,
    a path under a file, a folder this process cannot create files in (read-only, /proc, no permission).

    Nothing is created: the nearest existing ancestor is probed with a temporary folder removed at once.
    """
    out = Path(out)
    shown = repr(str(out)) if "\n" in str(out) or "\r" in str(out) else f"'{out}'"
    try:
        resolved = out.resolve()
    except (OSError, RuntimeError) as e:
        raise EdgeqError(f"{flag} {shown}: cannot resolve the path ({type(e).__name__}); pass a writable folder") from None
    if any(len(part.encode()) > 255 for part in resolved.parts) or len(str(resolved).encode()) > 4000:
        raise EdgeqError(f"{flag} {shown}: a name in the path is longer than file systems allow; pass a shorter folder path")
    try:
        if resolved.exists() and not resolved.is_dir():
            raise EdgeqError(f"{flag} {shown}: is an existing file, not a folder; pass a folder path (created if missing)")
        probe_at = resolved
        while not probe_at.exists():
            probe_at = probe_at.parent
    except OSError as e:
        raise EdgeqError(f"{flag} {shown}: cannot use the path ({e.strerror or type(e).__name__}); pass a writable folder") from None
    if not probe_at.is_dir():
        raise EdgeqError(f"{flag} {shown}: '{probe_at}' is a file, so no folder can be made under it; pass a folder path")
    try:
        os.rmdir(tempfile.mkdtemp(dir=probe_at, prefix=".edgeq-probe."))
    except OSError as e:
        raise EdgeqError(f"{flag} {shown}: cannot write in '{probe_at}' ({e.strerror or type(e).__name__}); "
                         "pass a folder you can write to") from None
    return resolved


class StagingDir:
    """Collects a run's outputs in a hidden folder beside `out`, then moves them in.

    If the run fails, the staging folder is removed and `out` is left as it was: a user
    never finds half of an artifact set on disk.
    """

    def __init__(self, out: Path):
        self.out = check_out_dir(out)
        self.created = [p for p in (self.out.parent, *self.out.parent.parents) if not p.exists()]  # removed on failure
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(dir=self.out.parent, prefix=f".{self.out.name}.staging."))

    def __enter__(self) -> StagingDir:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self.commit()
        except BaseException:
            self._remove_created()
            raise
        finally:
            shutil.rmtree(self.path, ignore_errors=True)
        if exc_type is not None:
            self._remove_created()

    def _remove_created(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        for p in self.created:  # innermost first; only folders this run made and left empty
            try:
                p.rmdir()
            except OSError:
                break

    def commit(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        for src in sorted(self.path.rglob("*")):
            rel = src.relative_to(self.path)
            dst = self.out / rel
            if src.is_dir():
                # Directory artifacts (.mlpackage) are replaced whole.
                if src.suffix == ".mlpackage":
                    if dst.exists():
                        shutil.rmtree(dst)
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(src, dst)
                continue
            if any(p.suffix == ".mlpackage" for p in rel.parents):
                continue  # moved with its package
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
