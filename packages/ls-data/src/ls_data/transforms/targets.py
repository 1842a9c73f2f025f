"""Helpers shared by the transforms: sample checks, boxes from masks, dropping instances.

A sample is the triple ``(image, target, meta)``:

- ``image``: float tensor ``(C, Z, Y, X)``;
- ``target``: ``{"boxes": (N, 6) float32 (z1, y1, x1, z2, y2, x2), "labels": (N,) int64,
  "masks": (N, Z, Y, X) uint8 or bool}``; every entry of ``target`` is per instance (its first
  dimension is N);
- ``meta``: a dict with ``"spacing"`` ``(sz, sy, sx)`` in micrometres and ``"origin"`` ``(z, y, x)``
  of the crop in its source volume, plus free-form entries. The entries named in
  :data:`PER_INSTANCE_META_KEYS` (``"label_ids"``: the instance ids in the label volume) are per
  instance too and are kept aligned with ``target`` when instances are dropped.

``meta["origin"]`` is counted in voxels of the current sampling: a crop adds its offset, a
rescale converts it (so ``origin * spacing`` stays the corner's position in micrometres), and
flips and rotations leave it alone (it then names the corner of the window in the unflipped,
unrotated source volume, not the voxel now at index 0).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ls_data.errors import DataError

__all__ = [
    "PER_INSTANCE_META_KEYS",
    "Sample",
    "boxes_from_masks",
    "check_sample",
    "drop_empty_instances",
    "range_pair",
    "select_instances",
]

Sample = tuple[Tensor, dict[str, Any], dict[str, Any]]

PER_INSTANCE_META_KEYS: tuple[str, ...] = ("label_ids",)
"""Keys of ``meta`` whose values are per instance (length N) and follow ``target`` when instances
are dropped."""


def boxes_from_masks(masks: Tensor) -> Tensor:
    """The tight box of every instance mask.

    Args:
        masks: ``(N, Z, Y, X)`` bool or integer masks (non-zero = inside).

    Returns:
        ``(N, 6)`` float32 boxes ``(z1, y1, x1, z2, y2, x2)``; a mask covering voxels ``a..b-1``
        along an axis gives ``[a, b)``. An empty mask gives an all-zero box.
    """
    if masks.ndim != 4:
        raise DataError(f"boxes_from_masks: masks must be (N, Z, Y, X), got shape {tuple(masks.shape)}")
    n = masks.shape[0]
    if n == 0:
        return torch.zeros((0, 6), dtype=torch.float32, device=masks.device)
    inside = masks if masks.dtype == torch.bool else masks != 0
    zy = inside.any(dim=3)  # (N, Z, Y)
    profiles = (zy.any(dim=2), zy.any(dim=1), inside.any(dim=2).any(dim=1))  # (N, Z), (N, Y), (N, X)
    lows, highs = [], []
    for profile in profiles:
        length = profile.shape[1]
        as_int = profile.to(torch.uint8)
        lows.append(as_int.argmax(dim=1))
        highs.append(length - as_int.flip(1).argmax(dim=1))
    boxes = torch.stack(lows + highs, dim=1).to(torch.float32)
    boxes[~profiles[0].any(dim=1)] = 0.0
    return boxes


def _take(value: Any, keep: Tensor, key: str, where: str) -> Any:
    """Select the kept instances of one per-instance value (tensor, ndarray, list or tuple)."""
    if isinstance(value, Tensor):
        return value[keep.to(value.device)]
    if isinstance(value, np.ndarray):
        return value[keep.cpu().numpy()]
    if isinstance(value, list | tuple):
        picked = [v for v, k in zip(value, keep.tolist(), strict=True) if k]
        return type(value)(picked)
    raise DataError(
        f"{where}: per-instance entry {key!r} is a {type(value).__name__}; expected a tensor, array or list"
    )


def select_instances(
    target: Mapping[str, Any], meta: Mapping[str, Any], keep: Tensor, *, where: str = "select_instances"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Keep the instances where ``keep`` is true in every per-instance entry.

    Every entry of ``target`` and the entries of ``meta`` named in :data:`PER_INSTANCE_META_KEYS`
    are filtered with the same boolean mask. The inputs are not modified.

    Args:
        target: The target dict (every entry has N rows).
        meta: The meta dict.
        keep: ``(N,)`` bool.
        where: Name used in error messages.

    Returns:
        New ``(target, meta)`` dicts.
    """
    keep = keep.to(torch.bool)
    n = keep.shape[0]
    new_target: dict[str, Any] = {}
    for key, value in target.items():
        if len(value) != n:
            raise DataError(
                f"{where}: target[{key!r}] has {len(value)} rows, expected {n} (one per instance)"
            )
        new_target[key] = _take(value, keep, f"target[{key!r}]", where)
    new_meta = dict(meta)
    for key in PER_INSTANCE_META_KEYS:
        if key in meta and meta[key] is not None:
            value = meta[key]
            if len(value) != n:
                raise DataError(
                    f"{where}: meta[{key!r}] has {len(value)} entries, expected {n} (one per instance)"
                )
            new_meta[key] = _take(value, keep, f"meta[{key!r}]", where)
    return new_target, new_meta


