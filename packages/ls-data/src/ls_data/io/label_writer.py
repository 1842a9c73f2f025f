"""Streaming writer of an instance label image ``labels/<name>`` of an OME-Zarr image.

:class:`LabelImageWriter` (see :mod:`ls_data.io.omezarr_stream` for the life cycle and which
concurrent writes are safe), with its helpers: the pyramid of the parent image (whose factors a
label image follows), unlisting a name from ``labels/``, and reopening a finished label image
from its multiscales metadata.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from ls_data.errors import DataError, VolumeReadError
from ls_data.io.base import Window, check_window
from ls_data.io.ngff import Multiscale, build_image_label, metadata_file
from ls_data.io.pyramid import _level_shapes, pyramid_factors
from ls_data.io.stream_writer import _DEFAULT_CHUNKS, _PRIVATE_KEY, _load_levels, _StreamWriter
from ls_data.io.tiff import check_spacing
from ls_data.io.zarr_files import (
    Factors,
    _array_meta,
    _check_factors,
    _check_layout,
    _check_name,
    _check_properties,
    _create_arrays,
    _delete_group,
    _floats,
    _is_zarr_group,
    _ngff,
    _read_attrs,
    _with_ngff,
    _write_attrs,
    _zarr_format,
)

__all__ = ["LabelImageWriter"]

LABEL_DTYPES = ("uint16", "uint32", "uint64", "int32")


def _image_pyramid(group: Path, fmt: int) -> tuple[tuple[int, ...], list[Factors]] | None:
    """Level-0 spatial shape and the pyramid factors of an image group, or None if it has no pyramid.

    An unfinished :class:`ImageWriter` group gives its stored factors. A finished image gives the
    integer factors between consecutive levels (from the ratios of their scales), up to the
    first level whose ratio is not an integer or whose shape is not ``ceil(previous / factor)``.
    """
    attrs = _read_attrs(group, fmt)
    state = attrs.get(_PRIVATE_KEY)
    if isinstance(state, Mapping) and state.get("kind") == "image":
        shape = _array_meta(group / "0", fmt)[0]
        return tuple(shape[-3:]), _check_factors(state.get("factors", []), where=str(group))
    ngff = _ngff(attrs, fmt)
    if "multiscales" not in ngff:
        return None
    ms = Multiscale(ngff, fmt, metadata_file(group, fmt))
    if not all(a in ms.axis_names for a in "zyx"):
        raise DataError(
            f"image {str(group)!r}: its multiscales axes {ms.axis_names} lack z, y or x; "
            f"pass factors explicitly"
        )
    axes = [ms.axis_names.index(a) for a in "zyx"]
    shapes, scales = [], []
    for level, rel in enumerate(ms.paths):
        stored = _array_meta(group / rel, fmt)[0]
        if len(stored) != len(ms.axis_names):
            raise VolumeReadError(
                group / rel, f"array has {len(stored)} dimensions, the axes are {ms.axis_names}"
            )
        scale = ms.scale(level)
        shapes.append([int(stored[i]) for i in axes])
        scales.append([scale[i] for i in axes])
    factors: list[Factors] = []
    for level in range(1, len(shapes)):
        f = []
        for a in range(3):
            ratio = scales[level][a] / scales[level - 1][a] if scales[level - 1][a] > 0 else 0.0
            fi = round(ratio)
            if fi < 1 or abs(ratio - fi) > 1e-6 * ratio or shapes[level][a] != -(-shapes[level - 1][a] // fi):
                return tuple(shapes[0]), factors
            f.append(fi)
        factors.append((f[0], f[1], f[2]))
    return tuple(shapes[0]), factors


class LabelImageWriter(_StreamWriter):
    """An instance label image ``labels/<name>`` of an OME-Zarr image, written block by block.

    Create it with :meth:`create` (once), reopen it with :meth:`open` or pickle it to other
    processes, :meth:`write` level 0 in blocks, :meth:`build_pyramid`, then :meth:`finalize`.
    :mod:`ls_data.io.omezarr_stream` says which concurrent writes are safe (disjoint chunk-aligned
    regions).

    Pyramid levels follow the NGFF label convention: coarse voxel ``j`` is fine voxel ``j * f``
    (a stride; label ids are never blended), so level ``l`` has scale ``spacing x`` the cumulative
    factor and the level-0 translation.
    """

    _lead = 0
    _what = "label image"

    def __init__(self, image_group: Path, name: str, fmt: int, *args: Any) -> None:
        super().__init__(image_group / "labels" / name, fmt, *args)
        self._image_group = image_group
        self._name = name

    @property
    def shape(self) -> tuple[int, int, int]:
        """Level-0 shape ``(Z, Y, X)``."""
        return self._shapes[0]  # type: ignore[return-value]

    @property
    def name(self) -> str:
        """The label image's name under ``labels/``."""
        return self._name

    @property
    def image_group(self) -> Path:
        """The OME-Zarr image group that holds the label image."""
        return self._image_group

    @classmethod
    def create(
        cls,
        image_group: str | Path,
        name: str,
        shape: Sequence[int],
        spacing: Sequence[float],
        *,
        chunks: Sequence[int] = _DEFAULT_CHUNKS,
        dtype: Any = "uint32",
        factors: Sequence[Sequence[int]] | None = None,
        translation: Sequence[float] = (0.0, 0.0, 0.0),
        overwrite: bool = False,
    ) -> LabelImageWriter:
        """Create the label group ``<image_group>/labels/<name>`` and its (empty) level arrays.

        Writes no NGFF metadata: the label image is listed in ``labels/`` only by
        :meth:`finalize`. The ``labels`` group is created if missing (listing no label image).

        Args:
            image_group: An existing OME-Zarr image group; Zarr v2 (NGFF 0.4) or Zarr v3 (NGFF 0.5,
                then the label image is Zarr v3 / NGFF 0.5 too).
            name: Label image name (a folder name).
            shape: Level-0 shape ``(Z, Y, X)``; must equal the image's spatial shape when the image
                has a pyramid (readers pair label and image levels).
            spacing: Level-0 spacing ``(sz, sy, sx)`` in micrometres.
            chunks: Chunk shape ``(Z, Y, X)`` (clipped to each level's shape).
            dtype: One of uint16, uint32, uint64, int32.
            factors: Per-level downsampling factors ``(fz, fy, fx)`` relative to the previous
                level; ``[]`` for level 0 only. None: the image's own pyramid when it has one
                (finished, or an unfinished :class:`ImageWriter`), so that label level ``l``
                matches image level ``l``; otherwise :func:`pyramid_factors` of shape and spacing.
            translation: Level-0 translation ``(tz, ty, tx)`` in micrometres.
            overwrite: Replace an existing ``labels/<name>`` (only if it is a Zarr group; it is
                first removed from the ``labels`` list).

        Returns:
            The writer.

        Raises:
            DataError: Bad arguments, a shape different from the image's, or ``labels/<name>``
                exists and ``overwrite`` is False (or it is not a Zarr group).
            VolumeReadError: ``image_group`` is not a Zarr group.
        """
        image_group = Path(image_group)
        fmt = _zarr_format(image_group)
        name = _check_name(name, where=f"image {str(image_group)!r}")
        path = image_group / "labels" / name
        where = f"label image {str(path)!r}"
        shape, spacing, chunks, translation, np_dtype = _check_layout(
            shape, 3, "shape (Z, Y, X)", spacing, chunks, translation, dtype, where=where
        )
        if np_dtype.name not in LABEL_DTYPES:
            raise DataError(f"{where}: label dtype must be one of {LABEL_DTYPES}, got {np_dtype}")
        image = _image_pyramid(image_group, fmt)
        if image is not None and image[0] != shape:
            raise DataError(
                f"{where}: shape (Z, Y, X)={shape} differs from the spatial shape {image[0]} of image "
                f"{str(image_group)!r}; label images must match their image"
            )
        if factors is None:
            level_factors = image[1] if image is not None else pyramid_factors(shape, spacing)
        else:
            level_factors = _check_factors(factors, where=where)

        labels_dir = image_group / "labels"
        if labels_dir.exists() and not _is_zarr_group(labels_dir):
            raise DataError(f"{where}: {str(labels_dir)!r} exists and is not a Zarr group")
        if labels_dir.exists() and _zarr_format(labels_dir) != fmt:
            raise DataError(
                f"{where}: {str(labels_dir)!r} is Zarr v{_zarr_format(labels_dir)}, the image v{fmt}"
            )
        if path.exists():
            if not overwrite:
                raise DataError(f"{where} already exists; pass overwrite=True to replace it")
            if not _is_zarr_group(path):
                raise DataError(f"{where} exists and is not a Zarr group; refusing to delete it")
            _unlist_label(labels_dir, fmt, name)  # an interrupted re-create must never look complete
            _delete_group(path, where=where)
        if not labels_dir.exists():
            zarr.open_group(labels_dir, mode="w-", zarr_format=fmt)
            _write_attrs(labels_dir, fmt, _with_ngff({}, fmt, {"labels": []}))

        shapes = _level_shapes(shape, level_factors)
        group = zarr.open_group(path, mode="w-", zarr_format=fmt)
        _create_arrays(group, fmt, shapes, chunks, np_dtype, "zyx")
        writer = cls(
            image_group,
            name,
            fmt,
            shapes,
            [tuple(max(1, min(c, s)) for c, s in zip(chunks, sh, strict=True)) for sh in shapes],
            np_dtype,
            spacing,
            translation,
            level_factors,
        )
        _write_attrs(path, fmt, {_PRIVATE_KEY: writer._state("labels")})
        return writer

    @classmethod
    def open(cls, image_group: str | Path, name: str) -> LabelImageWriter:
        """Reopen the label image ``labels/<name>`` of ``image_group``, finished or not.

        Shape, chunks, dtype and levels come from the stored arrays; spacing, translation and
        factors from the private ``ls_data_stream`` attribute that :meth:`create` stored (or, for
        a label image written otherwise, from its NGFF multiscales metadata).

        Raises:
            VolumeReadError: Missing group or arrays.
            DataError: The group has neither the writer's attribute nor readable multiscales.
        """
        image_group = Path(image_group)
        name = _check_name(name, where=f"image {str(image_group)!r}")
        path = image_group / "labels" / name
        fmt = _zarr_format(path)
        attrs = _read_attrs(path, fmt)
        state = attrs.get(_PRIVATE_KEY)
        if isinstance(state, Mapping) and state.get("kind") == "labels":
            where = f"label image {str(path)!r}"
            try:
                spacing = check_spacing(state["spacing"], where=where)
                translation = _floats(state["translation"], 3, "translation", where=where)
                factors = _check_factors(state["factors"], where=where)
            except KeyError as exc:
                raise DataError(f"{where}: attribute {_PRIVATE_KEY!r} lacks {exc}") from exc
            shape = _array_meta(path / "0", fmt)[0]
        else:
            shape, spacing, translation, factors = _from_multiscales(path, fmt)
        shapes, chunks, dtype = _load_levels(path, fmt, shape, factors, lead=0)
        return cls(image_group, name, fmt, shapes, chunks, dtype, spacing, translation, factors)

    def write(self, offset: Sequence[int], labels: np.ndarray) -> None:
        """Write a block of level-0 labels.

        Safe alongside other processes when the blocks are disjoint and chunk-aligned (start a
        multiple of :attr:`chunks`, stop a multiple of it or the array end); see
        :mod:`ls_data.io.omezarr_stream`. Writes only the chunks that the block touches.

        Args:
            offset: ``(z, y, x)`` of the block's first voxel.
            labels: ``(z, y, x)`` integer array; values must fit :attr:`dtype`.

        Raises:
            DataError: Wrong ndim, non-integer dtype, values out of the dtype's range, or a block
                outside the array (the message names the label path, offset and both shapes).
        """
        window, data = self._check_write(offset, labels, "labels")
        self._write_level(0, window, data)

    def _check_values(self, data: np.ndarray, where: str, kind: str) -> np.ndarray:
        if not np.issubdtype(data.dtype, np.integer):
            raise DataError(f"{where}: labels must have an integer dtype, got {data.dtype}")
        return super()._check_values(data, where, kind)

    def read(
        self, window: Sequence[slice] | None = None, level: int = 0, *, allow_missing_chunks: bool = False
    ) -> np.ndarray:
        """Read a ``(z, y, x)`` window of one level.

        Args:
            window: Three slices (step 1, inside the level); None reads the whole level.
            level: Multiscale level.
            allow_missing_chunks: Read chunks not written yet as 0 instead of raising.

        Returns:
            ``(z, y, x)`` array of :attr:`dtype`.

        Raises:
            DataError: Bad level or window.
            VolumeReadError: A chunk in the window has not been written.
        """
        level = self._check_level(level)
        window = check_window(window, self._shapes[level], path=self._array_dir(level))
        return self._read_level(level, window, allow_missing_chunks=allow_missing_chunks)

    def _downsample(self, level: int, source: Window, factors: Factors) -> np.ndarray:
        strided = tuple(slice(s.start, s.stop, f) for s, f in zip(source, factors, strict=True))
        try:
            data = self._store(level - 1)[strided].read().result()
        except (ValueError, RuntimeError) as exc:
            raise VolumeReadError(self._array_dir(level - 1), f"cannot read {source}: {exc}") from exc
        return np.asarray(data, dtype=self._dtype)

    def finalize(
        self, *, properties: Sequence[Mapping[str, Any]] | None = None, check_complete: bool = True
    ) -> None:
        """Write the NGFF metadata, then list the name in ``labels/`` -- the last step of a run.

        Writes ``multiscales`` (axes z, y, x in micrometres, one dataset per level with its
        ``scale`` and, when non-zero, ``translation``; type ``nearest``) and ``image-label``
        (``source`` ``../../``, ``properties`` when given), then appends the name to the
        ``labels`` list of the ``labels`` group (other names kept, no duplicates). Run it once,
        in one process, after all writes and :meth:`build_pyramid`.

        Args:
            properties: image-label properties: dicts with an int ``label-value`` and any other
                JSON values (``class``, ``score``, ...).
            check_complete: First check that every chunk of every level has been written.

        Raises:
            DataError: Bad properties, or (``check_complete``) chunks not written.
        """
        where = f"label image {str(self._path)!r}"
        props = _check_properties(properties, where=where)
        if check_complete:
            self._check_complete()
        description = "every f-th voxel of the previous level (stride; label ids are never blended)"
        multiscale = self._multiscale(self._name, kind="nearest", description=description)
        image_label = build_image_label(self._fmt, props, where=where)
        attrs = _read_attrs(self._path, self._fmt)
        ngff = {**_ngff(attrs, self._fmt), "multiscales": [multiscale], "image-label": image_label}
        _write_attrs(self._path, self._fmt, _with_ngff(attrs, self._fmt, ngff))
        labels_dir = self._path.parent
        attrs = _read_attrs(labels_dir, self._fmt)
        ngff = _ngff(attrs, self._fmt)
        names = [str(n) for n in ngff.get("labels") or []]
        if self._name not in names:
            ngff["labels"] = [*names, self._name]
            _write_attrs(labels_dir, self._fmt, _with_ngff(attrs, self._fmt, ngff))


