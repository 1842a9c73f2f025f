"""Zarr file, metadata and argument-check helpers shared by the streaming OME-Zarr writers.

Argument checks (ints, floats, factors, label names, image-label properties) and Zarr v2 / v3 group
and array helpers that read and write the JSON metadata directly: group format, attributes
(swapped in atomically), the NGFF block (Zarr v3: under ``ome``), array metadata, level-array
creation, guarded group deletion.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from ls_data.errors import DataError, VolumeReadError
from ls_data.io.omezarr_write import _create_array
from ls_data.io.paths import read_json
from ls_data.io.tiff import check_spacing

NGFF_V3_VERSION = "0.5"

Factors = tuple[int, int, int]


# --------------------------------------------------------------------------------------------
# Argument checks


def _ints(values: Any, n: int, key: str, *, where: str, minimum: int) -> tuple[int, ...]:
    """``n`` ints >= ``minimum`` (numpy ints accepted, bools and floats refused)."""
    try:
        items = tuple(values)
    except TypeError:
        items = ()
    if len(items) != n or not all(
        isinstance(v, int | np.integer) and not isinstance(v, bool) and int(v) >= minimum for v in items
    ):
        raise DataError(f"{where}: {key} must be {n} ints >= {minimum}, got {values!r}")
    return tuple(int(v) for v in items)


def _floats(values: Any, n: int, key: str, *, where: str) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        out = ()
    if len(out) != n or not all(math.isfinite(v) for v in out):
        raise DataError(f"{where}: {key} must be {n} finite numbers, got {values!r}")
    return out


def _check_layout(
    shape: Any,
    ndim: int,
    shape_key: str,
    spacing: Any,
    chunks: Any,
    translation: Any,
    dtype: Any,
    *,
    where: str,
) -> tuple[tuple[int, ...], tuple[float, float, float], tuple[int, ...], tuple[float, ...], np.dtype]:
    """The checked ``(shape, spacing, chunks, translation, dtype)`` of a streaming writer's ``create``.

    ``shape`` has ``ndim`` axes, named in errors by ``shape_key`` (e.g. ``"shape (C, Z, Y, X)"``);
    chunks and translation are ``(z, y, x)``.
    """
    shape = _ints(shape, ndim, shape_key, where=where, minimum=1)
    spacing = check_spacing(spacing, where=where)
    chunks = _ints(chunks, 3, "chunks (Z, Y, X)", where=where, minimum=1)
    translation = _floats(translation, 3, "translation (z, y, x)", where=where)
    try:
        np_dtype = np.dtype(dtype)
    except TypeError as exc:
        raise DataError(f"{where}: unknown dtype {dtype!r}") from exc
    return shape, spacing, chunks, translation, np_dtype


def _check_factors(factors: Any, *, where: str) -> list[Factors]:
    try:
        items = list(factors)
    except TypeError as exc:
        raise DataError(
            f"{where}: factors must be a list of (fz, fy, fx) int triples, got {factors!r}"
        ) from exc
    return [_ints(f, 3, f"factors[{i}]", where=where, minimum=1) for i, f in enumerate(items)]  # type: ignore[misc]


def _check_name(name: Any, *, where: str) -> str:
    if not isinstance(name, str) or not name or name in (".", "..") or any(c in name for c in "/\\"):
        raise DataError(f"{where}: invalid label name {name!r} (a non-empty folder name without '/')")
    return name


def _check_properties(properties: Any, *, where: str) -> list[dict[str, Any]]:
    """image-label ``properties``: dicts with an int ``label-value`` and JSON-serialisable values."""
    if properties is None:
        return []
    out = []
    for i, entry in enumerate(properties):
        if not isinstance(entry, Mapping):
            raise DataError(f"{where}: properties[{i}] must be a dict, got {entry!r}")
        value = entry.get("label-value")
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise DataError(f"{where}: properties[{i}] needs an int 'label-value', got {value!r}")
        item = {str(k): v for k, v in entry.items()}
        item["label-value"] = int(value)
        try:
            json.dumps(item, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise DataError(f"{where}: properties[{i}] is not JSON-serialisable: {exc}") from exc
        out.append(item)
    return out


# --------------------------------------------------------------------------------------------
# Zarr groups, arrays and attributes (JSON read and written directly)


def _zarr_format(group: Path) -> int:
    """2 or 3 for an existing Zarr group directory.

    Raises:
        VolumeReadError: Missing directory, or not a Zarr group.
    """
    if (group / "zarr.json").is_file():
        if read_json(group / "zarr.json").get("node_type") != "group":
            raise VolumeReadError(group, "not a Zarr group (zarr.json says it is an array)")
        return 3
    if (group / ".zgroup").is_file():
        return 2
    if not group.exists():
        raise VolumeReadError(group, "Zarr group does not exist")
    raise VolumeReadError(group, "not a Zarr group (no .zgroup or zarr.json)")


def _is_zarr_group(path: Path) -> bool:
    try:
        _zarr_format(path)
    except VolumeReadError:
        return False
    return True


def _read_attrs(group: Path, fmt: int) -> dict[str, Any]:
    """The raw attributes of a group (Zarr v3: the whole ``attributes`` object, ``ome`` wrapper kept)."""
    if fmt == 3:
        return dict(read_json(group / "zarr.json").get("attributes") or {})
    return read_json(group / ".zattrs") if (group / ".zattrs").is_file() else {}


def _write_json_atomic(path: Path, value: Mapping[str, Any]) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(value, indent=4, allow_nan=False), encoding="utf-8")
    os.replace(tmp, path)


def _write_attrs(group: Path, fmt: int, attrs: Mapping[str, Any]) -> None:
    """Replace a group's attributes; the file is swapped atomically so readers never see half of it."""
    if fmt == 3:
        meta = read_json(group / "zarr.json")
        meta["attributes"] = dict(attrs)
        _write_json_atomic(group / "zarr.json", meta)
    else:
        _write_json_atomic(group / ".zattrs", attrs)


