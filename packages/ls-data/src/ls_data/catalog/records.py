"""Catalog rows (:class:`VolumeRecord`) and selections of rows (:class:`Selection`)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ls_data.catalog.errors import CatalogError, MissingVolumeFileError

__all__ = ["FORMATS", "Selection", "VolumeRecord"]

#: Volume formats a catalog row may have.
FORMATS = ("tiff", "ome-zarr")


@dataclass(frozen=True)
class VolumeRecord:
    """One volume of the catalog.

    Attributes:
        id: Database id (stable; never reused after removal).
        name: Unique name.
        image_uri: Image path as stored (relative URIs are relative to ``root``).
        label_uri: Instance label path as stored.
        format: ``"tiff"`` or ``"ome-zarr"``.
        shape: Image shape ``(C, Z, Y, X)``.
        channels: Channel names, one per image channel.
        spacing: Voxel spacing ``(sz, sy, sx)`` in micrometres.
        grade: Quality grade, or ``None``.
        split: Split name (``train``/``val``/...), or ``None``.
        attributes: Free-form attributes (JSON object).
        created: When the row was written (UTC), or ``None`` for a record not read from a catalog.
        root: The catalog root that relative URIs resolve against (not part of equality).
    """

    id: int
    name: str
    image_uri: str
    label_uri: str
    format: str
    shape: tuple[int, int, int, int]
    channels: tuple[str, ...]
    spacing: tuple[float, float, float]
    grade: str | None = None
    split: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    created: datetime | None = None
    root: Path | None = field(default=None, compare=False, repr=False)

    @property
    def num_channels(self) -> int:
        """Number of image channels ``C``."""
        return self.shape[0]

    def image_path(self, roots: Sequence[str | Path] | None = None, *, must_exist: bool = True) -> Path:
        """Absolute image path (symlinks followed), checked against ``roots``.

        Args:
            roots: Allowed root folders; ``None`` or empty allows any path.
            must_exist: Raise when the file is gone.

        Raises:
            PathOutsideRootsError: The path resolves outside ``roots``.
            MissingVolumeFileError: ``must_exist`` and the path does not exist (names the row).
            CatalogError: A relative URI and no catalog root to resolve it against.
        """
        return self._resolve("image", self.image_uri, roots, must_exist)

    def label_path(self, roots: Sequence[str | Path] | None = None, *, must_exist: bool = True) -> Path:
        """Absolute instance label path; see :meth:`image_path`."""
        return self._resolve("label", self.label_uri, roots, must_exist)

    def _resolve(self, kind: str, uri: str, roots: Sequence[str | Path] | None, must_exist: bool) -> Path:
        from ls_data.io import resolve_uri  # the io package imports heavy readers; load on use

        if not Path(uri).expanduser().is_absolute() and self.root is None:
            raise CatalogError(
                f"volume {self.id} {self.name!r}: {kind} URI {uri!r} is relative, but the catalog has no "
                "root to resolve it against (pass roots=[...] to Catalog)"
            )
        allowed = [Path(r) for r in roots] if roots else None
        path = resolve_uri(uri, base=self.root, roots=allowed)
        if must_exist and not path.exists():
            raise MissingVolumeFileError(
                f"volume {self.id} {self.name!r}: {kind} file {str(path)!r} (catalog URI {uri!r}) "
                "does not exist"
            )
        return path

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of the record's fields (without ``root``)."""
        return {
            "id": self.id,
            "name": self.name,
            "image_uri": self.image_uri,
            "label_uri": self.label_uri,
            "format": self.format,
            "shape": list(self.shape),
            "channels": list(self.channels),
            "spacing": list(self.spacing),
            "grade": self.grade,
            "split": self.split,
            "attributes": dict(self.attributes),
            "created": self.created.isoformat() if self.created else None,
        }


def _as_tuple(key: str, value: Any, kind: type | tuple[type, ...]) -> tuple | None:
    if value is None:
        return None
    if isinstance(value, str | int) and not isinstance(value, bool):
        value = (value,)  # a single value given where a list is expected
    if not isinstance(value, Sequence):
        raise CatalogError(f"Selection.{key} must be a list, got {type(value).__name__} {value!r}")
    for item in value:
        if not isinstance(item, kind) or isinstance(item, bool):
            raise CatalogError(f"Selection.{key} has {item!r} ({type(item).__name__}); expected {kind}")
    return tuple(value)


