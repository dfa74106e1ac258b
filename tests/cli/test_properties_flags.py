"""Property tests of the flag parsers: any text (or API value) gives a value or one EdgeqError line."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from edgeq import frontend
from edgeq.cli import parse_targets
from edgeq.profile import parse_rate
from edgeq.quant import allocate
from edgeq.quant.act_precision import parse_act_bits
from edgeq.quant.mixed import QuantOptions, base_plans, resolve_overrides
from edgeq.runners import check_threads
from edgeq.target import get_target
from tests.models import small_cnn
from tests.properties import FAST, returns_or_one_line_error

# Text that looks like a number: digits, signs, dots, exponents, underscores, and a unit after it.
NUMBERISH = st.text("0123456789.eE+-_ ", max_size=400)
UNITS = ["", "b", "KB", "kib", "MB", "MiB", "gb", "%", "/s", "/min", "/h", "/hour", "s", "x", "²", "\n"]
FLAG_TEXT = st.one_of(
    st.text(),
    st.builds(lambda n, u: f"{n}{u}", NUMBERISH, st.sampled_from(UNITS)),
    st.builds(lambda x, u: f"{x}{u}", st.one_of(st.integers(), st.floats()), st.sampled_from(UNITS)),
)
API_VALUE = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(), FLAG_TEXT)


@FAST
@given(FLAG_TEXT)
@example("9" * 400)  # int(float('inf')) raised OverflowError
@example("1e999")
def test_size_budget(text):
    value = returns_or_one_line_error(allocate.parse_size, text, echoes=[text])
    assert value is None or (isinstance(value, int) and value >= 0)


@FAST
@given(API_VALUE)
def test_max_drop(value):
    v = returns_or_one_line_error(allocate.parse_drop, value, echoes=[value])
    assert v is None or 0 <= v < 1


@FAST
@given(API_VALUE)
def test_rate(value):
    v = returns_or_one_line_error(parse_rate, value, echoes=[value])
    assert v is None or 0 < v <= 1e6


@FAST
@given(API_VALUE)
def test_act_bits(value):
    assert returns_or_one_line_error(parse_act_bits, value, echoes=[value]) in (None, 8, 16, "auto")


@FAST
@given(API_VALUE)
def test_threads(value):
    v = returns_or_one_line_error(check_threads, value, echoes=[value])
    assert v is None or (type(v) is int and v >= 1)


SHAPE_SPEC = st.one_of(
    st.text(),
    st.builds(lambda name, dims: f"{name}={','.join(dims)}", st.text(max_size=8),
              st.lists(st.one_of(NUMBERISH, st.integers().map(str), st.text(max_size=3)), max_size=6)),
)


@FAST
@given(st.lists(SHAPE_SPEC, max_size=4))
@example(["x=" + "9" * 5000])  # int() refuses over 4300 digits with a ValueError, not a crash
@example(["x=١,٢"])  # Arabic-Indic digits are digits to int()
def test_input_shape(specs):
    shapes = returns_or_one_line_error(frontend.parse_input_shapes, specs, echoes=specs)
    if shapes is not None:
        assert all(all(type(d) is int and 1 <= d < 2**31 for d in shape) for shape in shapes.values())


@FAST
@given(st.lists(st.one_of(st.text(), st.sampled_from(["all", "ort", "tflite", "tflm", "coreml", "ort,", ","])), max_size=4))
def test_targets(specs):
    names = returns_or_one_line_error(parse_targets, specs, echoes=specs)
    for name in names or []:  # what the pipeline does next with each name
        returns_or_one_line_error(get_target, name, echoes=[name])


@FAST
@given(bits=API_VALUE, max_bits=API_VALUE, avg_bits=API_VALUE, block_size=API_VALUE)
def test_quant_options_numbers(bits, max_bits, avg_bits, block_size):
    # the API takes numbers here (the CLI's click types make them so); other types are a caller's TypeError
    numbers = [v for v in (bits, max_bits, avg_bits, block_size) if v is not None]
    if any(isinstance(v, str) for v in numbers):
        return
    kw = {"max_bits": max_bits, "avg_bits": avg_bits, "block_size": block_size}
    returns_or_one_line_error(QuantOptions, **({"bits": bits} if bits is not None else {}), **kw)


@pytest.fixture(scope="module")
def weight_plans():
    from edgeq.frontend import load

    return base_plans(load(small_cnn()), QuantOptions())[0]


PATTERN = st.one_of(st.text(max_size=12), st.sampled_from(["conv1", "dw", "fc", "*", "conv*", "*.w", "[", "[!a-z]*", "fc.w"]))
BITS_ITEM = st.one_of(st.text(), st.builds(lambda p, s, b: f"{p}{s}{b}", PATTERN, st.sampled_from(["=", "==", ""]),
                                           st.one_of(NUMBERISH, st.sampled_from(["²", "٣", "８", "4", " 8 "]))))


@FAST
@given(keep_float=st.lists(PATTERN, max_size=3), bits=st.lists(BITS_ITEM, max_size=3))
@example(keep_float=[], bits=["fc=²"])  # '²'.isdigit() is True, int('²') a ValueError
def test_keep_float_and_bits(weight_plans, keep_float, bits):
    q = QuantOptions(keep_float=keep_float, bits_overrides=bits)
    fixed = returns_or_one_line_error(resolve_overrides, weight_plans, q, [2, 4, 8], echoes=keep_float + bits)
    assert fixed is None or all(b in (None, 2, 4, 8) for b in fixed.values())
