"""Box utilities for ``(z1, y1, x1, z2, y2, x2)`` boxes: clipping, small-box removal, validation."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def coordinate_dtype(*dtypes: torch.dtype) -> torch.dtype:
    """The dtype box coordinates are computed in: float32, or float64 when one of ``dtypes`` is.
    Never half / bfloat16 (autocast outputs): their 8-11 bit mantissas round voxel coordinates
    above 256 to steps of 2 or more."""
    out = torch.float32
    for dtype in dtypes:
        out = torch.promote_types(out, dtype)
    return out


def clip_boxes_to_volume(boxes: Tensor, size: Sequence[int]) -> Tensor:
    """Clip boxes to a volume ``[0, Z] x [0, Y] x [0, X]``.

    Args:
        boxes: ``(..., 6)`` boxes.
        size: ``(Z, Y, X)`` size of the volume.

    Returns:
        Clipped boxes of the same shape.
    """
    if boxes.shape[-1] != 6:
        raise ValueError(f"boxes must have shape (..., 6), got {tuple(boxes.shape)}")
    if len(size) != 3:
        raise ValueError(f"size must be (Z, Y, X), got {tuple(size)}")
    upper = torch.tensor([float(s) for s in size] * 2, dtype=boxes.dtype, device=boxes.device)
    return torch.minimum(boxes.clamp(min=0), upper)


def remove_small_boxes3d(boxes: Tensor, min_size: float) -> Tensor:
    """Indices (int64) of the ``(N, 6)`` boxes whose extent on every axis is at least ``min_size``."""
    if boxes.dim() != 2 or boxes.shape[-1] != 6:
        raise ValueError(f"boxes must have shape (N, 6), got {tuple(boxes.shape)}")
    extent = boxes[:, 3:] - boxes[:, :3]
    keep = (extent >= min_size).all(dim=1)
    return torch.where(keep)[0]


def check_boxes(boxes: object, *, name: str, volume_size: Sequence[int] | None = None) -> None:
    """Raise ``ValueError`` unless ``boxes`` are valid ``(N, 6)`` floating-point boxes.

    Valid means: a floating-point tensor of shape ``(N, 6)``, finite, with ``z2 > z1``,
    ``y2 > y1`` and ``x2 > x1`` for every box, and, when ``volume_size`` is given, inside
    ``[0, Z] x [0, Y] x [0, X]``.

    Args:
        boxes: the tensor to check.
        name: how the error message names the tensor, e.g. ``"targets[0]['boxes']"``.
        volume_size: ``(Z, Y, X)`` of the volume the boxes must lie in, or ``None``.
    """
    if not isinstance(boxes, Tensor):
        raise ValueError(f"{name} must be a Tensor of shape (N, 6), got {type(boxes).__name__}")
    if boxes.dim() != 2 or boxes.shape[1] != 6:
        raise ValueError(f"{name} must have shape (N, 6) (z1, y1, x1, z2, y2, x2), got {tuple(boxes.shape)}")
    if not boxes.is_floating_point():
        raise ValueError(f"{name} must be floating point, got {boxes.dtype} with shape {tuple(boxes.shape)}")
    if boxes.shape[0] == 0:
        return
    finite = torch.isfinite(boxes).all(dim=1)
    if not bool(finite.all()):
        row = int((~finite).nonzero()[0, 0])
        raise ValueError(f"{name} (shape {tuple(boxes.shape)}) has a non-finite box at row {row}: "
                         f"{boxes[row].tolist()}")
    degenerate = (boxes[:, 3:] <= boxes[:, :3]).any(dim=1)
    if bool(degenerate.any()):
        row = int(degenerate.nonzero()[0, 0])
        raise ValueError(f"{name} (shape {tuple(boxes.shape)}) has a degenerate box at row {row}: "
                         f"{boxes[row].tolist()} (needs z2 > z1, y2 > y1, x2 > x1)")
    if volume_size is not None:
        if len(volume_size) != 3:
            raise ValueError(f"volume_size must be (Z, Y, X), got {tuple(volume_size)}")
        upper = torch.tensor([float(s) for s in volume_size], dtype=boxes.dtype, device=boxes.device)
        outside = (boxes[:, :3] < 0).any(dim=1) | (boxes[:, 3:] > upper).any(dim=1)
        if bool(outside.any()):
            row = int(outside.nonzero()[0, 0])
            raise ValueError(f"{name} (shape {tuple(boxes.shape)}) has a box outside the volume "
                             f"{tuple(int(s) for s in volume_size)} at row {row}: {boxes[row].tolist()}")
