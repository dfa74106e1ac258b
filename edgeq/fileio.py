"""Atomic, deterministic file writes: a temporary name, then a rename."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path


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


class StagingDir:
    """Collects a run's outputs in a hidden folder beside `out`, then moves them in.

    If the run fails, the staging folder is removed and `out` is left as it was: a user
    never finds half of an artifact set on disk.
    """

    def __init__(self, out: Path):
        self.out = Path(out).resolve()
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(dir=self.out.parent, prefix=f".{self.out.name}.staging."))

    def __enter__(self) -> StagingDir:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        shutil.rmtree(self.path, ignore_errors=True)

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
