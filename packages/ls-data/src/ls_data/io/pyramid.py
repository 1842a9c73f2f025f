"""Multiscale pyramid geometry for the streaming OME-Zarr writers.

:func:`pyramid_factors` picks per-level downsampling factors that keep voxels near isotropic; the
helpers give every level's shape, the cumulative factor of every level, and block-mean
downsampling (used for image pyramids; label pyramids are strided).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ls_data.errors import DataError
from ls_data.io.tiff import check_spacing
from ls_data.io.zarr_files import Factors, _ints


def pyramid_factors(
    shape_zyx: Sequence[int], spacing: Sequence[float], *, max_levels: int = 6, min_size: int = 32
) -> list[Factors]:
    """Downsampling factors of a multiscale pyramid that keeps voxels near isotropic.

    y and x are halved at every level; z is halved too at a level where the current z spacing is
    <= the current y spacing (and more than one z slice is left). For anisotropic light-sheet data
    with spacing ``(2, 0.5, 0.5)`` this gives ``(1, 2, 2), (1, 2, 2), (2, 2, 2), ...``. A level is
    added while the next level's Y and X are both >= ``min_size`` and there are fewer than
    ``max_levels`` levels. Level sizes round up (``ceil(n / f)``), as stride and edge-padded mean
    downsampling do.

    Args:
        shape_zyx: Level-0 shape ``(Z, Y, X)``.
        spacing: Level-0 spacing ``(sz, sy, sx)`` in micrometres.
        max_levels: Most levels, level 0 included (>= 1).
        min_size: Smallest Y and X a level may have (>= 1).

    Returns:
        One ``(fz, fy, fx)`` per level after level 0, each relative to the previous level
        (``levels - 1`` entries; empty when the volume is too small for a second level).

    Raises:
        DataError: Bad shape, spacing, ``max_levels`` or ``min_size``.
    """
    shape = _ints(shape_zyx, 3, "shape_zyx", where="pyramid_factors", minimum=1)
    sz, sy, _ = check_spacing(spacing, where="pyramid_factors")
    for key, value in (("max_levels", max_levels), ("min_size", min_size)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise DataError(f"pyramid_factors: {key} must be an int >= 1, got {value!r}")
    z, y, x = shape
    factors: list[Factors] = []
    while len(factors) + 1 < max_levels:
        ny, nx = -(-y // 2), -(-x // 2)
        if ny < min_size or nx < min_size:
            break
        fz = 2 if z > 1 and sz <= sy * (1 + 1e-9) else 1
        factors.append((fz, 2, 2))
        z, y, x = -(-z // fz), ny, nx
        sz, sy = sz * fz, sy * 2
    return factors


def _level_shapes(shape: Sequence[int], factors: Sequence[Sequence[int]]) -> list[tuple[int, ...]]:
    """Spatial shape of every level: level ``l`` is ``ceil(level l-1 / factors[l-1])``."""
    shapes = [tuple(int(s) for s in shape)]
    for f in factors:
        shapes.append(tuple(-(-s // int(fi)) for s, fi in zip(shapes[-1], f, strict=True)))
    return shapes


def _cumulative(factors: Sequence[Sequence[int]]) -> list[tuple[int, int, int]]:
    """Cumulative factor of every level relative to level 0 (level 0: ``(1, 1, 1)``)."""
    out = [(1, 1, 1)]
    for f in factors:
        out.append(tuple(a * int(b) for a, b in zip(out[-1], f, strict=True)))  # type: ignore[arg-type]
    return out


def _downsample_mean(data: np.ndarray, factors: Sequence[int]) -> np.ndarray:
    """Mean over ``fz x fy x fx`` blocks of the last three axes (edge-padded to whole blocks).

    Integer dtypes are rounded to the nearest value; the output keeps the input dtype. With
    factors ``(1, 2, 2)`` this equals :func:`ls_data.io.omezarr_write.downsample_mean_yx`.
    """
    lead = data.ndim - 3
    pad = [(0, 0)] * lead + [(0, -n % f) for n, f in zip(data.shape[lead:], factors, strict=True)]
    padded = np.pad(data, pad, mode="edge") if any(p[1] for p in pad) else data
    shape: list[int] = list(padded.shape[:lead])
    for n, f in zip(padded.shape[lead:], factors, strict=True):
        shape += [n // f, f]
    mean = padded.reshape(shape).mean(axis=tuple(lead + 2 * i + 1 for i in range(3)), dtype=np.float64)
    if np.issubdtype(data.dtype, np.integer):
        info = np.iinfo(data.dtype)
        mean = np.clip(np.rint(mean), info.min, info.max)
    return mean.astype(data.dtype)