def drop_empty_instances(
    target: Mapping[str, Any], meta: Mapping[str, Any], *, where: str = "drop_empty_instances"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Drop the instances whose mask has no voxel left (see :func:`select_instances`)."""
    masks = target["masks"]
    keep = masks.reshape(masks.shape[0], -1).any(dim=1) if masks.numel() else torch.zeros(
        masks.shape[0], dtype=torch.bool, device=masks.device
    )
    if bool(keep.all()):
        return dict(target), dict(meta)
    return select_instances(target, meta, keep, where=where)


def check_sample(image: Tensor, target: Mapping[str, Any], meta: Mapping[str, Any], *, where: str) -> None:
    """Check the shapes of a sample; raise :class:`~ls_data.errors.DataError` naming the tensor.

    Args:
        image: Expected ``(C, Z, Y, X)``.
        target: Expected to hold ``"masks"`` ``(N, Z, Y, X)`` with the image's spatial shape,
            ``"boxes"`` ``(N, 6)`` and ``"labels"`` ``(N,)`` when present.
        meta: A mapping.
        where: The transform's name, used in messages.
    """
    if not isinstance(image, Tensor) or image.ndim != 4:
        shape = tuple(image.shape) if hasattr(image, "shape") else type(image).__name__
        raise DataError(f"{where}: image must be a (C, Z, Y, X) tensor, got {shape}")
    if not isinstance(target, Mapping) or "masks" not in target:
        raise DataError(f"{where}: target must be a dict with 'masks' (N, Z, Y, X); got {_keys(target)}")
    if not isinstance(meta, Mapping):
        raise DataError(f"{where}: meta must be a dict, got {type(meta).__name__}")
    masks = target["masks"]
    if not isinstance(masks, Tensor) or masks.ndim != 4 or tuple(masks.shape[1:]) != tuple(image.shape[1:]):
        shape = tuple(masks.shape) if hasattr(masks, "shape") else type(masks).__name__
        raise DataError(
            f"{where}: target['masks'] must be (N, Z, Y, X) with the image's spatial shape "
            f"{tuple(image.shape[1:])}; got {shape}"
        )
    n = masks.shape[0]
    boxes = target.get("boxes")
    if boxes is not None and tuple(boxes.shape) != (n, 6):
        raise DataError(f"{where}: target['boxes'] must be ({n}, 6) to match masks, got {tuple(boxes.shape)}")
    labels = target.get("labels")
    if labels is not None and tuple(labels.shape) != (n,):
        raise DataError(f"{where}: target['labels'] must be ({n},) to match masks, got {tuple(labels.shape)}")


def _keys(value: Any) -> str:
    return f"keys {sorted(value)}" if isinstance(value, Mapping) else type(value).__name__


def range_pair(
    value: Any,
    *,
    name: str,
    minimum: float | None = None,
    maximum: float | None = None,
    positive: bool = False,
) -> tuple[float, float]:
    """A ``(low, high)`` range of finite numbers with ``low <= high`` (config value).

    Args:
        value: A length-2 sequence of numbers.
        name: Name used in error messages (e.g. ``"RandomBlur sigma_yx"``).
        minimum: Smallest allowed ``low`` (inclusive), if any.
        maximum: Largest allowed ``high`` (inclusive), if any.
        positive: Require ``0 < low``.

    Raises:
        DataError: naming ``name`` and the value.
    """
    numbers = isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2
    if not numbers or any(isinstance(v, bool) or not isinstance(v, int | float) for v in value):
        raise DataError(f"{name} must be a (low, high) pair of numbers, got {value!r}")
    low, high = float(value[0]), float(value[1])
    if not (math.isfinite(low) and math.isfinite(high) and low <= high):
        raise DataError(f"{name} must be finite with low <= high, got {value!r}")
    if positive and low <= 0.0:
        raise DataError(f"{name} must satisfy 0 < low <= high, got {value!r}")
    if minimum is not None and low < minimum:
        raise DataError(f"{name} must satisfy {minimum:g} <= low <= high, got {value!r}")
    if maximum is not None and high > maximum:
        raise DataError(f"{name} must satisfy low <= high <= {maximum:g}, got {value!r}")
    return low, high
