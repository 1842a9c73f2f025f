"""3-D non-maximum suppression: ``nms3d`` (compiled kernels) and ``batched_nms3d``."""

from __future__ import annotations

import torch
from torch import Tensor

from ls_ops._args import check_finite, check_nms_args, eager
from ls_ops.reference.nms import check_idxs


@torch.library.register_fake("ls_ops::nms3d")
def _nms3d_fake(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    kept = torch.library.get_ctx().new_dynamic_size()
    return boxes.new_empty((kept,), dtype=torch.int64)


def nms3d(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy NMS of 3-D boxes; indices (int64) of the kept boxes by decreasing score.

    Boxes are visited by decreasing score, ties in input order (stable). A visited box that
    no kept box suppressed is kept and suppresses every later box with IoU ``> iou_threshold``
    (IoU in the boxes' dtype, compared in float64 as torchvision's CPU kernel).

    NaN scores raise ``ValueError``. A box with a NaN coordinate has a NaN IoU with every box:
    it never suppresses another box and is never suppressed, so it is kept.

    Args:
        boxes: ``(N, 6)`` boxes ``(z1, y1, x1, z2, y2, x2)``, floating point.
        scores: ``(N,)`` scores, same dtype and device.
        iou_threshold: overlap above which a lower-scored box is discarded.
    """
    check_nms_args(boxes, scores, iou_threshold)
    return torch.ops.ls_ops.nms3d(boxes, scores, float(iou_threshold))


def batched_nms3d(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    """NMS run independently per category; kept indices by decreasing score (boxes must be finite).

    As torchvision's coordinate trick: each category's boxes are shifted by
    ``idx * (max - min + 1)`` along every axis so that boxes of different categories never
    overlap, and one ``nms3d`` runs on all of them. (The span ``max - min + 1``, rather than
    torchvision's ``max + 1``, also separates categories when coordinates are negative.)

    Args:
        boxes: ``(N, 6)`` boxes; scores: ``(N,)``; idxs: ``(N,)`` integer category of each box.
    """
    check_nms_args(boxes, scores, iou_threshold)
    check_idxs(idxs, boxes)
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.int64, device=boxes.device)
    if eager():
        check_finite("boxes", boxes)
    span = boxes.max() - boxes.min() + 1
    shifted = boxes + (idxs.to(boxes) * span)[:, None]
    return nms3d(shifted, scores, iou_threshold)
