"""Errors of the volume catalog; all derive from :class:`ls_data.errors.DataError`."""

from __future__ import annotations

from ls_data.errors import DataError

__all__ = [
    "CatalogError",
    "CatalogNotFoundError",
    "DuplicateVolumeError",
    "MissingVolumeFileError",
    "RegisterError",
    "VolumeNotFoundError",
]


class CatalogError(DataError):
    """A catalog database cannot be opened or used, or a catalog operation got bad input.

    Messages name the database URL with any password masked.
    """


class CatalogNotFoundError(CatalogError):
    """The catalog to open does not exist: no SQLite file, or a database without catalog tables.

    Raised instead of creating an empty catalog when the catalog is opened with ``create=False``
    (every reader); the message says how to create one.

    Args:
        safe_url: The catalog URL, password masked.
        reason: What is missing, in words (names the file or the database).
    """

    def __init__(self, safe_url: str, reason: str) -> None:
        self.safe_url = safe_url
        self.reason = reason
        super().__init__(
            f"catalog {safe_url!r} does not exist ({reason}); create it with "
            f"'ls-data catalog register FOLDER --catalog {safe_url}' (or 'ls-data synth --out DIR' for "
            "synthetic data; Catalog(url, create=True) in Python)"
        )

    def __reduce__(self):
        return (type(self), (self.safe_url, self.reason))


class VolumeNotFoundError(CatalogError):
    """No volume with the given id or name is in the catalog."""


class DuplicateVolumeError(CatalogError):
    """A volume with the same name is already in the catalog (names are unique)."""


class MissingVolumeFileError(CatalogError):
    """A catalog row points to an image or label file that no longer exists."""


class RegisterError(CatalogError):
    """``register_folder`` found bad volumes and was not asked to skip them.

    Attributes:
        problems: ``(name, path, reason)`` for every bad volume found.
    """

    def __init__(self, message: str, problems: list[tuple[str, str, str]]) -> None:
        super().__init__(message)
        self.problems = problems

    def __reduce__(self):
        return (type(self), (self.args[0], self.problems))
