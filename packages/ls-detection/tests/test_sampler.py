"""BalancedPositiveNegativeSampler: the same samples as torchvision's (the reference) under one seed."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.detection import _utils as torchvision_reference

from ls_detection.sampler import BalancedPositiveNegativeSampler


def labels(seed: int, sizes: list[int]) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(-1, 3, (n,), generator=g) for n in sizes]


@pytest.mark.parametrize(("seed", "sizes"), [(0, [50]), (1, [7, 300, 0]), (2, [2000, 3])])
@pytest.mark.parametrize(("batch", "fraction"), [(256, 0.5), (16, 0.25), (4, 1.0)])
def test_same_samples_as_torchvision(seed: int, sizes: list[int], batch: int, fraction: float) -> None:
    per_image = labels(seed, sizes)
    torch.manual_seed(seed)
    ours = BalancedPositiveNegativeSampler(batch, fraction)(per_image)
    torch.manual_seed(seed)
    ref = torchvision_reference.BalancedPositiveNegativeSampler(batch, fraction)(per_image)
    for mine, theirs in zip([*ours[0], *ours[1]], [*ref[0], *ref[1]], strict=True):
        assert mine.dtype == theirs.dtype == torch.uint8
        torch.testing.assert_close(mine, theirs, rtol=0, atol=0)


def test_counts_and_classes() -> None:
    image = torch.tensor([1, 1, 1, 0, 0, 0, 0, 0, -1, 2])
    pos, neg = BalancedPositiveNegativeSampler(6, 0.5)([image])
    assert int(pos[0].sum()) == 3 and int(neg[0].sum()) == 3
    assert bool((image[pos[0].bool()] >= 1).all()) and bool((image[neg[0].bool()] == 0).all())
    pos, neg = BalancedPositiveNegativeSampler(6, 0.5)([torch.tensor([0, 0, 0, 0, 0, 0, 0, 2])])
    assert int(pos[0].sum()) == 1 and int(neg[0].sum()) == 5  # negatives fill the missing positives
