"""TIFF volumes: ImageJ hyperstacks or plain TIFFs, read window by window, and the TIFF pair writer.

Reading strategy: an uncompressed file whose image data is contiguous is memory-mapped, so a
window read touches only the pages and rows of that window. Any other layout (compressed, tiled,
scattered strips) is read through tifffile's Zarr store (``aszarr``) opened with zarr, which
decodes only the chunks (pages, strips or tiles) that intersect the window.

File axes are mapped to ``(C, Z, Y, X)``: ``C`` (or ``S`` samples when there is no ``C``) is the
channel axis; ``Z`` the depth axis (a generic page-stack axis ``Q``/``I`` counts as ``Z`` when
there is no ``Z``); other axes must have size 1.

Spacing: in an OME-TIFF, from ``PhysicalSizeZ/Y/X`` (and their units) of the first image's
``Pixels`` in the OME-XML. Otherwise z from the ImageJ ``spacing`` entry (or the ``spacing`` key
of tifffile's shaped JSON metadata), y and x from the ``YResolution``/``XResolution`` tags
(pixels per unit), converted to micrometres with the ``unit`` entry (or the ``ResolutionUnit``
tag). Missing values are 1.0, as ImageJ and the OME model assume.
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import numpy as np
import tifffile
import zarr

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

__all__ = ["TiffLabelReader", "TiffVolumeReader", "classes_sidecar_path", "write_tiff_pair"]

_IMAGEJ_DTYPES = (np.dtype("uint8"), np.dtype("uint16"), np.dtype("float32"))
_RESOLUTION_UNIT_NAMES = {2: "inch", 3: "cm"}


def _ome_spacing(xml: str, path: Path) -> tuple[float, float, float]:
    """Voxel spacing (sz, sy, sx) in micrometres from the first image's ``Pixels`` of OME-XML."""
    try:
        pixels = ElementTree.fromstring(xml).find("{*}Image/{*}Pixels")
    except ElementTree.ParseError as exc:
        raise VolumeReadError(path, f"unreadable OME-XML metadata: {exc}") from exc
    if pixels is None:
        raise VolumeReadError(path, "OME-XML metadata has no Image/Pixels element")
    spacing = []
    for axis in "ZYX":
        key = f"PhysicalSize{axis}"
        value = pixels.get(key)
        where = f"{str(path)!r} (OME-XML Pixels {key})"
        try:
            size = 1.0 if value is None else float(value)
        except ValueError:
            raise DataError(f"{where}: not a number: {value!r}") from None
        # The OME schema's default unit is the micrometre.
        spacing.append(size * unit_to_um(pixels.get(f"{key}Unit", "µm"), where=where))
    return spacing[0], spacing[1], spacing[2]


def _tiff_spacing(tif: tifffile.TiffFile, page: Any, path: Path) -> tuple[float, float, float]:
    """Voxel spacing (sz, sy, sx) in micrometres from OME-XML, or ImageJ/shaped metadata and
    resolution tags."""
    ome = bool(tif.is_ome and tif.ome_metadata)
    spacing = _ome_spacing(tif.ome_metadata, path) if ome else _imagej_spacing(tif, page, path)
    if not all(math.isfinite(s) and s > 0 for s in spacing):
        source = "OME-XML" if ome else "TIFF"
        raise DataError(f"{str(path)!r}: invalid voxel spacing {spacing} in {source} metadata")
    return spacing


def _imagej_spacing(tif: tifffile.TiffFile, page: Any, path: Path) -> tuple[float, float, float]:
    """Voxel spacing from ImageJ/shaped metadata (z) and the resolution tags (y, x), unchecked."""
    meta: Mapping[str, Any] = {}
    if tif.is_imagej and tif.imagej_metadata:
        meta = tif.imagej_metadata
    elif tif.is_shaped and tif.shaped_metadata:
        meta = tif.shaped_metadata[0]
    unit = meta.get("unit")
    if unit is None:
        tag = page.tags.get("ResolutionUnit")
        unit = _RESOLUTION_UNIT_NAMES.get(int(tag.value), "um") if tag is not None else "um"
    factor = unit_to_um(str(unit), where=f"{str(path)!r} (TIFF unit)")

    def from_resolution(name: str) -> float:
        tag = page.tags.get(name)
        if tag is None:
            return 1.0
        num, den = tag.value
        if num <= 0 or den <= 0:
            return 1.0
        return den / num * factor

    sz = float(meta.get("spacing", 1.0)) * (factor if "spacing" in meta else 1.0)
    return sz, from_resolution("YResolution"), from_resolution("XResolution")


