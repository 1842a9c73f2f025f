"""Per-instance voxel counts and bounding boxes of an instance label volume.

The statistics of a whole volume come from one streaming pass over z-slabs (at most
``slab_size`` planes in memory at a time); each slab is reduced with vectorised numpy (one sort
of its foreground voxels), and the per-slab results are merged. The same reduction gives the
visible part of each instance inside one crop window.

Boxes follow the package convention ``(z1, y1, x1, z2, y2, x2)``: voxels ``a..b-1`` on an axis
span ``[a, b)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ls_data.errors import DataError

__all__ = ["InstanceStats", "label_stats", "merge_stats", "stream_instance_stats"]


@dataclass(frozen=True)
class InstanceStats:
    """Voxel counts and boxes of the instances of a label array, sorted by label id.

    Attributes:
        ids: ``(N,)`` int64 label ids (> 0), strictly increasing.
        boxes: ``(N, 6)`` int64 boxes ``(z1, y1, x1, z2, y2, x2)``, end exclusive.
        voxels: ``(N,)`` int64 voxel counts.
    """

    ids: np.ndarray
    boxes: np.ndarray
    voxels: np.ndarray

    @staticmethod
    def empty() -> InstanceStats:
        """Statistics of an array without foreground."""
        return InstanceStats(
            ids=np.zeros(0, np.int64), boxes=np.zeros((0, 6), np.int64), voxels=np.zeros(0, np.int64)
        )

    def __len__(self) -> int:
        return int(self.ids.size)


def label_stats(labels: np.ndarray, origin: tuple[int, int, int] = (0, 0, 0)) -> InstanceStats:
    """Voxel count and box of every non-zero label in a ``(Z, Y, X)`` integer array.

    Args:
        labels: ``(Z, Y, X)`` integer array, 0 = background. Negative ids are rejected.
        origin: ``(z, y, x)`` added to the boxes (the array's position in a larger volume).

    Returns:
        The statistics, boxes in the coordinates of the larger volume.

    Raises:
        DataError: ``labels`` is not a 3-D integer array or holds negative ids.
    """
    if labels.ndim != 3 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(
            f"label array must be (Z, Y, X) integer, got shape {labels.shape} dtype {labels.dtype}"
        )
    flat = np.ascontiguousarray(labels).reshape(-1)
    fg = np.flatnonzero(flat)
    if fg.size == 0:
        return InstanceStats.empty()
    values = flat[fg]
    if np.issubdtype(values.dtype, np.signedinteger) and values.min() < 0:
        raise DataError(f"label array holds negative ids (min {int(values.min())}); ids must be >= 0")
    # A stable sort keeps the C-order of voxels inside each label group, so z is non-decreasing
    # within a group and its first / last element give z1 / z2 - 1.
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    positions = fg[order]
    starts = np.flatnonzero(np.concatenate(([True], sorted_values[1:] != sorted_values[:-1])))
    ends = np.concatenate((starts[1:], [sorted_values.size]))
    _, ny, nx = labels.shape
    z, rest = np.divmod(positions, ny * nx)
    y, x = np.divmod(rest, nx)
    boxes = np.stack(
        [
            z[starts],
            np.minimum.reduceat(y, starts),
            np.minimum.reduceat(x, starts),
            z[ends - 1] + 1,
            np.maximum.reduceat(y, starts) + 1,
            np.maximum.reduceat(x, starts) + 1,
        ],
        axis=1,
    ).astype(np.int64)
    boxes += np.asarray(origin + origin, dtype=np.int64)
    return InstanceStats(
        ids=sorted_values[starts].astype(np.int64), boxes=boxes, voxels=(ends - starts).astype(np.int64)
    )


def merge_stats(parts: list[InstanceStats]) -> InstanceStats:
    """Combine statistics of disjoint parts of one volume (union of boxes, sum of counts)."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return InstanceStats.empty()
    if len(parts) == 1:
        return parts[0]
    ids = np.concatenate([p.ids for p in parts])
    boxes = np.concatenate([p.boxes for p in parts])
    voxels = np.concatenate([p.voxels for p in parts])
    order = np.argsort(ids, kind="stable")
    ids, boxes, voxels = ids[order], boxes[order], voxels[order]
    starts = np.flatnonzero(np.concatenate(([True], ids[1:] != ids[:-1])))
    merged = np.concatenate(
        [
            np.minimum.reduceat(boxes[:, :3], starts, axis=0),
            np.maximum.reduceat(boxes[:, 3:], starts, axis=0),
        ],
        axis=1,
    )
    return InstanceStats(ids=ids[starts], boxes=merged, voxels=np.add.reduceat(voxels, starts))


def stream_instance_stats(
    read_window: Callable[[tuple[slice, slice, slice]], np.ndarray],
    shape: tuple[int, int, int],
    *,
    slab_size: int = 16,
) -> InstanceStats:
    """Statistics of a whole label volume from one pass over z-slabs.

    Memory is bounded by one slab (``slab_size`` planes) plus the per-instance results; the
    volume itself is never loaded whole. The reduction of a slab needs about 40 bytes per
    foreground voxel on top of the slab itself (e.g. ~1.3 GB at most for 16 planes of
    2048 x 2048); lower ``slab_size`` for wider planes.

    Args:
        read_window: Returns the ``(z, y, x)`` label array of a window ``(zs, ys, xs)``, for
            example ``LabelReader.read``.
        shape: ``(Z, Y, X)`` of the label volume.
        slab_size: Number of z-planes read at a time (>= 1).

    Returns:
        The statistics of every instance in the volume.
    """
    if slab_size < 1:
        raise DataError(f"slab_size must be >= 1, got {slab_size}")
    nz, ny, nx = shape
    running = InstanceStats.empty()
    for z0 in range(0, nz, slab_size):
        z1 = min(z0 + slab_size, nz)
        slab = np.asarray(read_window((slice(z0, z1), slice(0, ny), slice(0, nx))))
        if slab.shape != (z1 - z0, ny, nx):
            raise DataError(
                f"label reader returned shape {slab.shape} for z-slab {z0}:{z1}, expected {(z1 - z0, ny, nx)}"
            )
        running = merge_stats([running, label_stats(slab, (z0, 0, 0))])
    return running
