"""EpochShuffleSampler: each epoch's order is a function of (seed, epoch) alone."""

from __future__ import annotations

import pytest
import torch

from ls_data.sampler import EpochShuffleSampler


def test_an_epoch_gives_the_same_order_in_a_new_sampler() -> None:
    first = EpochShuffleSampler(20, seed=3)
    orders = []
    for epoch in range(4):
        first.set_epoch(epoch)
        orders.append(list(first))
    # a resumed run: a new sampler object, asked for epoch 2 directly
    resumed = EpochShuffleSampler(20, seed=3)
    resumed.set_epoch(2)
    assert list(resumed) == orders[2] and list(resumed) == orders[2]  # set_epoch holds until the next
    assert all(sorted(o) == list(range(20)) for o in orders)
    assert len({tuple(o) for o in orders}) == 4  # a new shuffle every epoch
    assert orders[0] != list(range(20))


def test_without_set_epoch_every_iteration_is_a_new_epoch() -> None:
    sampler = EpochShuffleSampler(12, seed=0)
    a, b = list(sampler), list(sampler)
    assert a != b and sorted(a) == sorted(b) == list(range(12))
    again = EpochShuffleSampler(12, seed=0)
    again.set_epoch(1)
    assert list(again) == b


def test_no_seed_draws_one_from_the_global_rng() -> None:
    torch.manual_seed(5)
    a = list(EpochShuffleSampler(30))
    torch.manual_seed(5)
    b = list(EpochShuffleSampler(30))
    c = list(EpochShuffleSampler(30))
    assert a == b and a != c and len(EpochShuffleSampler(30)) == 30


def test_a_negative_size_is_refused() -> None:
    with pytest.raises(ValueError, match="size must be >= 0"):
        EpochShuffleSampler(-1)
