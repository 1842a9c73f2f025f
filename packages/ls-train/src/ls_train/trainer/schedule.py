"""Learning-rate schedule: linear warm-up, then cosine decay, stepped once per optimizer step."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

__all__ = ["WarmupCosine", "build_scheduler"]


class WarmupCosine:
    """Multiplier of the base learning rate at optimizer step ``step`` (0-based).

    Steps ``0 .. warmup_iters - 1`` rise linearly to 1 (step ``k`` gets ``(k + 1) / warmup_iters``);
    the remaining steps follow half a cosine from 1 down to ``min_lr_ratio`` at ``total_iters``,
    and stay there afterwards.

    Args:
        warmup_iters: Steps of linear warm-up (0: none).
        total_iters: Steps of the whole run (warm-up included).
        min_lr_ratio: Final multiplier, in [0, 1].
    """

    def __init__(self, *, warmup_iters: int, total_iters: int, min_lr_ratio: float) -> None:
        if warmup_iters < 0 or total_iters < 1:
            raise ValueError(
                f"need warmup_iters >= 0 and total_iters >= 1, got {warmup_iters}, {total_iters}"
            )
        if not 0.0 <= min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {min_lr_ratio}")
        self.warmup_iters = int(warmup_iters)
        self.total_iters = int(total_iters)
        self.min_lr_ratio = float(min_lr_ratio)

    def __call__(self, step: int) -> float:
        if step < self.warmup_iters:
            return (step + 1) / self.warmup_iters
        span = max(1, self.total_iters - self.warmup_iters)
        progress = min(1.0, (step - self.warmup_iters) / span)
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(
    optimizer: Optimizer, *, warmup_iters: int, total_iters: int, min_lr_ratio: float
) -> LambdaLR:
    """A :class:`~torch.optim.lr_scheduler.LambdaLR` with :class:`WarmupCosine`; call ``step()``
    after every optimizer step. Its ``state_dict`` holds the step count, so it resumes exactly."""
    return LambdaLR(
        optimizer, WarmupCosine(warmup_iters=warmup_iters, total_iters=total_iters, min_lr_ratio=min_lr_ratio)
    )
