"""Faults during training: non-finite losses and stop requests (SIGTERM, SLURM pre-emption).

- :class:`BadStepCounter` skips a step whose loss is NaN or inf and stops the run, with a clear
  message, after ``max_bad_steps`` such steps in a row (the last good checkpoint stays).
- :class:`StopRequest` turns SIGTERM into a flag the loop checks after every iteration: the loop
  then writes a checkpoint and returns normally. In-process runs catch the signal directly; in
  Ray runs the driver catches it and writes a stop file in the run folder, which every worker
  polls (a worker's training function does not run in its process's main thread, where Python
  signal handlers live).
- :class:`StopReason` carries why the workers of a Ray run stopped early to the driver.
- :func:`fault_point` marks the places where the fault-injection tests stop a run (a pause point,
  free when the tests' environment variable is unset).
"""

from __future__ import annotations

import math
import os
import signal
import threading
import time
from pathlib import Path
from types import FrameType

__all__ = [
    "FAULT_DIR_ENV",
    "FAULT_ENV",
    "STOP_FILE",
    "BadStepCounter",
    "NonFiniteLossError",
    "StopReason",
    "StopRequest",
    "fault_point",
    "request_stop",
]

STOP_FILE = "STOP"

FAULT_ENV = "LS_TRAIN_FAULT"
"""``POINT`` or ``POINT:N``: pause at the ``N``-th time (1 by default) any process of the run reaches
the fault point ``POINT`` (see :func:`fault_point`)."""
FAULT_DIR_ENV = "LS_TRAIN_FAULT_DIR"
"""Folder of the pause handshake of :data:`FAULT_ENV` (required with it)."""
FAULT_PAUSE_S = 120.0


class NonFiniteLossError(RuntimeError):
    """Too many consecutive steps with a NaN or inf loss."""


class BadStepCounter:
    """Count steps skipped for a non-finite loss.

    Args:
        max_bad_steps: Consecutive bad steps that stop the run.
    """

    def __init__(self, *, max_bad_steps: int) -> None:
        if max_bad_steps < 1:
            raise ValueError(f"max_bad_steps must be >= 1, got {max_bad_steps}")
        self.max_bad_steps = int(max_bad_steps)
        self.in_a_row = 0
        self.total = 0

    def check(self, loss: float, *, step: int, losses: dict[str, float] | None = None) -> bool:
        """Record the loss of iteration ``step``; True when it is finite and the step may go on.

        Raises:
            NonFiniteLossError: the ``max_bad_steps``-th non-finite loss in a row; the message names
                the step and the loss terms.
        """
        if math.isfinite(loss):
            self.in_a_row = 0
            return True
        self.in_a_row += 1
        self.total += 1
        if self.in_a_row >= self.max_bad_steps:
            terms = ", ".join(f"{k}={v:.4g}" for k, v in (losses or {}).items())
            raise NonFiniteLossError(
                f"training stopped at iteration {step}: the loss was non-finite ({loss}) in "
                f"{self.in_a_row} iterations in a row (trainer.max_bad_steps={self.max_bad_steps}; "
                f"{self.total} skipped in all). Loss terms: {terms or 'n/a'}. The last good checkpoint "
                f"is kept; lower trainer.lr, enable trainer.grad_clip_norm or check the data."
            )
        return False

    def state_dict(self) -> dict[str, int]:
        """The counters, for a checkpoint."""
        return {"in_a_row": self.in_a_row, "total": self.total}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Restore the counters of a checkpoint."""
        self.in_a_row = int(state.get("in_a_row", 0))
        self.total = int(state.get("total", 0))


class StopReason:
    """Why the workers of a Ray run stopped before the end (non-finite losses, a full disk), kept
    for the driver in a Ray actor (``ray.remote(StopReason)``): Ray Train hands the driver only the
    metrics reported with a checkpoint, and a stop reported without one would look like a finished
    run. The first reason set is kept."""

    def __init__(self) -> None:
        self.reason: str | None = None

    def set(self, reason: str) -> None:
        """Record ``reason`` unless one was recorded before."""
        if self.reason is None:
            self.reason = reason

    def get(self) -> str | None:
        """The recorded reason, or None."""
        return self.reason


def request_stop(run_dir: str | os.PathLike[str]) -> Path:
    """Ask the workers of the run in ``run_dir`` to checkpoint and stop (writes the stop file)."""
    path = Path(run_dir) / STOP_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("stop requested\n")
    return path


class StopRequest:
    """A flag set by SIGTERM (when installed in the main thread) or by the run's stop file.

    Args:
        run_dir: The run folder whose stop file is polled (None: signals only).
        install: Install a SIGTERM handler (only possible in the main thread; ignored elsewhere).
    """

    def __init__(self, run_dir: str | os.PathLike[str] | None = None, *, install: bool = True) -> None:
        self.stop_file = None if run_dir is None else Path(run_dir) / STOP_FILE
        self._signalled = False
        self._previous = None
        if install and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self._signalled = True

    @property
    def requested(self) -> bool:
        """True once SIGTERM arrived or the stop file exists."""
        if self._signalled:
            return True
        return self.stop_file is not None and self.stop_file.exists()

    def restore(self) -> None:
        """Put the previous SIGTERM handler back."""
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None


def fault_point(name: str) -> None:
    """A place where the fault-injection tests stop a run: returns at once unless :data:`FAULT_ENV`
    names ``name``.

    When it does, the ``N``-th process call reaching the point (counted over all processes of the
    run, in ``$LS_TRAIN_FAULT_DIR/count-<name>``) writes its pid to ``$LS_TRAIN_FAULT_DIR/paused``
    and waits, up to two minutes, until that file is removed. The test meanwhile sends its signal
    (to this process or another one) and then removes the file to let a survivor go on. Points:
    ``train.prepare`` (before each crop index is built or reused, in the driver), ``train.step``
    (after an iteration's optimizer step), ``train.validation`` (before a validation),
    ``train.checkpoint_write`` (a checkpoint file written to its temporary name, not yet moved into
    place), ``train.checkpoint`` (after an epoch's checkpoint was reported), ``train.evaluation``
    (before the evaluation at the end of ``ls-train``), ``predict.tile`` (in ``ls-predict``, after a
    segmented tile was handed to the tile store's writer).
    """
    spec = os.environ.get(FAULT_ENV)
    if not spec or spec.split(":")[0] != name:
        return
    folder = Path(os.environ[FAULT_DIR_ENV])
    at = int(spec.split(":")[1]) if ":" in spec else 1
    fd = os.open(folder / f"count-{name}", os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, b"x")
        count = os.lseek(fd, 0, os.SEEK_CUR)  # where this append ended: unique over processes
    finally:
        os.close(fd)
    if count != at:
        return
    paused = folder / "paused"
    paused.write_text(str(os.getpid()))
    deadline = time.monotonic() + FAULT_PAUSE_S
    while paused.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
