"""Resampling to a target voxel spacing (e.g. to make anisotropic volumes closer to isotropic)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ls_core import parse_triple, resampled_size
from ls_data.errors import DataError
from ls_data.transforms.base import Transform
from ls_data.transforms.targets import Sample, boxes_from_masks, drop_empty_instances

__all__ = ["RescaleToSpacing"]


def _nearest_indices(size_in: int, size_out: int, device: torch.device) -> Tensor:
    """Source index of every output voxel for nearest-neighbour resampling (voxel centres)."""
    centres = (torch.arange(size_out, device=device, dtype=torch.float64) + 0.5) * (size_in / size_out)
    return centres.floor().to(torch.int64).clamp_(0, size_in - 1)


class RescaleToSpacing(Transform):
    """Resample the sample from ``meta["spacing"]`` to ``target_spacing``.

    The output size along each axis is ``size * spacing / target_spacing`` rounded to the nearest
    integer, halves up, at least 1 (:func:`ls_core.resampled_size`, the rule the detector's
    ``target_spacing`` resize follows too); the image is resampled trilinearly (voxel-centre
    aligned, ``align_corners=False``, no anti-aliasing filter), the masks with nearest neighbour on
    the same grid.

    Effect on each key:
        image: ``(C, Z, Y, X)`` -> ``(C, Z', Y', X')``, same dtype.
        target: masks resampled; boxes recomputed from them; instances that lose all their
            voxels (small objects when downsampling) are dropped from every target entry and
            the per-instance meta entries.
        meta: ``"spacing"`` becomes the exact new voxel size ``spacing * size / size'`` (equal to
            ``target_spacing`` up to the rounding of the size); ``"origin"`` is converted to the
            new voxel grid, ``origin * size' / size`` (floats), so that ``origin * spacing``, the
            corner's position in micrometres, is unchanged.

    Args:
        target_spacing: ``(sz, sy, sx)`` in micrometres, or one number for all axes.
    """

    def __init__(self, *, target_spacing: float | Sequence[float]) -> None:
        self.target_spacing = parse_triple(
            target_spacing, "RescaleToSpacing target_spacing", integer=False, positive=True, error=DataError
        )

    def apply(self, image: Tensor, target: dict[str, Any], meta: dict[str, Any]) -> Sample:
        if meta.get("spacing") is None:
            raise DataError(
                "RescaleToSpacing: meta has no 'spacing' (sz, sy, sx); the dataset must provide it"
            )
        given = tuple(float(s) for s in meta["spacing"])
        spacing = parse_triple(given, "meta['spacing']", integer=False, positive=True, error=DataError)
        size_in = tuple(int(s) for s in image.shape[1:])
        size_out = tuple(
            resampled_size(n, s, t) for n, s, t in zip(size_in, spacing, self.target_spacing, strict=True)
        )
        new_meta = dict(meta)
        new_meta["spacing"] = tuple(s * n / m for s, n, m in zip(spacing, size_in, size_out, strict=True))
        if size_out == size_in:
            return image, dict(target), new_meta
        if meta.get("origin") is not None:
            new_meta["origin"] = tuple(
                float(o) * m / n for o, n, m in zip(meta["origin"], size_in, size_out, strict=True)
            )
        if not image.is_floating_point():
            raise DataError(
                f"RescaleToSpacing: image must be a floating-point tensor, got dtype {image.dtype}"
            )
        resized = F.interpolate(image[None], size=size_out, mode="trilinear", align_corners=False)[0]
        masks = target["masks"]
        for axis, (n, m) in enumerate(zip(size_in, size_out, strict=True)):
            if n != m:
                masks = masks.index_select(axis + 1, _nearest_indices(n, m, masks.device))
        new_target = dict(target)
        new_target["masks"] = masks
        new_target["boxes"] = boxes_from_masks(masks)
        new_target, new_meta = drop_empty_instances(new_target, new_meta, where="RescaleToSpacing")
        return resized, new_target, new_meta
