"""Resolving catalog URIs to filesystem paths, confined to configured roots, and format detection."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from ls_data.errors import DataError, PathOutsideRootsError, VolumeReadError

__all__ = ["VolumeFormat", "format_of", "resolve_uri"]

VolumeFormat = Literal["tiff", "ome-zarr"]

_TIFF_SUFFIXES = (".tif", ".tiff")
_ZARR_METADATA_FILES = (".zattrs", ".zgroup", "zarr.json")


def resolve_uri(
    uri: str | Path,
    *,
    base: Path | None = None,
    roots: Sequence[Path] | None = None,
) -> Path:
    """Turn a catalog URI into an absolute filesystem path, following symlinks.

    Args:
        uri: A filesystem path (a ``file://`` prefix is accepted). Relative paths are taken
            relative to ``base`` (the current directory when ``base`` is None).
        base: Directory that relative URIs are relative to (a catalog's root).
        roots: Directories the resolved path must lie in. None or empty means no restriction.

    Returns:
        The resolved absolute path (symlinks followed; the path need not exist).

    Raises:
        PathOutsideRootsError: The resolved path lies outside every root.
        DataError: ``uri`` is empty or uses a scheme other than ``file``.
    """
    text = str(uri)
    if text.startswith("file://"):
        text = text[len("file://") :]
    elif "://" in text:
        raise DataError(f"URI {text!r} is not a filesystem path (only plain paths and file:// are supported)")
    if not text:
        raise DataError("empty URI: expected a path to a .tif/.tiff file or an OME-Zarr directory")
    path = Path(text).expanduser()
    if not path.is_absolute():
        path = (Path(base).expanduser() if base is not None else Path.cwd()) / path
    resolved = path.resolve(strict=False)
    if roots:
        resolved_roots = [Path(r).expanduser().resolve(strict=False) for r in roots]
        if not any(resolved.is_relative_to(r) for r in resolved_roots):
            raise PathOutsideRootsError(uri, resolved, resolved_roots)
    return resolved


def format_of(path: str | Path) -> VolumeFormat:
    """Detect the on-disk format of a volume path.

    Args:
        path: A ``.tif``/``.tiff`` file, or an OME-Zarr group directory (an image group or a
            label group such as ``x.ome.zarr/labels/cells``).

    Returns:
        ``"tiff"`` or ``"ome-zarr"``.

    Raises:
        VolumeReadError: The path does not exist.
        DataError: The path is neither a TIFF file nor a Zarr group.
    """
    p = Path(path)
    if p.suffix.lower() in _TIFF_SUFFIXES:
        if not p.is_file():
            raise VolumeReadError(p, "file does not exist")
        return "tiff"
    if p.is_dir():
        if any((p / name).is_file() for name in _ZARR_METADATA_FILES):
            return "ome-zarr"
        raise DataError(f"directory {str(p)!r} is not a Zarr group (no .zattrs, .zgroup or zarr.json)")
    if not p.exists():
        raise VolumeReadError(p, "path does not exist")
    raise DataError(
        f"unknown volume format for {str(p)!r}: expected a .tif/.tiff file or an OME-Zarr directory"
    )


def read_json(path: Path) -> dict:
    """Read a JSON object from ``path``; errors name the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise VolumeReadError(path, f"cannot open metadata file: {exc}") from exc
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise VolumeReadError(path, f"invalid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise VolumeReadError(path, f"expected a JSON object, got {type(value).__name__}")
    return value
