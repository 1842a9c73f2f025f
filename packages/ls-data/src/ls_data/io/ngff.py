"""NGFF metadata built and parsed through yaozarrs, the pydantic models of the OME-Zarr specification.

ls-data writes NGFF 0.4 on Zarr v2 (metadata in ``.zattrs``) and, for a label image inside a Zarr
v3 image, NGFF 0.5 (under ``attributes.ome`` of ``zarr.json``); it reads both. The
``multiscales``, ``image-label`` and ``omero`` blocks it writes are made from yaozarrs' models
(``yaozarrs.v04`` / ``yaozarrs.v05``), so a block that breaks the specification fails when it is
built, before any file is written; the ``multiscales`` it reads are parsed by the same models, so
readers see the specification's rules rather than a hand-written subset. Only JSON goes through
here: the arrays are written and read chunk by chunk with TensorStore elsewhere.

Errors name the metadata file and the key (``multiscales[0].datasets[1].coordinateTransformations``).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import TypeAdapter, ValidationError
from yaozarrs import v04, v05

from ls_data.errors import DataError, VolumeReadError

__all__ = [
    "NGFF_VERSIONS",
    "Multiscale",
    "build_image_label",
    "build_multiscale",
    "build_omero",
    "error_lines",
    "key_path",
    "metadata_file",
    "models",
]

NGFF_VERSIONS = {2: "0.4", 3: "0.5"}
"""The NGFF version of each Zarr format: 0.4 on Zarr v2, 0.5 on Zarr v3."""


def models(fmt: int) -> Any:
    """yaozarrs' model module of the NGFF version that Zarr format ``fmt`` (2 or 3) holds."""
    return v04 if fmt == 2 else v05


def metadata_file(group: Path, fmt: int) -> Path:
    """The file holding a group's NGFF metadata: ``.zattrs`` (Zarr v2) or ``zarr.json`` (Zarr v3)."""
    return group / (".zattrs" if fmt == 2 else "zarr.json")


