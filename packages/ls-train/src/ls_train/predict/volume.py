"""The input volume of a prediction: reader, selected channels, level geometry, output location."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ls_data.errors import DataError

__all__ = ["InputVolume", "level_translation", "open_input"]


def level_translation(path: Path, level: int) -> tuple[float, float, float]:
    """The ``(tz, ty, tx)`` translation in micrometres of an OME-Zarr level (0 for TIFF or none).

    Read from the image's NGFF coordinate transformations, parsed by ls-data (yaozarrs' models).
    """
    from ls_data.io.omezarr import ngff_translation

    if path.suffix.lower() in (".tif", ".tiff"):
        return (0.0, 0.0, 0.0)
    return ngff_translation(path, level)


@dataclass
class InputVolume:
    """An opened input: ``reader`` (``ls_data`` VolumeReader), the model's channels, geometry."""

    path: Path
    format: str
    level: int
    reader: Any
    channels: list[int]
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    translation: tuple[float, float, float]
    dtype: Any

    def read(self, window: tuple[slice, slice, slice]):
        """``(c, z, y, x)`` of the selected channels in ``window``."""
        return self.reader.read(window, self.channels)


def _check_depth(shape: tuple[int, ...], uri: str | Path, path: Path) -> None:
    """Refuse a 2-D image (one z-plane): the model segments 3-D volumes (there is no 2-D mode)."""
    if shape[1] != 1:
        return
    c, _, y, x = shape
    seen = f"(Y, X)=({y}, {x})" if c == 1 else f"(C, Y, X)=({c}, {y}, {x})"
    raise DataError(
        f"input={uri}: {path} is a 2-D image of shape {seen}, read as (C, Z, Y, X)={shape} with one "
        f"z-plane; the model segments 3-D volumes (Z, Y, X): give a z-stack (a TIFF whose planes "
        f"are z-slices needs axes ZYX, e.g. tifffile.imwrite(path, data, imagej=True, "
        f"metadata={{'axes': 'ZYX'}}))"
    )


def _check_selected(channels: list[int] | None, count: int, path: Path) -> None:
    """Name ``predict.channels`` when it selects a channel the input does not have."""
    for c in channels or []:
        if isinstance(c, int) and not 0 <= c < count:
            raise DataError(
                f"predict.channels={list(channels or [])}: channel index {c} does not exist in input "
                f"{path}, which has {count} channel(s) (indices 0 to {count - 1})"
            )


def open_input(uri: str | Path, level: int, channels: list[int] | None) -> InputVolume:
    """Open and check the input volume.

    A 2-D image (a single z-plane) is refused: the models segment 3-D volumes, and a plane run
    as a one-voxel-deep volume would give results no one asked for.

    Raises:
        DataError / VolumeReadError: not a readable TIFF or OME-Zarr image, a missing level, a 2-D
            image (the message names the file and its shape), or a ``predict.channels`` index
            that does not exist (the message names the file and its channel count).
    """
    from ls_data.io import open_image
    from ls_data.io.base import check_channels

    path = Path(uri).expanduser().resolve()
    if not path.exists():
        raise DataError(f"input={uri}: no such file or folder")
    reader = open_image(path, level=level)
    shape = tuple(int(s) for s in reader.shape)
    if len(shape) != 4:
        raise DataError(f"input={uri}: expected a (C, Z, Y, X) volume, got shape {shape}")
    _check_depth(shape, uri, path)
    _check_selected(channels, shape[0], path)
    chans = check_channels(channels, shape[0], path=path)
    return InputVolume(
        path=path,
        format=reader.format,
        level=level,
        reader=reader,
        channels=chans,
        shape=shape[1:],  # type: ignore[arg-type]
        spacing=tuple(float(s) for s in reader.spacing),  # type: ignore[arg-type]
        translation=level_translation(path, level),
        dtype=reader.dtype,
    )
