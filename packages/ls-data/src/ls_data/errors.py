"""Error types raised by ls-data for bad input.

Every error that a user can cause with a file, a path, a database URL or a parameter derives
from :class:`DataError`, which is a :class:`ValueError`, so callers can catch one type. Each
message names the offending file, row, key or parameter.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

__all__ = ["DataError", "PathOutsideRootsError", "VolumeReadError"]


class DataError(ValueError):
    """Base class of every ls-data input error (bad file, bad path, bad parameter)."""


class VolumeReadError(DataError):
    """A volume file or array cannot be read: corrupt, truncated, missing array or chunk.

    Args:
        path: The file or directory that could not be read.
        reason: What went wrong, in words.
    """

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"cannot read volume {str(path)!r}: {reason}")

    def __reduce__(self):  # keep picklable across DataLoader worker processes
        return (type(self), (self.path, self.reason))


class PathOutsideRootsError(DataError):
    """A path resolves (symlinks followed) outside the directories the user allowed.

    Args:
        path: The path as given.
        resolved: Where it resolves to.
        roots: The allowed root directories.
    """

    def __init__(self, path: str | Path, resolved: Path, roots: Sequence[Path]) -> None:
        self.path = Path(path)
        self.resolved = Path(resolved)
        self.roots = tuple(Path(r) for r in roots)
        shown = ", ".join(repr(str(r)) for r in self.roots)
        super().__init__(
            f"path {str(path)!r} resolves to {str(resolved)!r}, which is outside the allowed roots [{shown}]"
        )

    def __reduce__(self):
        return (type(self), (self.path, self.resolved, self.roots))