def _unlist_label(labels_dir: Path, fmt: int, name: str) -> None:
    """Remove ``name`` from the ``labels`` list of a labels group (if listed)."""
    if not labels_dir.exists():
        return
    attrs = _read_attrs(labels_dir, fmt)
    ngff = _ngff(attrs, fmt)
    names = list(ngff.get("labels") or [])
    if name in names:
        ngff["labels"] = [n for n in names if n != name]
        _write_attrs(labels_dir, fmt, _with_ngff(attrs, fmt, ngff))


def _from_multiscales(
    path: Path, fmt: int
) -> tuple[tuple[int, ...], tuple[float, float, float], tuple[float, float, float], list[Factors]]:
    """Shape, spacing, translation and factors of a finished z, y, x label image without our attribute."""
    pyramid = _image_pyramid(path, fmt)
    if pyramid is None:
        raise DataError(
            f"label image {str(path)!r} has neither a {_PRIVATE_KEY!r} attribute (not created by "
            f"LabelImageWriter.create) nor multiscales metadata"
        )
    shape, factors = pyramid
    ms = Multiscale(_ngff(_read_attrs(path, fmt), fmt), fmt, metadata_file(path, fmt))
    if ms.axis_names != ["z", "y", "x"]:
        raise DataError(f"label image {str(path)!r}: axes {ms.axis_names} are not (z, y, x)")
    scale = ms.scale(0)
    shift = ms.translation(0)
    where = f"label image {str(path)!r}"
    nlevels = len(factors) + 1
    if nlevels != len(ms.paths) or ms.paths != [str(i) for i in range(nlevels)]:
        raise DataError(f"{where}: its levels are not arrays 0..n-1 with integer factors; cannot reopen it")
    return shape, check_spacing(scale, where=where), _floats(shift, 3, "translation", where=where), factors  # type: ignore[return-value]
