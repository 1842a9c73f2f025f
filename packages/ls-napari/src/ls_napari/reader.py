"""Reader: TIFF volumes with their voxel spacing, OME-Zarr images with their ``labels/``.

- A TIFF is read with ls-data's readers (the spacing from ImageJ, OME-XML or resolution tags
  becomes the layer's ``scale``). A label file (``*_labels.tif``, or one with a
  ``<name>_classes.json`` beside it) opens as a Labels layer with each object's class as a
  feature; any other TIFF as one Image layer, ``(Z, Y, X)`` or ``(C, Z, Y, X)``.
- An OME-Zarr is read by napari-ome-zarr (image, pyramid, channels and every label image). A
  label image that ``ls-predict`` wrote gets its per-object table (``<name>_<label>.csv`` beside
  the OME-Zarr) as layer features, and is shown.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["get_reader", "is_label_tiff", "read_tiff", "read_zarr"]

LayerData = tuple[Any, dict[str, Any], str]
_TIFF_SUFFIXES = (".tif", ".tiff")


def _single_path(path: str | list[str]) -> Path | None:
    if isinstance(path, list | tuple):
        if len(path) != 1:
            return None
        path = path[0]
    return Path(str(path))


def get_reader(path: str | list[str]) -> Callable[[str | list[str]], list[LayerData]] | None:
    """napari's reader hook: a reader for one ``.tif``/``.tiff`` file or one ``.zarr`` folder."""
    p = _single_path(path)
    if p is None:
        return None
    if p.suffix.lower() in _TIFF_SUFFIXES and p.is_file():
        return lambda _path: read_tiff(p)
    if p.name.lower().rstrip("/").endswith(".zarr") and p.is_dir():
        return lambda _path: read_zarr(p)
    return None


def is_label_tiff(path: str | Path) -> bool:
    """Whether a TIFF holds instance labels: named ``*_labels.tif`` or with a classes file beside it."""
    from ls_data.io import classes_sidecar_path

    p = Path(path)
    stem = p.name.lower()
    for suffix in (".ome.tiff", ".ome.tif", ".tiff", ".tif"):
        stem = stem.removesuffix(suffix)
    return stem.endswith("labels") or classes_sidecar_path(p).is_file()


def read_tiff(path: str | Path) -> list[LayerData]:
    """The layer of a TIFF volume, scaled by its spacing (see the module doc).

    Raises:
        DataError / VolumeReadError: not a readable volume (the message names the file).
    """
    from ls_data.io import open_image, open_labels

    p = Path(path)
    name = p.name.split(".")[0]
    if is_label_tiff(p):
        reader = open_labels(p)
        scale = tuple(float(s) for s in reader.spacing)
        classes = reader.classes()
        meta: dict[str, Any] = {"name": name, "scale": scale}
        if classes:
            ids = sorted(classes)
            meta["features"] = pd.DataFrame({"index": ids, "class": [classes[i] for i in ids]})
        return [(np.asarray(reader.read()), meta, "labels")]
    reader = open_image(p)
    scale = tuple(float(s) for s in reader.spacing)
    data = np.asarray(reader.read())
    if data.shape[0] == 1:
        return [(data[0], {"name": name, "scale": scale}, "image")]
    meta = {"name": name, "scale": (1.0, *scale), "axis_labels": ("c", "z", "y", "x")}
    return [(data, meta, "image")]


def _table_of(zarr_path: Path, label_name: str) -> Path:
    """Where ``ls-predict`` put the table of ``labels/<label_name>`` of ``zarr_path``."""
    stem = zarr_path.name.removesuffix(".zarr").removesuffix(".ome")
    return zarr_path.parent / f"{stem}_{label_name}.csv"


def _with_table(zarr_path: Path, layer: LayerData) -> LayerData:
    from ls_napari.features import read_prediction_table

    data, meta, kind = layer
    label_name = str(meta.get("name", "")).rstrip("/").split("/")[-1]
    meta = dict(meta, name=label_name or meta.get("name"), visible=True)
    table = _table_of(zarr_path, label_name)
    if table.is_file():
        spacing = [float(s) for s in meta.get("scale", (1.0, 1.0, 1.0))][-3:]
        meta.pop("properties", None)
        meta["features"] = read_prediction_table(table, spacing)
    return data, meta, kind


def read_zarr(path: str | Path) -> list[LayerData]:
    """The layers of an OME-Zarr image (napari-ome-zarr), label images with their tables.

    Raises:
        ValueError: ``path`` is not an OME-Zarr image that napari-ome-zarr reads (named).
    """
    from napari_ome_zarr import napari_get_reader

    p = Path(path)
    reader = napari_get_reader(str(p))
    if reader is None:
        raise ValueError(f"{p}: not an OME-Zarr group that napari-ome-zarr can read")
    layers = reader(str(p)) or []
    if not layers:
        raise ValueError(f"{p}: no image or label image found in this OME-Zarr")
    return [_with_table(p, layer) if layer[2] == "labels" else layer for layer in layers]
