"""Progress bars for long work: on stderr, only when someone is watching (a TTY, no --json)."""

from __future__ import annotations

import sys


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
