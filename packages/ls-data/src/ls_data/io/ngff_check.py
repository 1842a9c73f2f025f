"""Checking OME-Zarr images and label images against the NGFF rules we write and read.

The checks cover NGFF 0.4 on Zarr v2 (metadata in ``.zattrs``, arrays in ``.zarray``) and NGFF 0.5
on Zarr v3 (metadata under ``attributes.ome`` of ``zarr.json``, the version there). Metadata is
read from the JSON files directly, no Zarr library involved, and every problem is returned as a
sentence naming the file or key, so a caller can print them all at once; an empty list means the
group passes.

Rules checked (the parts of the specification that readers and viewers depend on):

- ``multiscales``: a non-empty list whose entries have a ``version`` (NGFF 0.4; NGFF 0.5 has it
  once, in ``ome``), ``axes`` and ``datasets``.
- ``axes``: 2 to 5 entries, names unique, types ``space``, ``channel`` or ``time``, at most one
  channel and one time axis, 2 or 3 space axes, space units from the NGFF unit list, time units
  from its time unit list, order time, then channel, then space.
- Each dataset ``path`` is an existing array whose dimension count equals the number of axes
  (and, on Zarr v3, whose ``dimension_names`` when given equal the axis names).
- ``coordinateTransformations`` of each dataset (and of the multiscale, if any): exactly one
  ``scale``, first, with one value > 0 per axis; optionally one ``translation`` right after it,
  with one number per axis; nothing else.
- Levels go from finest to coarsest: no axis grows from one level to the next.
- Labels: ``labels`` of the ``labels`` group lists the name; the label group has ``image-label``
  (with ``version`` on NGFF 0.4), whose ``properties`` and ``colors``, if present, are lists of
  objects with an integer ``label-value``; every level has an integer dtype; the label image's
  space axes have the image's space axis names, and (as the ls-data reader requires) its level-0
  space shape equals the image's.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["check_ngff_image", "check_ngff_labels"]

SPACE_UNITS = frozenset(
    {
        "angstrom",
        "attometer",
        "centimeter",
        "decimeter",
        "exameter",
        "femtometer",
        "foot",
        "gigameter",
        "hectometer",
        "inch",
        "kilometer",
        "megameter",
        "meter",
        "micrometer",
        "mile",
        "millimeter",
        "nanometer",
        "parsec",
        "petameter",
        "picometer",
        "terameter",
        "yard",
        "yoctometer",
        "yottameter",
        "zeptometer",
        "zettameter",
    }
)
TIME_UNITS = frozenset(
    {
        "attosecond",
        "centisecond",
        "day",
        "decisecond",
        "exasecond",
        "femtosecond",
        "gigasecond",
        "hectosecond",
        "hour",
        "kilosecond",
        "megasecond",
        "microsecond",
        "millisecond",
        "minute",
        "nanosecond",
        "petasecond",
        "picosecond",
        "second",
        "terasecond",
        "yoctosecond",
        "yottasecond",
        "zeptosecond",
        "zettasecond",
    }
)
_AXIS_TYPES = ("time", "channel", "space")  # also the required order


class _Problems(list):
    """A list of problem sentences, each prefixed with where it was found."""

    def add(self, where: Path | str, message: str) -> None:
        self.append(f"{str(where)!r}: {message}")


def _load_json(path: Path, problems: _Problems) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        problems.add(path, f"unreadable JSON: {exc}")
        return None
    if not isinstance(value, dict):
        problems.add(path, f"expected a JSON object, got {type(value).__name__}")
        return None
    return value


def _group(path: Path, problems: _Problems) -> tuple[dict[str, Any], int] | None:
    """NGFF attributes of a Zarr group (v3: the ``ome`` object, with the version) and its format."""
    meta = _load_json(path / "zarr.json", problems)
    if meta is not None:
        if meta.get("node_type") != "group":
            problems.add(path / "zarr.json", f"node_type is {meta.get('node_type')!r}, expected 'group'")
            return None
        attrs = meta.get("attributes") or {}
        ome = attrs.get("ome") if isinstance(attrs, dict) else None
        if not isinstance(ome, dict):
            problems.add(path / "zarr.json", "Zarr v3 group has no 'ome' attribute (NGFF 0.5 metadata)")
            return None
        if ome.get("version") != "0.5":
            problems.add(path / "zarr.json", f"ome.version is {ome.get('version')!r}, expected '0.5'")
        return ome, 3
    if (path / ".zgroup").is_file():
        return _load_json(path / ".zattrs", problems) or {}, 2
    if not path.exists():
        problems.add(path, "does not exist")
    else:
        problems.add(path, "is not a Zarr group (no .zgroup or zarr.json)")
    return None


def _array(path: Path, fmt: int, problems: _Problems) -> tuple[tuple[int, ...], np.dtype | None, Any] | None:
    """Shape, dtype (None if not a NumPy dtype) and v3 dimension_names of an array, or None if missing."""
    meta_file = path / ("zarr.json" if fmt == 3 else ".zarray")
    meta = _load_json(meta_file, problems)
    if meta is None:
        if not meta_file.exists():
            problems.add(path, f"dataset array is missing (no {meta_file.name})")
        return None
    if fmt == 3 and meta.get("node_type") != "array":
        problems.add(meta_file, f"node_type is {meta.get('node_type')!r}, expected 'array'")
        return None
    shape = meta.get("shape")
    if not isinstance(shape, list) or not all(isinstance(s, int) and s >= 0 for s in shape):
        problems.add(meta_file, f"invalid shape {shape!r}")
        return None
    try:
        dtype: np.dtype | None = np.dtype(meta.get("data_type" if fmt == 3 else "dtype"))
    except TypeError:
        dtype = None
    return tuple(shape), dtype, meta.get("dimension_names") if fmt == 3 else None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_axes(axes: Any, where: str, problems: _Problems) -> list[dict[str, Any]] | None:
    if not isinstance(axes, list) or not 2 <= len(axes) <= 5:
        count = len(axes) if isinstance(axes, list) else axes
        problems.add(where, f"axes must be a list of 2 to 5 axes, got {count!r}")
        return None
    if not all(isinstance(a, dict) and isinstance(a.get("name"), str) and a["name"] for a in axes):
        problems.add(where, f"every axis must be an object with a non-empty 'name', got {axes!r}")
        return None
    names = [a["name"] for a in axes]
    if len(set(names)) != len(names):
        problems.add(where, f"axis names must be unique, got {names}")
    types = [a.get("type") for a in axes]
    for axis, kind in zip(axes, types, strict=True):
        if kind not in _AXIS_TYPES:
            problems.add(
                where, f"axis {axis['name']!r} has type {kind!r}; expected one of {list(_AXIS_TYPES)}"
            )
        unit = axis.get("unit")
        if unit is not None and kind == "space" and unit not in SPACE_UNITS:
            problems.add(where, f"axis {axis['name']!r} has unit {unit!r}, which is not an NGFF space unit")
        if unit is not None and kind == "time" and unit not in TIME_UNITS:
            problems.add(where, f"axis {axis['name']!r} has unit {unit!r}, which is not an NGFF time unit")
    for kind in ("channel", "time"):
        if types.count(kind) > 1:
            problems.add(where, f"at most one {kind} axis is allowed, got {types.count(kind)}")
    if types.count("space") not in (2, 3):
        problems.add(where, f"2 or 3 space axes are required, got {types.count('space')}")
    known = [_AXIS_TYPES.index(t) for t in types if t in _AXIS_TYPES]
    if known != sorted(known):
        problems.add(where, f"axes must be ordered time, channel, space (space last), got types {types}")
    return axes


def _check_transforms(transforms: Any, ndim: int, where: str, problems: _Problems, *, required: bool) -> None:
    if transforms is None and not required:
        return
    if not isinstance(transforms, list) or not transforms:
        problems.add(where, "coordinateTransformations must be a non-empty list starting with a 'scale'")
        return
    kinds = [t.get("type") if isinstance(t, dict) else None for t in transforms]
    if kinds[0] != "scale" or kinds.count("scale") != 1:
        problems.add(where, f"coordinateTransformations must have exactly one 'scale', first; got {kinds}")
    if kinds.count("translation") > 1 or (
        kinds.count("translation") == 1 and kinds.index("translation") != 1
    ):
        problems.add(where, f"at most one 'translation' is allowed, right after the scale; got {kinds}")
    extra = [k for k in kinds if k not in ("scale", "translation")]
    if extra:
        problems.add(where, f"only 'scale' and 'translation' transformations are allowed, got {extra}")
    for t, kind in zip(transforms, kinds, strict=True):
        if kind not in ("scale", "translation"):
            continue
        values = t.get(kind)
        if not isinstance(values, list) or len(values) != ndim or not all(_is_number(v) for v in values):
            problems.add(where, f"{kind} must be a list of {ndim} numbers (one per axis), got {values!r}")
        elif kind == "scale" and not all(v > 0 for v in values):
            problems.add(where, f"scale values must be > 0, got {values}")


def _check_multiscales(
    path: Path, attrs: Mapping[str, Any], fmt: int, problems: _Problems
) -> tuple[list[dict[str, Any]], list[tuple[tuple[int, ...], np.dtype | None]]] | None:
    """Check the first multiscale of a group; returns its axes and the (shape, dtype) of each level."""
    meta_file = path / ("zarr.json" if fmt == 3 else ".zattrs")
    multiscales = attrs.get("multiscales")
    if not isinstance(multiscales, list) or not multiscales:
        problems.add(meta_file, "no 'multiscales' metadata (a non-empty list)")
        return None
    result = None
    for i, ms in enumerate(multiscales):
        where = f"{meta_file} multiscales[{i}]"
        if not isinstance(ms, dict):
            problems.add(where, "must be an object")
            continue
        if fmt == 2 and not isinstance(ms.get("version"), str):
            problems.add(where, "has no 'version'")
        axes = _check_axes(ms.get("axes"), where, problems)
        datasets = ms.get("datasets")
        if not isinstance(datasets, list) or not datasets:
            problems.add(where, "'datasets' must be a non-empty list")
            continue
        if axes is None:
            continue
        names = [a["name"] for a in axes]
        ndim = len(axes)
        _check_transforms(ms.get("coordinateTransformations"), ndim, where, problems, required=False)
        levels = []
        for j, ds in enumerate(datasets):
            ds_where = f"{where} datasets[{j}]"
            if not isinstance(ds, dict) or not isinstance(ds.get("path"), str) or not ds["path"]:
                problems.add(ds_where, "needs a non-empty 'path'")
                continue
            _check_transforms(ds.get("coordinateTransformations"), ndim, ds_where, problems, required=True)
            array = _array(path / ds["path"], fmt, problems)
            if array is None:
                continue
            shape, dtype, dim_names = array
            if len(shape) != ndim:
                problems.add(path / ds["path"], f"array has {len(shape)} dimensions but the axes are {names}")
                continue
            if dim_names is not None and list(dim_names) != names:
                problems.add(path / ds["path"], f"dimension_names {dim_names} differ from the axes {names}")
            if levels and any(a > b for a, b in zip(shape, levels[-1][0], strict=True)):
                problems.add(
                    path / ds["path"],
                    f"level {j} has shape {shape}, larger than the previous level's {levels[-1][0]} "
                    f"(levels must go from finest to coarsest)",
                )
            levels.append((shape, dtype))
        if i == 0:
            result = (axes, levels)
    return result


def check_ngff_image(path: str | Path) -> list[str]:
    """Check an OME-Zarr image (or label image) group's multiscales metadata and arrays.

    Args:
        path: The group directory (Zarr v2 / NGFF 0.4 or Zarr v3 / NGFF 0.5).

    Returns:
        Problems found, one sentence each naming the file or key; empty when the group is valid.
    """
    path = Path(path)
    problems = _Problems()
    group = _group(path, problems)
    if group is not None:
        _check_multiscales(path, group[0], group[1], problems)
    return list(problems)


def _check_label_entries(entries: Any, key: str, where: str, problems: _Problems) -> None:
    if entries is None:
        return
    if not isinstance(entries, list):
        problems.add(where, f"image-label {key} must be a list, got {type(entries).__name__}")
        return
    for i, entry in enumerate(entries):
        value = entry.get("label-value") if isinstance(entry, dict) else None
        if isinstance(value, bool) or not isinstance(value, int):
            problems.add(where, f"image-label {key}[{i}] needs an integer 'label-value', got {entry!r}")
        if key == "colors" and isinstance(entry, dict) and "rgba" in entry:
            rgba = entry["rgba"]
            if not (
                isinstance(rgba, list)
                and len(rgba) == 4
                and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in rgba)
            ):
                problems.add(where, f"image-label colors[{i}] rgba must be 4 ints 0..255, got {rgba!r}")


def check_ngff_labels(image_group: str | Path, name: str) -> list[str]:
    """Check the label image ``labels/<name>`` of an OME-Zarr image.

    Checks the ``labels`` group lists ``name``, the label group's multiscales (as
    :func:`check_ngff_image`), its ``image-label`` metadata, integer dtypes, and that its space
    axes (names, and level-0 shape) match the image's.

    Args:
        image_group: The OME-Zarr image group directory.
        name: The label image's name under ``labels/``.

    Returns:
        Problems found, one sentence each; empty when the label image is valid.
    """
    image_group = Path(image_group)
    problems = _Problems()
    labels_dir = image_group / "labels"
    label_path = labels_dir / name
    labels_group = _group(labels_dir, problems)
    if labels_group is not None:
        listed = labels_group[0].get("labels")
        if not isinstance(listed, list):
            problems.add(labels_dir, "the labels group has no 'labels' list")
        elif name not in listed:
            problems.add(labels_dir, f"the 'labels' list {listed} does not include {name!r} (not finalized?)")
    group = _group(label_path, problems)
    if group is None:
        return list(problems)
    attrs, fmt = group
    meta_file = label_path / ("zarr.json" if fmt == 3 else ".zattrs")
    image_label = attrs.get("image-label")
    if not isinstance(image_label, dict):
        problems.add(meta_file, "no 'image-label' metadata")
    else:
        if fmt == 2 and not isinstance(image_label.get("version"), str):
            problems.add(meta_file, "image-label has no 'version'")
        source = image_label.get("source")
        if source is not None and not (isinstance(source, dict) and isinstance(source.get("image", ""), str)):
            problems.add(
                meta_file, f"image-label source must be an object with a string 'image', got {source!r}"
            )
        _check_label_entries(image_label.get("properties"), "properties", str(meta_file), problems)
        _check_label_entries(image_label.get("colors"), "colors", str(meta_file), problems)
    labels = _check_multiscales(label_path, attrs, fmt, problems)
    if labels is None:
        return list(problems)
    label_axes, label_levels = labels
    for level, (_, dtype) in enumerate(label_levels):
        if dtype is None or not np.issubdtype(dtype, np.integer):
            problems.add(label_path, f"level {level} has dtype {dtype}; label images must be integer")
    image_problems = _Problems()
    image = _group(image_group, image_problems)
    image_ms = None if image is None else _check_multiscales(image_group, image[0], image[1], image_problems)
    if image_ms is None:
        problems.add(image_group, f"the image has no readable multiscales ({'; '.join(image_problems)})")
        return list(problems)
    image_axes, image_levels = image_ms
    label_space = [a["name"] for a in label_axes if a.get("type") == "space"]
    image_space = [a["name"] for a in image_axes if a.get("type") == "space"]
    if label_space != image_space:
        problems.add(label_path, f"space axes {label_space} differ from the image's {image_space}")
    elif label_levels and image_levels:
        label_shape = [
            n for a, n in zip(label_axes, label_levels[0][0], strict=True) if a.get("type") == "space"
        ]
        image_shape = [
            n for a, n in zip(image_axes, image_levels[0][0], strict=True) if a.get("type") == "space"
        ]
        if label_shape != image_shape:
            problems.add(
                label_path, f"level-0 space shape {label_shape} differs from the image's {image_shape}"
            )
    return list(problems)
