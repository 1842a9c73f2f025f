"""Intensity statistics of a whole volume, from an evenly spread sample of blocks.

Evaluation normalises each crop with its own statistics (``normalize_intensity``). Tiles of one
volume normalised each on its own would disagree with each other, and the result would change
with the tile size; whole-volume prediction therefore computes the statistics once, on up to
``sample_voxels`` voxels read as blocks spread evenly over the volume (the whole volume when it
is that small, which then reproduces the per-crop transform exactly), and applies them to every
tile.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ls_train.predict.checks import is_floating, require_finite
from ls_train.predict.segmenters import Normalization

__all__ = ["sample_blocks", "volume_normalization"]

_BLOCK = (16, 64, 64)


def sample_blocks(
    shape: Sequence[int], sample_voxels: int, block: Sequence[int] = _BLOCK
) -> list[tuple[slice, ...]]:
    """Windows of up to ``block`` voxels, spread evenly over a volume of ``shape`` ``(Z, Y, X)``.

    The windows partition the volume; when their voxels exceed ``sample_voxels``, an evenly
    spaced subset (in raster order) is kept.
    """
    per_axis = [list(range(0, s, b)) for s, b in zip(shape, block, strict=True)]
    starts = list(itertools.product(*per_axis))
    windows = [
        tuple(slice(o, min(o + b, s)) for o, b, s in zip(start, block, shape, strict=True))
        for start in starts
    ]
    full = math.prod(min(b, s) for b, s in zip(block, shape, strict=True))
    keep = max(1, min(len(windows), math.ceil(sample_voxels / full)))
    if keep < len(windows):
        picks = np.unique(np.linspace(0, len(windows) - 1, keep).round().astype(int))
        windows = [windows[i] for i in picks]
    return windows


def _read_finite(reader: Any, channels: Sequence[int], window: tuple[slice, ...]) -> np.ndarray:
    """A sample block as float32; NaN or infinite values raise NonFiniteInputError (statistics
    computed over them would be NaN, and so would every normalised tile)."""
    data = np.asarray(reader.read(window, channels), dtype=np.float32)
    if is_floating(reader.dtype):
        box = [(s.start, s.stop) for s in window]
        require_finite(data, reader.path, channels, box, "the intensity-statistics sample block")
    return data


def volume_normalization(
    reader: Any, channels: Sequence[int], entry: Mapping[str, Any], sample_voxels: int
) -> Normalization:
    """The :class:`Normalization` a ``normalize_intensity`` entry gives on the sampled volume.

    Args:
        reader: An ``ls_data`` volume reader.
        channels: The channels fed to the model.
        entry: The ``normalize_intensity`` entry of ``transforms.eval_transforms_list``.
        sample_voxels: Voxels to sample.

    Raises:
        NonFiniteInputError: a NaN or infinite value in the sample (the message names the file
            and the block).
    """
    from ls_data.transforms.intensity import NormalizeIntensity

    kwargs = {k: v for k, v in entry.items() if k not in ("name", "_target_")}
    transform = NormalizeIntensity(**kwargs)
    parts = [
        _read_finite(reader, channels, window).reshape(len(channels), -1)
        for window in sample_blocks(reader.shape[1:], sample_voxels)
    ]
    values = torch.from_numpy(np.concatenate(parts, axis=1))
    if not transform.per_channel:
        values = values.reshape(1, -1)
    shift, scale, low, high = transform.statistics(values)
    n = len(channels)

    def per_channel(t: torch.Tensor | None) -> tuple[float, ...] | None:
        if t is None:
            return None
        out = [float(v) for v in t.tolist()]
        return tuple(out * n) if len(out) == 1 else tuple(out)

    return Normalization(
        shift=per_channel(shift),
        scale=per_channel(scale),
        clip_low=per_channel(low),
        clip_high=per_channel(high),
    )
