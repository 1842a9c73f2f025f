"""Checks of a prediction's input, model and output locations, made before any work.

``run_prediction`` calls these before it creates the work folder or the output, so that bad
input fails at once with a message naming the file and the key to change, and leaves nothing
behind:

- :func:`check_model_channels`: the selected channels fit the detector's input channels;
- :func:`check_writable`: the output, the work folder and the table can be written;
- :func:`scan_finite`: a floating-point volume holds no NaN or infinite value (up front for a
  volume of at most :data:`FINITE_SCAN_VOXELS` voxels; a larger one is checked tile by tile as
  pass 1 reads it, with :func:`require_finite`, as scanning it all first would read it twice).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ls_data.errors import DataError
from ls_train.config import ConfigError

if TYPE_CHECKING:
    from ls_train.predict.volume import InputVolume

__all__ = [
    "FINITE_SCAN_VOXELS",
    "NonFiniteInputError",
    "check_model_channels",
    "check_writable",
    "is_floating",
    "model_in_channels",
    "require_finite",
    "scan_finite",
]

FINITE_SCAN_VOXELS = 1 << 26
"""Floating-point volumes up to this many voxels (all selected channels) are scanned for NaN and
infinite values before any work (about 256 MB of float32 read block by block); larger ones are
checked tile by tile as they are read."""

_SCAN_BLOCK = (32, 256, 256)


class NonFiniteInputError(DataError):
    """The input volume holds NaN or infinite values (the message names the file and the voxels)."""


def is_floating(dtype: Any) -> bool:
    """Whether voxels of ``dtype`` can be NaN or infinite."""
    return bool(np.issubdtype(np.dtype(dtype), np.floating))


def require_finite(
    data: np.ndarray,
    path: Path,
    channels: Sequence[int],
    box: Sequence[tuple[int, int]],
    what: str,
    note: str = "",
) -> None:
    """Raise :class:`NonFiniteInputError` when ``data`` ``(c, z, y, x)`` holds a NaN or infinity.

    Args:
        data: Voxels read from ``path`` in ``box`` (``(start, stop)`` per axis z, y, x).
        path: The input file, named in the message.
        channels: The input channels of ``data``'s channel axis.
        box: Where ``data`` lies in the volume.
        what: What ``data`` is, in words (e.g. ``tile 7``).
        note: Appended to the message.
    """
    finite = np.isfinite(data)
    if finite.all():
        return
    bad = int(finite.size - np.count_nonzero(finite))
    c, *zyx = (int(v) for v in np.argwhere(~finite)[0])
    first = (channels[c], *(lo + v for (lo, _), v in zip(box, zyx, strict=True)))
    ranges = ", ".join(f"{axis} {lo}:{hi}" for axis, (lo, hi) in zip("zyx", box, strict=True))
    raise NonFiniteInputError(
        f"input {path}: {what} (voxels {ranges}) holds {bad} NaN or infinite value(s) as float32, "
        f"the first at (c, z, y, x)={first}; the segmenter needs finite intensities: replace them "
        f"in the input (e.g. with numpy.nan_to_num) and run again{note}"
    )


def scan_finite(volume: InputVolume, max_voxels: int | None = None) -> bool:
    """Check a small floating-point volume for NaN and infinite values, block by block.

    Integer volumes cannot hold them and are not read. A volume of more than ``max_voxels``
    (default :data:`FINITE_SCAN_VOXELS`) voxels over its selected channels is not read either:
    pass 1 checks each tile as it reads it (:class:`~ls_train.predict.workers.TileWorker`).

    Returns:
        Whether the volume was scanned.

    Raises:
        NonFiniteInputError: naming the file, the block's voxel range and the first bad voxel.
    """
    from ls_train.predict.normalization import sample_blocks

    limit = FINITE_SCAN_VOXELS if max_voxels is None else max_voxels
    voxels = len(volume.channels) * math.prod(volume.shape)
    if not is_floating(volume.dtype) or voxels > limit:
        return False
    for window in sample_blocks(volume.shape, voxels, _SCAN_BLOCK):
        box = [(s.start, s.stop) for s in window]
        data = np.asarray(volume.read(window), dtype=np.float32)
        require_finite(data, volume.path, volume.channels, box, "the block")
    return True


def model_in_channels(model: Any) -> int | None:
    """Input channels of a detector: its backbone's ``in_channels`` (None when it has none)."""
    from ls_backbones import Backbone3D

    for module in model.modules():
        if isinstance(module, Backbone3D):
            return int(module.in_channels)
    return None


def check_model_channels(
    expected: int | None, volume: InputVolume, selected: Sequence[int] | None, checkpoint: str
) -> None:
    """Raise ConfigError when the selected channels are not as many as the model takes.

    The message names the input file, its channel count, the model's input channels and says how
    to pick channels with ``predict.channels=[...]``.
    """
    if expected is None or len(volume.channels) == expected:
        return
    total = int(volume.reader.shape[0])
    chosen = "" if selected is None else f" (predict.channels={list(selected)} selects {len(selected)})"
    if total >= expected:
        advice = (
            f"pick {expected} of them with predict.channels=[...], "
            f"e.g. predict.channels={list(range(expected))}"
        )
    else:
        advice = "this input has too few channels for the model (predict.channels=[...] picks channels)"
    raise ConfigError(
        f"input {volume.path} has {total} channel(s){chosen} but the model of checkpoint {checkpoint} "
        f"takes {expected} input channel(s): {advice}"
    )


def _existing(path: Path) -> Path:
    """``path`` or its nearest existing ancestor (what a later ``mkdir(parents=True)`` writes into)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_writable(folder: Path, key: str, value: object) -> None:
    """Raise ConfigError unless files can be created in ``folder`` (or, when it does not exist
    yet, in the nearest existing folder above it, where it will be created).

    Args:
        folder: The folder that will be written into.
        key: The setting that chose it (``output``, ``predict.work_dir``, ``predict.table``).
        value: Its value, named in the message.
    """
    place = _existing(folder)
    if not place.is_dir():
        raise ConfigError(f"{key}={value}: {place} is not a folder; cannot write into it")
    if not os.access(place, os.W_OK | os.X_OK):
        why = "a read-only file system" if os.statvfs(place).f_flag & os.ST_RDONLY else "permission denied"
        raise ConfigError(
            f"{key}={value}: the folder {place} is not writable ({why}); choose a location you can write to"
        )
