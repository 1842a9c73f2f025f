"""Volume and pairwise IoU of 3-D boxes ``(z1, y1, x1, z2, y2, x2)``, vectorised torch ops."""

from __future__ import annotations

import torch
from torch import Tensor

from ls_ops._args import check_boxes, check_same


def box_volume3d(boxes: Tensor) -> Tensor:
    """Volume of ``(N, 6)`` boxes, shape ``(N,)``: ``(z2 - z1) * (y2 - y1) * (x2 - x1)``, no "+1"."""
    check_boxes("boxes", boxes)
    extent = boxes[:, 3:] - boxes[:, :3]
    return extent[:, 0] * extent[:, 1] * extent[:, 2]


def box_iou3d(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """IoU of every pair of ``(N, 6)`` and ``(M, 6)`` boxes, shape ``(N, M)``.

    Same definition as ``ls_ops.reference.box_iou3d`` (and torchvision's ``box_iou`` in 3-D):
    disjoint boxes give 0, two empty boxes 0 / 0 = NaN.
    """
    check_boxes("boxes1", boxes1)
    check_boxes("boxes2", boxes2)
    check_same("boxes1", boxes1, "boxes2", boxes2)
    lo = torch.maximum(boxes1[:, None, :3], boxes2[None, :, :3])
    hi = torch.minimum(boxes1[:, None, 3:], boxes2[None, :, 3:])
    overlap = (hi - lo).clamp(min=0)
    inter = overlap[..., 0] * overlap[..., 1] * overlap[..., 2]
    return inter / (box_volume3d(boxes1)[:, None] + box_volume3d(boxes2)[None, :] - inter)
