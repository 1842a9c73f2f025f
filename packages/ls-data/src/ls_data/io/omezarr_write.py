"""Writing OME-Zarr (NGFF 0.4, Zarr v2 format) images with an instance label group, using zarr-python.

The arrays are written with zarr-python; the NGFF metadata is built by yaozarrs' models
(:mod:`ls_data.io.ngff`).
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from numcodecs import Blosc

from ls_data.errors import DataError
from ls_data.io.ngff import NGFF_VERSIONS, build_image_label, build_multiscale
from ls_data.io.paths import format_of
from ls_data.io.tiff import check_spacing, check_volume_pair

__all__ = ["NGFF_VERSION", "downsample_labels_yx", "downsample_mean_yx", "write_ome_zarr"]

NGFF_VERSION = NGFF_VERSIONS[2]
_DEFAULT_CHUNKS = (32, 128, 128)


def downsample_mean_yx(data: np.ndarray) -> np.ndarray:
    """Halve the last two axes by 2x2 means (odd sizes are padded by edge replication).

    Integer dtypes are rounded to the nearest value; the output keeps the input dtype.
    """
    pad = [(0, 0)] * (data.ndim - 2) + [(0, data.shape[-2] % 2), (0, data.shape[-1] % 2)]
    padded = np.pad(data, pad, mode="edge") if any(p[1] for p in pad) else data
    shape = (*padded.shape[:-2], padded.shape[-2] // 2, 2, padded.shape[-1] // 2, 2)
    mean = padded.reshape(shape).mean(axis=(-3, -1), dtype=np.float64)
    if np.issubdtype(data.dtype, np.integer):
        info = np.iinfo(data.dtype)
        mean = np.clip(np.rint(mean), info.min, info.max)
    return mean.astype(data.dtype)


def downsample_labels_yx(labels: np.ndarray) -> np.ndarray:
    """Halve the last two axes by taking every second voxel (label ids are never blended)."""
    return np.ascontiguousarray(labels[..., ::2, ::2])


def _level_geometry(
    levels: int, spacing: Sequence[float], with_channel: bool, centred: bool
) -> tuple[list[list[float]], list[list[float]]]:
    """Scale and translation of every level whose y and x are halved from the one before."""
    sz, sy, sx = spacing
    scales, shifts = [], []
    for level in range(levels):
        f = 2**level
        # A 2x2 mean puts a coarse voxel's centre halfway between the fine voxels it averages;
        # a stride keeps the first fine voxel's centre.
        shift = [0.0, (f - 1) / 2 * sy, (f - 1) / 2 * sx] if centred else [0.0, 0.0, 0.0]
        scales.append(([1.0] if with_channel else []) + [sz, sy * f, sx * f])
        shifts.append(([0.0] if with_channel else []) + shift)
    return scales, shifts


def _compressor() -> Blosc:
    """The compressor of every array we write: Blosc zstd, level 3, bit shuffle."""
    return Blosc(cname="zstd", clevel=3, shuffle=Blosc.BITSHUFFLE)


def _create_array(
    group: zarr.Group, name: str, shape: tuple[int, ...], dtype: Any, chunks: tuple[int, ...]
) -> zarr.Array:
    """Create (metadata only) a Zarr v2 array with our settings; chunks are clipped to the shape."""
    return group.create_array(
        name,
        shape=shape,
        dtype=dtype,
        chunks=tuple(max(1, min(c, s)) for c, s in zip(chunks, shape, strict=True)),
        compressors=_compressor(),
        fill_value=0,
        chunk_key_encoding={"name": "v2", "separator": "/"},
        # Every chunk is stored, also all-zero ones, so that readers can tell a missing chunk
        # (damage) from an empty one.
        config={"write_empty_chunks": True},
    )


def _write_array(group: zarr.Group, name: str, data: np.ndarray, chunks: tuple[int, ...]) -> None:
    array = _create_array(group, name, data.shape, data.dtype, chunks)
    array[...] = data


def write_ome_zarr(
    path: str | Path,
    image: np.ndarray,
    spacing: Sequence[float],
    *,
    labels: np.ndarray | None = None,
    label_name: str = "cells",
    classes: Mapping[int, int] | None = None,
    chunks: Sequence[int] | None = None,
    levels: int = 1,
    overwrite: bool = False,
) -> Path:
    """Write an image ``(C, Z, Y, X)`` and optional instance labels as an NGFF 0.4 OME-Zarr group.

    Layout: arrays ``0..levels-1`` at the root (level ``l`` halves y and x ``l`` times by 2x2
    means), ``multiscales`` metadata with axes c, z, y, x (units micrometer) and a ``scale``
    per level; labels under ``labels/<label_name>`` as a multiscale (every second voxel per
    level) with ``image-label`` metadata whose ``properties`` give the class of each labelled
    instance. Every chunk is written, also empty ones.

    Args:
        path: Group directory to create (conventionally ``<name>.ome.zarr``).
        image: ``(C, Z, Y, X)`` array of any numeric dtype.
        spacing: ``(sz, sy, sx)`` in micrometres at level 0.
        labels: ``(Z, Y, X)`` integer instance labels, 0 = background.
        label_name: Name of the label image under ``labels/``.
        classes: Class (>= 1) per instance id, stored as image-label properties.
        chunks: Chunk shape ``(Z, Y, X)`` (clipped to the volume); default ``(32, 128, 128)``.
            Images are chunked one channel at a time.
        levels: Number of multiscale levels (>= 1).
        overwrite: Replace an existing OME-Zarr group at ``path``.

    Returns:
        ``path``.

    Raises:
        DataError: Bad shapes, dtypes, spacing, levels or chunks, or ``path`` exists and
            ``overwrite`` is False (or it is not a Zarr group, which is never deleted).
    """
    out = Path(path)
    image = np.asarray(image)
    where = f"OME-Zarr {str(out)!r}"
    check_volume_pair(image, None if labels is None else np.asarray(labels), where=where)
    spacing = check_spacing(spacing, where=where)
    if not isinstance(levels, int) or levels < 1:
        raise DataError(f"{where}: levels must be an int >= 1, got {levels!r}")
    zyx_chunks = tuple(int(c) for c in (chunks if chunks is not None else _DEFAULT_CHUNKS))
    if len(zyx_chunks) != 3 or min(zyx_chunks) < 1:
        raise DataError(f"{where}: chunks must be three positive ints (Z, Y, X), got {chunks!r}")
    if not label_name or "/" in label_name:
        raise DataError(f"{where}: invalid label name {label_name!r}")
    properties = []
    for label_id, cls in sorted((classes or {}).items()):
        if int(label_id) < 1 or int(cls) < 1:
            raise DataError(f"{where}: class entry {label_id}: {cls} needs instance id >= 1 and class >= 1")
        properties.append({"label-value": int(label_id), "class": int(cls)})
    # The NGFF metadata first: yaozarrs' models refuse a bad block before anything is written.
    scales, shifts = _level_geometry(levels, spacing, True, centred=True)
    image_ms = build_multiscale(
        2,
        name=out.name.removesuffix(".zarr").removesuffix(".ome"),
        channel_axis=True,
        scales=scales,
        translations=shifts,
        kind="mean",
        metadata={"description": "2x2 mean in y, x per level", "method": "ls_data.io.downsample_mean_yx"},
    )
    scales, shifts = _level_geometry(levels, spacing, False, centred=False)
    label_ms = build_multiscale(
        2,
        name=label_name,
        channel_axis=False,
        scales=scales,
        translations=shifts,
        kind="nearest",
        metadata={"description": "every second voxel in y, x per level"},
    )
    image_label = build_image_label(2, properties, where=where)
    if out.exists():
        if not overwrite:
            raise DataError(f"{where} already exists; pass overwrite=True to replace it")
        if format_of(out) != "ome-zarr":
            raise DataError(f"{where} exists and is not a Zarr group; refusing to delete it")
        shutil.rmtree(out)

    root = zarr.open_group(out, mode="w-", zarr_format=2)
    level_data = image
    for level in range(levels):
        if level:
            level_data = downsample_mean_yx(level_data)
        _write_array(root, str(level), level_data, (1, *zyx_chunks))
    root.attrs["multiscales"] = [image_ms]

    if labels is not None:
        labels_arr = np.asarray(labels)
        labels_root = root.create_group("labels")
        labels_root.attrs["labels"] = [label_name]
        group = labels_root.create_group(label_name)
        level_labels = labels_arr
        for level in range(levels):
            if level:
                level_labels = downsample_labels_yx(level_labels)
            _write_array(group, str(level), level_labels, zyx_chunks)
        group.attrs["multiscales"] = [label_ms]
        group.attrs["image-label"] = image_label
    return out
