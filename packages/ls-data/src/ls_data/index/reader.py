"""Read-only access to a crop index: ``CropIndex.open(path)``, ``len(index)``, ``index.crop(i)``.

The SQLite connection is opened lazily, read-only and ``immutable`` (an index is never
modified in place: a rebuild replaces the file atomically), once per process: a ``CropIndex``
that is pickled to, or forked into, a DataLoader worker opens its own connection there.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ls_data.errors import DataError
from ls_data.index.schema import SCHEMA_VERSION

__all__ = ["CropIndex", "CropRecord", "IndexedVolume", "InstanceRecord", "read_meta"]


@dataclass(frozen=True)
class IndexedVolume:
    """A volume of the index.

    Attributes:
        id: Index-local volume id.
        catalog_id: Id in the catalog it came from (None when built from paths).
        name: Volume name.
        image_path: Resolved image file / OME-Zarr group.
        label_path: Resolved label file / OME-Zarr label group.
        format: ``"tiff"`` or ``"ome-zarr"``.
        shape: ``(C, Z, Y, X)`` of the image.
        spacing: ``(sz, sy, sx)`` in micrometres.
        channels: Channel indices read for this volume.
    """

    id: int
    catalog_id: int | None
    name: str
    image_path: Path
    label_path: Path
    format: str
    shape: tuple[int, int, int, int]
    spacing: tuple[float, float, float]
    channels: tuple[int, ...]


@dataclass(frozen=True)
class InstanceRecord:
    """An instance listed in a crop.

    Attributes:
        label_id: Id in the label volume.
        class_id: Class (>= 1).
        box: ``(z1, y1, x1, z2, y2, x2)`` of its voxels inside the crop, in crop coordinates.
        visible_voxels: Voxels inside the crop.
        total_voxels: Voxels of the whole instance.
    """

    label_id: int
    class_id: int
    box: tuple[int, int, int, int, int, int]
    visible_voxels: int
    total_voxels: int


@dataclass(frozen=True)
class CropRecord:
    """One crop of the index.

    Attributes:
        index: Crop number (0 .. len - 1).
        volume: The volume it is cut from.
        origin: ``(z, y, x)`` of the crop in the volume.
        shape: ``(z, y, x)`` crop size.
        channels: Channel indices to read.
        instances: Listed instances.
    """

    index: int
    volume: IndexedVolume
    origin: tuple[int, int, int]
    shape: tuple[int, int, int]
    channels: tuple[int, ...]
    instances: list[InstanceRecord]

    @property
    def window(self) -> tuple[slice, slice, slice]:
        """The crop's ``(z, y, x)`` slices in the volume."""
        return tuple(slice(o, o + s) for o, s in zip(self.origin, self.shape, strict=True))  # type: ignore[return-value]


def _connect_read_only(path: Path) -> sqlite3.Connection:
    uri = f"file:{quote(str(path.resolve()))}?mode=ro&immutable=1"
    try:
        conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
        conn.execute("SELECT 1 FROM meta LIMIT 1")
    except sqlite3.DatabaseError as exc:
        raise DataError(f"{str(path)!r} is not a readable crop index: {exc}") from None
    return conn


def read_meta(path: Path) -> dict[str, str] | None:
    """The ``meta`` table of an index file, or None when the file is missing or not an index."""
    if not Path(path).is_file():
        return None
    try:
        conn = _connect_read_only(Path(path))
    except DataError:
        return None
    try:
        return dict(conn.execute("SELECT key, value FROM meta").fetchall())
    except sqlite3.DatabaseError:
        return None
    finally:
        conn.close()


