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
  free when the tests' environment variable is unset); it lives in :mod:`ls_core.faults` (ls-data
  marks its own points) and is re-exported here with :data:`FAULT_ENV` and :data:`FAULT_DIR_ENV`.
"""

from __future__ import annotations

import math
import os
import signal
import threading
from pathlib import Path
from types import FrameType

from ls_core.faults import FAULT_DIR_ENV, FAULT_ENV, fault_point

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
