"""Instance label volumes: validation, compact relabelling, bounding boxes.

An instance label volume is a ``(Z, Y, X)`` integer array, 0 = background, every other
value one instance. Ids need not be consecutive.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

__all__ = ["as_label_volume", "boxes_from_labels", "compact_labels"]


def as_label_volume(labels: Any, what: str, *, ndim: int = 3) -> np.ndarray:
    """``labels`` as a non-negative integer numpy array with ``ndim`` axes.

    Accepts numpy arrays, CPU torch tensors and anything ``np.asarray`` understands.

    Args:
        labels: the label volume, ``(Z, Y, X)`` for the default ``ndim=3``.
        what: how error messages name the array (e.g. ``"gt_labels"``).
        ndim: the required number of axes.

    Raises:
        ValueError: wrong number of axes, a non-integer dtype, or negative labels.
    """
    arr = np.asarray(labels)
    if arr.ndim != ndim:
        raise ValueError(f"{what}: expected a label volume with {ndim} axes (Z, Y, X), got shape {arr.shape}")
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8)
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(
            f"{what}: label volume must have an integer dtype (0 = background), got {arr.dtype} "
            f"with shape {arr.shape}"
        )
    if np.issubdtype(arr.dtype, np.signedinteger) and arr.size and arr.min() < 0:
        raise ValueError(f"{what}: label volume of shape {arr.shape} holds negative labels (min {arr.min()})")
    return arr


def compact_labels(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Relabel to consecutive indices.

    Args:
        labels: non-negative integer array of any shape (see :func:`as_label_volume`).

    Returns:
        ``(ids, index)``: ``ids`` the sorted non-zero labels present, shape ``(N,)`` int64;
        ``index`` an array shaped like ``labels`` (flattened, ``(labels.size,)``) holding 0 for
        background and ``k + 1`` for the voxels of ``ids[k]``.

    Ids up to a few times the voxel count go through a lookup table built with ``bincount``;
    larger ids (e.g. 64-bit hashes) through ``np.unique``. Both give the same result.
    """
    flat = labels.reshape(-1)
    if flat.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    top = int(flat.max())
    if top <= 4 * flat.size + (1 << 16):
        present = np.bincount(flat.astype(np.intp, copy=False), minlength=top + 1) > 0
        present[0] = False
        ids = np.flatnonzero(present).astype(np.int64)
        lut = np.zeros(top + 1, dtype=np.int64)
        lut[ids] = np.arange(1, ids.size + 1)
        return ids, lut[flat]
    uniq, inverse = np.unique(flat, return_inverse=True)
    inverse = inverse.reshape(-1).astype(np.int64)
    if uniq[0] == 0:
        return uniq[1:].astype(np.int64), inverse
    return uniq.astype(np.int64), inverse + 1


def boxes_from_labels(labels: Any, what: str = "labels") -> tuple[np.ndarray, np.ndarray]:
    """Bounding boxes of the instances of a label volume.

    Args:
        labels: ``(Z, Y, X)`` integer label volume, 0 = background.
        what: how error messages name the volume.

    Returns:
        ``(ids, boxes)``: the sorted non-zero ids ``(N,)`` int64 and their boxes ``(N, 6)`` float64
        ``(z1, y1, x1, z2, y2, x2)``; a box around voxels ``a..b-1`` spans ``[a, b)`` (no "+1").
    """
    arr = as_label_volume(labels, what)
    ids, index = compact_labels(arr)
    if ids.size == 0:
        return ids, np.zeros((0, 6), dtype=np.float64)
    slices = ndimage.find_objects(index.reshape(arr.shape).astype(np.int32, copy=False), max_label=ids.size)
    boxes = np.array(
        [[s.start for s in sl] + [s.stop for s in sl] for sl in slices], dtype=np.float64
    ).reshape(-1, 6)
    return ids, boxes
