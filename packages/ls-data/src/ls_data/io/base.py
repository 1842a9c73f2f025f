"""Reader interfaces shared by the TIFF and OME-Zarr backends, and window / channel checks."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from ls_data.errors import DataError

__all__ = [
    "LabelReader",
    "MappedArray",
    "MappedLabelReader",
    "MappedVolumeReader",
    "VolumeReader",
    "Window",
    "check_channels",
    "check_same_grid",
    "check_window",
    "contiguous_runs",
    "plan_axes",
    "planned_index",
    "planned_shape",
    "read_planned",
    "unit_to_um",
]

Window = tuple[slice, slice, slice]

_UNIT_TO_UM = {
    "": 1.0,
    "pixel": 1.0,
    "micron": 1.0,
    "microns": 1.0,
    "um": 1.0,
    "µm": 1.0,
    "μm": 1.0,
    "\\u00b5m": 1.0,
    "micrometer": 1.0,
    "micrometre": 1.0,
    "nm": 1e-3,
    "nanometer": 1e-3,
    "nanometre": 1e-3,
    "mm": 1e3,
    "millimeter": 1e3,
    "millimetre": 1e3,
    "cm": 1e4,
    "centimeter": 1e4,
    "m": 1e6,
    "meter": 1e6,
    "inch": 25400.0,
}


def unit_to_um(unit: str | None, *, where: str) -> float:
    """Factor converting a length in ``unit`` to micrometres.

    Args:
        unit: Unit name as found in ImageJ / OME metadata (None or "" means micrometres).
        where: The file or key the unit came from, for the error message.

    Raises:
        DataError: Unknown unit.
    """
    key = (unit or "").strip().lower()
    if key not in _UNIT_TO_UM:
        raise DataError(
            f"{where}: unknown spatial unit {unit!r}; known: {sorted(k for k in _UNIT_TO_UM if k)}"
        )
    return _UNIT_TO_UM[key]


def check_window(window: Sequence[slice] | None, shape: Sequence[int], *, path: Path) -> Window:
    """Validate a ``(z, y, x)`` window against a volume's spatial shape.

    Args:
        window: Three slices with step None/1 and bounds inside the volume (None bounds mean
            the volume's start/end), or None for the whole volume.
        shape: Spatial shape ``(Z, Y, X)``.
        path: The volume's path, named in errors.

    Returns:
        Three slices with explicit integer bounds.

    Raises:
        DataError: Wrong number of slices, a step other than 1, or bounds outside the volume.
    """
    shape = tuple(int(s) for s in shape)
    if window is None:
        return tuple(slice(0, s) for s in shape)  # type: ignore[return-value]
    window = tuple(window)
    if len(window) != 3 or not all(isinstance(s, slice) for s in window):
        raise DataError(f"{str(path)!r}: window must be three slices (z, y, x), got {window!r}")
    out = []
    for axis, (s, size) in zip("zyx", zip(window, shape, strict=True), strict=True):
        if s.step not in (None, 1):
            raise DataError(f"{str(path)!r}: window step on axis {axis} must be 1, got {s.step}")
        start = 0 if s.start is None else int(s.start)
        stop = size if s.stop is None else int(s.stop)
        if not 0 <= start <= stop <= size:
            raise DataError(
                f"{str(path)!r}: window {axis}={start}:{stop} is out of bounds for volume shape "
                f"(Z, Y, X)={shape}"
            )
        out.append(slice(start, stop))
    return tuple(out)  # type: ignore[return-value]


def check_channels(channels: Sequence[int] | None, num_channels: int, *, path: Path) -> list[int]:
    """Validate channel indices against the number of channels; None selects all."""
    if channels is None:
        return list(range(num_channels))
    out = []
    for c in channels:
        if isinstance(c, bool) or not isinstance(c, int | np.integer):
            raise DataError(f"{str(path)!r}: channel index must be an int, got {c!r}")
        if not 0 <= int(c) < num_channels:
            raise DataError(
                f"{str(path)!r}: channel index {int(c)} is out of range for a volume with {num_channels} "
                f"channel(s)"
            )
        out.append(int(c))
    return out


class _Reader(ABC):
    """What image and label readers share: metadata, closing, and use as a context manager."""

    path: Path
    format: str

    @property
    @abstractmethod
    def dtype(self) -> np.dtype:
        """Voxel dtype on disk (an integer dtype for label volumes)."""

    @property
    @abstractmethod
    def spacing(self) -> tuple[float, float, float]:
        """Voxel spacing ``(sz, sy, sx)`` in micrometres."""

    @property
    @abstractmethod
    def chunks(self) -> tuple[int, int, int] | None:
        """Storage chunk shape ``(Z, Y, X)``, or None for contiguous storage."""

    @abstractmethod
    def close(self) -> None:
        """Release open file handles; a later read reopens them."""

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(path={str(self.path)!r}, shape={self.shape}, dtype={self.dtype})"


class VolumeReader(_Reader):
    """A multi-channel image volume ``(C, Z, Y, X)`` on disk that reads windows on demand.

    Readers hold no open file handles when pickled; they reopen lazily in the process that
    uses them, so one reader can be shared with DataLoader workers. TensorStore (OME-Zarr) does
    not survive ``fork()`` once used in a process: start workers with the ``forkserver`` or
    ``spawn`` multiprocessing context.
    """

    @property
    @abstractmethod
    def shape(self) -> tuple[int, int, int, int]:
        """``(C, Z, Y, X)``."""

    @abstractmethod
    def read(
        self, window: Sequence[slice] | None = None, channels: Sequence[int] | None = None
    ) -> np.ndarray:
        """Read a window of selected channels.

        Args:
            window: ``(z, y, x)`` slices (step 1, inside the volume); None reads everything.
            channels: Channel indices; None reads all channels in order.

        Returns:
            Array ``(c, z, y, x)`` with the file's dtype; only the window is read from disk.

        Raises:
            DataError: Window out of bounds or channel out of range.
            VolumeReadError: The data cannot be read (corrupt file, missing chunk).
        """


class LabelReader(_Reader):
    """An instance label volume ``(Z, Y, X)`` (integer, 0 = background) with per-instance classes."""

    @property
    @abstractmethod
    def shape(self) -> tuple[int, int, int]:
        """``(Z, Y, X)``."""

    @abstractmethod
    def read(self, window: Sequence[slice] | None = None) -> np.ndarray:
        """Read a ``(z, y, x)`` window (None: everything) as an integer array; only the window is read."""

    @abstractmethod
    def classes(self) -> dict[int, int]:
        """Class (>= 1) of each instance id that the metadata names; ``{}`` when none are given."""


class MappedArray(Protocol):
    """One stored array of a format backend, mapped to target axes ``"CZYX"`` or ``"ZYX"``."""

    shape: tuple[int, ...]
    dtype: np.dtype
    spacing: tuple[float, float, float]
    chunks: tuple[int, int, int] | None

    def read(self, index: Mapping[str, slice]) -> np.ndarray:
        """Read ``index`` (target letter -> slice) as an array in target axis order."""
        ...

    def close(self) -> None:
        """Release open handles; a later read reopens them."""
        ...


class _MappedReader:
    """Reader metadata and closing delegated to the backend's :class:`MappedArray` ``_source``."""

    _source: MappedArray

    @property
    def shape(self) -> tuple[int, ...]:
        return self._source.shape

    @property
    def dtype(self) -> np.dtype:
        return self._source.dtype

    @property
    def spacing(self) -> tuple[float, float, float]:
        return self._source.spacing

    @property
    def chunks(self) -> tuple[int, int, int] | None:
        return self._source.chunks

    def close(self) -> None:
        """Release open file handles; a later read reopens them."""
        self._source.close()


class MappedVolumeReader(_MappedReader, VolumeReader):
    """A :class:`VolumeReader` over a ``"CZYX"`` :class:`MappedArray`: checks windows and channels.

    Subclasses set ``path``, ``format`` and ``_source``.
    """

    def read(
        self, window: Sequence[slice] | None = None, channels: Sequence[int] | None = None
    ) -> np.ndarray:
        z, y, x = check_window(window, self.shape[1:], path=self.path)
        chans = check_channels(channels, self.shape[0], path=self.path)
        if not chans:
            return np.zeros((0, z.stop - z.start, y.stop - y.start, x.stop - x.start), self.dtype)
        runs = contiguous_runs(chans)
        parts = [self._source.read({"C": slice(a, b), "Z": z, "Y": y, "X": x}) for a, b in runs]
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)