def _check_complete(tif: tifffile.TiffFile, series: Any, path: Path) -> None:
    """Raise VolumeReadError when the file is shorter than its metadata says (truncated/corrupt)."""
    size = os.path.getsize(path)
    shape = tuple(series.shape)
    page_shape = tuple(series.keyframe.shape)
    expected_pages = math.prod(shape) // max(1, math.prod(page_shape))
    if tif.is_imagej and tif.imagej_metadata and "images" in tif.imagej_metadata:
        declared = int(tif.imagej_metadata["images"])
        if declared != expected_pages:
            raise VolumeReadError(
                path,
                f"ImageJ metadata declares {declared} images but only {expected_pages} could be located "
                "(truncated or corrupt file)",
            )
    if series.dataoffset is not None:
        end = int(series.dataoffset) + int(series.nbytes)
        if end > size:
            raise VolumeReadError(
                path, f"file is truncated: image data ends at byte {end}, file has {size} bytes"
            )
        return
    pages = series.pages
    if len(pages) < expected_pages:
        raise VolumeReadError(
            path, f"file is truncated or corrupt: {len(pages)} of {expected_pages} image pages present"
        )
    for i in range(len(pages)):
        page = pages[i]
        if page is None:
            raise VolumeReadError(path, f"image page {i} is missing (truncated or corrupt file)")
        ends = [int(o) + int(n) for o, n in zip(page.dataoffsets, page.databytecounts, strict=True)]
        if ends and max(ends) > size:
            raise VolumeReadError(
                path, f"file is truncated: page {i} data ends at byte {max(ends)}, file has {size}"
            )


class _TiffSource:
    """One TIFF series mapped to target axes (``"CZYX"`` or ``"ZYX"``), opened lazily per process."""

    def __init__(self, path: Path, target: str) -> None:
        self.path = path
        self.target = target
        try:
            with tifffile.TiffFile(path) as tif:
                if not tif.series:
                    raise VolumeReadError(path, "TIFF file holds no image series")
                series = tif.series[0]
                self.file_axes = str(series.axes)
                self.file_shape = tuple(int(s) for s in series.shape)
                self.dtype = np.dtype(series.dtype)
                _check_complete(tif, series, path)
                self.spacing = _tiff_spacing(tif, series.keyframe, path)
                self.memmap_offset = int(series.dataoffset) if series.dataoffset is not None else None
                self.file_dtype = self.dtype.newbyteorder(tif.byteorder)
                keyframe = series.keyframe
                self.tiled = bool(keyframe.is_tiled)
        except DataError:
            raise
        except (tifffile.TiffFileError, OSError, ValueError, IndexError, KeyError, struct.error) as exc:
            raise VolumeReadError(path, f"corrupt or unreadable TIFF: {exc}") from exc
        self.plan = plan_axes(self.file_axes, self.file_shape, target, path)
        self.shape = planned_shape(self.plan, self.file_shape, target)
        # Memory-mapped data is contiguous; other layouts are decoded a page (one z-plane) at a time.
        self.chunks = None if self.memmap_offset is not None else (1, *self.shape[-2:])
        self._array: Any = None
        self._tif: tifffile.TiffFile | None = None
        self._pid = os.getpid()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_array"] = None
        state["_tif"] = None
        return state

    def close(self) -> None:
        self._array = None
        if self._tif is not None:
            self._tif.close()
            self._tif = None

    def _open(self) -> Any:
        if self._array is not None and self._pid != os.getpid():
            # Inherited through fork (DataLoader workers): never share a file handle across processes.
            self._array, self._tif = None, None
        if self._array is None:
            self._pid = os.getpid()
            try:
                if self.memmap_offset is not None:
                    self._array = np.memmap(
                        self.path,
                        dtype=self.file_dtype,
                        mode="r",
                        offset=self.memmap_offset,
                        shape=self.file_shape,
                    )
                else:
                    self._tif = tifffile.TiffFile(self.path)
                    self._array = zarr.open(self._tif.series[0].aszarr(level=0), mode="r")
            except (OSError, ValueError, tifffile.TiffFileError) as exc:
                raise VolumeReadError(self.path, f"cannot open TIFF data: {exc}") from exc
        return self._array

    def read(self, index: Mapping[str, slice]) -> np.ndarray:
        """Read ``index`` (target letter -> slice) and return an array in target axis order."""
        array = self._open()
        file_index = planned_index(self.plan, index)
        try:
            data = np.asarray(array[file_index])
        except Exception as exc:  # tifffile/zarr/codec errors on damaged data
            raise VolumeReadError(self.path, f"cannot decode TIFF data: {exc}") from exc
        return read_planned(data, self.plan, self.target, self.dtype)


