"""Catalog database URLs: parsing and password masking.

Accepted forms:

- ``sqlite:///relative/path.sqlite`` (relative to the current directory),
- ``sqlite:////absolute/path.sqlite``,
- ``sqlite:///:memory:`` (a private in-memory database, for tests and scratch work),
- ``postgresql://user:password@host:port/dbname`` (also ``postgres://``), with optional libpq
  query parameters such as ``?sslmode=require``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from ls_data.catalog.errors import CatalogError

__all__ = ["DatabaseURL", "mask_url", "parse_url"]

_POSTGRES_SCHEMES = ("postgresql", "postgres")
_MASK = "***"


@dataclass(frozen=True)
class DatabaseURL:
    """A parsed catalog URL.

    Attributes:
        url: The URL as given.
        safe_url: The URL with any password replaced by ``***`` (safe to print and log).
        backend: ``"sqlite"`` or ``"postgresql"``.
        sqlite_path: The SQLite database file (absolute), or ``None`` for ``:memory:`` and
            PostgreSQL.
        password: The password in the URL (to scrub it from driver messages), or ``None``.
    """

    url: str
    safe_url: str
    backend: Literal["sqlite", "postgresql"]
    sqlite_path: Path | None
    password: str | None

    def scrub(self, text: str) -> str:
        """Return ``text`` with the URL's password (if any) replaced by ``***``."""
        if self.password:
            text = text.replace(self.password, _MASK)
        return text


def mask_url(url: str) -> str:
    """Return ``url`` with the password (user-info or ``password=`` query key) masked."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return re.sub(r"(//[^:/@]*:)[^@]*@", r"\1" + _MASK + "@", url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        if ":" in userinfo:
            user = userinfo.split(":", 1)[0]
            netloc = f"{user}:{_MASK}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(key == "password" for key, _ in pairs):
            query = urlencode([(k, _MASK if k == "password" else v) for k, v in pairs], safe="*")
    if (netloc, query) == (parts.netloc, parts.query):
        return url  # nothing to mask; urlunsplit would also drop the empty host of sqlite:////abs
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _password_of(url: str) -> str | None:
    parts = urlsplit(url)
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == "password" and value:
            return value
    return unquote(parts.password) if parts.password else None


def parse_url(url: str) -> DatabaseURL:
    """Parse a catalog database URL.

    Args:
        url: ``sqlite:///...`` or ``postgresql://...`` (see the module docstring).

    Returns:
        The parsed URL.

    Raises:
        CatalogError: The URL is not a string, has an unknown scheme, or has no database path.
    """
    if not isinstance(url, str) or not url:
        raise CatalogError(
            f"catalog URL must be a non-empty string like 'sqlite:///catalog.sqlite', got {url!r}"
        )
    safe = mask_url(url)
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise CatalogError(
            f"catalog URL {safe!r} has no scheme; use 'sqlite:///path.sqlite' or "
            "'postgresql://user:password@host:port/dbname'"
        )
    scheme = scheme.lower()
    if scheme == "sqlite":
        if not rest.startswith("/") or rest == "/":
            raise CatalogError(
                f"SQLite catalog URL {safe!r} needs a file path: 'sqlite:///relative.sqlite' or "
                "'sqlite:////absolute/path.sqlite'"
            )
        raw = rest[1:]  # what follows the third slash: a relative path, or '/abs/...'
        if raw == ":memory:":
            return DatabaseURL(url, safe, "sqlite", None, None)
        return DatabaseURL(url, safe, "sqlite", Path(raw).expanduser().absolute(), None)
    if scheme in _POSTGRES_SCHEMES:
        try:
            parts = urlsplit(url)
            _ = parts.port  # raises ValueError on a non-numeric port
        except ValueError as exc:
            raise CatalogError(f"PostgreSQL catalog URL {safe!r} is malformed: {exc}") from None
        if not parts.hostname and "host=" not in parts.query:
            raise CatalogError(f"PostgreSQL catalog URL {safe!r} names no host")
        return DatabaseURL(url, safe, "postgresql", None, _password_of(url))
    raise CatalogError(
        f"catalog URL {safe!r} has unsupported scheme {scheme!r}; use 'sqlite' or 'postgresql'"
    )
