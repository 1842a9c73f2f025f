"""parse_triple: the per-axis ``(z, y, x)`` values of every package, and messages naming the argument."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ls_core import parse_triple


class TripleError(ValueError):
    pass


@pytest.mark.parametrize(
    ("value", "kwargs", "expected"),
    [
        (4, {}, (4, 4, 4)),
        ((1, 2, 3), {}, (1, 2, 3)),
        ([1, 2, 3], {"minimum": 1}, (1, 2, 3)),
        (np.int64(4), {}, (4, 4, 4)),                              # numpy scalars (ls-backbones)
        ((np.int64(1), 2, 2.0), {}, (1, 2, 2)),                    # integral floats are ints
        (np.array([2, 4, 4]), {"positive": True}, (2, 4, 4)),
        (0, {}, (0, 0, 0)),                                        # no bound unless asked
        (0, {"minimum": 0}, (0, 0, 0)),                            # e.g. predict.overlap
        (2.5, {"integer": False}, (2.5, 2.5, 2.5)),                # spacing, sigma (ls-data)
        ((1, 0.5, 0.5), {"integer": False, "positive": True}, (1.0, 0.5, 0.5)),
        ((0.0, 1, 2), {"integer": False, "minimum": 0}, (0.0, 1.0, 2.0)),
        ((3, 2, 1), {"scalar": False}, (3, 2, 1)),
    ],
)  # fmt: skip
def test_values(value: object, kwargs: dict, expected: tuple) -> None:
    out = parse_triple(value, "stride", **kwargs)
    assert out == expected
    assert all(type(v) is type(expected[0]) for v in out)


INT = r"stride must be an integer or a 3-tuple \(z, y, x\) of integers"


@pytest.mark.parametrize(
    ("value", "kwargs", "pattern"),
    [
        ((1, 2), {}, INT + r", got \(1, 2\)"),
        ((1, 2, 3, 4), {}, INT),
        ("abc", {}, INT + ", got 'abc'"),                           # a string is not a sequence here
        (None, {}, INT + ", got None"),
        (True, {}, INT),                                           # bool is not a number
        ((1, True, 1), {}, INT),
        ((1, 2.5, 2), {}, INT + r", got \(1, 2.5, 2\)"),
        (2.5, {}, INT),
        (math.inf, {}, INT),
        ((1, "a", 2), {"integer": False}, r"stride must be a number or a 3-tuple \(z, y, x\) of numbers"),
        ((1, math.nan, 2), {"integer": False}, r"stride must be finite on every axis \(z, y, x\)"),
        (4, {"scalar": False}, r"stride must be a 3-tuple \(z, y, x\) of integers, got 4"),
        ((0, 2, 2), {"positive": True}, r"stride must be positive on every axis \(z, y, x\), got \(0, 2"),
        ((0.0, 1, 1), {"integer": False, "positive": True}, r"stride must be positive on every axis"),
        ([1, 0, 1], {"minimum": 1}, r"stride must be >= 1 on every axis \(z, y, x\), got \[1, 0, 1\]"),
        (-1, {"minimum": 0}, r"stride must be >= 0 on every axis"),
    ],
)  # fmt: skip
def test_errors_name_the_argument(value: object, kwargs: dict, pattern: str) -> None:
    with pytest.raises(TripleError, match=pattern):
        parse_triple(value, "stride", error=TripleError, **kwargs)


def test_default_error_is_value_error() -> None:
    with pytest.raises(ValueError, match="window_size"):
        parse_triple((1, 2), "window_size")
