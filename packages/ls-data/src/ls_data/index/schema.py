"""SQLite schema of the crop index.

Tables:

- ``meta(key, value)``: ``schema_version``, ``fingerprint``, ``params`` (JSON), ``created``
  (ISO time), ``report`` (JSON).
- ``volumes``: one row per indexed volume: ``id`` (index-local), ``catalog_id``, ``name``,
  ``image_path``, ``label_path`` (resolved absolute paths), ``format``, ``shape`` (JSON
  ``[C, Z, Y, X]`` of the image file), ``spacing`` (JSON ``[sz, sy, sx]``), ``channels`` (JSON
  list of the channel indices to read).
- ``instances``: every instance of a volume: ``volume_id``, ``label_id``, ``class_id``, box
  ``z1, y1, x1, z2, y2, x2`` (volume coordinates), ``voxels``.
- ``crops``: ``id`` (0 .. n-1, contiguous), ``volume_id``, origin ``z, y, x``.
- ``crop_instances``: ``crop_id``, ``label_id``, ``class_id``, box in crop coordinates,
  ``visible_voxels``; indexed on ``crop_id``.
"""

from __future__ import annotations

import sqlite3

__all__ = ["SCHEMA_VERSION", "create_schema"]

SCHEMA_VERSION = 1

_DDL = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE volumes (
    id INTEGER PRIMARY KEY,
    catalog_id INTEGER,
    name TEXT NOT NULL,
    image_path TEXT NOT NULL,
    label_path TEXT NOT NULL,
    format TEXT NOT NULL,
    shape TEXT NOT NULL,
    spacing TEXT NOT NULL,
    channels TEXT NOT NULL
);
CREATE TABLE instances (
    volume_id INTEGER NOT NULL REFERENCES volumes(id),
    label_id INTEGER NOT NULL,
    class_id INTEGER NOT NULL,
    z1 INTEGER NOT NULL, y1 INTEGER NOT NULL, x1 INTEGER NOT NULL,
    z2 INTEGER NOT NULL, y2 INTEGER NOT NULL, x2 INTEGER NOT NULL,
    voxels INTEGER NOT NULL,
    PRIMARY KEY (volume_id, label_id)
);
CREATE TABLE crops (
    id INTEGER PRIMARY KEY,
    volume_id INTEGER NOT NULL REFERENCES volumes(id),
    z INTEGER NOT NULL, y INTEGER NOT NULL, x INTEGER NOT NULL
);
CREATE TABLE crop_instances (
    crop_id INTEGER NOT NULL REFERENCES crops(id),
    label_id INTEGER NOT NULL,
    class_id INTEGER NOT NULL,
    z1 INTEGER NOT NULL, y1 INTEGER NOT NULL, x1 INTEGER NOT NULL,
    z2 INTEGER NOT NULL, y2 INTEGER NOT NULL, x2 INTEGER NOT NULL,
    visible_voxels INTEGER NOT NULL
);
CREATE INDEX crop_instances_by_crop ON crop_instances (crop_id);
CREATE INDEX crops_by_volume ON crops (volume_id);
"""


def create_schema(conn: sqlite3.Connection) -> None:
    """Create the tables and indices of an empty index database."""
    conn.executescript(_DDL)
    conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
