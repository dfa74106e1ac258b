"""Shared pieces of the property tests (tests/cli/test_properties_*.py): the oracle and the settings.

The oracle is edgeq's promise for bad input, checked at the API boundary (no subprocess):
a boundary function returns, or raises an EdgeqError whose message is one non-blank line.
Any other exception propagates, and hypothesis shrinks it to a minimal failing input.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

from edgeq.errors import EdgeqError

# derandomize: the same examples on every run (CI never flakes on a new draw); deadline off: the
# first call of a loader imports onnxruntime. A module of these stays well under 20 s.
FAST = settings(max_examples=200, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
SLOW = settings(FAST, max_examples=80)


def returns_or_one_line_error(fn, *args, echoes=(), **kwargs):
    """fn(*args, **kwargs)'s value, or None after an EdgeqError whose message is one line.

    A message may quote what the user gave (a flag's text, a file name); a newline in `echoes`
    may reach it, and the CLI escapes it (cli.one_line). Any other newline is a bug."""
    try:
        return fn(*args, **kwargs)
    except EdgeqError as e:
        message = str(e)
        assert message.strip(), f"{type(e).__name__} with an empty message"
        if not any("\n" in str(x) or "\r" in str(x) for x in echoes):
            assert "\n" not in message and "\r" not in message, f"a message of several lines: {message!r}"
        return None
