"""Writing a file so that readers see the old one or the whole new one, never a part; and finding
the temporary files that killed writers left behind."""

from __future__ import annotations

import os
import re
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from ls_core import pid_alive

__all__ = ["STALE_AFTER_S", "atomic_write", "stale_temp_files"]

STALE_AFTER_S = 600.0
"""A temporary file whose writer cannot be checked (another machine, or a name without one) is
stale once it was not modified for this long: a live writer keeps writing."""

# .<name>.tmp-<host>-<pid>-<random>.tmp (mkstemp's random part: lower-case letters, digits, "_")
_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.tmp-(?P<host>[A-Za-z0-9._-]*)-(?P<pid>\d+)-[a-z0-9_]+\.tmp$")
# .<name>.<random>.tmp: the names written before they carried the writer
_OLDER_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp$")


def _host_tag() -> str:
    """This machine's name as it appears in temporary file names."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", socket.gethostname()) or "host"


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write(f)`` on a temporary file next to ``path``, flush it to disk, then rename it.

    A failure leaves ``path`` as it was and removes the temporary file; a kill leaves ``path`` as
    it was and the temporary file ``.<name>.tmp-<host>-<pid>-<random>.tmp``, which
    :func:`stale_temp_files` finds once its writer is gone.

    Returns:
        ``path``.

    Raises:
        OSError: the file cannot be written (a full disk: ``errno`` ENOSPC); it names ``path``
            where the failing call named no file (a write, a flush).
    """
    target = Path(path)
    prefix = f".{target.name}.tmp-{_host_tag()}-{os.getpid()}-"
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        if exc.filename is None and exc.errno is not None:
            raise OSError(exc.errno, exc.strerror, str(target)) from exc
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _is_stale(path: Path, now: float, stale_after_s: float) -> bool:
    match = _TEMP_NAME.match(path.name)
    if match and match["host"] == _host_tag():
        return not pid_alive(int(match["pid"]))
    if not match and not _OLDER_TEMP_NAME.match(path.name):
        return False  # not a temporary file of atomic_write
    try:
        return now - path.stat().st_mtime > stale_after_s
    except OSError:
        return False  # gone meanwhile


def stale_temp_files(folder: str | os.PathLike[str], *, stale_after_s: float = STALE_AFTER_S) -> list[Path]:
    """The temporary files of :func:`atomic_write` directly in ``folder`` that no writer will
    finish: written by a process of this machine that no longer runs, or, when the writer cannot
    be checked (another machine, a name of an older version), not modified for ``stale_after_s``
    seconds. Files of live writers are left out."""
    now = time.time()
    try:
        candidates = [p for p in Path(folder).iterdir() if p.name.startswith(".") and p.name.endswith(".tmp")]
    except OSError:  # no such folder
        return []
    return sorted(p for p in candidates if p.is_file() and _is_stale(p, now, stale_after_s))
