"""Progress bars for long work: on stderr, only when someone is watching (a TTY, no --json)."""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager


class NullBar:
    """Stands in for a progress bar when none is shown."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n):
        pass


def progress_bar(label: str, length: int, enabled: bool):
    if not enabled:
        return NullBar()
    import click

    return click.progressbar(length=length, label=label, file=sys.stderr)


@contextmanager
def stage(label: str, enabled: bool):
    """A stage of unknown length (loading, lowering, profiling): `label ...` when it starts and
    its seconds when it ends, on one stderr line, so no long stage is silent."""
    if not enabled:
        yield
        return
    start = time.perf_counter()
    print(f"{label} ...", end="", file=sys.stderr, flush=True)
    try:
        yield
    finally:
        print(f" {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
