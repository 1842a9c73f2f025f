"""Database backends of the catalog: SQLite (stdlib ``sqlite3``) and PostgreSQL (psycopg 3).

Both run the same SQL, written with ``?`` placeholders; the PostgreSQL backend rewrites them to
psycopg's ``%s``. Values are always passed as parameters, never formatted into SQL text.
Driver errors are turned into :class:`~ls_data.catalog.errors.CatalogError` naming the URL
(password masked); a unique-constraint violation becomes :class:`UniqueViolation` so the catalog
can report which name collided.
"""

from __future__ import annotations

import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ls_data.catalog.errors import CatalogError, CatalogNotFoundError
from ls_data.catalog.url import DatabaseURL

__all__ = ["Backend", "PostgresBackend", "SQLiteBackend", "Transaction", "UniqueViolation", "open_backend"]

# Seconds to wait for a PostgreSQL connection (unless the URL sets connect_timeout) and for a
# locked SQLite file.
CONNECT_TIMEOUT_S = 10
SQLITE_LOCK_TIMEOUT_S = 30


class UniqueViolation(CatalogError):
    """A row would break a UNIQUE constraint (the volume name)."""


class Transaction:
    """Executes statements inside one open transaction of a backend."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        """Run one statement with ``?`` placeholders and return its rows (empty for DDL/DML)."""
        return self._backend._execute(sql, tuple(params))


class Backend(ABC):
    """One open connection to a catalog database.

    Args:
        url: The parsed URL (used to connect and, masked, in error messages).
    """

    #: SQL type of the auto-increment primary key column.
    id_column_sql: str
    #: Query with one ``?`` (a table name) that returns a row when that table exists.
    table_exists_sql: str
    #: Statement that makes the transaction it runs in the only one creating the schema until it
    #: ends (None where the database already serialises DDL, as SQLite's write lock does).
    schema_lock_sql: str | None = None

    def __init__(self, url: DatabaseURL) -> None:
        self.url = url

    @abstractmethod
    def _execute(self, sql: str, params: tuple) -> list[tuple]: ...

    @abstractmethod
    def _commit(self) -> None: ...

    @abstractmethod
    def _rollback(self) -> None: ...

    @abstractmethod
    def _is_unique_violation(self, exc: BaseException) -> bool: ...

    @abstractmethod
    def _driver_errors(self) -> tuple[type[BaseException], ...]: ...

    @abstractmethod
    def close(self) -> None:
        """Close the connection (idempotent)."""

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """Run a block in one transaction: commit on success, roll back on any error.

        Raises:
            UniqueViolation: A UNIQUE constraint failed.
            CatalogError: Any other database error (message names the masked URL).
        """
        try:
            yield Transaction(self)
            self._commit()
        except BaseException as exc:
            self._safe_rollback()
            if isinstance(exc, self._driver_errors()):
                reason = self.url.scrub(str(exc).strip())
                if self._is_unique_violation(exc):
                    raise UniqueViolation(reason) from None
                raise CatalogError(f"catalog database {self.url.safe_url!r}: {reason}") from None
            raise

    def _safe_rollback(self) -> None:
        try:
            self._rollback()
        except self._driver_errors():
            pass  # the connection is broken; the original error is what the user needs


class SQLiteBackend(Backend):
    """A catalog in an SQLite file (or in memory for ``sqlite:///:memory:``).

    Args:
        url: The parsed URL.
        create: Create the file when it does not exist. Without it a missing file is a
            :class:`CatalogNotFoundError` and the file is opened with ``mode=rw``, so SQLite
            never creates it either.
    """

    id_column_sql = "INTEGER PRIMARY KEY AUTOINCREMENT"
    table_exists_sql = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"

    def __init__(self, url: DatabaseURL, *, create: bool = False) -> None:
        super().__init__(url)
        path = url.sqlite_path
        if path is not None:
            _check_sqlite_path(url, path, create=create)
        if path is None:
            target, uri = ":memory:", False
        elif create:
            target, uri = str(path), False
        else:  # mode=rw: SQLite refuses a missing file rather than creating it (no race with the check)
            target, uri = f"{path.as_uri()}?mode=rw", True
        try:
            self._conn = sqlite3.connect(target, timeout=SQLITE_LOCK_TIMEOUT_S, uri=uri)
        except sqlite3.Error as exc:
            if path is not None and not path.exists():
                raise CatalogNotFoundError(url.safe_url, f"no file {str(path)!r}") from None
            raise CatalogError(f"cannot open catalog {url.safe_url!r}: {exc}") from None

    def _execute(self, sql: str, params: tuple) -> list[tuple]:
        return self._conn.execute(sql, params).fetchall()

    def _commit(self) -> None:
        self._conn.commit()

    def _rollback(self) -> None:
        self._conn.rollback()

    def _is_unique_violation(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.IntegrityError) and "UNIQUE" in str(exc)

    def _driver_errors(self) -> tuple[type[BaseException], ...]:
        return (sqlite3.Error,)

    def close(self) -> None:
        self._conn.close()


def _check_sqlite_path(url: DatabaseURL, path: Path, *, create: bool) -> None:
    """Raise CatalogError when ``path`` cannot hold the catalog (or, unless ``create``, is missing)."""
    if path.is_dir():
        raise CatalogError(f"cannot open catalog {url.safe_url!r}: {str(path)!r} is a directory")
    if not create and not path.exists():
        raise CatalogNotFoundError(url.safe_url, f"no file {str(path)!r}")
    if not path.parent.is_dir():
        raise CatalogError(
            f"cannot open catalog {url.safe_url!r}: folder {str(path.parent)!r} does not exist"
        )


def _import_psycopg():
    try:
        import psycopg
    except ImportError:
        raise CatalogError(
            "a PostgreSQL catalog needs psycopg 3, which is not installed; "
            "install it with: pip install 'ls-data[postgres]'"
        ) from None
    return psycopg


class PostgresBackend(Backend):
    """A catalog in a PostgreSQL database, through psycopg 3 (imported on first use)."""

    id_column_sql = "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"
    table_exists_sql = "SELECT 1 WHERE to_regclass(?) IS NOT NULL"  # follows the search_path
    # Concurrent CREATE TABLE IF NOT EXISTS of one table collide in the system catalog ("type ...
    # already exists", a duplicate-object error, or a unique violation of pg_type): a transaction
    # advisory lock keyed on the schema that the search_path selects lets one creator at a time in.
    schema_lock_sql = (
        "SELECT pg_advisory_xact_lock(hashtext('ls_data.catalog:' || coalesce(current_schema(), '')))"
    )

    def __init__(self, url: DatabaseURL) -> None:
        super().__init__(url)
        psycopg = _import_psycopg()
        self._psycopg = psycopg
        kwargs: dict[str, Any] = {}
        if "connect_timeout" not in url.url:
            kwargs["connect_timeout"] = CONNECT_TIMEOUT_S
        conninfo = url.url
        if conninfo.startswith("postgres://"):
            conninfo = "postgresql://" + conninfo[len("postgres://") :]
        try:
            self._conn = psycopg.connect(conninfo, autocommit=False, **kwargs)
        except psycopg.Error as exc:
            reason = url.scrub(" ".join(str(exc).split()))
            raise CatalogError(f"cannot connect to catalog database {url.safe_url!r}: {reason}") from None

    def _execute(self, sql: str, params: tuple) -> list[tuple]:
        if "%" in sql:
            raise AssertionError(f"catalog SQL must not contain '%': {sql!r}")
        cursor = self._conn.execute(sql.replace("?", "%s"), params or None)
        return cursor.fetchall() if cursor.description is not None else []

    def _commit(self) -> None:
        self._conn.commit()

    def _rollback(self) -> None:
        self._conn.rollback()

    def _is_unique_violation(self, exc: BaseException) -> bool:
        return isinstance(exc, self._psycopg.errors.UniqueViolation)

    def _driver_errors(self) -> tuple[type[BaseException], ...]:
        return (self._psycopg.Error,)

    def close(self) -> None:
        self._conn.close()


def open_backend(url: DatabaseURL, *, create: bool = False) -> Backend:
    """Connect to the database that ``url`` names.

    Args:
        url: The parsed URL.
        create: SQLite: create the file when it does not exist (a PostgreSQL database is never
            created; its catalog tables are, see :func:`~ls_data.catalog.schema.ensure_schema`).

    Raises:
        CatalogNotFoundError: An SQLite file that does not exist, without ``create``.
        CatalogError: The database cannot be reached or opened (message names the masked URL),
            or psycopg is missing for a PostgreSQL URL.
    """
    if url.backend == "sqlite":
        return SQLiteBackend(url, create=create)
    return PostgresBackend(url)
