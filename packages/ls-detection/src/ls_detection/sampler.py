"""Sample a fixed number of training candidates per image with a fixed share of positives.

torchvision's detection ``BalancedPositiveNegativeSampler`` (a private module there), which is
independent of the number of axes: it reads only per-candidate labels. The same random draws
(one ``torch.randperm`` for the positives, one for the negatives, per image) pick the same
candidates under the same seed.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["BalancedPositiveNegativeSampler"]


class BalancedPositiveNegativeSampler:
    """Up to ``batch_size_per_image`` candidates per image, ``positive_fraction`` of them positive.

    Args:
        batch_size_per_image: Candidates sampled per image (fewer when there are fewer).
        positive_fraction: Largest share of positives; negatives fill the rest.
    """

    def __init__(self, batch_size_per_image: int, positive_fraction: float) -> None:
        self.batch_size_per_image = batch_size_per_image
        self.positive_fraction = positive_fraction

    def __call__(self, matched_idxs: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """Positive and negative uint8 masks per image.

        Args:
            matched_idxs: Per image, a label per candidate: ``>= 1`` positive, ``0`` negative,
                ``-1`` ignored.

        Returns:
            ``(positive masks, negative masks)``, each a list over images of the labels' shape.
        """
        pos_masks, neg_masks = [], []
        for labels in matched_idxs:
            positive = torch.where(labels >= 1)[0]
            negative = torch.where(labels == 0)[0]
            num_pos = min(positive.numel(), int(self.batch_size_per_image * self.positive_fraction))
            num_neg = min(negative.numel(), self.batch_size_per_image - num_pos)
            pos_masks.append(_mask(labels, _draw(positive, num_pos)))  # positives first: torchvision's order
            neg_masks.append(_mask(labels, _draw(negative, num_neg)))
        return pos_masks, neg_masks


def _draw(indices: Tensor, count: int) -> Tensor:
    """``count`` of ``indices`` at random (one ``torch.randperm``)."""
    return indices[torch.randperm(indices.numel(), device=indices.device)[:count]]


def _mask(labels: Tensor, chosen: Tensor) -> Tensor:
    mask = torch.zeros_like(labels, dtype=torch.uint8)
    mask[chosen] = 1
    return mask
