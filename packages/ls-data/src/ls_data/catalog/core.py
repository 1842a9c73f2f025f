"""The :class:`Catalog`: volumes and their metadata in an SQLite file or a PostgreSQL database."""

from __future__ import annotations

import difflib
import json
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ls_data.catalog.backend import UniqueViolation, open_backend
from ls_data.catalog.errors import CatalogError, DuplicateVolumeError, VolumeNotFoundError
from ls_data.catalog.records import FORMATS, Selection, VolumeRecord
from ls_data.catalog.schema import COLUMNS, drop_schema, ensure_schema
from ls_data.catalog.url import parse_url

if TYPE_CHECKING:
    from ls_data.catalog.register import RegisterReport

__all__ = ["Catalog"]

_SELECT = f"SELECT {', '.join(COLUMNS)} FROM volumes"
_INSERT = (
    f"INSERT INTO volumes ({', '.join(COLUMNS[1:])}) "
    f"VALUES ({', '.join('?' for _ in COLUMNS[1:])}) RETURNING id"
)
_UPDATE = f"UPDATE volumes SET {', '.join(f'{c} = ?' for c in COLUMNS[2:-1])} WHERE id = ?"


class Catalog:
    """A catalog of light-sheet volumes (image + instance labels + metadata).

    A catalog is created (SQLite file and tables, or the tables in a PostgreSQL database) only
    when opened with ``create=True``; readers leave it False, so a mistyped URL is an error
    rather than a new empty catalog. Paths are stored as given (URIs); relative ones resolve
    against :attr:`root`. :meth:`resolve` turns a record into absolute paths and rejects any
    path that resolves (symlinks followed) outside ``roots``. A catalog holds one database
    connection: open one per thread or process. Every call is its own transaction.

    Args:
        url: ``sqlite:///relative.sqlite``, ``sqlite:////absolute.sqlite``, ``sqlite:///:memory:``
            or ``postgresql://user:password@host:port/dbname`` (``postgres://`` too; needs
            ``pip install 'ls-data[postgres]'``).
        roots: Folders that catalog paths may resolve into. Empty: any path is allowed.
        create: Create the catalog when it does not exist (writers: ``register``, ``synth``).
            An in-memory SQLite catalog is always created.

    Raises:
        CatalogNotFoundError: The catalog does not exist (no SQLite file, or a database without
            catalog tables) and ``create`` is False.
        CatalogError: The URL is malformed, the database is unreachable or not a catalog of
            this schema version. The message names the URL with the password masked.
    """

    def __init__(
        self,
        url: str = "sqlite:///catalog.sqlite",
        *,
        roots: Sequence[str | Path] = (),
        create: bool = False,
    ) -> None:
        if isinstance(roots, str | Path):
            roots = [roots]
        self._url = parse_url(url)
        self._roots = tuple(Path(r).expanduser().absolute() for r in roots)
        if self._url.sqlite_path is not None:
            self._root: Path | None = self._url.sqlite_path.parent
        else:
            self._root = self._roots[0] if self._roots else None
        in_memory = self._url.backend == "sqlite" and self._url.sqlite_path is None
        self._backend = open_backend(self._url, create=create)
        try:
            self._created = ensure_schema(self._backend, create=create or in_memory)
        except BaseException:
            self._backend.close()
            raise

    # ------------------------------------------------------------------ properties
    @property
    def created(self) -> bool:
        """Whether this object created the catalog (its tables) when it was opened."""
        return self._created

    @property
    def url(self) -> str:
        """The database URL as given (may contain a password; print :attr:`safe_url` instead)."""
        return self._url.url

    @property
    def safe_url(self) -> str:
        """The database URL with its password masked."""
        return self._url.safe_url

    @property
    def root(self) -> Path | None:
        """Folder that relative URIs resolve against: the SQLite file's folder, else the first root."""
        return self._root

    @property
    def roots(self) -> tuple[Path, ...]:
        """Allowed root folders (empty: unrestricted)."""
        return self._roots

    def __repr__(self) -> str:
        return f"Catalog({self.safe_url!r}, roots={[str(r) for r in self._roots]})"

    # ------------------------------------------------------------------ lifecycle
    def remove_if_created_and_empty(self) -> bool:
        """Undo the creation of a catalog that no volume reached (a failed first ``register``):
        drop the tables this object created when the catalog is still empty, and close it.
        An SQLite file is left to the caller (the tables go, the file stays). Returns whether
        the tables were dropped."""
        if not self._created or len(self) > 0:
            return False
        drop_schema(self._backend)
        self.close()
        return True

    def close(self) -> None:
        """Close the database connection."""
        self._backend.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ writing
    def add_volume(
        self,
        *,
        name: str,
        image_uri: str | Path,
        label_uri: str | Path,
        format: str,
        shape: Sequence[int],
        channels: Sequence[str] | int,
        spacing: Sequence[float],
        grade: str | None = None,
        split: str | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> int:
        """Add one volume and return its id.

        Args:
            name: Unique volume name.
            image_uri: Image file / OME-Zarr image group (relative to :attr:`root`, or absolute).
            label_uri: Instance label file / OME-Zarr label group.
            format: ``"tiff"`` or ``"ome-zarr"``.
            shape: Image shape ``(C, Z, Y, X)``.
            channels: Channel names (``C`` of them), or the channel count ``C`` (names
                ``ch0``, ``ch1``, ...).
            spacing: Voxel spacing ``(sz, sy, sx)`` in micrometres.
            grade: Quality grade.
            split: Split name.
            attributes: Free-form JSON-serialisable attributes.

        Raises:
            DuplicateVolumeError: A volume with this name exists.
            CatalogError: An argument is invalid (the message names the volume and the argument).
        """
        values = _row_values(
            name=name,
            image_uri=image_uri,
            label_uri=label_uri,
            format=format,
            shape=shape,
            channels=channels,
            spacing=spacing,
            grade=grade,
            split=split,
            attributes=attributes,
        )
        try:
            with self._backend.transaction() as tx:
                rows = tx.execute(_INSERT, [*values, _now()])
        except UniqueViolation:
            existing = self._find(name)
            where = f" (id {existing.id}, image {existing.image_uri!r})" if existing else ""
            raise DuplicateVolumeError(
                f"catalog {self.safe_url!r} already has a volume named {name!r}{where}"
            ) from None
        return int(rows[0][0])

    def _write_volumes(
        self, inserts: Sequence[tuple[str, list[Any]]], updates: Sequence[tuple[str, int, list[Any]]]
    ) -> dict[str, int]:
        """Insert and update rows (``values`` from :func:`_row_values`) in one transaction.

        Returns:
            The id of every written volume, by name.
        """
        ids: dict[str, int] = {}
        created = _now()
        try:
            with self._backend.transaction() as tx:
                for name, values in inserts:
                    ids[name] = int(tx.execute(_INSERT, [*values, created])[0][0])
                for name, volume_id, values in updates:
                    tx.execute(_UPDATE, [*values[1:], volume_id])
                    ids[name] = volume_id
        except UniqueViolation as exc:
            raise DuplicateVolumeError(
                f"catalog {self.safe_url!r}: a volume name being registered was added meanwhile ({exc})"
            ) from None
        return ids

    def remove(self, id_or_name: int | str) -> VolumeRecord:
        """Remove a volume's row (its files are left alone) and return the removed record.

        Raises:
            VolumeNotFoundError: No such volume.
        """
        record = self.get(id_or_name)
        with self._backend.transaction() as tx:
            tx.execute("DELETE FROM volumes WHERE id = ?", (record.id,))
        return record

    def register_folder(
        self,
        folder: str | Path,
        *,
        grade: str | None = None,
        split: str | None = None,
        attributes: Mapping[str, Any] | None = None,
        skip_bad: bool = False,
        recursive: bool = False,
        label_name: str | None = None,
    ) -> RegisterReport:
        """Register the TIFF pairs and OME-Zarr groups of a folder; see
        :func:`ls_data.catalog.register.register_folder`."""
        from ls_data.catalog.register import register_folder

        return register_folder(
            self,
            folder,
            grade=grade,
            split=split,
            attributes=attributes,
            skip_bad=skip_bad,
            recursive=recursive,
            label_name=label_name,
        )

    # ------------------------------------------------------------------ reading
    def volumes(self, selection: Selection | None = None) -> list[VolumeRecord]:
        """The volumes matching ``selection`` (all when ``None``), ordered by id."""
        selection = selection if selection is not None else Selection()
        if not isinstance(selection, Selection):
            raise CatalogError(f"selection must be a Selection, got {type(selection).__name__}")
        where, params = selection.where()
        with self._backend.transaction() as tx:
            rows = tx.execute(f"{_SELECT} WHERE {where} ORDER BY id", params)
        records = [self._record(row) for row in rows]
        return [r for r in records if selection.matches_in_python(r)]

    def __len__(self) -> int:
        with self._backend.transaction() as tx:
            return int(tx.execute("SELECT COUNT(*) FROM volumes")[0][0])

    def get(self, id_or_name: int | str) -> VolumeRecord:
        """The volume with this id (``int``) or name (``str``).

        Raises:
            VolumeNotFoundError: No such volume (the message suggests close names).
        """
        if isinstance(id_or_name, bool) or not isinstance(id_or_name, int | str):
            raise CatalogError(f"volume id or name must be an int or a str, got {id_or_name!r}")
        if isinstance(id_or_name, int):
            with self._backend.transaction() as tx:
                rows = tx.execute(f"{_SELECT} WHERE id = ?", (id_or_name,))
            if not rows:
                raise VolumeNotFoundError(f"catalog {self.safe_url!r} has no volume with id {id_or_name}")
            return self._record(rows[0])
        record = self._find(id_or_name)
        if record is None:
            with self._backend.transaction() as tx:
                names = [row[0] for row in tx.execute("SELECT name FROM volumes")]
            close = difflib.get_close_matches(id_or_name, names, n=3)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise VolumeNotFoundError(f"catalog {self.safe_url!r} has no volume named {id_or_name!r}{hint}")
        return record

    def _find(self, name: str) -> VolumeRecord | None:
        with self._backend.transaction() as tx:
            rows = tx.execute(f"{_SELECT} WHERE name = ?", (name,))
        return self._record(rows[0]) if rows else None

    def resolve(self, record: VolumeRecord, *, must_exist: bool = True) -> tuple[Path, Path]:
        """Absolute ``(image_path, label_path)`` of a record, symlinks followed.

        Raises:
            PathOutsideRootsError: A path resolves outside :attr:`roots`.
            MissingVolumeFileError: ``must_exist`` and a file is gone (names the row and path).
        """
        if record.root != self._root:
            record = _with_root(record, self._root)
        return (
            record.image_path(self._roots, must_exist=must_exist),
            record.label_path(self._roots, must_exist=must_exist),
        )

    def _record(self, row: tuple) -> VolumeRecord:
        data = dict(zip(COLUMNS, row, strict=True))
        return VolumeRecord(
            id=int(data["id"]),
            name=data["name"],
            image_uri=data["image_uri"],
            label_uri=data["label_uri"],
            format=data["format"],
            shape=tuple(int(v) for v in json.loads(data["shape"])),
            channels=tuple(json.loads(data["channels"])),
            spacing=(float(data["spacing_z"]), float(data["spacing_y"]), float(data["spacing_x"])),
            grade=data["grade"],
            split=data["split"],
            attributes=json.loads(data["attributes"]),
            created=datetime.fromisoformat(data["created"]),
            root=self._root,
        )


def _with_root(record: VolumeRecord, root: Path | None) -> VolumeRecord:
    return replace(record, root=root)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _bad(name: object, message: str) -> CatalogError:
    return CatalogError(f"volume {name!r}: {message}")


def _row_values(
    *,
    name: str,
    image_uri: str | Path,
    label_uri: str | Path,
    format: str,
    shape: Sequence[int],
    channels: Sequence[str] | int,
    spacing: Sequence[float],
    grade: str | None,
    split: str | None,
    attributes: Mapping[str, Any] | None,
) -> list[Any]:
    """Validate the fields of a volume and return them in ``COLUMNS[1:-1]`` order, JSON encoded.

    The fields are checked in that order, so a row with several bad fields names the first.

    Raises:
        CatalogError: A field is invalid (the message names the volume and the field).
    """
    _check_name(name)
    image, labels = _uri_text(name, "image_uri", image_uri), _uri_text(name, "label_uri", label_uri)
    if format not in FORMATS:
        raise _bad(name, f"format must be one of {list(FORMATS)}, got {format!r}")
    sizes = _shape_sizes(name, shape)
    names = _channel_names(name, channels, sizes)
    _check_spacing(name, spacing)
    for key, value in (("grade", grade), ("split", split)):
        if value is not None and (not isinstance(value, str) or not value):
            raise _bad(name, f"{key} must be a non-empty string or None, got {value!r}")
    return [
        name,
        image,
        labels,
        format,
        json.dumps(sizes),
        json.dumps(names),
        sizes[0],
        float(spacing[0]),
        float(spacing[1]),
        float(spacing[2]),
        grade,
        split,
        _attributes_json(name, attributes),
    ]


def _check_name(name: object) -> None:
    if not isinstance(name, str) or not name.strip():
        raise CatalogError(f"volume name must be a non-empty string, got {name!r}")


def _uri_text(name: str, key: str, uri: object) -> str:
    """A path or URI as the text stored in the ``key`` column (``image_uri``, ``label_uri``)."""
    if isinstance(uri, Path):
        uri = str(uri)
    if not isinstance(uri, str) or not uri:
        raise _bad(name, f"{key} must be a non-empty path string, got {uri!r}")
    return uri


def _shape_sizes(name: str, shape: object) -> list[int]:
    """``(C, Z, Y, X)`` as 4 Python ints, each positive."""
    if (
        isinstance(shape, str)
        or not isinstance(shape, Sequence)
        or len(shape) != 4
        or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v > 0 for v in shape)
    ):
        raise _bad(name, f"shape must be 4 positive integers (C, Z, Y, X), got {shape!r}")
    return [int(v) for v in shape]