def key_path(loc: Sequence[int | str]) -> str:
    """A pydantic error location as a key path: ``('multiscales', 0, 'axes')`` -> ``multiscales[0].axes``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else str(part)
    return out


def error_lines(exc: ValidationError, prefix: Sequence[int | str] = ()) -> list[str]:
    """One ``key: message`` line per error of a yaozarrs validation, keys prefixed with ``prefix``."""
    lines = []
    for error in exc.errors(include_url=False):
        key = key_path((*prefix, *error["loc"])) or "(top level)"
        lines.append(f"{key}: {error['msg']}")
    return lines


@functools.cache
def _adapter(cls: Any) -> TypeAdapter:
    return TypeAdapter(cls)


def validate(cls: Any, value: Any, *, strict: bool = False) -> Any:
    """``value`` (JSON-like) validated as the yaozarrs model ``cls``; raises pydantic's ValidationError.

    ``strict``: no coercion, so ``"7"`` is not an integer (what the NGFF JSON schemas say).
    """
    return _adapter(cls).validate_python(value, strict=strict)


def _dump(model: Any) -> dict[str, Any]:
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


# --------------------------------------------------------------------------------------------
# Building


def build_multiscale(
    fmt: int,
    *,
    name: str,
    channel_axis: bool,
    scales: Sequence[Sequence[float]],
    translations: Sequence[Sequence[float]],
    kind: str,
    metadata: Mapping[str, Any],
) -> dict[str, Any]:
    """One NGFF ``multiscales`` entry: axes ``[c,] z, y, x`` (micrometres), levels ``0..n-1``.

    Args:
        fmt: Zarr format (2: NGFF 0.4, with its ``version`` key; 3: NGFF 0.5, versioned once in ``ome``).
        name: The multiscale's name.
        channel_axis: Whether the arrays have a leading channel axis.
        scales: Per level, the scale of every axis.
        translations: Per level, the translation of every axis; written only when non-zero.
        kind: How each level was made from the one before (``mean``, ``nearest``).
        metadata: The downsampling method's description.

    Raises:
        DataError: The entry breaks the NGFF rules (yaozarrs' message, naming the key).
    """
    m = models(fmt)
    axes = [m.ChannelAxis(name="c")] if channel_axis else []
    axes += [m.SpaceAxis(name=a, unit="micrometer") for a in "zyx"]
    datasets = []
    for level, (scale, shift) in enumerate(zip(scales, translations, strict=True)):
        transforms: list[Any] = [m.ScaleTransformation(scale=[float(s) for s in scale])]
        if any(shift):
            transforms.append(m.TranslationTransformation(translation=[float(t) for t in shift]))
        datasets.append(m.Dataset(path=str(level), coordinateTransformations=transforms))
    try:
        entry = m.Multiscale(name=name, axes=axes, datasets=datasets, type=kind, metadata=dict(metadata))
    except ValidationError as exc:
        raise DataError(f"NGFF multiscales of {name!r}: {'; '.join(error_lines(exc))}") from exc
    return _dump(entry)


def build_image_label(fmt: int, properties: Sequence[Mapping[str, Any]], *, where: str) -> dict[str, Any]:
    """The NGFF ``image-label`` block of a label image whose source image is ``../../``.

    ``properties`` (dicts with an integer ``label-value``, unique, other keys free) are validated
    by the model and written as given: yaozarrs' ``LabelProperty`` keeps only ``label-value``.

    Raises:
        DataError: Bad properties (the message starts with ``where`` and names the key).
    """
    block: dict[str, Any] = {"source": {"image": "../../"}}
    if fmt == 2:
        block["version"] = NGFF_VERSIONS[fmt]
    if properties:
        block["properties"] = [dict(p) for p in properties]
    try:
        model = validate(models(fmt).ImageLabel, block, strict=True)
    except ValidationError as exc:
        raise DataError(f"{where}: {'; '.join(error_lines(exc, ('image-label',)))}") from exc
    return {**_dump(model), **({"properties": block["properties"]} if properties else {})}


def build_omero(
    names: Sequence[str], colors: Sequence[str], ranges: Sequence[tuple[float, float]], dtype: np.dtype
) -> dict[str, Any]:
    """The NGFF 0.4 ``omero`` block: per channel its label, colour and display window.

    ``window`` (which NGFF requires): ``start`` / ``end`` the channel's value range ``ranges[i]``
    (viewers open with it as contrast limits; widened by 1 when the range is a single value),
    ``min`` / ``max`` the range of the stored dtype.
    """
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else np.finfo(dtype)
    channels = []
    for i, (name, (low, high)) in enumerate(zip(names, ranges, strict=True)):
        end = high if high > low else low + 1
        window = v04.OmeroWindow(start=float(low), end=float(end), min=float(info.min), max=float(info.max))
        channels.append(
            v04.OmeroChannel(label=name, color=colors[i % len(colors)], active=True, window=window)
        )
    return _dump(v04.Omero(version=NGFF_VERSIONS[2], channels=channels))


# --------------------------------------------------------------------------------------------
# Reading


class Multiscale:
    """The first ``multiscales`` entry of an OME-Zarr group, parsed by yaozarrs.

    Args:
        ngff: The group's NGFF attributes (Zarr v3: the ``ome`` object).
        fmt: Its Zarr format (2: NGFF 0.4, 3: NGFF 0.5).
        meta_file: The file they came from, named in errors.

    Raises:
        VolumeReadError: No ``multiscales``, or an entry that breaks the NGFF rules (the message
            names the file and the key).
    """

    def __init__(self, ngff: Mapping[str, Any], fmt: int, meta_file: Path) -> None:
        entries = ngff.get("multiscales")
        if not isinstance(entries, list) or not entries:
            raise VolumeReadError(meta_file, "no 'multiscales' metadata (not an OME-Zarr image)")
        try:
            self.model = validate(models(fmt).Multiscale, entries[0])
        except ValidationError as exc:
            raise VolumeReadError(
                meta_file,
                f"invalid NGFF {NGFF_VERSIONS[fmt]} metadata: "
                + "; ".join(error_lines(exc, ("multiscales", 0))),
            ) from exc
        self.zarr_format = fmt
        self.meta_file = meta_file
        axes = self.model.axes
        self.axis_names = [a.name.lower() for a in axes]
        self.axis_types = [a.type or "" for a in axes]
        self.axis_units = [a.unit for a in axes]
        self.paths = [d.path for d in self.model.datasets]

    def _check_level(self, level: int) -> None:
        if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level < len(self.paths):
            raise DataError(
                f"{str(self.meta_file.parent)!r}: level {level!r} does not exist; "
                f"it has {len(self.paths)} level(s)"
            )

    def _transforms(self, level: int) -> tuple[list[Any], list[Any]]:
        self._check_level(level)
        return (
            list(self.model.datasets[level].coordinateTransformations),
            list(self.model.coordinateTransformations or []),
        )

    def scale(self, level: int) -> list[float]:
        """Per-axis scale of ``level``: the dataset's scale times the multiscale's, in axis units."""
        own, shared = self._transforms(level)
        scale = [1.0] * len(self.axis_names)
        for t in (*own, *shared):
            if t.type == "scale":
                scale = [a * float(b) for a, b in zip(scale, t.scale, strict=True)]
        return scale

    def translation(self, level: int) -> list[float]:
        """Per-axis position of voxel 0 of ``level``: the dataset's translation, then the
        multiscale's scale and translation, in axis units."""
        own, shared = self._transforms(level)
        total = [0.0] * len(self.axis_names)
        for t in own:
            if t.type == "translation":
                total = [a + float(b) for a, b in zip(total, t.translation, strict=True)]
        for t in shared:
            if t.type == "scale":
                total = [a * float(s) for a, s in zip(total, t.scale, strict=True)]
            else:
                total = [a + float(b) for a, b in zip(total, t.translation, strict=True)]
        return total
