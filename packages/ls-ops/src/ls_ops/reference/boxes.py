"""Reference box volume and pairwise IoU of 3-D boxes ``(z1, y1, x1, z2, y2, x2)``."""

from __future__ import annotations

from torch import Tensor

from ls_ops._args import check_boxes, check_same


def box_volume3d(boxes: Tensor) -> Tensor:
    """Volume ``(z2 - z1) * (y2 - y1) * (x2 - x1)`` of ``(N, 6)`` boxes, shape ``(N,)``.

    No "+1": a box around voxels ``a..b-1`` spans ``[a, b)``. Inverted boxes give a negative
    or zero volume, as in torchvision's ``box_area``.
    """
    check_boxes("boxes", boxes)
    depth = boxes[:, 3] - boxes[:, 0]
    height = boxes[:, 4] - boxes[:, 1]
    width = boxes[:, 5] - boxes[:, 2]
    return depth * height * width


def box_iou3d(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Intersection over union of every pair, shape ``(N, M)`` for ``(N, 6)`` and ``(M, 6)`` boxes.

    ``inter = (d * h) * w`` with the per-axis overlaps ``max(0, min(hi) - max(lo))``, and
    ``iou = inter / (vol1 + vol2 - inter)``; disjoint boxes give 0, two empty boxes give NaN
    (0 / 0), as in torchvision's ``box_iou``.
    """
    check_boxes("boxes1", boxes1)
    check_boxes("boxes2", boxes2)
    check_same("boxes1", boxes1, "boxes2", boxes2)
    a = boxes1[:, None, :]
    b = boxes2[None, :, :]
    overlap = [(a[..., 3 + axis].minimum(b[..., 3 + axis]) - a[..., axis].maximum(b[..., axis])).clamp(min=0)
               for axis in range(3)]
    inter = overlap[0] * overlap[1] * overlap[2]
    union = box_volume3d(boxes1)[:, None] + box_volume3d(boxes2)[None, :] - inter
    return inter / union
