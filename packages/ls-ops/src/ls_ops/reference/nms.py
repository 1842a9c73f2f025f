"""Reference greedy 3-D non-maximum suppression."""

from __future__ import annotations

import torch
from torch import Tensor

from ls_ops._args import check_nms_args, check_same
from ls_ops.reference.boxes import box_iou3d


def nms3d(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Indices (int64) of the boxes kept by greedy NMS, by decreasing score.

    Boxes are visited by decreasing score (a stable sort: equal scores keep their input
    order). A visited box that no kept box suppressed is kept, and it suppresses every later
    box whose IoU with it is ``> iou_threshold``. The IoU is computed in the boxes' dtype and
    compared with the threshold in float64, as torchvision's CPU kernel does. A box with a NaN
    coordinate has a NaN IoU with every box, so it never suppresses and is never suppressed.

    Args:
        boxes: ``(N, 6)`` boxes ``(z1, y1, x1, z2, y2, x2)``.
        scores: ``(N,)`` scores, no NaN.
        iou_threshold: boxes overlapping a kept box by more than this are discarded.
    """
    check_nms_args(boxes, scores, iou_threshold)
    order = torch.sort(scores, descending=True, stable=True).indices
    iou = box_iou3d(boxes, boxes).double()
    suppressed = torch.zeros(boxes.shape[0], dtype=torch.bool, device=boxes.device)
    keep = []
    for i in order.tolist():
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= iou[i] > iou_threshold
    return torch.tensor(keep, dtype=torch.int64, device=boxes.device)


def batched_nms3d(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    """NMS run independently per category ``idxs`` (``(N,)`` integers); kept indices by decreasing score."""
    check_nms_args(boxes, scores, iou_threshold)
    check_idxs(idxs, boxes)
    keep = [torch.nonzero(idxs == c).flatten()[nms3d(boxes[idxs == c], scores[idxs == c], iou_threshold)]
            for c in torch.unique(idxs).tolist()]
    if not keep:
        return torch.zeros(0, dtype=torch.int64, device=boxes.device)
    kept = torch.cat(keep).sort().values  # equal scores keep their input order, as in nms3d
    return kept[torch.sort(scores[kept], descending=True, stable=True).indices]


def check_idxs(idxs: object, boxes: Tensor) -> None:
    """``idxs`` is an ``(N,)`` integer tensor beside ``(N, 6)`` boxes on their device."""
    if not isinstance(idxs, Tensor):
        raise TypeError(f"idxs must be a torch.Tensor, got {type(idxs).__name__}")
    if idxs.dtype.is_floating_point or idxs.dtype.is_complex or idxs.dtype == torch.bool:
        raise TypeError(f"idxs must be an integer tensor, got dtype {idxs.dtype}")
    if idxs.dim() != 1 or idxs.shape[0] != boxes.shape[0]:
        raise ValueError(f"idxs must have shape ({boxes.shape[0]},) to match boxes, got {tuple(idxs.shape)}")
    check_same("boxes", boxes, "idxs", idxs, dtype=False)
