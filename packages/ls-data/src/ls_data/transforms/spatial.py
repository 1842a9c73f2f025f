"""Geometric transforms that move image and masks together: crop, flips, 90° rotations in yx, zoom.

After each of them ``target["boxes"]`` is recomputed from the moved masks
(:func:`~ls_data.transforms.targets.boxes_from_masks`), so boxes and masks always agree.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ls_core import parse_triple, resampled_size
from ls_data.errors import DataError
from ls_data.transforms.base import RandomTransform
from ls_data.transforms.resample import _nearest_indices
from ls_data.transforms.targets import (
    Sample,
    boxes_from_masks,
    drop_empty_instances,
    range_pair,
    select_instances,
)

__all__ = ["RandomCrop3D", "RandomFlip", "RandomRot90YX", "RandomZoom3D"]

_AXES = ("z", "y", "x")


def _with_masks(target: dict[str, Any], masks: Tensor) -> dict[str, Any]:
    """A new target holding ``masks`` and the boxes recomputed from them."""
    new = dict(target)
    new["masks"] = masks
    new["boxes"] = boxes_from_masks(masks)
    return new


class RandomCrop3D(RandomTransform):
    """Crop a random ``size`` window out of the sample.

    Effect on each key:
        image: ``(C, Z, Y, X)`` -> ``(C, *size)``.
        target: masks cropped the same way; boxes recomputed from the cropped masks; instances
            with no voxel inside the window are dropped from every target entry (and from the
            per-instance meta entries such as ``"label_ids"``).
        meta: ``"origin"`` moves by the window's offset (when present); ``"spacing"`` unchanged.

    Args:
        size: Window ``(z, y, x)`` in voxels, or one int for all axes. Must fit in the image
            (a smaller image raises :class:`~ls_data.errors.DataError`).
        min_instances: Draw up to ``max_tries`` windows and keep the first one that contains at
            least this many instances; when none does, the window with the most instances seen
            is used (0 = accept the first window).
        prefer_foreground: Probability of centring the draw on a voxel of a random instance, so
            that the window is sure to contain part of it (when the sample has instances).
        max_tries: Number of windows drawn when ``min_instances`` > 0.

    A crop is always applied, so it has no ``p``.
    """

    def __init__(
        self,
        *,
        size: int | Sequence[int],
        min_instances: int = 0,
        prefer_foreground: float = 0.0,
        max_tries: int = 10,
    ) -> None:
        super().__init__(p=1.0)
        self.size = parse_triple(size, "RandomCrop3D size", positive=True, error=DataError)
        if isinstance(min_instances, bool) or not isinstance(min_instances, int) or min_instances < 0:
            raise DataError(f"RandomCrop3D: min_instances must be an int >= 0, got {min_instances!r}")
        if isinstance(max_tries, bool) or not isinstance(max_tries, int) or max_tries < 1:
            raise DataError(f"RandomCrop3D: max_tries must be an int >= 1, got {max_tries!r}")
        if not isinstance(prefer_foreground, int | float) or not 0.0 <= float(prefer_foreground) <= 1.0:
            raise DataError(f"RandomCrop3D: prefer_foreground must be in [0, 1], got {prefer_foreground!r}")
        self.min_instances = min_instances
        self.prefer_foreground = float(prefer_foreground)
        self.max_tries = max_tries

    def _draw_origin(self, shape: tuple[int, ...], masks: Tensor) -> tuple[int, int, int]:
        n = masks.shape[0]
        if n and self._coin(self.prefer_foreground):
            voxels = masks[self._randint(n)].nonzero()
            if len(voxels):
                voxel = voxels[self._randint(len(voxels))].tolist()
                origin = []
                for v, s, length in zip(voxel, self.size, shape, strict=True):
                    low, high = max(0, v - s + 1), min(v, length - s)
                    origin.append(low + self._randint(high - low + 1))
                return origin[0], origin[1], origin[2]
        o = [self._randint(length - s + 1) for s, length in zip(self.size, shape, strict=True)]
        return o[0], o[1], o[2]

    def _window(self, origin: Sequence[int]) -> tuple[slice, slice, slice]:
        return tuple(slice(o, o + s) for o, s in zip(origin, self.size, strict=True))  # type: ignore[return-value]

    def apply(self, image: Tensor, target: dict[str, Any], meta: dict[str, Any]) -> Sample:
        shape = tuple(image.shape[1:])
        if any(s > length for s, length in zip(self.size, shape, strict=True)):
            raise DataError(
                f"RandomCrop3D: crop size {self.size} does not fit in image of spatial shape {shape} "
                f"(image {tuple(image.shape)})"
            )
        masks = target["masks"]
        origin = self._draw_origin(shape, masks)
        if self.min_instances > 0 and masks.shape[0] > 0:
            best, best_count = origin, -1
            for attempt in range(self.max_tries):
                if attempt:
                    origin = self._draw_origin(shape, masks)
                window = masks[(slice(None), *self._window(origin))]
                count = int(window.reshape(window.shape[0], -1).any(dim=1).sum())
                if count > best_count:
                    best, best_count = origin, count
                if count >= self.min_instances:
                    break
            origin = best
        window = self._window(origin)
        image = image[(slice(None), *window)]
        new_target = _with_masks(target, masks[(slice(None), *window)])
        new_meta = dict(meta)
        if meta.get("origin") is not None:
            new_meta["origin"] = tuple(o + d for o, d in zip(meta["origin"], origin, strict=True))
        new_target, new_meta = drop_empty_instances(new_target, new_meta, where="RandomCrop3D")
        return image, new_target, new_meta


class RandomFlip(RandomTransform):
    """Flip along each of ``axes`` independently with probability ``p``.

    Effect on each key:
        image: flipped; same shape.
        target: masks flipped the same way; boxes recomputed (``z1' = Z - z2`` etc.); no
            instance is dropped.
        meta: unchanged. ``"origin"`` still names the window's corner in the source volume,
            not the voxel now at index 0.

    Args:
        axes: Subset of ``("z", "y", "x")``.
        p: Probability of flipping each axis.
    """

    def __init__(self, *, axes: Sequence[str] = _AXES, p: float = 0.5) -> None:
        super().__init__(p=p)
        axes = tuple(axes)
        if not axes or any(a not in _AXES for a in axes) or len(set(axes)) != len(axes):
            raise DataError(f"RandomFlip: axes must be a non-empty subset of ('z', 'y', 'x'), got {axes!r}")
        self.axes = axes

    def apply(self, image: Tensor, target: dict[str, Any], meta: dict[str, Any]) -> Sample:
        dims = [_AXES.index(a) + 1 for a in self.axes if self._coin()]
        if not dims:
            return image, dict(target), dict(meta)
        image = image.flip(dims)
        return image, _with_masks(target, target["masks"].flip(dims)), dict(meta)


class RandomRot90YX(RandomTransform):
    """Rotate by a multiple of 90° in the yx plane (z is left alone: it is anisotropic).

    The rotation goes from the +y towards the +x axis (:func:`torch.rot90` on dims (y, x)).

    Effect on each key:
        image: rotated; for an odd multiple ``(C, Z, Y, X)`` -> ``(C, Z, X, Y)``.
        target: masks rotated the same way; boxes recomputed; no instance is dropped.
        meta: for an odd multiple ``"spacing"`` ``(sz, sy, sx)`` -> ``(sz, sx, sy)``;
            ``"origin"`` unchanged (the window's corner in the unrotated source volume).

    Args:
        p: Probability of rotating at all.
        k: Number of quarter turns (1, 2 or 3); ``None`` draws it uniformly from {1, 2, 3}.
    """

    def __init__(self, *, p: float = 0.5, k: int | None = None) -> None:
        super().__init__(p=p)
        if k is not None and (isinstance(k, bool) or k not in (1, 2, 3)):
            raise DataError(f"RandomRot90YX: k must be 1, 2, 3 or None (random), got {k!r}")
        self.k = k

    def apply(self, image: Tensor, target: dict[str, Any], meta: dict[str, Any]) -> Sample:
        if not self._coin():
            return image, dict(target), dict(meta)
        k = self.k if self.k is not None else 1 + self._randint(3)
        image = torch.rot90(image, k, dims=(2, 3))
        masks = torch.rot90(target["masks"], k, dims=(2, 3))
        new_meta = dict(meta)
        if k % 2 and meta.get("spacing") is not None:
            sz, sy, sx = meta["spacing"]
            new_meta["spacing"] = (sz, sx, sy)
        return image, _with_masks(target, masks), new_meta


def _placement(size: int, zoomed: int, shift: int) -> tuple[slice, slice]:
    """The ``(destination, source)`` slices that put an axis of ``zoomed`` voxels into one of
    ``size`` voxels, moved by ``shift`` (> 0: padded before; < 0: cut at the start)."""
    start, stop = max(0, shift), min(size, shift + zoomed)
    return slice(start, stop), slice(start - shift, stop - shift)


class RandomZoom3D(RandomTransform):
    """With probability ``p``, zoom the sample by a random factor and keep its shape.

    One factor ``f`` for y and x is drawn log-uniformly from ``scale`` (``f > 1`` makes objects
    larger); the z factor is ``f`` too or, with ``scale_z``, a separate log-uniform draw from that
    range (which changes the anisotropy). Each axis of ``n`` voxels is resampled to
    ``m = resampled_size(n, f, 1.0)`` voxels (``n * f`` rounded, halves up, at least 1) as in
    :class:`~ls_data.transforms.resample.RescaleToSpacing` (image trilinear, voxel-centre aligned,
    so it must be floating-point; masks nearest neighbour on the same grid) and cut back to ``n``:
    zooming in keeps a window of the zoomed sample, zooming out pads it, the image with each
    channel's minimum (the background level; light-sheet background is rarely 0 before
    normalisation) and the masks with 0.

    Effect on each key:
        image: same shape and dtype.
        target: masks resampled (same dtype, still binary); boxes recomputed from them;
            instances left with fewer than ``min_voxels`` voxels (shrunk, or cut off by the
            window) are dropped from every target entry and from the per-instance meta entries.
        meta: ``"spacing"`` becomes the zoomed voxel size ``spacing * n / m``; ``"origin"`` is
            converted to the new grid, ``origin * m / n - shift`` (floats; ``shift`` is the
            padding before index 0, or minus the cut start), so ``origin * spacing`` is still the
            position in micrometres of the voxel at index 0.

    Args:
        scale: ``(low, high)`` range of the yx factor, ``0 < low <= high``.
        scale_z: ``(low, high)`` range of the z factor; ``None`` uses the yx factor.
        p: Probability of zooming.
        min_voxels: Smallest number of voxels an instance keeps to stay in the target (>= 1).
        random_window: Place the window (zoom in) or the padding (zoom out) at random along each
            axis instead of in the centre.
    """

    def __init__(
        self,
        *,
        scale: Sequence[float] = (0.7, 1.4),
        scale_z: Sequence[float] | None = None,
        p: float = 0.5,
        min_voxels: int = 4,
        random_window: bool = False,
    ) -> None:
        super().__init__(p=p)
        self.scale = range_pair(scale, name="RandomZoom3D scale", positive=True)
        if scale_z is not None:
            scale_z = range_pair(scale_z, name="RandomZoom3D scale_z", positive=True)
        self.scale_z = scale_z
        if isinstance(min_voxels, bool) or not isinstance(min_voxels, int) or min_voxels < 1:
            raise DataError(f"RandomZoom3D: min_voxels must be an int >= 1, got {min_voxels!r}")
        self.min_voxels = min_voxels
        self.random_window = bool(random_window)

    def _factor(self, low: float, high: float) -> float:
        return math.exp(self._uniform(math.log(low), math.log(high)))

    def _shift(self, size: int, zoomed: int) -> int:
        spare = size - zoomed
        if self.random_window:
            return min(spare, 0) + self._randint(abs(spare) + 1)
        return spare // 2 if spare >= 0 else -(-spare // 2)

    def apply(self, image: Tensor, target: dict[str, Any], meta: dict[str, Any]) -> Sample:
        if not image.is_floating_point():
            raise DataError(f"RandomZoom3D: image must be a floating-point tensor, got dtype {image.dtype}")
        if not self._coin() or image.numel() == 0:
            return image, dict(target), dict(meta)
        f = self._factor(*self.scale)
        factors = (f if self.scale_z is None else self._factor(*self.scale_z), f, f)
        size_in = tuple(int(n) for n in image.shape[1:])
        # a zoom by k is a resampling from voxels of size k to voxels of size 1
        size_out = tuple(resampled_size(n, k, 1.0) for n, k in zip(size_in, factors, strict=True))
        shifts = tuple(self._shift(n, m) for n, m in zip(size_in, size_out, strict=True))
        dst, src = zip(*map(_placement, size_in, size_out, shifts), strict=True)
        zoomed = F.interpolate(image[None], size=size_out, mode="trilinear", align_corners=False)[0]
        out = image.amin(dim=(1, 2, 3), keepdim=True).expand(image.shape).clone()
        out[(slice(None), *dst)] = zoomed[(slice(None), *src)]
        masks = _zoom_masks(target["masks"], size_out, dst, src)
        keep = masks.flatten(1).sum(dim=1) >= self.min_voxels
        new_meta = _zoomed_meta(meta, size_in, size_out, shifts)
        new_target = _with_masks(target, masks)
        new_target, new_meta = select_instances(new_target, new_meta, keep, where="RandomZoom3D")
        return out, new_target, new_meta


def _zoom_masks(masks: Tensor, size_out: Sequence[int], dst: Sequence[slice], src: Sequence[slice]) -> Tensor:
    """Masks resampled (nearest neighbour) to ``size_out``, whose ``src`` window is put at ``dst``
    in zeros of the input's shape; only the kept window is resampled."""
    window = masks
    for axis, (m, part) in enumerate(zip(size_out, src, strict=True)):
        indices = _nearest_indices(masks.shape[axis + 1], m, masks.device)[part]
        window = window.index_select(axis + 1, indices)
    out = masks.new_zeros(masks.shape)
    out[(slice(None), *dst)] = window
    return out


def _zoomed_meta(
    meta: dict[str, Any], size_in: Sequence[int], size_out: Sequence[int], shifts: Sequence[int]
) -> dict[str, Any]:
    """``meta`` with ``"spacing"`` and ``"origin"`` converted to the zoomed grid (see RandomZoom3D)."""
    new_meta = dict(meta)
    if meta.get("spacing") is not None:
        new_meta["spacing"] = tuple(
            float(s) * n / m for s, n, m in zip(meta["spacing"], size_in, size_out, strict=True)
        )
    if meta.get("origin") is not None:
        new_meta["origin"] = tuple(
            float(o) * m / n - d for o, n, m, d in zip(meta["origin"], size_in, size_out, shifts, strict=True)
        )
    return new_meta
