"""Shared fixtures of the ls-data tests: a real, throwaway PostgreSQL server and catalog URLs.

``postgres_server`` (session): when ``LS_TEST_POSTGRES_URL`` is set, that server is used (its
user needs the CREATEDB privilege). Otherwise the PostgreSQL server binaries are looked up
(``pg_config --bindir``, ``/usr/lib/postgresql/*/bin``, ``initdb`` on PATH) and a private server
is created with ``initdb`` in a temporary folder and started with ``pg_ctl`` on 127.0.0.1 (a free
port, password authentication, its unix socket in the same folder); it is stopped and deleted at
the end of the session. PostgreSQL refuses to run as root, so under root the server runs as the
``postgres`` user (which Debian's package creates) or ``nobody``. Without binaries or psycopg the
PostgreSQL tests are skipped, unless ``LS_REQUIRE_POSTGRES=1`` (as in CI), where they fail.

``postgres_url`` (function): an empty catalog on that server, private to the test (its own
schema in a database created for the session; dropped afterwards).
``catalog_url`` (function, parametrised): an SQLite URL in ``tmp_path`` and a PostgreSQL URL, so
one catalog test runs against both backends.
"""

from __future__ import annotations

import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import pytest

POSTGRES_URL_ENV = "LS_TEST_POSTGRES_URL"
REQUIRE_POSTGRES_ENV = "LS_REQUIRE_POSTGRES"
_SERVER_USER = "lsdata"


def _unavailable(reason: str) -> None:
    if os.environ.get(REQUIRE_POSTGRES_ENV) == "1":
        pytest.fail(f"PostgreSQL is required ({REQUIRE_POSTGRES_ENV}=1) but {reason}")
    pytest.skip(f"PostgreSQL tests skipped: {reason}")


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", path.parent.name)) or (0,)


def find_postgres_bindir() -> Path | None:
    """The folder with ``initdb``, ``pg_ctl`` and ``postgres``, or None when not installed."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=True, timeout=30
            )
            candidates.append(Path(out.stdout.strip()))
        except (OSError, subprocess.SubprocessError):
            pass
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True)
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).resolve().parent)
    for folder in candidates:
        if all((folder / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return folder
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _unprivileged_user() -> pwd.struct_passwd:
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("running as root, but no 'postgres' or 'nobody' user exists to run PostgreSQL as")


@dataclass(frozen=True)
class PostgresServer:
    """A reachable PostgreSQL server for tests.

    Attributes:
        admin_url: URL of a database to connect to for CREATE/DROP DATABASE.
    """

    admin_url: str

    def url(self, dbname: str) -> str:
        """The server URL with another database name."""
        parts = urlsplit(self.admin_url)
        return urlunsplit((parts.scheme, parts.netloc, "/" + quote(dbname), parts.query, parts.fragment))

    def with_password(self, password: str) -> str:
        """``admin_url`` with its password replaced (to test failed authentication)."""
        parts = urlsplit(self.admin_url)
        host = parts.netloc.rsplit("@", 1)[-1]
        netloc = f"{quote(parts.username or _SERVER_USER)}:{quote(password)}@{host}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))

    @property
    def port(self) -> int:
        """The server's TCP port."""
        return urlsplit(self.admin_url).port or 5432


class _LocalServer:
    """A private PostgreSQL cluster in a temporary folder, started and stopped with pg_ctl."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.base = Path(tempfile.mkdtemp(prefix="ls-data-pg-"))
        self.data = self.base / "data"
        self.sockets = self.base / "sockets"
        self.log = self.base / "server.log"
        self.password = secrets.token_hex(12)
        self._as_user: dict[str, Any] = {}
        pwfile = self.base / "password"
        try:
            self.sockets.mkdir()
            pwfile.write_text(self.password + "\n")
            pwfile.chmod(0o600)
            if os.geteuid() == 0:  # PostgreSQL refuses to run as root
                user = _unprivileged_user()
                for path in (self.base, self.sockets, pwfile):
                    os.chown(path, user.pw_uid, user.pw_gid)
                self._as_user = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
            args = ["-D", str(self.data), "-U", _SERVER_USER, f"--pwfile={pwfile}", "-A", "scram-sha-256"]
            self._run("initdb", *args, "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions")
        except BaseException:
            shutil.rmtree(self.base, ignore_errors=True)
            raise
        finally:
            pwfile.unlink(missing_ok=True)

    def _run(self, tool: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        env = {**os.environ, "HOME": str(self.base), "LC_ALL": "C", "LANG": "C"}
        env.pop("PGDATA", None)
        result = subprocess.run(
            [str(self.bindir / tool), *args],
            cwd=self.base,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            **self._as_user,
        )
        if result.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(
                f"{tool} {' '.join(args)} failed ({result.returncode}):\n"
                f"{result.stdout}\n{result.stderr}\n{log}"
            )
        return result

    def start(self) -> str:
        """Start the server on a free loopback port; return the admin URL."""
        last: Exception | None = None
        for _ in range(3):  # another process may take the free port before the server binds it
            port = _free_port()
            options = (
                f"-h 127.0.0.1 -p {port} -k {self.sockets} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            )
            try:
                self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")
            except RuntimeError as exc:
                last = exc
                continue
            return f"postgresql://{_SERVER_USER}:{self.password}@127.0.0.1:{port}/postgres"
        raise RuntimeError(f"could not start PostgreSQL: {last}")

    def stop(self) -> None:
        """Stop the server (if running) and delete its folder."""
        try:
            if (self.data / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop", timeout=60)
        finally:
            shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A running PostgreSQL server (see the module docstring); skipped or failed when unavailable."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _unavailable("psycopg is not installed (pip install 'ls-data[postgres]')")
    external = os.environ.get(POSTGRES_URL_ENV)
    if external:
        yield PostgresServer(admin_url=external)
        return
    bindir = find_postgres_bindir()
    if bindir is None:
        _unavailable("no PostgreSQL server binaries (initdb, pg_ctl) found; install Debian's 'postgresql'")
    server: _LocalServer | None = None
    try:
        server = _LocalServer(bindir)
        url = server.start()
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        if server is not None:
            server.stop()
        _unavailable(f"the test server in {bindir} could not be started: {exc}")
    try:
        yield PostgresServer(admin_url=url)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_test_database(postgres_server: PostgresServer) -> Iterator[str]:
    """URL of a database created for this test session (dropped at its end)."""
    import psycopg
    from psycopg import sql

    name = f"ls_test_{secrets.token_hex(6)}"
    with psycopg.connect(postgres_server.admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield postgres_server.url(name)
    finally:
        with psycopg.connect(postgres_server.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def postgres_url(postgres_test_database: str) -> Iterator[str]:
    """URL of an empty catalog on the test server, private to one test.

    Each test gets its own schema in the session's database (CREATE DATABASE per test is slow
    on a loaded machine): the URL sets ``search_path`` to it through libpq's ``options``, so the
    catalog's tables land there. The schema is dropped afterwards.
    """
    import psycopg
    from psycopg import sql

    schema = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(postgres_test_database, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield f"{postgres_test_database}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(postgres_test_database, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A catalog URL of each backend: an SQLite file in ``tmp_path``, an empty PostgreSQL catalog."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'catalog.sqlite'}"
    return request.getfixturevalue("postgres_url")
