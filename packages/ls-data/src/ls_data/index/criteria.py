"""Which instances of a crop are indexed, and which crops are kept.

An instance is listed in a crop when all of these hold:

- its whole-volume voxel count is at least ``min_instance_volume``;
- at least ``min_visible_voxels`` of its voxels lie inside the crop;
- the visible fraction (voxels inside the crop / voxels of the whole instance) is at least
  ``min_visible_fraction``.

A crop is kept when it lists at least ``min_instances_per_crop`` instances (0 keeps empty
crops too). The box of a listed instance is the box of its voxels inside the crop, in crop
coordinates (the whole-instance box clipped to the crop, tightened to the visible voxels).
Instances that fail the criteria are not listed; their voxels stay in the image and the label
window, but they get no mask and no box.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ls_data.errors import DataError
from ls_data.index.stats import InstanceStats, label_stats

__all__ = ["CropCriteria", "CropInstances", "candidate_count", "select_instances"]


@dataclass(frozen=True)
class CropCriteria:
    """Selection criteria (keyword arguments map to config keys).

    Args:
        min_instance_volume: Minimum voxels of the whole instance (>= 1).
        min_visible_fraction: Minimum fraction of the instance's voxels inside the crop, in [0, 1].
        min_visible_voxels: Minimum voxels of the instance inside the crop (>= 1).
        min_instances_per_crop: Minimum listed instances for a crop to be kept (>= 0).
    """

    min_instance_volume: int = 1
    min_visible_fraction: float = 0.0
    min_visible_voxels: int = 1
    min_instances_per_crop: int = 1

    def __post_init__(self) -> None:
        for key, low in (
            ("min_instance_volume", 1),
            ("min_visible_voxels", 1),
            ("min_instances_per_crop", 0),
        ):
            value = getattr(self, key)
            if not isinstance(value, int | np.integer) or value < low:
                raise DataError(f"{key} must be an int >= {low}, got {value!r}")
        fraction = self.min_visible_fraction
        if not isinstance(fraction, int | float) or not 0.0 <= float(fraction) <= 1.0:
            raise DataError(f"min_visible_fraction must be a number in [0, 1], got {fraction!r}")


@dataclass(frozen=True)
class CropInstances:
    """The instances listed in one crop.

    Attributes:
        ids: ``(N,)`` int64 label ids.
        boxes: ``(N, 6)`` int64 boxes in crop coordinates.
        visible: ``(N,)`` int64 voxels inside the crop.
        total: ``(N,)`` int64 voxels of the whole instance.
    """

    ids: np.ndarray
    boxes: np.ndarray
    visible: np.ndarray
    total: np.ndarray

    def __len__(self) -> int:
        return int(self.ids.size)


def candidate_count(
    whole: InstanceStats, origin: np.ndarray, crop_shape: tuple[int, int, int], min_instance_volume: int = 1
) -> int:
    """Instances of at least ``min_instance_volume`` voxels whose box meets the crop.

    An upper bound of the instances the crop can list, computed without reading the crop.
    """
    if not len(whole):
        return 0
    low = np.asarray(origin, dtype=np.int64)
    high = low + np.asarray(crop_shape, dtype=np.int64)
    hit = np.all(whole.boxes[:, :3] < high, axis=1) & np.all(whole.boxes[:, 3:] > low, axis=1)
    return int((hit & (whole.voxels >= min_instance_volume)).sum())


def select_instances(window: np.ndarray, whole: InstanceStats, criteria: CropCriteria) -> CropInstances:
    """Instances of a crop that meet the criteria.

    Args:
        window: ``(z, y, x)`` label window of the crop.
        whole: Whole-volume statistics of the volume (every instance).
        criteria: The selection criteria.

    Returns:
        The listed instances (possibly none; the caller applies ``min_instances_per_crop``).

    Raises:
        DataError: The window holds a label id that the whole-volume pass did not see (the
            label file changed during the build).
    """
    seen = label_stats(window)
    if not len(seen):
        return CropInstances(seen.ids, seen.boxes, seen.voxels, seen.voxels.copy())
    pos = np.searchsorted(whole.ids, seen.ids)
    if (
        len(whole) == 0
        or np.any(pos >= len(whole))
        or np.any(whole.ids[np.minimum(pos, len(whole) - 1)] != seen.ids)
    ):
        missing = np.setdiff1d(seen.ids, whole.ids)[:5].tolist()
        raise DataError(
            f"label ids {missing} appear in a crop window but not in the whole-volume pass; "
            "the label file changed while the index was built"
        )
    total = whole.voxels[pos]
    keep = (
        (total >= criteria.min_instance_volume)
        & (seen.voxels >= criteria.min_visible_voxels)
        & (seen.voxels >= criteria.min_visible_fraction * total)
    )
    return CropInstances(seen.ids[keep], seen.boxes[keep], seen.voxels[keep], total[keep])
