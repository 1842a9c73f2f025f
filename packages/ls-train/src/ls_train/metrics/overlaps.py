"""Pairwise IoU of 3-D boxes and of (possibly overlapping) binary instance masks."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import sparse

__all__ = ["box_iou_3d", "mask_iou"]


def _as_boxes(boxes: Any, what: str) -> np.ndarray:
    arr = np.array(boxes, dtype=np.float64)  # a fresh C-contiguous copy: torch.from_numpy shares it
    if arr.ndim != 2 or arr.shape[1] != 6:
        raise ValueError(
            f"{what}: expected boxes of shape (N, 6) = (z1, y1, x1, z2, y2, x2), got {arr.shape}"
        )
    if arr.size and (arr[:, 3:] < arr[:, :3]).any():
        bad = int(np.flatnonzero((arr[:, 3:] < arr[:, :3]).any(axis=1))[0])
        raise ValueError(f"{what}: box {bad} = {arr[bad].tolist()} has a max corner below its min corner")
    return arr


def box_iou_3d(boxes_a: Any, boxes_b: Any) -> np.ndarray:
    """IoU of every pair of 3-D boxes ``(z1, y1, x1, z2, y2, x2)`` (continuous coords, no "+1").

    :func:`ls_ops.box_iou3d` in float64 on checked boxes (``(N, 6)``, no max corner below its min
    corner), with 0 instead of its NaN where two empty boxes make the union empty.

    Args:
        boxes_a: ``(N, 6)`` boxes (array-like).
        boxes_b: ``(M, 6)`` boxes.

    Returns:
        ``(N, M)`` float64 IoU; 0 where the union is empty.
    """
    import torch

    from ls_ops import box_iou3d  # the compiled ops library loads only when boxes are scored

    a = _as_boxes(boxes_a, "boxes_a")
    b = _as_boxes(boxes_b, "boxes_b")
    iou = box_iou3d(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    return np.nan_to_num(iou, nan=0.0, copy=False)


def _as_masks(masks: Any, what: str) -> sparse.csr_matrix:
    arr = np.asarray(masks)
    if arr.ndim != 4:
        raise ValueError(f"{what}: expected binary masks of shape (N, Z, Y, X), got {arr.shape}")
    flat = (
        arr.reshape(arr.shape[0], -1) > 0.5 if arr.dtype.kind == "f" else arr.reshape(arr.shape[0], -1) != 0
    )
    return sparse.csr_matrix(flat, dtype=np.int64)


def mask_iou(masks_a: Any, masks_b: Any) -> np.ndarray:
    """IoU of every pair of binary masks, which may overlap each other.

    Intersections come from one sparse product of the flattened masks, never per pair.

    Args:
        masks_a: ``(N, Z, Y, X)`` bool / integer masks (non-zero = inside) or float
            probabilities (``> 0.5`` = inside).
        masks_b: ``(M, Z, Y, X)`` masks of the same spatial shape.

    Returns:
        ``(N, M)`` float64 IoU.
    """
    sa, sb = np.shape(masks_a), np.shape(masks_b)
    if len(sa) == 4 and len(sb) == 4 and sa[1:] != sb[1:]:
        raise ValueError(f"masks_a has spatial shape {sa[1:]} but masks_b has {sb[1:]}")
    a = _as_masks(masks_a, "masks_a")
    b = _as_masks(masks_b, "masks_b")
    inter = (a @ b.T).toarray().astype(np.float64)
    area_a = np.asarray(a.sum(axis=1), dtype=np.float64).reshape(-1)
    area_b = np.asarray(b.sum(axis=1), dtype=np.float64).reshape(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