def _channel_names(name: str, channels: object, sizes: Sequence[int]) -> list[str]:
    """The ``sizes[0]`` channel names: given as distinct names, or as a count (``ch0``, ``ch1``, ...)."""
    if isinstance(channels, numbers.Integral) and not isinstance(channels, bool):
        if channels != sizes[0]:
            raise _bad(name, f"channels={channels} but shape {tuple(sizes)} has {sizes[0]} channel(s)")
        return [f"ch{i}" for i in range(int(channels))]
    if not isinstance(channels, Sequence) or isinstance(channels, str):
        raise _bad(name, f"channels must be a list of names or a count, got {channels!r}")
    names = list(channels)
    if not all(isinstance(c, str) and c for c in names) or len(set(names)) != len(names):
        raise _bad(name, f"channels must be distinct non-empty names, got {names!r}")
    if len(names) != sizes[0]:
        raise _bad(name, f"{len(names)} channel name(s) {names} but shape {tuple(sizes)} has {sizes[0]}")
    return names


def _check_spacing(name: str, spacing: object) -> None:
    """``(sz, sy, sx)``: 3 finite positive real numbers (micrometres)."""
    if (
        isinstance(spacing, str)
        or not isinstance(spacing, Sequence)
        or len(spacing) != 3
        or not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in spacing)
        or not all(math.isfinite(v) and v > 0 for v in spacing)
    ):
        raise _bad(name, f"spacing must be 3 positive numbers (sz, sy, sx) in um, got {spacing!r}")


def _attributes_json(name: str, attributes: object) -> str:
    """The attributes (``None``: none) as the JSON text of the ``attributes`` column, keys sorted."""
    attributes = {} if attributes is None else attributes
    if not isinstance(attributes, Mapping) or not all(isinstance(k, str) for k in attributes):
        raise _bad(name, f"attributes must be a mapping with string keys, got {attributes!r}")
    try:
        return json.dumps(dict(attributes), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise _bad(name, f"attributes are not JSON-serialisable: {exc}") from None
