"""PostgreSQL-specific catalog behaviour, against the real server of conftest.py.

The backend-independent behaviour runs on PostgreSQL too, through the ``catalog_url`` fixture
in test_catalog.py.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from ls_data.catalog import Catalog, CatalogError, CatalogNotFoundError, DuplicateVolumeError, Selection
from ls_data.errors import DataError

_VOLUME = {
    "image_uri": "/data/a_image.tif",
    "label_uri": "/data/a_labels.tif",
    "format": "tiff",
    "shape": (2, 4, 8, 8),
    "channels": ["dapi", "gfp"],
    "spacing": (2.0, 0.5, 0.5),
}


@contextmanager
def _closed_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound, never listening, and held for the ``with``
    block, so that no other process (a parallel test's server, Ray) can start listening on it."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


def test_unreachable_server_names_url_with_password_masked():
    with _closed_port() as port, pytest.raises(CatalogError) as info:
        url = f"postgresql://alice:s3cret-pw@127.0.0.1:{port}/catalog?connect_timeout=5"
        Catalog(url)
    message = str(info.value)
    assert "s3cret-pw" not in message
    assert f"postgresql://alice:***@127.0.0.1:{port}/catalog" in message
    assert isinstance(info.value, DataError)


def test_postgres_scheme_alias_and_unknown_host_port_errors():
    with pytest.raises(CatalogError, match=r"postgres://bob:\*\*\*@127\.0\.0\.1:1/x"):
        Catalog("postgres://bob:hunter2@127.0.0.1:1/x?connect_timeout=5")
    with pytest.raises(CatalogError, match="malformed"):
        Catalog("postgresql://bob:pw@127.0.0.1:notaport/x")


def test_missing_psycopg_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # makes `import psycopg` raise ImportError
    with pytest.raises(CatalogError, match=r"pip install 'ls-data\[postgres\]'"):
        Catalog("postgresql://u:p@127.0.0.1:1/x")


def test_wrong_password_is_masked(postgres_server):
    url = postgres_server.with_password("definitely-wrong-pw")
    with pytest.raises(CatalogError) as info:
        Catalog(url)
    assert "definitely-wrong-pw" not in str(info.value)
    assert "***" in str(info.value)


def test_unknown_database(postgres_server):
    with pytest.raises(CatalogError, match="no_such_db"):
        Catalog(postgres_server.url("no_such_db"))


def test_postgres_scheme_alias_connects(postgres_url):
    alias = "postgres://" + postgres_url.split("://", 1)[1]
    with Catalog(alias, create=True) as catalog:
        volume_id = catalog.add_volume(name="a", **_VOLUME)
        assert catalog.get("a").id == volume_id


def test_two_connections_see_each_others_writes(postgres_url):
    with Catalog(postgres_url, create=True) as first, Catalog(postgres_url) as second:
        first.add_volume(name="a", **_VOLUME, split="train")
        assert [v.name for v in second.volumes(Selection(splits=["train"]))] == ["a"]
        with pytest.raises(DuplicateVolumeError, match="'a'"):
            second.add_volume(name="a", **_VOLUME)
        # the failed insert rolled back; the connection keeps working
        second.add_volume(name="b", **_VOLUME)
        assert [v.name for v in first.volumes()] == ["a", "b"]


def test_postgres_catalog_root_is_first_root(postgres_url, tmp_path):
    with Catalog(postgres_url, roots=[tmp_path], create=True) as catalog:
        assert catalog.root == tmp_path
    with Catalog(postgres_url) as catalog:
        assert catalog.root is None
        catalog.add_volume(name="rel", **{**_VOLUME, "image_uri": "a_image.tif"})
        with pytest.raises(CatalogError, match=r"relative.*no root"):
            catalog.resolve(catalog.get("rel"), must_exist=False)


def test_reading_a_database_without_catalog_tables_creates_none(postgres_url):
    import psycopg

    with pytest.raises(CatalogNotFoundError, match=r"has no catalog tables.*ls-data catalog register"):
        Catalog(postgres_url)
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT to_regclass('catalog_schema'), to_regclass('volumes')").fetchone() == (
            None,
            None,
        )


def test_a_failed_first_register_leaves_no_catalog_tables(postgres_url, tmp_path, capsys):
    """The tables a failed ``catalog register`` created are dropped again; a catalog that existed
    before the failed run stays, even an empty one."""
    import numpy as np
    import psycopg
    import tifffile

    from ls_data.cli import main

    folder = tmp_path / "data"
    folder.mkdir()
    tifffile.imwrite(folder / "gamma_image.tif", np.zeros((4, 8, 8), dtype=np.uint16))  # no labels
    assert main(["catalog", "register", str(folder), "--catalog", postgres_url]) == 2
    assert "gamma" in capsys.readouterr().err
    with psycopg.connect(postgres_url) as conn:
        tables = conn.execute("SELECT to_regclass('catalog_schema'), to_regclass('volumes')").fetchone()
    assert tables == (None, None)
    Catalog(postgres_url, create=True).close()
    assert main(["catalog", "register", str(folder), "--catalog", postgres_url]) == 2
    with Catalog(postgres_url) as catalog:
        assert len(catalog) == 0 and not catalog.created


def test_many_creators_of_new_catalogs_at_once_never_collide(postgres_test_database):
    """Eight connections open a new catalog with ``create=True`` at the same moment, for 12 new
    schemas in turn: each round ends with one schema row and no error. Without the schema lock,
    PostgreSQL's concurrent ``CREATE TABLE IF NOT EXISTS`` fails now and then with 'type
    "catalog_schema" already exists' (seen in CI) or a unique violation of ``pg_type``."""
    import secrets
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import psycopg
    from psycopg import sql

    def round_on_new_schema() -> list[bool]:
        schema = f"race_{secrets.token_hex(6)}"
        with psycopg.connect(postgres_test_database, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        url = f"{postgres_test_database}?options=-csearch_path%3D{schema}"
        barrier = threading.Barrier(8)

        def open_new(_: int) -> bool:
            barrier.wait()
            with Catalog(url, create=True) as catalog:
                return catalog.created

        try:
            with ThreadPoolExecutor(8) as pool:
                created = list(pool.map(open_new, range(8)))
            with psycopg.connect(url) as conn:
                assert conn.execute("SELECT version FROM catalog_schema").fetchall() == [(1,)]
            return created
        finally:
            with psycopg.connect(postgres_test_database, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))

    for _ in range(12):
        assert sorted(round_on_new_schema()) == [False] * 7 + [True]
