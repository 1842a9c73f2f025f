"""The catalog schema, the same on SQLite and PostgreSQL.

Table ``volumes`` (one row per image + label volume):

========== ===================================================================
id         integer primary key, assigned by the database, never reused
name       text, unique
image_uri  text: a ``.tif``/``.tiff`` file or an OME-Zarr image group; relative
           URIs are relative to the catalog root
label_uri  text: the instance label volume (TIFF file or OME-Zarr label group)
format     ``tiff`` or ``ome-zarr``
shape      JSON list ``[C, Z, Y, X]`` of the image
channels   JSON list of channel names (length C)
num_channels integer C (so a selection can filter on it in SQL)
spacing_z, spacing_y, spacing_x  voxel spacing in micrometres
grade      text or NULL: quality grade (free-form, e.g. ``gold``, ``silver``)
split      text or NULL: ``train``, ``val``, ``test`` or any other name
attributes JSON object of free-form attributes (text, so both backends agree)
created    ISO-8601 UTC timestamp of registration (text)
========== ===================================================================

Table ``catalog_schema`` holds one row with the schema version; opening a catalog written by
another schema version is an error rather than a silent misread. The tables are created only
when the catalog is opened with ``create=True`` (by writers); a reader that finds no tables gets
a :class:`~ls_data.catalog.errors.CatalogNotFoundError`.
"""

from __future__ import annotations

from ls_data.catalog.backend import Backend
from ls_data.catalog.errors import CatalogError, CatalogNotFoundError

__all__ = ["COLUMNS", "SCHEMA_VERSION", "ensure_schema"]

SCHEMA_VERSION = 1

#: Columns in the order every SELECT of the catalog returns them.
COLUMNS = (
    "id",
    "name",
    "image_uri",
    "label_uri",
    "format",
    "shape",
    "channels",
    "num_channels",
    "spacing_z",
    "spacing_y",
    "spacing_x",
    "grade",
    "split",
    "attributes",
    "created",
)


def _volumes_ddl(id_column_sql: str) -> str:
    return f"""
CREATE TABLE IF NOT EXISTS volumes (
    id {id_column_sql},
    name TEXT NOT NULL UNIQUE,
    image_uri TEXT NOT NULL,
    label_uri TEXT NOT NULL,
    format TEXT NOT NULL,
    shape TEXT NOT NULL,
    channels TEXT NOT NULL,
    num_channels INTEGER NOT NULL,
    spacing_z DOUBLE PRECISION NOT NULL,
    spacing_y DOUBLE PRECISION NOT NULL,
    spacing_x DOUBLE PRECISION NOT NULL,
    grade TEXT,
    split TEXT,
    attributes TEXT NOT NULL,
    created TEXT NOT NULL
)"""


_INDEX_DDL = (
    "CREATE INDEX IF NOT EXISTS volumes_grade ON volumes (grade)",
    "CREATE INDEX IF NOT EXISTS volumes_split ON volumes (split)",
)


def ensure_schema(backend: Backend, *, create: bool = False) -> bool:
    """Check the schema version, creating the catalog tables first if absent and ``create``;
    returns whether this call created them.

    Creators take the backend's schema lock first (on PostgreSQL a transaction advisory lock:
    two processes that create the tables of a new database at the same moment would otherwise
    collide in the system catalog); the later one then finds the tables.

    Raises:
        CatalogNotFoundError: The database has no catalog tables and ``create`` is False.
        CatalogError: The database holds a catalog of another schema version, or cannot be
            read or written.
    """
    if not create:
        _check_schema(backend)
        return False
    return _create_schema(backend)


def drop_schema(backend: Backend) -> None:
    """Remove the catalog tables (and their indexes) in one transaction."""
    with backend.transaction() as tx:
        tx.execute("DROP TABLE IF EXISTS volumes")
        tx.execute("DROP TABLE IF EXISTS catalog_schema")


def _check_schema(backend: Backend) -> None:
    with backend.transaction() as tx:
        if not tx.execute(backend.table_exists_sql, ("catalog_schema",)):
            raise CatalogNotFoundError(backend.url.safe_url, "the database has no catalog tables")
        rows = tx.execute("SELECT version FROM catalog_schema")
    _check_version(backend, rows)


def _create_schema(backend: Backend) -> bool:
    with backend.transaction() as tx:
        if backend.schema_lock_sql is not None:
            tx.execute(backend.schema_lock_sql)
        tx.execute("CREATE TABLE IF NOT EXISTS catalog_schema (version INTEGER NOT NULL)")
        tx.execute(_volumes_ddl(backend.id_column_sql))
        for ddl in _INDEX_DDL:
            tx.execute(ddl)
        rows = tx.execute("SELECT version FROM catalog_schema")
        if not rows:
            tx.execute("INSERT INTO catalog_schema (version) VALUES (?)", (SCHEMA_VERSION,))
            return True
    _check_version(backend, rows)
    return False


def _check_version(backend: Backend, rows: list[tuple]) -> None:
    versions = sorted({row[0] for row in rows})
    if versions != [SCHEMA_VERSION]:
        raise CatalogError(
            f"catalog {backend.url.safe_url!r} has schema version {versions}, but this ls-data reads "
            f"version {SCHEMA_VERSION}"
        )