class MappedLabelReader(_MappedReader, LabelReader):
    """A :class:`LabelReader` over a ``"ZYX"`` :class:`MappedArray`: checks windows.

    Subclasses set ``path``, ``format`` and ``_source``, and implement :meth:`classes`.
    """

    def read(self, window: Sequence[slice] | None = None) -> np.ndarray:
        z, y, x = check_window(window, self.shape, path=self.path)
        return self._source.read({"Z": z, "Y": y, "X": x})


def check_label_dtype(dtype: np.dtype, *, path: Path) -> None:
    """Raise DataError unless ``dtype`` is an integer dtype."""
    if not np.issubdtype(dtype, np.integer):
        raise DataError(f"{str(path)!r}: label volume must have an integer dtype, got {np.dtype(dtype)}")


def check_same_grid(image: VolumeReader, labels: LabelReader) -> None:
    """Check that an image and its label volume have the same spatial shape.

    Spacing is not compared: label files written by annotation tools often carry none.

    Raises:
        DataError: The spatial shapes differ; the message names both files.
    """
    if tuple(image.shape[1:]) != tuple(labels.shape):
        raise DataError(
            f"image {str(image.path)!r} has spatial shape (Z, Y, X)={tuple(image.shape[1:])} but labels "
            f"{str(labels.path)!r} have shape {tuple(labels.shape)}"
        )