class CropIndex:
    """A read-only crop index.

    Args:
        path: The index file (SQLite).

    Raises:
        DataError: The file is missing, not an index, or of another schema version (the message
            names the path and how to build it).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(
                f"crop index {str(self.path)!r} does not exist; build it first with "
                "ls_data.build_crop_index or 'ls-data index build' (ls-train builds the indices of "
                "its dataset sections that name a catalog before its workers start)"
            )
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        self._volumes: dict[int, IndexedVolume] = {}
        meta = dict(self._query("SELECT key, value FROM meta"))
        if meta.get("schema_version") != str(SCHEMA_VERSION):
            raise DataError(
                f"crop index {str(self.path)!r} has schema version {meta.get('schema_version')!r}, "
                f"expected {SCHEMA_VERSION}; rebuild it"
            )
        self.fingerprint: str = meta["fingerprint"]
        self.params: dict[str, Any] = json.loads(meta["params"])
        self.report: dict[str, Any] = json.loads(meta["report"])
        self.created: str = meta["created"]
        self.crop_shape: tuple[int, int, int] = tuple(self.params["crop_shape"])  # type: ignore[assignment]
        self._len = int(self._query("SELECT COUNT(*) FROM crops")[0][0])

    @classmethod
    def open(cls, path: str | Path, *, fingerprint: str | None = None) -> CropIndex:
        """Open an index read-only (see the class); with ``fingerprint``, it must carry that one.

        Raises:
            DataError: see the class; or the index is stale: its fingerprint is not
                ``fingerprint`` (it was rebuilt from other sources or parameters since).
        """
        index = cls(path)
        if fingerprint is not None and index.fingerprint != fingerprint:
            raise DataError(
                f"crop index {str(index.path)!r} is stale: its fingerprint is {index.fingerprint[:12]}, "
                f"expected {fingerprint[:12]} (it was rebuilt from other sources or parameters since); "
                "build it again with ls_data.build_crop_index"
            )
        return index

    def _connection(self) -> sqlite3.Connection:
        pid = os.getpid()
        if self._conn is None or self._pid != pid:
            # A connection inherited through fork belongs to the parent: never use it here.
            self._conn = _connect_read_only(self.path)
            self._pid = pid
        return self._conn

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._connection().execute(sql, args).fetchall()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_conn"] = None
        state["_pid"] = -1
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return self._len

    def close(self) -> None:
        """Close this process's connection (reopened on the next query)."""
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    def volume(self, volume_id: int) -> IndexedVolume:
        """The indexed volume with this index-local id."""
        if volume_id not in self._volumes:
            rows = self._query(
                "SELECT id, catalog_id, name, image_path, label_path, format, shape, spacing, channels "
                "FROM volumes WHERE id = ?",
                (volume_id,),
            )
            if not rows:
                raise DataError(f"crop index {str(self.path)!r} has no volume with id {volume_id}")
            vid, cid, name, image, label, fmt, shape, spacing, channels = rows[0]
            self._volumes[volume_id] = IndexedVolume(
                id=vid,
                catalog_id=cid,
                name=name,
                image_path=Path(image),
                label_path=Path(label),
                format=fmt,
                shape=tuple(json.loads(shape)),
                spacing=tuple(json.loads(spacing)),
                channels=tuple(json.loads(channels)),
            )
        return self._volumes[volume_id]

    def volumes(self) -> list[IndexedVolume]:
        """Every indexed volume, by id."""
        return [self.volume(row[0]) for row in self._query("SELECT id FROM volumes ORDER BY id")]

    def crop(self, i: int) -> CropRecord:
        """The ``i``-th crop (negative ``i`` counts from the end).

        Raises:
            IndexError: ``i`` is out of range.
        """
        n = self._len
        if not -n <= i < n:
            raise IndexError(f"crop {i} out of range for crop index {str(self.path)!r} with {n} crops")
        i = int(i) % n
        volume_id, z, y, x = self._query("SELECT volume_id, z, y, x FROM crops WHERE id = ?", (i,))[0]
        rows = self._query(
            "SELECT ci.label_id, ci.class_id, ci.z1, ci.y1, ci.x1, ci.z2, ci.y2, ci.x2, ci.visible_voxels, "
            "inst.voxels FROM crop_instances AS ci JOIN instances AS inst "
            "ON inst.volume_id = ? AND inst.label_id = ci.label_id WHERE ci.crop_id = ? ORDER BY ci.rowid",
            (volume_id, i),
        )
        volume = self.volume(volume_id)
        instances = [
            InstanceRecord(
                label_id=row[0],
                class_id=row[1],
                box=tuple(row[2:8]),
                visible_voxels=row[8],
                total_voxels=row[9],
            )
            for row in rows
        ]
        return CropRecord(
            index=i,
            volume=volume,
            origin=(z, y, x),
            shape=self.crop_shape,
            channels=volume.channels,
            instances=instances,
        )

    def __repr__(self) -> str:
        return f"CropIndex({str(self.path)!r}, crops={self._len}, crop_shape={self.crop_shape})"
