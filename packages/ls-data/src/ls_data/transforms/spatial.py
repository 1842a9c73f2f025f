"""Geometric transforms that move image and masks together: crop, flips, 90° rotations in yx.

After each of them ``target["boxes"]`` is recomputed from the moved masks
(:func:`~ls_data.transforms.targets.boxes_from_masks`), so boxes and masks always agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ls_data.errors import DataError
from ls_data.transforms.base import RandomTransform
from ls_data.transforms.targets import Sample, boxes_from_masks, drop_empty_instances, triple

__all__ = ["RandomCrop3D", "RandomFlip", "RandomRot90YX"]

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
        self.size = triple(size, name="RandomCrop3D size")
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
