"""A shuffling sampler whose order is a function of ``(seed, epoch)``, for one process.

:class:`torch.utils.data.RandomSampler` draws each epoch's permutation from a generator that
advances epoch after epoch, so the order of epoch ``k`` depends on how many epochs the same
sampler object saw before: a training run stopped and started again in another process (resumed
from a checkpoint) trains epoch ``k`` in another order than an unstopped run. The permutation
here is drawn from ``seed + epoch`` alone, as :class:`~torch.utils.data.DistributedSampler`
does across processes, so a resumed run sees the same batches as an unstopped one.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

__all__ = ["EpochShuffleSampler"]


class EpochShuffleSampler(Sampler[int]):
    """Indices ``0 .. size-1`` in the permutation of epoch ``epoch`` (seeded by ``seed + epoch``).

    A trainer calls :meth:`set_epoch` before every epoch (as with ``DistributedSampler``); a
    caller that never does gets the next epoch's permutation on every new iteration, as with
    ``RandomSampler``.

    Args:
        size: number of samples.
        seed: the base seed; ``None`` draws one from torch's global RNG (so a run seeded with
            ``torch.manual_seed`` is still reproducible).
    """

    def __init__(self, size: int, seed: int | None = None) -> None:
        if size < 0:
            raise ValueError(f"EpochShuffleSampler: size must be >= 0, got {size}")
        self.size = int(size)
        self.seed = int(torch.randint(0, 2**62, ()).item()) if seed is None else int(seed)
        self.epoch = 0
        self._epoch_set = False

    def set_epoch(self, epoch: int) -> None:
        """Fix the epoch whose permutation the following iterations give."""
        self.epoch = int(epoch)
        self._epoch_set = True

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.size, generator=generator).tolist()
        if not self._epoch_set:
            self.epoch += 1
        return iter(order)
