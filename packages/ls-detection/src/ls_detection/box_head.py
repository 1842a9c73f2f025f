"""Box head of the RoI heads: two fully connected layers, then class scores and 6 deltas per class."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["FastRCNNPredictor3D", "TwoMLPHead3D"]


class TwoMLPHead3D(nn.Module):
    """Flattens pooled RoI features and applies two ReLU-activated linear layers (torchvision's TwoMLPHead).

    Args:
        in_channels: size of a flattened pooled feature, ``C * od * oh * ow``.
        representation_size: width of both linear layers.
    """

    def __init__(self, *, in_channels: int, representation_size: int) -> None:
        super().__init__()
        if in_channels < 1 or representation_size < 1:
            raise ValueError(f"TwoMLPHead3D: in_channels ({in_channels}) and representation_size "
                             f"({representation_size}) must be >= 1")
        self.fc6 = nn.Linear(in_channels, representation_size)
        self.fc7 = nn.Linear(representation_size, representation_size)

    def forward(self, x: Tensor) -> Tensor:
        """``(K, C, od, oh, ow)`` (or ``(K, in_channels)``) -> ``(K, representation_size)``."""
        x = x.flatten(start_dim=1)
        if x.shape[1] != self.fc6.in_features:
            raise ValueError(f"TwoMLPHead3D: input flattens to {x.shape[1]} features per RoI, but "
                             f"in_channels={self.fc6.in_features} (C * od * oh * ow of the box pooler)")
        return F.relu(self.fc7(F.relu(self.fc6(x))))


class FastRCNNPredictor3D(nn.Module):
    """Class logits and per-class box deltas ``(dz, dy, dx, dd, dh, dw)`` from RoI representations.

    Args:
        in_channels: size of the representation from the box head.
        num_classes: number of classes including the background (class 0).
    """

    def __init__(self, *, in_channels: int, num_classes: int) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"FastRCNNPredictor3D: num_classes counts the background and must be >= 2, "
                             f"got {num_classes}")
        self.cls_score = nn.Linear(in_channels, num_classes)
        self.bbox_pred = nn.Linear(in_channels, num_classes * 6)

    @property
    def num_classes(self) -> int:
        """Number of classes including the background."""
        return self.cls_score.out_features

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(K, in_channels)`` -> class logits ``(K, num_classes)``, deltas ``(K, 6 * num_classes)``."""
        x = x.flatten(start_dim=1)
        return self.cls_score(x), self.bbox_pred(x)
