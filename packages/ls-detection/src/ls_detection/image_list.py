"""A batch of padded 3-D images together with the size of each image before padding."""

from __future__ import annotations

import torch
from torch import Tensor


class ImageList3D:
    """Padded images of one batch and their sizes before padding.

    Args:
        tensors: ``(B, C, Z, Y, X)`` batch, each image zero-padded at the high end of every axis.
        image_sizes: per image, its ``(Z, Y, X)`` size before padding.
    """

    def __init__(self, tensors: Tensor, image_sizes: list[tuple[int, int, int]]) -> None:
        if not isinstance(tensors, Tensor) or tensors.dim() != 5:
            shape = tuple(tensors.shape) if isinstance(tensors, Tensor) else type(tensors).__name__
            raise ValueError(f"ImageList3D tensors must be (B, C, Z, Y, X), got {shape}")
        if len(image_sizes) != tensors.shape[0]:
            raise ValueError(f"ImageList3D got {len(image_sizes)} image sizes for a batch of "
                             f"{tensors.shape[0]} images")
        sizes = [tuple(int(s) for s in size) for size in image_sizes]
        for i, size in enumerate(sizes):
            if len(size) != 3 or any(s > p for s, p in zip(size, tensors.shape[2:], strict=True)):
                raise ValueError(f"ImageList3D image_sizes[{i}] = {size} must be a (Z, Y, X) size within the "
                                 f"padded batch {tuple(tensors.shape)}")
        self.tensors = tensors
        self.image_sizes: list[tuple[int, int, int]] = sizes  # type: ignore[assignment]

    def to(self, device: torch.device | str) -> ImageList3D:
        """Return a copy with ``tensors`` on ``device``."""
        return ImageList3D(self.tensors.to(device), self.image_sizes)

    def __repr__(self) -> str:
        return f"ImageList3D(tensors={tuple(self.tensors.shape)}, image_sizes={self.image_sizes})"
