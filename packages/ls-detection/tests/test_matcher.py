"""Matcher: the same matches as torchvision's detection Matcher (the reference), on random IoU."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.detection import _utils as torchvision_reference

from ls_detection.matcher import Matcher


def quality(seed: int, m: int, n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q = torch.rand(m, n, generator=g)
    q = (q * 8).round() / 8  # coarse values: ties, and values exactly at the thresholds
    q[:, : n // 4] = 0.0  # candidates that overlap nothing
    return q


@pytest.mark.parametrize("low_quality", [False, True])
@pytest.mark.parametrize(("seed", "m", "n"), [(0, 1, 1), (1, 3, 40), (2, 7, 200), (3, 20, 5)])
@pytest.mark.parametrize(("high", "low"), [(0.7, 0.3), (0.5, 0.5), (0.625, 0.375)])
def test_same_matches_as_torchvision(
    low_quality: bool, seed: int, m: int, n: int, high: float, low: float
) -> None:
    q = quality(seed, m, n)
    ours = Matcher(high, low, allow_low_quality_matches=low_quality)(q.clone())
    ref = torchvision_reference.Matcher(high, low, allow_low_quality_matches=low_quality)(q.clone())
    assert ours.dtype == ref.dtype == torch.int64
    torch.testing.assert_close(ours, ref, rtol=0, atol=0)


def test_codes_and_low_quality_matches() -> None:
    q = torch.tensor([[0.9, 0.5, 0.1, 0.2], [0.0, 0.2, 0.25, 0.2]])
    assert Matcher(0.7, 0.3)(q.clone()).tolist() == [0, Matcher.BETWEEN_THRESHOLDS, -1, -1]
    # ground truth 1's best candidates are 2 (0.25) and none other: matched despite the low IoU
    assert Matcher(0.7, 0.3, allow_low_quality_matches=True)(q.clone()).tolist() == [0, -2, 1, -1]


@pytest.mark.parametrize(("shape", "what"), [((0, 5), "ground-truth"), ((3, 0), "proposal")])
def test_empty_matrix_says_what_is_missing(shape: tuple[int, int], what: str) -> None:
    with pytest.raises(ValueError, match=f"No {what} boxes available"):
        Matcher(0.7, 0.3)(torch.zeros(shape))


def test_thresholds_in_order() -> None:
    with pytest.raises(ValueError, match=r"low_threshold \(0.8\) must be <= high_threshold \(0.5\)"):
        Matcher(0.5, 0.8)
