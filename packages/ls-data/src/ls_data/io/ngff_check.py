"""Checking OME-Zarr images and label images against the NGFF rules: yaozarrs, plus what it leaves out.

NGFF 0.4 on Zarr v2 (metadata in ``.zattrs``) and NGFF 0.5 on Zarr v3 (under ``attributes.ome``
of ``zarr.json``). Every problem is returned as a sentence naming the file and the key, so a
caller can print them all at once; an empty list means the group passes.

yaozarrs (:mod:`ls_data.io.ngff`) checks:

- the metadata, strictly (no coercion: ``"7"`` is not an integer), against the model of its
  NGFF version (``Image``, ``LabelImage``, ``LabelsGroup`` of ``yaozarrs.v04`` / ``v05``):
  ``multiscales`` (axes: 2 to 5, unique names, types, order time, channel, space; units from the
  NGFF lists, a SHOULD that yaozarrs warns about, reported here as a problem because readers
  convert lengths by unit;
  ``coordinateTransformations``: one ``scale`` first, at most one ``translation`` after it, one
  value per axis), ``image-label`` (``source``, integer ``label-value``, ``rgba``), ``omero``
  (each channel's ``window`` and ``color``), ``labels``;
- the store (``yaozarrs.validate_zarr_store``): each dataset of an image is an array with one
  dimension per axis (Zarr v3: ``dimension_names`` equal to the axis names), a ``labels`` group
  lists label images that exist and are valid, with as many levels as the image, label arrays
  have integer dtypes, a label image's source image opens. Its store recommendations (SHOULD:
  Zarr v3 ``dimension_names`` present) are not reported.

Checked here, because yaozarrs 0.3 does not:

- NGFF 0.4's ``version`` on each ``multiscales`` entry and on ``image-label``, and NGFF 0.5's
  ``ome.version`` (the models fill in a missing version);
- the datasets of a *label* image are arrays with one dimension per axis (yaozarrs checks this
  for images only);
- levels go from finest to coarsest: no axis grows from one level to the next (NGFF requires
  it; yaozarrs does not compare levels);
- scale values are > 0 (the models accept a zero or negative voxel size; ls-data's readers
  refuse it);
- the label image is listed in its ``labels`` group (a :class:`LabelImageWriter` lists it only
  in ``finalize``, so an unlisted one is unfinished);
- the label image's space axes have the image's names and its level-0 space shape is the
  image's (ls-data's reader pairs label and image voxels one to one).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError
from yaozarrs import validate_zarr_store

from ls_data.io.ngff import NGFF_VERSIONS, error_lines, key_path, metadata_file, models, validate

__all__ = ["check_ngff_image", "check_ngff_labels"]


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
    """NGFF attributes of a Zarr group (v3: the ``ome`` object) and its Zarr format."""
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
        # Here, not in yaozarrs: its v05 models fill in a missing version.
        if ome.get("version") != NGFF_VERSIONS[3]:
            problems.add(path / "zarr.json", f"ome.version is {ome.get('version')!r}, expected '0.5'")
        return ome, 3
    if (path / ".zgroup").is_file():
        return _load_json(path / ".zattrs", problems) or {}, 2
    if not path.exists():
        problems.add(path, "does not exist")
    else:
        problems.add(path, "is not a Zarr group (no .zgroup or zarr.json)")
    return None


def _validate_model(name: str, ngff: dict[str, Any], meta_file: Path, fmt: int, problems: _Problems) -> Any:
    """``ngff`` validated strictly as the yaozarrs model ``name`` of its NGFF version, or None.

    Errors, and the warnings the models give (units outside the NGFF lists, the only ones
    yaozarrs' models give), become problems.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model = validate(getattr(models(fmt), name), ngff, strict=True)
        except ValidationError as exc:
            model = None
            for line in error_lines(exc):
                problems.add(meta_file, line)
    for w in caught:
        if w.category.__module__.startswith("yaozarrs"):  # its ValidationWarning, not exported
            problems.add(meta_file, f"axes: {str(w.message).removeprefix('Warning: ')}")
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return model


def _validate_store(path: Path, meta_file: Path, problems: _Problems) -> None:
    """yaozarrs' structural validation of a group whose metadata passed its model.

    Its StorageValidationError (not exported by yaozarrs) is read through the ``errors()`` list it
    carries; each error is reported against ``meta_file``, which holds the key it names. The
    recommendations it warns about (SHOULD: Zarr v3 ``dimension_names`` present, a listed label
    image with ``image-label``) are not problems; the model warnings it repeats were reported by
    :func:`_validate_model`.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            validate_zarr_store(str(path))
        except (ValueError, KeyError) as exc:
            details = getattr(exc, "errors", None)
            if not callable(details):
                problems.add(meta_file, f"yaozarrs cannot validate the store: {exc!r}")
            for detail in details() if callable(details) else []:
                problems.add(meta_file, f"{key_path(detail['loc'])}: {detail['msg']}")


def _array(path: Path, fmt: int) -> tuple[tuple[int, ...], np.dtype | None] | None:
    """Shape and dtype (None if not a NumPy dtype) of a stored array, None if it is not one."""
    meta_file = path / ("zarr.json" if fmt == 3 else ".zarray")
    meta = _load_json(meta_file, _Problems())
    if meta is None or (fmt == 3 and meta.get("node_type") != "array"):
        return None
    shape = meta.get("shape")
    if not isinstance(shape, list) or not all(isinstance(s, int) and s >= 0 for s in shape):
        return None
    try:
        dtype: np.dtype | None = np.dtype(meta.get("data_type" if fmt == 3 else "dtype"))
    except TypeError:
        dtype = None
    return tuple(shape), dtype


def _check_image(
    path: Path, ngff: dict[str, Any], fmt: int, problems: _Problems, *, label: bool
) -> tuple[Any, list[tuple[tuple[int, ...], np.dtype | None]]] | None:
    """Check an image (or label image) group; returns its first multiscale and its levels'
    (shape, dtype), or None when its metadata fails the model."""
    meta_file = metadata_file(path, fmt)
    versioned = True  # yaozarrs' store validation finds the NGFF version of Zarr v2 there
    if fmt == 2:
        # Here, not in yaozarrs: its v04 models fill in a missing version.
        for i, ms in enumerate(ngff.get("multiscales") or []):
            if isinstance(ms, dict) and not isinstance(ms.get("version"), str):
                problems.add(meta_file, f"multiscales[{i}] has no 'version'")
                versioned = False
        image_label = ngff.get("image-label")
        if label and isinstance(image_label, dict) and not isinstance(image_label.get("version"), str):
            problems.add(meta_file, "image-label has no 'version'")
    model = _validate_model("LabelImage" if label else "Image", ngff, meta_file, fmt, problems)
    if model is None:
        return None
    if versioned:
        _validate_store(path, meta_file, problems)
    levels: list[tuple[tuple[int, ...], np.dtype | None]] = []
    for i, ms in enumerate(model.multiscales):
        names = [a.name for a in ms.axes]
        for j, dataset in enumerate(ms.datasets):
            for t in dataset.coordinateTransformations:
                # Here, not in yaozarrs: the models accept any number as a scale.
                if t.type == "scale" and not all(v > 0 for v in t.scale):
                    problems.add(
                        meta_file,
                        f"multiscales[{i}].datasets[{j}].coordinateTransformations: scale values "
                        f"must be > 0, got {t.scale}",
                    )
            array = _array(path / dataset.path, fmt)
            if array is None or len(array[0]) != len(names):
                if label:  # Here: yaozarrs checks the datasets of images, not of label images.
                    found = "is missing" if array is None else f"has {len(array[0])} dimensions"
                    problems.add(path / dataset.path, f"dataset array {found}; the axes are {names}")
                continue
            shape = array[0]
            # Here, not in yaozarrs: it does not compare levels.
            if i == 0 and levels and any(a > b for a, b in zip(shape, levels[-1][0], strict=True)):
                problems.add(
                    path / dataset.path,
                    f"level {j} has shape {shape}, larger than the previous level's {levels[-1][0]} "
                    f"(levels must go from finest to coarsest)",
                )
            if i == 0:
                levels.append(array)
    return model.multiscales[0], levels


def check_ngff_image(path: str | Path) -> list[str]:
    """Check an OME-Zarr image group: its NGFF metadata, arrays and, if any, its ``labels`` group.

    Args:
        path: The group directory (Zarr v2 / NGFF 0.4 or Zarr v3 / NGFF 0.5).

    Returns:
        Problems found, one sentence each naming the file and the key; empty when the group is
        valid.
    """
    path = Path(path)
    problems = _Problems()
    group = _group(path, problems)
    if group is not None:
        _check_image(path, group[0], group[1], problems, label=False)
    return list(problems)


def check_ngff_labels(image_group: str | Path, name: str) -> list[str]:
    """Check the label image ``labels/<name>`` of an OME-Zarr image.

    Checks the ``labels`` group (its metadata, and that it lists ``name``), the label image's
    metadata and arrays (as :func:`check_ngff_image`, plus ``image-label`` and integer dtypes),
    and that its space axes (names, and level-0 shape) match the image's.

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
        ngff, fmt = labels_group
        listed = _validate_model("LabelsGroup", ngff, metadata_file(labels_dir, fmt), fmt, problems)
        # Here: only ls-data knows that an unlisted label image is unfinished.
        if listed is not None and name not in listed.labels:
            problems.add(
                labels_dir, f"the 'labels' list {listed.labels} does not include {name!r} (not finalized?)"
            )
        elif listed is None and name not in (ngff.get("labels") or []):
            problems.add(labels_dir, f"the 'labels' list does not include {name!r} (not finalized?)")
    group = _group(label_path, problems)
    if group is None:
        return list(problems)
    labels = _check_image(label_path, group[0], group[1], problems, label=True)
    if labels is None:
        return list(problems)
    # Here, not in yaozarrs: the label image must cover the image voxel for voxel.
    image_problems = _Problems()
    image = _group(image_group, image_problems)
    image_ms = None if image is None else _check_image(image_group, *image, image_problems, label=False)
    if image_ms is None:
        problems.add(image_group, f"the image has no valid multiscales ({'; '.join(image_problems)})")
        return list(problems)
    (label_ms, label_levels), (image_ms_model, image_levels) = labels, image_ms
    label_space = [a.name for a in label_ms.axes if a.type == "space"]
    image_space = [a.name for a in image_ms_model.axes if a.type == "space"]
    if label_space != image_space:
        problems.add(label_path, f"space axes {label_space} differ from the image's {image_space}")
    elif label_levels and image_levels:
        label_shape = [n for a, n in zip(label_ms.axes, label_levels[0][0], strict=True) if a.type == "space"]
        image_shape = [
            n for a, n in zip(image_ms_model.axes, image_levels[0][0], strict=True) if a.type == "space"
        ]
        if label_shape != image_shape:
            problems.add(
                label_path, f"level-0 space shape {label_shape} differs from the image's {image_shape}"
            )
    return list(problems)
