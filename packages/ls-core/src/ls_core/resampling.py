"""The voxel count of an axis resampled to another voxel spacing: one rule for every package.

ls-data's ``RescaleToSpacing`` and ``RandomZoom3D`` and ls-detection's ``DetectionTransform3D``
(``target_spacing``) size their output with :func:`resampled_size`, so a crop that training
rescales and a tile that the detector resizes to the same spacing get the same shape.
"""

from __future__ import annotations

import math
import numbers

__all__ = ["resampled_size"]

#: Voxels by which a product below a half still counts as the half: float arithmetic puts
#: ``7 * 0.15 / 0.1`` (10.5) or ``10 * (0.35 / 0.1)`` (35) a few ulps off the value meant, and
#: a volume of up to 10**6 voxels per axis is still exact to far better than this.
_TOLERANCE = 1e-6


def resampled_size(size: int, spacing: float, target_spacing: float) -> int:
    """Voxels along an axis of ``size`` voxels of ``spacing`` resampled to ``target_spacing``.

    ``size * spacing / target_spacing`` rounded to the nearest integer, halves up, at least 1.
    The nearest integer gives the new voxel size ``spacing * size / m`` closest to the target
    (``floor``, the rule of ``torch.nn.functional.interpolate(scale_factor=)``, makes it up to one
    voxel larger, and puts an exact product a few ulps short one voxel lower). A half goes up
    because the spacing is then nearer the target: ``k + 1/2`` voxels drawn as ``k + 1`` miss it
    by ``t / (2k + 2)``, drawn as ``k`` by ``t / 2k``. Python's ``round`` would send halves to the
    even neighbour instead.

    Args:
        size: Voxels along the axis (>= 1).
        spacing: Their size (> 0, finite), in any unit; the same unit as ``target_spacing``.
        target_spacing: The voxel size to resample to (> 0, finite). A zoom by a factor ``f``
            is ``resampled_size(size, f, 1.0)``.

    Raises:
        ValueError: ``size`` is not an integer >= 1, or a spacing is not a finite number > 0.
    """
    if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
        raise ValueError(f"resampled_size: size must be an integer >= 1, got {size!r}")
    for name, value in (("spacing", spacing), ("target_spacing", target_spacing)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (0 < value < math.inf):
            raise ValueError(f"resampled_size: {name} must be a finite number > 0, got {value!r}")
    exact = int(size) * float(spacing) / float(target_spacing)
    return max(1, math.floor(exact + 0.5 + _TOLERANCE))
