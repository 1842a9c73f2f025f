"""Opening image and label volumes by URI, whatever their format."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ls_data.errors import DataError
from ls_data.io.base import LabelReader, VolumeReader
from ls_data.io.omezarr import OmeZarrLabelReader, OmeZarrVolumeReader
from ls_data.io.paths import format_of, resolve_uri
from ls_data.io.tiff import TiffLabelReader, TiffVolumeReader

__all__ = ["open_image", "open_labels"]


def _resolve(
    uri: str | Path, *, level: int, roots: Sequence[Path] | None, base: Path | None
) -> tuple[Path, str]:
    """The checked path of ``uri`` and its format; TIFF volumes have only level 0."""
    path = resolve_uri(uri, base=base, roots=roots)
    fmt = format_of(path)
    if fmt == "tiff" and level != 0:
        raise DataError(f"{str(path)!r}: TIFF volumes have only level 0, got level={level}")
    return path, fmt


def open_image(
    uri: str | Path,
    *,
    level: int = 0,
    roots: Sequence[Path] | None = None,
    base: Path | None = None,
    allow_missing_chunks: bool = False,
) -> VolumeReader:
    """Open an image volume ``(C, Z, Y, X)`` for windowed reads.

    Args:
        uri: A ``.tif``/``.tiff`` file or an OME-Zarr image group directory.
        level: Multiscale level (OME-Zarr); TIFF has only level 0.
        roots: Directories the path must resolve into (symlinks followed); None: no restriction.
        base: Directory that a relative ``uri`` is relative to.
        allow_missing_chunks: OME-Zarr only: read absent chunks as the fill value instead of
            raising (for arrays written without empty chunks).

    Returns:
        A :class:`VolumeReader` (picklable; reopens its files lazily in each process).

    Raises:
        PathOutsideRootsError: The path resolves outside ``roots``.
        VolumeReadError: Missing, truncated or corrupt file or array.
        DataError: Unknown format, level or axis layout.
    """
    path, fmt = _resolve(uri, level=level, roots=roots, base=base)
    if fmt == "tiff":
        return TiffVolumeReader(path)
    return OmeZarrVolumeReader(path, level=level, allow_missing_chunks=allow_missing_chunks)


def open_labels(
    uri: str | Path,
    *,
    level: int = 0,
    roots: Sequence[Path] | None = None,
    base: Path | None = None,
    allow_missing_chunks: bool = False,
) -> LabelReader:
    """Open an instance label volume ``(Z, Y, X)`` for windowed reads.

    Args:
        uri: A ``.tif``/``.tiff`` label file (classes from ``<name>_classes.json``), an OME-Zarr
            label group (``x.ome.zarr/labels/cells``), or an OME-Zarr image group whose
            ``labels`` group is used.
        level: Multiscale level (OME-Zarr); TIFF has only level 0.
        roots: Directories the path must resolve into (symlinks followed); None: no restriction.
        base: Directory that a relative ``uri`` is relative to.
        allow_missing_chunks: OME-Zarr only: read absent chunks as the fill value instead of raising.

    Returns:
        A :class:`LabelReader`.

    Raises:
        PathOutsideRootsError: The path resolves outside ``roots``.
        VolumeReadError: Missing, truncated or corrupt file or array.
        DataError: Non-integer labels, unknown format or level, or (OME-Zarr) labels whose
            shape differs from their image's.
    """
    path, fmt = _resolve(uri, level=level, roots=roots, base=base)
    if fmt == "tiff":
        return TiffLabelReader(path)
    return OmeZarrLabelReader(path, level=level, allow_missing_chunks=allow_missing_chunks)
