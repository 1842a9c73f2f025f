"""OME-Zarr volumes (NGFF 0.4 on Zarr v2, NGFF 0.5 on Zarr v3) read window by window with TensorStore.

The multiscales metadata is read from the group's JSON (``.zattrs`` for Zarr v2, the
``attributes.ome`` of ``zarr.json`` for Zarr v3) and parsed by yaozarrs' NGFF models
(:mod:`ls_data.io.ngff`), so metadata that breaks the NGFF rules is refused with the file and key
named; the level's array is opened with TensorStore's ``zarr`` (v2) or ``zarr3`` driver and only
the requested window is read.

Missing chunks: TensorStore (like every Zarr reader) returns the fill value for a chunk whose
file is absent, which would silently turn a deleted or never-written chunk into zeros. Before
each read the reader therefore lists the storage keys of the chunks that the window touches
(derived from the array's chunk grid and chunk key encoding; for sharded Zarr v3 arrays, the
shard keys) and checks that each file exists; a missing one raises :class:`VolumeReadError`
naming it. Arrays that legitimately omit empty chunks can be opened with
``allow_missing_chunks=True``.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorstore as ts

from ls_data.errors import DataError, VolumeReadError
from ls_data.io.base import (
    MappedLabelReader,
    MappedVolumeReader,
    check_label_dtype,
    plan_axes,
    planned_index,
    planned_shape,
    read_planned,
    unit_to_um,
)
from ls_data.io.chunk_keys import chunk_key, chunk_layout
from ls_data.io.ngff import Multiscale, metadata_file
from ls_data.io.paths import read_json

__all__ = [
    "OmeZarrLabelReader",
    "OmeZarrVolumeReader",
    "group_attributes",
    "label_group_path",
    "ngff_translation",
    "read_multiscale",
]

_AXIS_LETTERS = {"c": "C", "z": "Z", "y": "Y", "x": "X", "t": "T"}


def group_attributes(group: Path) -> tuple[dict[str, Any], int]:
    """Attributes of a Zarr group (the NGFF ``ome`` block unwrapped for Zarr v3) and its Zarr format.

    Raises:
        VolumeReadError: The directory is not a Zarr group or its metadata is unreadable.
    """
    if (group / "zarr.json").is_file():
        meta = read_json(group / "zarr.json")
        attrs = meta.get("attributes", {}) or {}
        if isinstance(attrs.get("ome"), dict):
            attrs = attrs["ome"]
        return attrs, 3
    if (group / ".zattrs").is_file() or (group / ".zgroup").is_file():
        attrs = read_json(group / ".zattrs") if (group / ".zattrs").is_file() else {}
        return attrs, 2
    if not group.exists():
        raise VolumeReadError(group, "OME-Zarr group does not exist")
    raise VolumeReadError(group, "not a Zarr group (no zarr.json, .zattrs or .zgroup)")


def label_group_path(group: Path) -> Path:
    """The label group to use for ``group``: itself when it is a label image, else ``labels/<name>``.

    A group is a label image when it has ``image-label`` metadata, or multiscales and sits in a
    ``labels`` folder.

    ``<name>`` is ``cells`` when the ``labels`` group lists it, else the first listed label image.

    Raises:
        VolumeReadError: ``group`` is an image with no labels group.
    """
    attrs, _ = group_attributes(group)
    if "image-label" in attrs or ("multiscales" in attrs and group.parent.name == "labels"):
        return group
    labels_dir = group / "labels"
    if labels_dir.is_dir():
        names = group_attributes(labels_dir)[0].get("labels") or []
        if not names:
            raise VolumeReadError(labels_dir, "labels group lists no label images ('labels' attribute empty)")
        name = "cells" if "cells" in names else str(names[0])
        return labels_dir / name
    raise VolumeReadError(group, "no OME-Zarr labels found (no image-label metadata and no labels/ group)")


def read_multiscale(group: Path) -> Multiscale:
    """The first ``multiscales`` entry of an OME-Zarr group (NGFF 0.4 or 0.5), parsed by yaozarrs.

    Raises:
        VolumeReadError: Not a Zarr group, no ``multiscales``, or metadata that breaks the NGFF
            rules (the message names the file and the key).
    """
    attrs, fmt = group_attributes(group)
    return Multiscale(attrs, fmt, metadata_file(group, fmt))


def _letters(ms: Multiscale) -> str:
    """One letter per axis (C, Z, Y, X, T; ``?`` for an axis of another name and type)."""
    out = []
    for name, kind in zip(ms.axis_names, ms.axis_types, strict=True):
        letter = _AXIS_LETTERS.get(name)
        if letter is None:
            letter = {"channel": "C", "time": "T"}.get(kind, "?")
        out.append(letter)
    return "".join(out)


def ngff_translation(group: str | Path, level: int = 0) -> tuple[float, float, float]:
    """The ``(tz, ty, tx)`` position in micrometres of voxel 0 of a level of an OME-Zarr image.

    From its NGFF coordinate transformations (the level's translation, then the multiscale's
    scale and translation); 0 along an axis that is not there.

    Raises:
        VolumeReadError: Unreadable or invalid NGFF metadata.
        DataError: The level does not exist, or an axis has an unknown unit.
    """
    group = Path(group)
    ms = read_multiscale(group)
    total = ms.translation(level)
    out = []
    for letter in "zyx":
        if letter in ms.axis_names:
            i = ms.axis_names.index(letter)
            out.append(total[i] * unit_to_um(ms.axis_units[i], where=f"{str(group)!r} axis {letter}"))
        else:
            out.append(0.0)
    return (out[0], out[1], out[2])


def _is_sharded(array_dir: Path, zarr_format: int) -> bool:
    """Whether a Zarr v3 array stores its chunks in shards (then the keys name shards)."""
    if zarr_format == 2:
        return False
    codecs = read_json(array_dir / "zarr.json").get("codecs") or []
    return any(isinstance(c, dict) and c.get("name") == "sharding_indexed" for c in codecs)


class _ZarrArray:
    """One multiscale level opened with TensorStore, mapped to target axes; reopened lazily per process."""

    def __init__(self, group: Path, level: int, target: str, *, allow_missing_chunks: bool) -> None:
        self.group = group
        self.target = target
        self.allow_missing_chunks = allow_missing_chunks
        ms = read_multiscale(group)
        scale = ms.scale(level)  # DataError for a level that does not exist
        self.level = level
        self.zarr_format = ms.zarr_format
        self.array_dir = group / ms.paths[level]
        meta_file = ".zarray" if self.zarr_format == 2 else "zarr.json"
        if not (self.array_dir / meta_file).is_file():
            raise VolumeReadError(self.array_dir, f"Zarr array of level {level} is missing (no {meta_file})")
        self._layout = chunk_layout(self.array_dir, self.zarr_format)
        self.sharded = _is_sharded(self.array_dir, self.zarr_format)
        self._store: Any = None
        self._pid = os.getpid()
        store = self._open()
        self.file_shape = tuple(int(s) for s in store.shape)
        self.dtype = np.dtype(store.dtype.numpy_dtype)
        self.key_chunks = tuple(int(c) for c in store.chunk_layout.write_chunk.shape)
        self.read_chunks = tuple(int(c) for c in store.chunk_layout.read_chunk.shape)
        letters = _letters(ms)
        if len(letters) != len(self.file_shape):
            raise VolumeReadError(
                self.array_dir,
                f"array has {len(self.file_shape)} dimensions but multiscales lists axes {ms.axis_names}",
            )
        self.plan = plan_axes(letters, self.file_shape, target, self.array_dir)
        spacing = {}
        for want, s, unit in zip(self.plan, scale, ms.axis_units, strict=True):
            if want in ("Z", "Y", "X"):
                spacing[want] = s * unit_to_um(unit, where=f"{str(group)!r} axis {want.lower()}")
        self.spacing = tuple(float(spacing.get(a, 1.0)) for a in "ZYX")
        if not all(s > 0 for s in self.spacing):
            raise DataError(f"{str(group)!r}: invalid voxel spacing {self.spacing} at level {level}")
        self.shape = planned_shape(self.plan, self.file_shape, target)
        self.chunks = planned_shape(self.plan, self.read_chunks, "ZYX")

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_store"] = None
        return state

    def close(self) -> None:
        self._store = None

    def _open(self) -> Any:
        if self._store is not None and self._pid == os.getpid():
            return self._store
        self._pid = os.getpid()
        spec = {
            "driver": "zarr" if self.zarr_format == 2 else "zarr3",
            "kvstore": {"driver": "file", "path": str(self.array_dir)},
        }
        try:
            self._store = ts.open(spec, read=True, open=True).result()
        except (ValueError, RuntimeError) as exc:
            raise VolumeReadError(self.array_dir, f"cannot open Zarr array with TensorStore: {exc}") from exc
        return self._store

    def _check_chunks(self, index: Sequence[slice | int]) -> None:
        ranges = []
        for ix, chunk in zip(index, self.key_chunks, strict=True):
            if isinstance(ix, slice):
                if ix.stop <= ix.start:
                    return
                ranges.append(range(ix.start // chunk, (ix.stop - 1) // chunk + 1))
            else:
                ranges.append(range(ix // chunk, ix // chunk + 1))
        for idx in itertools.product(*ranges):
            key = chunk_key(idx, self._layout)
            if not (self.array_dir / key).is_file():
                kind = "shard" if self.sharded else "chunk"
                raise VolumeReadError(
                    self.array_dir / key,
                    f"{kind} {idx} of Zarr array {str(self.array_dir)!r} is missing (deleted or not written; "
                    "if the writer skips chunks that hold only the fill value, as zarr-python does by "
                    "default, read with allow_missing_chunks=True)",
                )

    def read(self, index: Mapping[str, slice]) -> np.ndarray:
        stored_index = planned_index(self.plan, index)
        if not self.allow_missing_chunks:
            self._check_chunks(stored_index)
        store = self._open()
        try:
            data = store[stored_index].read().result()
        except (ValueError, RuntimeError) as exc:
            raise VolumeReadError(self.array_dir, f"cannot read Zarr data: {exc}") from exc
        return read_planned(data, self.plan, self.target, self.dtype)


class OmeZarrVolumeReader(MappedVolumeReader):
    """Image volume ``(C, Z, Y, X)`` from an OME-Zarr image group, one multiscale level.

    Args:
        path: The OME-Zarr group directory.
        level: Multiscale level (0 = full resolution).
        allow_missing_chunks: Treat absent chunk files as fill value instead of raising.

    Raises:
        VolumeReadError: Missing group, metadata or array.
        DataError: Unknown level or axes that cannot be mapped to (C, Z, Y, X).
    """

    format = "ome-zarr"

    def __init__(self, path: str | Path, *, level: int = 0, allow_missing_chunks: bool = False) -> None:
        self.path = Path(path)
        self._source = _ZarrArray(self.path, level, "CZYX", allow_missing_chunks=allow_missing_chunks)

    def check_chunks(self) -> None:
        """Raise VolumeReadError naming the first chunk file of the level that is missing (one
        file check per chunk, no data read), unless the reader allows missing chunks; so a crop
        index build finds a deleted chunk before training rather than in the middle of an epoch."""
        source = self._source
        if not source.allow_missing_chunks:
            source._check_chunks(tuple(slice(0, n) for n in source.file_shape))


class OmeZarrLabelReader(MappedLabelReader):
    """Instance labels ``(Z, Y, X)`` from an OME-Zarr label group (``image-label`` metadata).

    Args:
        path: The label group (``x.ome.zarr/labels/cells``) or the image group, whose ``labels``
            group is then used (``cells`` if listed, else the first label image).
        level: Multiscale level.
        allow_missing_chunks: Treat absent chunk files as fill value instead of raising.

    Raises:
        VolumeReadError: Missing group, metadata or array.
        DataError: Non-integer dtype; or, for a label group inside an image group, a spatial
            shape different from the image's at the same level.
    """

    format = "ome-zarr"

    def __init__(self, path: str | Path, *, level: int = 0, allow_missing_chunks: bool = False) -> None:
        self.path = label_group_path(Path(path))
        self._source = _ZarrArray(self.path, level, "ZYX", allow_missing_chunks=allow_missing_chunks)
        check_label_dtype(self._source.dtype, path=self.path)
        image_group = self.path.parent.parent
        if self.path.parent.name == "labels" and "multiscales" in group_attributes(image_group)[0]:
            image = _ZarrArray(image_group, level, "CZYX", allow_missing_chunks=True)
            if tuple(image.shape[1:]) != tuple(self.shape):
                raise DataError(
                    f"labels {str(self.path)!r} have shape (Z, Y, X)={tuple(self.shape)} but image "
                    f"{str(image_group)!r} has spatial shape {tuple(image.shape[1:])} (level {level})"
                )

    def classes(self) -> dict[int, int]:
        attrs, _ = group_attributes(self.path)
        props = (attrs.get("image-label") or {}).get("properties") or []
        out: dict[int, int] = {}
        for entry in props:
            if not isinstance(entry, dict) or "class" not in entry:
                continue
            try:
                label, cls = int(entry["label-value"]), int(entry["class"])
            except (KeyError, TypeError, ValueError) as exc:
                raise DataError(f"{str(self.path)!r}: invalid image-label property {entry!r}") from exc
            if label < 1 or cls < 1:
                raise DataError(
                    f"{str(self.path)!r}: image-label property {entry!r} needs label-value >= 1, class >= 1"
                )
            out[label] = cls
        return out