def _ngff(attrs: Mapping[str, Any], fmt: int) -> dict[str, Any]:
    """The NGFF metadata block of raw attributes (Zarr v3: the ``ome`` object)."""
    if fmt == 3:
        ome = attrs.get("ome")
        return dict(ome) if isinstance(ome, Mapping) else {}
    return dict(attrs)


def _with_ngff(attrs: Mapping[str, Any], fmt: int, ngff: Mapping[str, Any]) -> dict[str, Any]:
    """Raw attributes with the NGFF block replaced by ``ngff``."""
    out = dict(attrs)
    if fmt == 3:
        out["ome"] = {"version": NGFF_V3_VERSION, **{k: v for k, v in ngff.items() if k != "version"}}
    else:
        out.update(ngff)
    return out


def _array_meta(array_dir: Path, fmt: int) -> tuple[tuple[int, ...], tuple[int, ...], np.dtype]:
    """Shape, chunk shape and dtype of a stored Zarr array, from its JSON metadata."""
    if fmt == 3:
        if not (array_dir / "zarr.json").is_file():
            raise VolumeReadError(array_dir, "Zarr array is missing (no zarr.json)")
        meta = read_json(array_dir / "zarr.json")
        try:
            chunks = meta["chunk_grid"]["configuration"]["chunk_shape"]
            return tuple(meta["shape"]), tuple(chunks), np.dtype(meta["data_type"])
        except (KeyError, TypeError) as exc:
            raise VolumeReadError(array_dir, f"unreadable Zarr v3 array metadata: {exc!r}") from exc
    if not (array_dir / ".zarray").is_file():
        raise VolumeReadError(array_dir, "Zarr array is missing (no .zarray)")
    meta = read_json(array_dir / ".zarray")
    try:
        return tuple(meta["shape"]), tuple(meta["chunks"]), np.dtype(meta["dtype"])
    except (KeyError, TypeError) as exc:
        raise VolumeReadError(array_dir, f"unreadable Zarr v2 array metadata: {exc!r}") from exc


def _create_arrays(
    group: zarr.Group,
    fmt: int,
    shapes: Sequence[tuple[int, ...]],
    chunks: tuple[int, ...],
    dtype: np.dtype,
    dimension_names: Sequence[str],
) -> None:
    """Create (metadata only) the arrays ``0..len(shapes)-1`` of a multiscale group."""
    for level, shape in enumerate(shapes):
        if fmt == 2:
            _create_array(group, str(level), shape, dtype, chunks)
            continue
        group.create_array(
            str(level),
            shape=shape,
            dtype=dtype,
            chunks=tuple(max(1, min(c, s)) for c, s in zip(chunks, shape, strict=True)),
            compressors=BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle"),
            fill_value=0,
            dimension_names=list(dimension_names),
            config={"write_empty_chunks": True},
        )


def _delete_group(path: Path, *, where: str) -> None:
    """Delete ``path`` if it is a Zarr group; refuse anything else."""
    if not _is_zarr_group(path):
        raise DataError(f"{where}: {str(path)!r} exists and is not a Zarr group; refusing to delete it")
    shutil.rmtree(path)
