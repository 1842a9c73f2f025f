"""A full disk (or quota) while writing: recognised wherever it is raised, reported in one clear line.

Python's own writes raise ``OSError`` with ``errno`` ENOSPC or EDQUOT; TensorStore (the OME-Zarr
and tile-store writes) raises a ``ValueError`` whose message carries ``RESOURCE_EXHAUSTED``, the
file and ``os_error_code=28``. Both may be wrapped by the code in between (``raise ... from``, a
worker's future, a Ray task error, whose ``cause`` is the worker's exception), so the whole chain of
causes is searched.
"""

from __future__ import annotations

import errno

__all__ = ["StorageFullError", "no_space_left"]

_CODES = (errno.ENOSPC, errno.EDQUOT)
_MARKERS = ("No space left on device", "Disk quota exceeded", f"os_error_code='{errno.ENOSPC}'",
            f"os_error_code='{errno.EDQUOT}'")


class StorageFullError(RuntimeError):
    """A write failed for lack of space; the message says what was kept and how to go on."""


def no_space_left(exc: BaseException) -> str | None:
    """The first line of the error in ``exc``'s chain that says the disk is full, else None."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, StorageFullError):
            return str(e)
        if isinstance(e, OSError) and e.errno in _CODES:
            where = f": {e.filename}" if e.filename else ""
            return f"{e.strerror or 'no space left on device'}{where}"
        cause = getattr(e, "cause", None)  # a Ray task error: its text is the worker's traceback
        if isinstance(cause, BaseException):
            todo.append(cause)
            continue
        lines = [line.strip() for line in str(e).splitlines() if any(m in line for m in _MARKERS)]
        if lines:
            return lines[-1]
        todo += [e.__cause__, e.__context__]
    return None