def plan_axes(axes: str, shape: Sequence[int], target: str, path: Path) -> list[str | None]:
    """Assign each stored axis a target axis letter, or None for a size-1 axis that is dropped.

    Args:
        axes: One letter per stored axis (TIFF style: C, S, Z, Q, I, T, Y, X, ...).
        shape: Stored shape.
        target: ``"CZYX"`` or ``"ZYX"``.
        path: File named in errors.

    Raises:
        DataError: An axis that has no place in ``target`` has size > 1, or Y/X are missing.
    """
    plan: list[str | None] = []
    for letter, size in zip(axes, shape, strict=True):
        want: str | None
        if letter in "YX":
            want = letter
        elif letter == "C" or (letter == "S" and "C" not in axes):
            want = "C"
        elif letter == "Z" or (letter in "QI" and "Z" not in axes and sum(a in "QI" for a in axes) == 1):
            want = "Z"
        else:
            want = None
        if want is not None and want not in target:
            want = None  # e.g. a channel axis in a label volume: allowed only with size 1
        if want is None and size != 1:
            raise DataError(
                f"{str(path)!r}: cannot map axes {axes!r} with shape {tuple(shape)} to {target}: "
                f"axis {letter!r} has size {size} (only size 1 is allowed for it)"
            )
        if want is not None and want in plan:
            raise DataError(f"{str(path)!r}: axes {axes!r} map two axes to {want!r}")
        plan.append(want)
    for letter in "YX":
        if letter not in plan:
            raise DataError(f"{str(path)!r}: axes {axes!r} have no {letter} axis")
    return plan


def planned_shape(plan: Sequence[str | None], stored: Sequence[int], target: str) -> tuple[int, ...]:
    """Target-axis sizes of a stored shape (or chunk shape) under ``plan``; missing axes have size 1."""
    sizes = {want: int(n) for want, n in zip(plan, stored, strict=True) if want}
    return tuple(sizes.get(letter, 1) for letter in target)


def planned_index(plan: Sequence[str | None], index: Mapping[str, slice]) -> tuple[slice | int, ...]:
    """Stored-axis index tuple for target-axis slices (dropped axes are indexed with 0)."""
    return tuple(index[want] if want else 0 for want in plan)


def read_planned(data: np.ndarray, plan: Sequence[str | None], target: str, dtype: np.dtype) -> np.ndarray:
    """Reorder data read with :func:`planned_index` to ``target`` axis order (missing axes size 1)."""
    kept = [want for want in plan if want]
    data = np.transpose(np.asarray(data), [kept.index(letter) for letter in target if letter in kept])
    for axis, letter in enumerate(target):
        if letter not in kept:
            data = np.expand_dims(data, axis)
    return np.ascontiguousarray(data, dtype=dtype)


def contiguous_runs(indices: Sequence[int]) -> list[tuple[int, int]]:
    """Split indices into ascending runs of consecutive values, as (start, stop) pairs."""
    runs: list[tuple[int, int]] = []
    for i in indices:
        if runs and runs[-1][1] == i:
            runs[-1] = (runs[-1][0], i + 1)
        else:
            runs.append((i, i + 1))
    return runs
