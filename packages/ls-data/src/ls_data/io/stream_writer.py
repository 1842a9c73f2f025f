"""The shared base of the streaming OME-Zarr writers: level arrays written window by window.

:class:`_StreamWriter` holds the paths and metadata of one multiscale group and opens its
TensorStore handles lazily in each process (so writers pickle); it writes and reads windows,
checks and lists written chunks, builds the pyramid window by window and builds the NGFF
``multiscales`` entry (through yaozarrs' models, :mod:`ls_data.io.ngff`). :func:`_load_levels`
reads the stored level arrays back for ``open``.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorstore as ts

from ls_data.errors import DataError, VolumeReadError
from ls_data.io.base import Window, check_window
from ls_data.io.chunk_keys import ChunkLayout, chunk_key, chunk_layout, present_chunks
from ls_data.io.ngff import build_multiscale
from ls_data.io.pyramid import _cumulative, _level_shapes
from ls_data.io.zarr_files import Factors, _array_meta, _ints

_PRIVATE_KEY = "ls_data_stream"
_STATE_VERSION = 1
_DEFAULT_CHUNKS = (32, 128, 128)


class _StreamWriter:
    """Level arrays of one multiscale group, written and read window by window with TensorStore.

    Arrays have ``_lead`` non-spatial leading axes (0 for labels, 1 channel axis for images),
    then z, y, x. Holds paths and metadata only; TensorStore handles are opened lazily per process.
    """

    _lead: int
    _what: str

    def __init__(
        self,
        path: Path,
        fmt: int,
        shapes: Sequence[tuple[int, ...]],
        chunks: Sequence[tuple[int, ...]],
        dtype: np.dtype,
        spacing: tuple[float, float, float],
        translation: tuple[float, float, float],
        factors: Sequence[Factors],
    ) -> None:
        self._path = path
        self._fmt = fmt
        self._shapes = [tuple(s) for s in shapes]  # full array shapes, per level
        self._array_chunks = [tuple(c) for c in chunks]  # full stored chunk shapes, per level
        self._dtype = np.dtype(dtype)
        self._spacing = spacing
        self._translation = translation
        self._factors = [tuple(f) for f in factors]
        self._stores: dict[int, Any] = {}
        self._layouts: dict[int, ChunkLayout] = {}  # chunk key layout per level, from its metadata
        self._pid = os.getpid()

    # -- read-only properties ---------------------------------------------------------------

    @property
    def path(self) -> Path:
        """The group directory whose arrays ``0``, ``1``, ... this writer fills."""
        return self._path

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Level-0 spacing ``(sz, sy, sx)`` in micrometres."""
        return self._spacing

    @property
    def translation(self) -> tuple[float, float, float]:
        """Level-0 translation ``(tz, ty, tx)`` in micrometres (the centre of voxel 0)."""
        return self._translation

    @property
    def chunks(self) -> tuple[int, int, int]:
        """Spatial chunk shape ``(cz, cy, cx)`` of level 0 (coarser levels clip it to their shape)."""
        return self._array_chunks[0][self._lead :]  # type: ignore[return-value]

    @property
    def dtype(self) -> np.dtype:
        """The stored dtype."""
        return self._dtype

    @property
    def levels(self) -> int:
        """Number of multiscale levels (``len(factors) + 1``)."""
        return len(self._shapes)

    @property
    def factors(self) -> list[Factors]:
        """Downsampling factor ``(fz, fy, fx)`` of each level after 0, relative to the previous one."""
        return list(self._factors)

    @property
    def level_shapes(self) -> list[tuple[int, ...]]:
        """Array shape of every level."""
        return list(self._shapes)

    # -- pickling and handles ---------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_stores"] = {}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._pid = os.getpid()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(path={str(self._path)!r}, shape={self._shapes[0]}, dtype={self._dtype}, "
            f"levels={self.levels})"
        )

    def close(self) -> None:
        """Drop the open TensorStore handles; the next read or write reopens them."""
        self._stores = {}

    def _array_dir(self, level: int) -> Path:
        return self._path / str(level)

    def _layout(self, level: int) -> ChunkLayout:
        if level not in self._layouts:
            self._layouts[level] = chunk_layout(self._array_dir(level), self._fmt)
        return self._layouts[level]

    def _store(self, level: int) -> Any:
        if self._pid != os.getpid():  # handles do not survive fork: reopen in this process
            self._stores, self._pid = {}, os.getpid()
        store = self._stores.get(level)
        if store is None:
            spec = {
                "driver": "zarr" if self._fmt == 2 else "zarr3",
                "kvstore": {"driver": "file", "path": str(self._array_dir(level))},
                # Store all-zero chunks too, so that a missing chunk file means "not written".
                "store_data_equal_to_fill_value": True,
            }
            try:
                store = ts.open(spec, open=True, read=True, write=True).result()
            except (ValueError, RuntimeError) as exc:
                raise VolumeReadError(self._array_dir(level), f"cannot open Zarr array: {exc}") from exc
            if tuple(store.shape) != self._shapes[level]:
                raise VolumeReadError(
                    self._array_dir(level),
                    f"array has shape {tuple(store.shape)}, expected {self._shapes[level]} (changed?)",
                )
            self._stores[level] = store
        return store

    def _check_level(self, level: Any) -> int:
        if isinstance(level, bool) or not isinstance(level, int | np.integer) or not 0 <= level < self.levels:
            raise DataError(
                f"{str(self._path)!r}: level {level!r} does not exist; it has {self.levels} level(s)"
            )
        return int(level)

    # -- chunks -------------------------------------------------------------------------------

    def _grid(self, level: int) -> tuple[int, ...]:
        return tuple(-(-s // c) for s, c in zip(self._shapes[level], self._array_chunks[level], strict=True))

    def missing_chunks(self, level: int = 0) -> list[tuple[int, ...]]:
        """Chunk grid indices of ``level`` whose chunk file does not exist (never written).

        Every write stores whole chunks, also all-zero ones, so after a complete run this is
        empty; after an interrupted one it names the chunks still to write (chunk ``i`` along an
        axis covers voxels ``i*c .. (i+1)*c - 1``). Costs one directory listing per chunk row.

        Args:
            level: Multiscale level.

        Returns:
            Sorted chunk indices, in the array's axis order (``(z, y, x)`` for labels,
            ``(c, z, y, x)`` for images).
        """
        level = self._check_level(level)
        grid = self._grid(level)
        present = present_chunks(self._array_dir(level), self._layout(level), grid)
        if len(present) == math.prod(grid):
            return []
        return [idx for idx in itertools.product(*(range(n) for n in grid)) if idx not in present]

    def _check_chunks(self, level: int, index: Sequence[slice], *, action: str) -> None:
        """Raise VolumeReadError when a chunk that ``index`` touches has no file."""
        ranges = []
        for ix, chunk in zip(index, self._array_chunks[level], strict=True):
            if ix.stop <= ix.start:
                return
            ranges.append(range(ix.start // chunk, (ix.stop - 1) // chunk + 1))
        for idx in itertools.product(*ranges):
            key = chunk_key(idx, self._layout(level))
            if not (self._array_dir(level) / key).is_file():
                raise VolumeReadError(
                    self._array_dir(level) / key,
                    f"chunk {idx} of level {level} of {str(self._path)!r} has not been written; {action}",
                )

    # -- windows ------------------------------------------------------------------------------

    def _full_index(self, window: Sequence[slice]) -> tuple[slice, ...]:
        lead = tuple(slice(0, n) for n in self._shapes[0][: self._lead])
        return (*lead, *window)

    def _read_level(self, level: int, window: Window, *, allow_missing_chunks: bool) -> np.ndarray:
        index = self._full_index(window)
        if not allow_missing_chunks:
            self._check_chunks(
                level, index, action="write it before reading it (or allow_missing_chunks=True)"
            )
        try:
            data = self._store(level)[index].read().result()
        except (ValueError, RuntimeError) as exc:
            raise VolumeReadError(self._array_dir(level), f"cannot read window {window}: {exc}") from exc
        return np.asarray(data, dtype=self._dtype)

    def _write_level(self, level: int, window: Window, data: np.ndarray) -> None:
        try:
            self._store(level)[self._full_index(window)].write(data).result()
        except (ValueError, RuntimeError) as exc:
            raise VolumeReadError(self._array_dir(level), f"cannot write window {window}: {exc}") from exc

    def _check_write(self, offset: Any, data: Any, kind: str) -> tuple[Window, np.ndarray]:
        """Validate a level-0 write: ndim, dtype (values must fit the stored dtype) and bounds."""
        where = f"{self._what} {str(self._path)!r}"
        data = np.asarray(data)
        ndim = self._lead + 3
        if data.ndim != ndim:
            raise DataError(f"{where}: {kind} must have {ndim} dimensions, got shape {tuple(data.shape)}")
        if self._lead and data.shape[0] != self._shapes[0][0]:
            raise DataError(
                f"{where}: {kind} has {data.shape[0]} channel(s), the image has {self._shapes[0][0]}; "
                f"write all channels at once"
            )
        data = self._check_values(data, where, kind)
        start = _ints(offset, 3, "offset (z, y, x)", where=where, minimum=0)
        stop = tuple(a + n for a, n in zip(start, data.shape[self._lead :], strict=True))
        if any(b > s for b, s in zip(stop, self._shapes[0][self._lead :], strict=True)):
            raise DataError(
                f"{where}: {kind} of shape {tuple(data.shape)} at offset (z, y, x)={start} is out of bounds "
                f"for the array of shape {self._shapes[0]}"
            )
        window = tuple(slice(a, b) for a, b in zip(start, stop, strict=True))
        return window, data  # type: ignore[return-value]

    def _check_values(self, data: np.ndarray, where: str, kind: str) -> np.ndarray:
        """``data`` converted to the stored dtype; values that would change raise DataError."""
        src, dst = data.dtype, self._dtype
        if src == dst or np.can_cast(src, dst, "safe"):
            return data.astype(dst, copy=False)
        if np.issubdtype(src, np.integer) and np.issubdtype(dst, np.integer):
            if data.size:
                lo, hi, info = data.min(), data.max(), np.iinfo(dst)
                if lo < info.min or hi > info.max:
                    raise DataError(
                        f"{where}: {kind} values {lo}..{hi} do not fit the array dtype {dst} "
                        f"({info.min}..{info.max})"
                    )
            return data.astype(dst)
        if np.issubdtype(src, np.floating) and np.issubdtype(dst, np.floating):
            return data.astype(dst)
        raise DataError(f"{where}: cannot store {kind} of dtype {src} in an array of dtype {dst}")

    # -- pyramid ------------------------------------------------------------------------------

    def chunk_windows(self, level: int = 0, *, block: Sequence[int] | None = None) -> list[Window]:
        """Chunk-aligned ``(z, y, x)`` windows tiling one level, in C order.

        Use them to write level 0 block by block (disjoint chunk-aligned windows may be written
        by different processes at once), or to share :meth:`build_pyramid_window` calls.

        Args:
            level: Multiscale level.
            block: Window shape ``(z, y, x)`` in voxels of ``level``, rounded up to whole chunks
                of that level (windows at the array end are cut to it); None: one chunk.

        Returns:
            Windows (three slices each) covering the level exactly once.
        """
        level = self._check_level(level)
        shape = self._shapes[level][self._lead :]
        chunks = self._array_chunks[level][self._lead :]
        if block is None:
            step = chunks
        else:
            block = _ints(block, 3, "block (z, y, x)", where=f"{str(self._path)!r}", minimum=1)
            step = tuple(-(-b // c) * c for b, c in zip(block, chunks, strict=True))
        starts = [range(0, n, s) for n, s in zip(shape, step, strict=True)]
        return [
            tuple(slice(a, min(a + s, n)) for a, s, n in zip(corner, step, shape, strict=True))  # type: ignore[misc]
            for corner in itertools.product(*starts)
        ]

    def build_pyramid_window(self, level: int, window: Sequence[slice]) -> None:
        """Compute one window of ``level`` (>= 1) from level ``level - 1`` and write it.

        Reads only the window's footprint in level ``level - 1``, whose chunks must all have
        been written. Windows from :meth:`chunk_windows` are chunk-aligned, so different
        processes may build different windows of one level at the same time.

        Raises:
            VolumeReadError: A source chunk has not been written.
        """
        level = self._check_level(level)
        if level == 0:
            raise DataError(f"{str(self._path)!r}: level 0 is written with write(), not built")
        window = check_window(window, self._shapes[level][self._lead :], path=self._path)
        f = self._factors[level - 1]
        src_shape = self._shapes[level - 1][self._lead :]
        source = tuple(
            slice(w.start * fi, min(w.stop * fi, n)) for w, fi, n in zip(window, f, src_shape, strict=True)
        )
        self._check_chunks(
            level - 1,
            self._full_index(source),
            action="write all of level 0 (and build the levels in order) before build_pyramid",
        )
        self._write_level(level, window, self._downsample(level, source, f))

    def build_pyramid(self, *, block: Sequence[int] | None = None) -> None:
        """Compute every level >= 1 from the previous one, streamed window by window.

        Memory holds one window of the level being written and its footprint in the previous
        level (``block`` times the factor, times the channels for images). Windows are
        chunk-aligned. Call it once level 0 is completely written, in one process (or share out
        the :meth:`chunk_windows` of each level to :meth:`build_pyramid_window` calls in several
        processes, level after level).

        Args:
            block: Window shape ``(z, y, x)`` in voxels of the level being written, rounded up to
                whole chunks; None: one chunk in z, two chunks in y and x.

        Raises:
            VolumeReadError: A chunk of level 0 has not been written.
        """
        for level in range(1, self.levels):
            step = block
            if step is None:
                step = tuple(
                    c * m for c, m in zip(self._array_chunks[level][self._lead :], (1, 2, 2), strict=True)
                )
            for window in self.chunk_windows(level, block=step):
                self.build_pyramid_window(level, window)

    def _downsample(self, level: int, source: Window, factors: Factors) -> np.ndarray:
        raise NotImplementedError

    def _check_complete(self) -> None:
        for level in range(self.levels):
            missing = self.missing_chunks(level)
            if missing:
                hint = "write every block of level 0" if level == 0 else "call build_pyramid()"
                raise DataError(
                    f"{self._what} {str(self._path)!r}: {len(missing)} chunk(s) of level {level} have not "
                    f"been written (first: {missing[:3]}); {hint} before finalize(), or pass "
                    f"check_complete=False"
                )

    def _multiscale(self, name: str, *, kind: str, description: str) -> dict[str, Any]:
        """This writer's NGFF multiscales entry (built by yaozarrs' model of this group's NGFF
        version): ``kind`` is how each level was made from the one before, ``"mean"`` (centres
        shift) or ``"nearest"`` (stride). Scale = spacing x cumulative factor; translation = the
        first voxel centre."""
        scales, shifts = [], []
        for cum in _cumulative(self._factors):
            scales.append([1.0] * self._lead + [s * f for s, f in zip(self._spacing, cum, strict=True)])
            # A mean over f voxels puts the coarse voxel's centre at the mean of their centres,
            # (f - 1) / 2 fine voxels after the first; a stride keeps the first voxel's centre.
            shifts.append(
                [0.0] * self._lead
                + [
                    t + ((f - 1) / 2 * s if kind == "mean" else 0.0)
                    for t, f, s in zip(self._translation, cum, self._spacing, strict=True)
                ]
            )
        return build_multiscale(
            self._fmt,
            name=name,
            channel_axis=self._lead > 0,
            scales=scales,
            translations=shifts,
            kind=kind,
            metadata={
                "description": description,
                "method": f"ls_data.io.{type(self).__name__}.build_pyramid",
                "factors": [list(f) for f in self._factors],
            },
        )

    def _state(self, kind: str, **extra: Any) -> dict[str, Any]:
        return {
            "kind": kind,
            "version": _STATE_VERSION,
            "spacing": list(self._spacing),
            "translation": list(self._translation),
            "factors": [list(f) for f in self._factors],
            **extra,
        }


def _load_levels(
    path: Path, fmt: int, shape: Sequence[int], factors: Sequence[Factors], *, lead: int
) -> tuple[list[tuple[int, ...]], list[tuple[int, ...]], np.dtype]:
    """Shapes, chunks and dtype of the stored level arrays, checked against the pyramid geometry."""
    shapes, chunks, dtypes = [], [], []
    for level in range(len(factors) + 1):
        s, c, d = _array_meta(path / str(level), fmt)
        shapes.append(s)
        chunks.append(c)
        dtypes.append(d)
    expected = [(*shapes[0][:lead], *s) for s in _level_shapes(shape, factors)]
    if shapes != expected or len(set(dtypes)) != 1:
        raise VolumeReadError(
            path,
            f"stored level arrays (shapes {shapes}, dtypes {sorted({str(d) for d in dtypes})}) do not match "
            f"the pyramid factors {list(factors)}",
        )
    return shapes, chunks, dtypes[0]
