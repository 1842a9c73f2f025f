"""Writer: a Labels layer (an edited prediction, a hand-made truth) as an NGFF label image or a TIFF.

- ``*.zarr``: the path of an existing OME-Zarr *image*; the labels are added to it as
  ``labels/<layer name>`` with ls-data's :class:`~ls_data.io.LabelImageWriter` (NGFF label image
  with a pyramid following the image's, each object's class as a label property when the layer
  has a ``class`` feature), replacing a label image of that name.
- ``*.tif`` / ``*.tiff``: the label volume with its spacing (ImageJ hyperstack for 8/16-bit ids,
  else a tifffile shaped TIFF with the same tags), and ``<name>_classes.json`` beside it when
  the layer has a ``class`` feature, as ls-data's readers expect.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["label_image_name", "write_label_image", "write_label_tiff", "write_labels"]

_IMAGEJ_DTYPES = (np.uint8, np.uint16)


def label_image_name(layer_name: str) -> str:
    """A label image name (a folder name) for a layer: unsafe characters become ``_``."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(layer_name)).strip("._")
    return name or "labels"


def _spacing(meta: Mapping[str, Any]) -> tuple[float, float, float]:
    scale = [float(s) for s in meta.get("scale", (1.0, 1.0, 1.0))]
    return (scale + [1.0] * 3)[-3:] if len(scale) < 3 else tuple(scale[-3:])  # type: ignore[return-value]


def _classes(meta: Mapping[str, Any]) -> dict[int, int]:
    features = meta.get("features")
    if features is None or "class" not in getattr(features, "columns", ()) or "index" not in features.columns:
        return {}
    return {int(i): int(c) for i, c in zip(features["index"], features["class"], strict=True) if int(i) > 0}


def _volume(data: Any, name: str) -> np.ndarray:
    labels = np.asarray(data[0] if isinstance(data, list) else data)
    if labels.ndim != 3:
        raise ValueError(
            f"layer {name!r}: labels of shape {labels.shape}; only (Z, Y, X) volumes are written"
        )
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"layer {name!r}: labels of dtype {labels.dtype}, not integers")
    return labels


def write_label_tiff(
    path: str | Path, labels: np.ndarray, spacing: Sequence[float], classes: Mapping[int, int] | None = None
) -> Path:
    """Write ``(Z, Y, X)`` labels with their spacing (and the classes sidecar) as a TIFF."""
    import tifffile

    from ls_data.io import classes_sidecar_path

    out = Path(path)
    sz, sy, sx = (float(s) for s in spacing)
    kwargs: dict[str, Any] = {"photometric": "minisblack", "resolution": (1.0 / sx, 1.0 / sy)}
    metadata = {"spacing": sz, "unit": "micron", "axes": "ZYX"}
    if labels.dtype in _IMAGEJ_DTYPES:
        tifffile.imwrite(out, labels, imagej=True, metadata=metadata, **kwargs)
    else:
        tifffile.imwrite(out, labels.astype(np.uint32, copy=False), metadata=metadata, **kwargs)
    if classes:
        sidecar = classes_sidecar_path(out)
        sidecar.write_text(json.dumps({str(k): int(v) for k, v in sorted(classes.items())}), encoding="utf-8")
    return out


def write_label_image(
    image_group: str | Path,
    name: str,
    labels: np.ndarray,
    spacing: Sequence[float],
    classes: Mapping[int, int] | None = None,
) -> Path:
    """Add ``labels`` to an OME-Zarr image as ``labels/<name>`` (replacing one of that name).

    Raises:
        ValueError: ``image_group`` is not an existing OME-Zarr image (named).
    """
    from ls_data.io import LabelImageWriter

    group = Path(image_group)
    if not (group / ".zattrs").is_file() and not (group / "zarr.json").is_file():
        raise ValueError(
            f"{group}: not an existing OME-Zarr image; labels are saved into the image they label "
            f"(choose its .ome.zarr folder), or as .tif"
        )
    writer = LabelImageWriter.create(group, name, labels.shape, spacing, overwrite=True)
    writer.write((0, 0, 0), labels.astype(writer.dtype, copy=False))
    writer.build_pyramid()
    properties = [{"label-value": k, "class": v} for k, v in sorted((classes or {}).items())]
    writer.finalize(properties=properties or None)
    return group / "labels" / name


def write_labels(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """napari's writer hook for one Labels layer (see the module doc); returns the written paths."""
    name = str(meta.get("name", "labels"))
    labels = _volume(data, name)
    spacing, classes = _spacing(meta), _classes(meta)
    p = Path(path)
    if p.suffix.lower() in (".tif", ".tiff"):
        return [str(write_label_tiff(p, labels, spacing, classes))]
    if p.suffix.lower() == ".zarr":
        return [str(write_label_image(p, label_image_name(name), labels, spacing, classes))]
    raise ValueError(f"{path}: save labels as .tif/.tiff or into an OME-Zarr image (.zarr)")
