"""Streaming writer of a new NGFF 0.4 OME-Zarr image ``(C, Z, Y, X)``.

:class:`ImageWriter` (see :mod:`ls_data.io.omezarr_stream` for the life cycle and which concurrent
writes are safe): one channel per chunk, a block-mean pyramid, ``omero`` channel labels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from ls_data.errors import DataError, VolumeReadError
from ls_data.io.base import Window, check_window
from ls_data.io.ngff import build_omero
from ls_data.io.pyramid import _downsample_mean, _level_shapes, pyramid_factors
from ls_data.io.stream_writer import _DEFAULT_CHUNKS, _PRIVATE_KEY, _load_levels, _StreamWriter
from ls_data.io.tiff import check_spacing
from ls_data.io.zarr_files import (
    Factors,
    _array_meta,
    _check_factors,
    _check_layout,
    _create_arrays,
    _delete_group,
    _floats,
    _read_attrs,
    _write_attrs,
    _zarr_format,
)

__all__ = ["ImageWriter"]


class ImageWriter(_StreamWriter):
    """A new NGFF 0.4 OME-Zarr image ``(C, Z, Y, X)``, written block by block.

    Same life cycle as :class:`LabelImageWriter`: :meth:`create`, :meth:`write` level 0 (from
    several processes: disjoint chunk-aligned regions), :meth:`build_pyramid` (block means),
    :meth:`finalize`. Arrays are chunked one channel at a time, ``(1, cz, cy, cx)``.
    """

    _lead = 1
    _what = "image"

    def __init__(self, path: Path, channel_names: list[str] | None, *args: Any) -> None:
        super().__init__(path, 2, *args)
        self._channel_names = channel_names

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """Level-0 shape ``(C, Z, Y, X)``."""
        return self._shapes[0]  # type: ignore[return-value]

    @property
    def channel_names(self) -> list[str] | None:
        """Channel labels written as ``omero`` metadata, or None."""
        return None if self._channel_names is None else list(self._channel_names)

    @classmethod
    def create(
        cls,
        path: str | Path,
        shape_czyx: Sequence[int],
        dtype: Any,
        spacing: Sequence[float],
        *,
        chunks: Sequence[int] = _DEFAULT_CHUNKS,
        factors: Sequence[Sequence[int]] | None = None,
        translation: Sequence[float] = (0.0, 0.0, 0.0),
        channel_names: Sequence[str] | None = None,
        overwrite: bool = False,
    ) -> ImageWriter:
        """Create a new OME-Zarr image group (Zarr v2) with empty level arrays and no NGFF metadata yet.

        Args:
            path: Group directory to create (conventionally ``<name>.ome.zarr``).
            shape_czyx: Level-0 shape ``(C, Z, Y, X)``.
            dtype: Any numeric (non-bool, non-complex) dtype.
            spacing: Level-0 spacing ``(sz, sy, sx)`` in micrometres.
            chunks: Spatial chunk shape ``(Z, Y, X)``; arrays are chunked ``(1, Z, Y, X)``.
            factors: Per-level downsampling factors ``(fz, fy, fx)`` relative to the previous
                level; None: :func:`pyramid_factors` of shape and spacing; ``[]``: one level.
            translation: Level-0 translation ``(tz, ty, tx)`` in micrometres.
            channel_names: One label per channel, written as ``omero`` channel labels.
            overwrite: Replace an existing group at ``path`` (only a Zarr group is deleted).

        Returns:
            The writer.

        Raises:
            DataError: Bad arguments, or ``path`` exists and ``overwrite`` is False (or it is
                not a Zarr group, which is never deleted).
        """
        path = Path(path)
        where = f"image {str(path)!r}"
        shape, spacing, chunks, translation, np_dtype = _check_layout(
            shape_czyx, 4, "shape (C, Z, Y, X)", spacing, chunks, translation, dtype, where=where
        )
        if np_dtype.kind not in "uif":
            raise DataError(f"{where}: image dtype must be an integer or float dtype, got {np_dtype}")
        names = None
        if channel_names is not None:
            names = [str(n) for n in channel_names]
            if isinstance(channel_names, str) or len(names) != shape[0]:
                raise DataError(
                    f"{where}: channel_names must name each of the {shape[0]} channel(s), "
                    f"got {channel_names!r}"
                )
        level_factors = (
            pyramid_factors(shape[1:], spacing) if factors is None else _check_factors(factors, where=where)
        )
        if path.exists():
            if not overwrite:
                raise DataError(f"{where} already exists; pass overwrite=True to replace it")
            _delete_group(path, where=where)
        shapes = [(shape[0], *s) for s in _level_shapes(shape[1:], level_factors)]
        group = zarr.open_group(path, mode="w-", zarr_format=2)
        full_chunks = (1, *chunks)
        _create_arrays(group, 2, shapes, full_chunks, np_dtype, "czyx")
        writer = cls(
            path,
            names,
            shapes,
            [tuple(max(1, min(c, s)) for c, s in zip(full_chunks, sh, strict=True)) for sh in shapes],
            np_dtype,
            spacing,
            translation,
            level_factors,
        )
        _write_attrs(path, 2, {_PRIVATE_KEY: writer._state("image", channel_names=names)})
        return writer

    @classmethod
    def open(cls, path: str | Path) -> ImageWriter:
        """Reopen an image created by :meth:`create`, finished or not.

        Raises:
            VolumeReadError: Missing group or arrays.
            DataError: The group was not created by :class:`ImageWriter`.
        """
        path = Path(path)
        where = f"image {str(path)!r}"
        fmt = _zarr_format(path)
        state = _read_attrs(path, fmt).get(_PRIVATE_KEY)
        if fmt != 2 or not isinstance(state, Mapping) or state.get("kind") != "image":
            raise DataError(f"{where} was not created by ImageWriter.create (no {_PRIVATE_KEY!r} attribute)")
        try:
            spacing = check_spacing(state["spacing"], where=where)
            translation = _floats(state["translation"], 3, "translation", where=where)
            factors = _check_factors(state["factors"], where=where)
            names = state.get("channel_names")
        except KeyError as exc:
            raise DataError(f"{where}: attribute {_PRIVATE_KEY!r} lacks {exc}") from exc
        shape0 = _array_meta(path / "0", fmt)[0]
        if len(shape0) != 4:
            raise VolumeReadError(path / "0", f"expected a (C, Z, Y, X) array, got shape {shape0}")
        shapes, chunks, dtype = _load_levels(path, fmt, shape0[1:], factors, lead=1)
        return cls(path, names, shapes, chunks, dtype, spacing, translation, factors)

    def write(self, offset_zyx: Sequence[int], data_czyx: np.ndarray) -> None:
        """Write a block of level 0, all channels at once.

        Safe alongside other processes when the blocks are disjoint and chunk-aligned in z, y, x
        (see :mod:`ls_data.io.omezarr_stream`).

        Args:
            offset_zyx: ``(z, y, x)`` of the block's first voxel.
            data_czyx: ``(C, z, y, x)`` array; converted to :attr:`dtype` when no value changes
                (integers must fit its range; floats may be narrowed to another float dtype).

        Raises:
            DataError: Wrong ndim or channel count, a dtype that cannot be stored, or a block
                outside the array.
        """
        window, data = self._check_write(offset_zyx, data_czyx, "data")
        self._write_level(0, window, data)

    def read(
        self,
        window: Sequence[slice] | None = None,
        level: int = 0,
        *,
        allow_missing_chunks: bool = False,
    ) -> np.ndarray:
        """Read a ``(z, y, x)`` window of one level, all channels.

        Returns:
            ``(C, z, y, x)`` array of :attr:`dtype`.

        Raises:
            DataError: Bad level or window.
            VolumeReadError: A chunk in the window has not been written.
        """
        level = self._check_level(level)
        window = check_window(window, self._shapes[level][1:], path=self._array_dir(level))
        return self._read_level(level, window, allow_missing_chunks=allow_missing_chunks)

    def _downsample(self, level: int, source: Window, factors: Factors) -> np.ndarray:
        data = self._read_level(level - 1, source, allow_missing_chunks=True)  # chunks checked by the caller
        return _downsample_mean(data, factors)

    def finalize(self, *, check_complete: bool = True) -> None:
        """Write the NGFF 0.4 metadata (built by yaozarrs' models), the last step of a run.

        ``multiscales`` with axes c, z, y, x (micrometres), per level a ``scale`` (spacing x
        cumulative factor) and, when non-zero, a ``translation``: the coarse voxel centre is the
        mean of the fine voxel centres it averages, ``(F - 1) / 2`` level-0 voxels after the
        first (plus the level-0 translation). With channel names, ``omero`` channels: label,
        colour and the display ``window`` NGFF requires (``start`` / ``end``: the channel's range
        in the coarsest level, which viewers such as napari take as contrast limits; ``min`` /
        ``max``: the dtype's range).

        Args:
            check_complete: First check that every chunk of every level has been written.

        Raises:
            DataError: (``check_complete``) chunks not written.
        """
        if check_complete:
            self._check_complete()
        attrs = _read_attrs(self._path, 2)
        name = self._path.name.removesuffix(".zarr").removesuffix(".ome")
        description = "mean over fz x fy x fx voxels of the previous level (edge-padded)"
        attrs["multiscales"] = [self._multiscale(name, kind="mean", description=description)]
        if self._channel_names is not None:
            attrs["omero"] = build_omero(
                self._channel_names, _CHANNEL_COLORS, self._channel_ranges(), self._dtype
            )
        _write_attrs(self._path, 2, attrs)

    def _channel_ranges(self) -> list[tuple[float, float]]:
        """Per channel, the lowest and highest value of the coarsest level (a chunk-row at a time).

        The coarsest level is about a thousandth of level 0 for a full pyramid (the whole image
        when there is one level); unwritten chunks read as 0, NaNs are skipped, and a channel
        with no finite value gets ``(0, 1)``.
        """
        level = self.levels - 1
        low = np.full(self.shape[0], np.nan)
        high = np.full(self.shape[0], np.nan)
        for window in self.chunk_windows(level, block=(1, *self._shapes[level][2:])):
            data = self._read_level(level, window, allow_missing_chunks=True).astype(np.float64)
            data[~np.isfinite(data)] = np.nan
            low = np.fmin(low, np.fmin.reduce(data, axis=(1, 2, 3)))
            high = np.fmax(high, np.fmax.reduce(data, axis=(1, 2, 3)))
        return [(0.0, 1.0) if np.isnan(a) else (float(a), float(b)) for a, b in zip(low, high, strict=True)]


_CHANNEL_COLORS = ("00FF00", "FF00FF", "00FFFF", "FF0000", "0000FF", "FFFF00", "FFFFFF")
