"""Elastic deformation: shapes other than those of the training data (lobed, bent, flattened nuclei).

A model trained on one population of shapes learns them as a prior, and its masks then round off
the lobes and dents of another. A smooth random displacement field moves image and masks together
so that the same objects are seen in many shapes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ls_core import parse_triple
from ls_data.errors import DataError
from ls_data.transforms.base import RandomTransform
from ls_data.transforms.targets import Sample, boxes_from_masks, select_instances

__all__ = ["RandomElastic3D", "displacement_field", "warp"]


def displacement_field(
    shape: Sequence[int], cells: Sequence[int], magnitude: Sequence[float], generator: torch.Generator | None
) -> Tensor:
    """A smooth random ``(3, Z, Y, X)`` displacement in voxels (z, y, x components).

    Control points on a ``cells + 1`` grid spanning the volume get displacements drawn uniformly
    from ``[-magnitude, magnitude]`` (per axis, in voxels), and the field between them is their
    trilinear interpolation: continuous, with no fold where ``magnitude`` is under half a cell.
    """
    points = tuple(int(c) + 1 for c in cells)
    scale = torch.tensor([float(m) for m in magnitude]).view(3, 1, 1, 1)
    coarse = (torch.rand((3, *points), generator=generator) * 2 - 1) * scale
    return F.interpolate(coarse[None], size=tuple(shape), mode="trilinear", align_corners=True)[0]


def warp(volume: Tensor, field: Tensor, mode: str) -> Tensor:
    """``(C, Z, Y, X)`` ``volume`` sampled at each voxel's position plus ``field`` (voxels), with
    ``mode`` ``"bilinear"`` (trilinear) or ``"nearest"``; positions outside repeat the border."""
    size = volume.shape[1:]
    axes = [torch.arange(n, dtype=field.dtype) for n in size]
    base = torch.stack(torch.meshgrid(*axes, indexing="ij"))
    where = base + field
    # grid_sample's (x, y, z) order, normalised to [-1, 1] with the voxel centres at the ends
    norm = [2 * where[i] / max(n - 1, 1) - 1 for i, n in enumerate(size)]
    grid = torch.stack(norm[::-1], dim=-1)[None]
    moved = F.grid_sample(
        volume[None].to(field.dtype), grid, mode=mode, padding_mode="border", align_corners=True
    )
    return moved[0].to(volume.dtype)


class RandomElastic3D(RandomTransform):
    """With probability ``p``, deform the sample by a smooth random displacement field.

    The field (:func:`displacement_field`) has control points on a ``cells + 1`` grid over the
    sample, each displaced by up to ``magnitude`` voxels per axis ``(z, y, x)``; the image is
    resampled trilinearly (so it must be floating-point) and the masks by nearest neighbour on the
    same positions, with the border repeated outside. Light-sheet voxels are anisotropic, so give
    the z magnitude in z voxels (e.g. a quarter of the y/x one for a 4x coarser z).

    Effect on each key:
        image: same shape and dtype.
        target: masks moved (same dtype, still binary); boxes recomputed from them; instances left
            with fewer than ``min_voxels`` voxels are dropped from every target entry and from the
            per-instance meta entries.
        meta: unchanged (the voxel grid and spacing stay).

    Args:
        magnitude: Largest displacement of a control point per axis ``(z, y, x)``, in voxels (one
            number: the same on every axis). Keep it under half a cell to avoid folds.
        cells: Cells of the control grid per axis ``(z, y, x)`` (one number: the same on every axis).
        p: Probability of deforming.
        min_voxels: Smallest number of voxels an instance keeps to stay in the target (>= 1).
    """

    def __init__(
        self,
        *,
        magnitude: Sequence[float] | float = (0.5, 2.0, 2.0),
        cells: Sequence[int] | int = (2, 4, 4),
        p: float = 0.5,
        min_voxels: int = 4,
    ) -> None:
        super().__init__(p=p)
        self.magnitude = parse_triple(
            magnitude, "RandomElastic3D magnitude", integer=False, minimum=0, error=DataError
        )
        self.cells = parse_triple(cells, "RandomElastic3D cells", minimum=1, error=DataError)
        if isinstance(min_voxels, bool) or not isinstance(min_voxels, int) or min_voxels < 1:
            raise DataError(f"RandomElastic3D: min_voxels must be an int >= 1, got {min_voxels!r}")
        self.min_voxels = min_voxels

    def apply(self, image: Tensor, target: dict[str, Any], meta: dict[str, Any]) -> Sample:
        if not image.is_floating_point():
            raise DataError(f"RandomElastic3D: image must be floating-point, got dtype {image.dtype}")
        if not self._coin() or image.numel() == 0:
            return image, dict(target), dict(meta)
        field = displacement_field(image.shape[1:], self.cells, self.magnitude, self.generator)
        out = warp(image, field, "bilinear")
        masks = target["masks"]
        moved = warp(masks, field, "nearest") if masks.shape[0] else masks.clone()
        keep = moved.flatten(1).sum(dim=1) >= self.min_voxels
        new_target = {**target, "masks": moved, "boxes": boxes_from_masks(moved)}
        new_target, new_meta = select_instances(new_target, dict(meta), keep, where="RandomElastic3D")
        return out, new_target, new_meta