@dataclass(frozen=True)
class Selection:
    """Which catalog volumes to use. Every field is optional; ``None`` means "any".

    A list field matches a volume whose value is one of the list (an empty list matches no
    volume); a single string is read as a one-element list. Fields combine with AND.
    ``ids``, ``names``, ``grades``, ``splits``, ``formats`` and ``min_channels`` become SQL
    WHERE clauses with placeholders. ``channels`` and ``attributes`` are matched in Python
    after the query, because the JSON operators of SQLite and PostgreSQL differ and both are
    stored as JSON text.

    Args:
        ids: Volume ids.
        names: Volume names.
        grades: Quality grades.
        splits: Split names.
        formats: ``tiff`` and/or ``ome-zarr``.
        min_channels: Minimum number of image channels.
        channels: Channel names that a volume must all have (a channel set).
        attributes: Attribute values that must be equal (JSON equality, so tuples equal lists).
    """

    ids: Sequence[int] | None = None
    names: Sequence[str] | None = None
    grades: Sequence[str] | None = None
    splits: Sequence[str] | None = None
    formats: Sequence[str] | None = None
    min_channels: int | None = None
    channels: Sequence[str] | None = None
    attributes: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        for key in ("names", "grades", "splits", "formats", "channels"):
            object.__setattr__(self, key, _as_tuple(key, getattr(self, key), str))
        object.__setattr__(self, "ids", _as_tuple("ids", self.ids, int))
        if self.formats is not None:
            unknown = sorted(set(self.formats) - set(FORMATS))
            if unknown:
                raise CatalogError(
                    f"Selection.formats has unknown format(s) {unknown}; known: {list(FORMATS)}"
                )
        if self.min_channels is not None and (
            not isinstance(self.min_channels, int)
            or isinstance(self.min_channels, bool)
            or self.min_channels < 1
        ):
            raise CatalogError(f"Selection.min_channels must be an integer >= 1, got {self.min_channels!r}")
        if self.attributes is not None:
            if not isinstance(self.attributes, Mapping):
                raise CatalogError(f"Selection.attributes must be a mapping, got {self.attributes!r}")
            try:
                normalised = json.loads(json.dumps(dict(self.attributes), sort_keys=True))
            except (TypeError, ValueError) as exc:
                raise CatalogError(f"Selection.attributes is not JSON-serialisable: {exc}") from None
            object.__setattr__(self, "attributes", normalised)

    def where(self) -> tuple[str, list[Any]]:
        """SQL WHERE clause (``"1 = 1"`` when unrestricted) with ``?`` placeholders, and its values."""
        clauses: list[str] = []
        params: list[Any] = []
        for column, values in (
            ("id", self.ids),
            ("name", self.names),
            ("grade", self.grades),
            ("split", self.splits),
            ("format", self.formats),
        ):
            if values is None:
                continue
            if not values:
                clauses.append("1 = 0")
                continue
            clauses.append(f"{column} IN ({', '.join('?' for _ in values)})")  # column names are constants
            params.extend(values)
        if self.min_channels is not None:
            clauses.append("num_channels >= ?")
            params.append(self.min_channels)
        return (" AND ".join(clauses) or "1 = 1"), params

    def matches_in_python(self, record: VolumeRecord) -> bool:
        """Whether ``record`` passes the parts matched after the query (channels, attributes)."""
        if self.channels is not None and not set(self.channels) <= set(record.channels):
            return False
        if self.attributes is not None:
            for key, value in self.attributes.items():
                if key not in record.attributes or record.attributes[key] != value:
                    return False
        return True

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of the selection (for fingerprints and logs)."""
        return {
            "ids": list(self.ids) if self.ids is not None else None,
            "names": list(self.names) if self.names is not None else None,
            "grades": list(self.grades) if self.grades is not None else None,
            "splits": list(self.splits) if self.splits is not None else None,
            "formats": list(self.formats) if self.formats is not None else None,
            "min_channels": self.min_channels,
            "channels": list(self.channels) if self.channels is not None else None,
            "attributes": dict(self.attributes) if self.attributes is not None else None,
        }
