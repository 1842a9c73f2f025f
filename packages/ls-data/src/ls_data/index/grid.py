"""Crop grid: the origins of all crops of a volume for a crop shape and a stride.

Along each axis the crops start at ``0, stride, 2 * stride, ...`` while they fit; when the last
one does not end flush with the volume, one more crop is added that does (its start is
``size - crop``), so every voxel is covered and no crop sticks out of the volume.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ls_core import parse_triple
from ls_data.errors import DataError

__all__ = ["Triple", "as_triple", "axis_starts", "crop_origins"]

Triple = tuple[int, int, int]


def as_triple(value: int | Sequence[int], name: str) -> Triple:
    """A per-axis ``(z, y, x)`` tuple of positive ints from an int or a 3-sequence.

    Raises:
        DataError: ``value`` is not an int or three ints, or a value is < 1 (``name`` in the message).
    """
    return parse_triple(value, name, minimum=1, error=DataError)


def axis_starts(size: int, crop: int, stride: int) -> np.ndarray:
    """Start positions of the crops along one axis (``crop <= size``), the last flush with the end."""
    starts = np.arange(0, size - crop + 1, stride, dtype=np.int64)
    if starts[-1] + crop < size:
        starts = np.append(starts, size - crop)
    return starts


def crop_origins(
    volume_shape: Sequence[int], crop_shape: Triple, stride: Triple, *, volume_name: str = "volume"
) -> np.ndarray:
    """Origins ``(z, y, x)`` of every crop of a volume, in C order (x fastest).

    Args:
        volume_shape: ``(Z, Y, X)`` of the volume.
        crop_shape: ``(z, y, x)`` crop size.
        stride: ``(z, y, x)`` step between crop starts (smaller than the crop = overlap).
        volume_name: Used in the error message.

    Returns:
        ``(K, 3)`` int64 origins.

    Raises:
        DataError: The crop is larger than the volume on some axis (names the volume and both
            shapes).
    """
    shape = tuple(int(s) for s in volume_shape)
    if len(shape) != 3:
        raise DataError(f"volume {volume_name!r}: expected a (Z, Y, X) shape, got {shape}")
    if any(c > s for c, s in zip(crop_shape, shape, strict=True)):
        raise DataError(
            f"volume {volume_name!r}: crop shape {tuple(crop_shape)} is larger than the volume shape "
            f"{shape} (z, y, x)"
        )
    axes = [axis_starts(s, c, st) for s, c, st in zip(shape, crop_shape, stride, strict=True)]
    grid = np.meshgrid(*axes, indexing="ij")
    return np.stack([g.reshape(-1) for g in grid], axis=1)
