"""Fault points: the places where the fault-injection tests stop a command (``ls-train``,
``ls-predict``, ``ls-data index build``), free when the tests' environment variable is unset.

Here rather than in ls-train so that every distribution may mark its own points (ls-data must
not import ls-train). The variable names keep their first (ls-train) spelling.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

__all__ = ["FAULT_DIR_ENV", "FAULT_ENV", "FAULT_PAUSE_S", "fault_point"]

FAULT_ENV = "LS_TRAIN_FAULT"
"""``POINT`` or ``POINT:N``: pause at the ``N``-th time (1 by default) any process of the command
reaches the fault point ``POINT`` (see :func:`fault_point`)."""
FAULT_DIR_ENV = "LS_TRAIN_FAULT_DIR"
"""Folder of the pause handshake of :data:`FAULT_ENV` (required with it)."""
FAULT_PAUSE_S = 120.0


def _count_call(folder: Path, name: str) -> int:
    """Count this call in ``folder/count-<name>``; returns its number over all processes."""
    fd = os.open(folder / f"count-{name}", os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, b"x")
        return os.lseek(fd, 0, os.SEEK_CUR)  # where this append ended: unique over processes
    finally:
        os.close(fd)


def fault_point(name: str) -> None:
    """A place where the fault-injection tests stop a command: returns at once unless
    :data:`FAULT_ENV` names ``name``.

    When it does, the ``N``-th process call reaching the point (counted over all processes of the
    command, in ``$LS_TRAIN_FAULT_DIR/count-<name>``) writes its pid to
    ``$LS_TRAIN_FAULT_DIR/paused`` and waits, up to two minutes, until that file is removed. The
    test meanwhile sends its signal (to this process or another one) and then removes the file to
    let a survivor go on. Points: ``train.prepare`` (before each crop index is built or reused, in
    the driver), ``train.step`` (after an iteration's optimizer step), ``train.validation`` (before
    a validation), ``train.checkpoint_write`` (a checkpoint file written to its temporary name, not
    yet moved into place), ``train.checkpoint`` (after an epoch's checkpoint was reported),
    ``train.evaluation`` (before the evaluation at the end of ``ls-train``), ``predict.tile`` (in
    ``ls-predict``, after a segmented tile was handed to the tile store's writer), ``index.build``
    (in a crop index build, after a volume's rows were written to the temporary file).
    """
    spec = os.environ.get(FAULT_ENV)
    if not spec or spec.split(":")[0] != name:
        return
    folder = Path(os.environ[FAULT_DIR_ENV])
    at = int(spec.split(":")[1]) if ":" in spec else 1
    if _count_call(folder, name) != at:
        return
    paused = folder / "paused"
    paused.write_text(str(os.getpid()))
    deadline = time.monotonic() + FAULT_PAUSE_S
    while paused.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
