"""resampled_size: the one sizing rule of every resampling to a spacing (ls-data, ls-detection)."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from ls_core import resampled_size


@pytest.mark.parametrize(
    ("size", "spacing", "target", "expected"),
    [
        (16, 2.5, 1.25, 32),      # exact products land on the integer, in either order of the float ops
        (11, 15.0, 11.0, 15),     # 11 * (15 / 11) is 14.999999999999998 in floats
        (10, 0.35, 0.1, 35),      # 10 * (0.35 / 0.1) is 34.99999999999999 (interpolate's floor: 34)
        (6, 2.0, 1.0, 12),
        (10, 0.5, 0.7, 7),        # 7.14: nearest
        (10, 0.5, 0.6, 8),        # 8.33
        (5, 0.3, 0.2, 8),         # 7.5: a half goes up (floor gave 7)
        (5, 1.0, 2.0, 3),         # 2.5: up, where Python's round gives 2 (halves to even)
        (7, 1.0, 2.0, 4),         # 3.5: up, where round also gives 4
        (7, 0.15, 0.1, 11),       # 10.5 from decimal spacings
        (1, 0.1, 0.3, 1),         # 0.33: at least one voxel
        (3, 1.0, 1000.0, 1),
        (np.int64(8), np.float32(0.5), 1.0, 4),  # numpy scalars (tensor shapes, meta spacings)
    ],
)  # fmt: skip
def test_sizes(size, spacing, target, expected) -> None:
    assert resampled_size(size, spacing, target) == expected


def test_halves_go_up_and_the_rest_is_the_nearest_integer() -> None:
    """Against exact rational arithmetic, over every size up to 64 and spacings of quarter steps."""
    quarters = [Fraction(k, 4) for k in range(1, 17)]
    for size in range(1, 65):
        for s in quarters:
            for t in quarters:
                exact = size * s / t
                want = max(1, math.floor(exact + Fraction(1, 2)))
                assert resampled_size(size, float(s), float(t)) == want, (size, s, t)


def test_the_new_spacing_is_the_nearest_to_the_target() -> None:
    for size, spacing, target in [(5, 1.0, 2.0), (10, 0.5, 0.7), (9, 0.3, 0.2), (33, 1.7, 0.45)]:
        m = resampled_size(size, spacing, target)
        errors = {k: abs(size * spacing / k - target) for k in (m - 1, m, m + 1) if k >= 1}
        assert min(errors, key=errors.get) == m, (size, spacing, target, errors)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0, 1.0, 1.0), "size must be an integer >= 1, got 0"),
        ((4.0, 1.0, 1.0), "size must be an integer >= 1, got 4.0"),
        ((True, 1.0, 1.0), "size must be an integer >= 1"),
        ((4, 0.0, 1.0), "spacing must be a finite number > 0, got 0.0"),
        ((4, 1.0, -1.0), "target_spacing must be a finite number > 0, got -1.0"),
        ((4, math.nan, 1.0), "spacing must be a finite number > 0, got nan"),
        ((4, 1.0, math.inf), "target_spacing must be a finite number > 0, got inf"),
        ((4, "1", 1.0), "spacing must be a finite number > 0, got '1'"),
    ],
)
def test_bad_arguments_are_named(args, message) -> None:
    with pytest.raises(ValueError, match=f"resampled_size: {message}"):
        resampled_size(*args)