class TiffVolumeReader(MappedVolumeReader):
    """Image volume ``(C, Z, Y, X)`` in a TIFF file (ImageJ hyperstack or plain).

    Args:
        path: The ``.tif``/``.tiff`` file.

    Raises:
        VolumeReadError: The file is missing, truncated or corrupt.
        DataError: Its axes cannot be mapped to (C, Z, Y, X).
    """

    format = "tiff"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._source = _TiffSource(self.path, "CZYX")


def classes_sidecar_path(label_path: str | Path) -> Path:
    """The ``<name>_classes.json`` file next to ``<name>_labels.tif`` (or ``.ome.tif``)."""
    p = Path(label_path)
    stem = p.name
    for suffix in (".ome.tiff", ".ome.tif", ".tiff", ".tif"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    if stem.endswith("_labels"):
        stem = stem[: -len("_labels")]
    return p.with_name(f"{stem}_classes.json")


def _read_classes_sidecar(path: Path) -> dict[int, int]:
    if not path.is_file():
        return {}
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read classes file {str(path)!r}: {exc}") from exc
    if not isinstance(raw, dict):
        raise DataError(f"classes file {str(path)!r} must hold a JSON object {{instance id: class}}")
    return _validated_classes(raw, where=repr(str(path)))


def _validated_classes(raw: Mapping[Any, Any], *, where: str) -> dict[int, int]:
    out: dict[int, int] = {}
    for key, value in raw.items():
        try:
            label, cls = int(key), int(value)
        except (TypeError, ValueError) as exc:
            raise DataError(f"{where}: class entry {key!r}: {value!r} is not an integer pair") from exc
        if label < 1 or cls < 1:
            raise DataError(f"{where}: class entry {key!r}: {value!r} needs instance id >= 1 and class >= 1")
        out[label] = cls
    return out


class TiffLabelReader(MappedLabelReader):
    """Instance label volume ``(Z, Y, X)`` in a TIFF file, with classes from ``<name>_classes.json``.

    Args:
        path: The ``<name>_labels.tif`` file.

    Raises:
        VolumeReadError: The file is missing, truncated or corrupt.
        DataError: Non-integer dtype, more than one channel, or an invalid classes sidecar.
    """

    format = "tiff"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._source = _TiffSource(self.path, "ZYX")
        check_label_dtype(self._source.dtype, path=self.path)

    def classes(self) -> dict[int, int]:
        return _read_classes_sidecar(classes_sidecar_path(self.path))


def _write_tiff(
    path: Path, data: np.ndarray, axes: str, spacing: Sequence[float], compression: str | None
) -> None:
    """Write ImageJ-compatible TIFF when the dtype allows it, else a tifffile shaped TIFF."""
    sz, sy, sx = (float(s) for s in spacing)
    resolution = (1.0 / sx, 1.0 / sy)
    if data.dtype in _IMAGEJ_DTYPES:
        tifffile.imwrite(
            path,
            data,
            imagej=True,
            photometric="minisblack",
            resolution=resolution,
            metadata={"spacing": sz, "unit": "micron", "axes": axes},
            compression=compression,
        )
    else:
        tifffile.imwrite(
            path,
            data,
            photometric="minisblack",
            resolution=resolution,
            metadata={"axes": axes, "spacing": sz, "unit": "micron"},
            compression=compression,
            bigtiff=data.nbytes > 2**32 - 2**25,
        )


def check_spacing(spacing: Sequence[float], *, where: str) -> tuple[float, float, float]:
    """Validate a positive finite ``(sz, sy, sx)`` triple."""
    values = tuple(float(s) for s in spacing)
    if len(values) != 3 or not all(math.isfinite(s) and s > 0 for s in values):
        raise DataError(f"{where}: spacing must be three positive numbers (sz, sy, sx), got {tuple(spacing)}")
    return values  # type: ignore[return-value]


def check_volume_pair(image: np.ndarray, labels: np.ndarray | None, *, where: str) -> None:
    """Validate an image ``(C, Z, Y, X)`` and optional integer labels ``(Z, Y, X)`` before writing."""
    if image.ndim != 4:
        raise DataError(f"{where}: image must be (C, Z, Y, X), got shape {tuple(image.shape)}")
    if labels is None:
        return
    if labels.ndim != 3:
        raise DataError(f"{where}: labels must be (Z, Y, X), got shape {tuple(labels.shape)}")
    if tuple(labels.shape) != tuple(image.shape[1:]):
        raise DataError(
            f"{where}: image spatial shape (Z, Y, X)={tuple(image.shape[1:])} differs from labels shape "
            f"{tuple(labels.shape)}"
        )
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{where}: labels must have an integer dtype, got {labels.dtype}")


def write_tiff_pair(
    out_dir: str | Path,
    name: str,
    image: np.ndarray,
    labels: np.ndarray,
    spacing: Sequence[float],
    classes: Mapping[int, int] | None = None,
    *,
    compression: str | None = None,
) -> tuple[Path, Path]:
    """Write ``<name>_image.tif``, ``<name>_labels.tif`` and (with classes) ``<name>_classes.json``.

    uint8, uint16 and float32 data are written as ImageJ hyperstacks (image axes ZCYX, labels ZYX)
    that Fiji opens with their spacing; other dtypes (e.g. uint32 labels) as tifffile "shaped"
    TIFFs with the same resolution tags and the z spacing in the JSON description.

    Args:
        out_dir: Folder to write into (created if missing).
        name: Volume name, the files' common prefix.
        image: ``(C, Z, Y, X)`` array.
        labels: ``(Z, Y, X)`` integer instance labels, 0 = background.
        spacing: ``(sz, sy, sx)`` in micrometres.
        classes: Class (>= 1) per instance id; written to the sidecar when given.
        compression: tifffile compression name (e.g. ``"zlib"``); None writes uncompressed files,
            which readers memory-map.

    Returns:
        ``(image_path, label_path)``.

    Raises:
        DataError: Shapes or dtypes are invalid or disagree.
    """
    out = Path(out_dir)
    image = np.asarray(image)
    labels = np.asarray(labels)
    where = f"TIFF pair {name!r} in {str(out)!r}"
    check_volume_pair(image, labels, where=where)
    spacing = check_spacing(spacing, where=where)
    checked_classes = _validated_classes(classes or {}, where=where)
    out.mkdir(parents=True, exist_ok=True)
    image_path = out / f"{name}_image.tif"
    label_path = out / f"{name}_labels.tif"
    _write_tiff(image_path, np.ascontiguousarray(image.transpose(1, 0, 2, 3)), "ZCYX", spacing, compression)
    _write_tiff(label_path, np.ascontiguousarray(labels), "ZYX", spacing, compression)
    sidecar = classes_sidecar_path(label_path)
    if classes is not None:
        sidecar.write_text(
            json.dumps({str(k): v for k, v in sorted(checked_classes.items())}), encoding="utf-8"
        )
    elif sidecar.exists():
        sidecar.unlink()
    return image_path, label_path
