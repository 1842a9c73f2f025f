"""Stop an ``ls-train`` run at a chosen point, run the same command again, and judge the outcome.

The harness of the fault-injection tests (``tests/test_fault_injection.py``) and of the longer matrix in
``benchmarks/faults.py``. A run is started as users start it (the ``ls-train`` command line, in a
subprocess and its own session), paused at a fault point (:func:`ls_train.trainer.faults.fault_point`),
sent a signal (to the driver, or to the process that reached the point: a Ray worker), let go, and
then started again with the same arguments and no fault. The verdict compares where the resumed
run ends with where an unstopped run ends:

- ``resumed identically``: the second command exits 0 and the run's last checkpoint is at the
  same epoch and iteration as the unstopped run's, with one ``metrics.csv`` row per epoch, and,
  where an unstopped run of the same recipe is given to compare with, the same weights;
- ``clear error, nothing lost``: the first command exits 2 with an ``error:`` line and the second
  one resumes identically;
- anything else is ``LOST WORK`` or ``FAILED`` with the reason.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ls_train.trainer.checkpoint import STATE_FILE, CheckpointError, load_state
from ls_train.trainer.faults import FAULT_DIR_ENV, FAULT_ENV
from ls_train.trainer.logging import CSV_FILE, read_csv_rows

__all__ = ["Fault", "Outcome", "final_position", "format_table", "ls_train_argv", "run_fault_case"]


@dataclass(frozen=True)
class Fault:
    """Where and how a run is stopped.

    Args:
        point: Fault point name (``train.prepare``, ``train.step``, ``train.validation``,
            ``train.checkpoint_write``, ``train.checkpoint``, ``train.evaluation``).
        at: Stop at the ``at``-th time any process reaches the point.
        signal: ``SIGTERM`` or ``SIGKILL``.
        target: ``"driver"`` (the ``ls-train`` process) or ``"paused"`` (the process that reached
            the point; a Ray worker in Ray mode).
    """

    point: str
    at: int = 1
    signal: signal.Signals = signal.SIGTERM
    target: str = "driver"

    def __str__(self) -> str:
        return f"{self.signal.name} {self.target} at {self.point}:{self.at}"


@dataclass
class Outcome:
    """What happened to one stopped run and its re-run."""

    mode: str
    fault: Fault
    first_rc: int | None
    resumed_rc: int | None
    position: tuple[int, int] | None
    expected: tuple[int, int]
    verdict: str
    seconds: float
    first_tail: str = ""
    resumed_tail: str = ""


def final_state(run_dir: Path) -> dict | None:
    """The state of the furthest loadable checkpoint under ``run_dir`` (None: none)."""
    best = None
    for state_file in run_dir.rglob(STATE_FILE):
        try:
            state = load_state(state_file)
        except CheckpointError:
            continue
        best = state if best is None or int(state["global_iter"]) > int(best["global_iter"]) else best
    return best


def _position(state: dict | None) -> tuple[int, int] | None:
    return None if state is None else (int(state["epoch"]), int(state["global_iter"]))


def final_position(run_dir: Path) -> tuple[int, int] | None:
    """``(epoch, global_iter)`` of the furthest loadable checkpoint under ``run_dir`` (None: none)."""
    return _position(final_state(run_dir))


def weights_difference(a: dict | None, b: dict | None) -> float | None:
    """Largest absolute difference between the weights of two checkpoint states (0.0: identical;
    None: a missing state, or models of other shapes)."""
    if a is None or b is None or a["model"].keys() != b["model"].keys():
        return None
    worst = 0.0
    for key, value in a["model"].items():
        other = b["model"][key]
        if value.shape != other.shape:
            return None
        if value.numel() and value.is_floating_point():
            worst = max(worst, float((value - other).abs().max()))
        elif not torch.equal(value, other):
            worst = max(worst, float("inf"))
    return worst


def _run(
    argv: Sequence[str],
    env: dict[str, str],
    log: Path,
    timeout: float,
    while_running: Callable[[subprocess.Popen, float], None] | None = None,
) -> tuple[int | None, str]:
    """Run ``argv`` in its own session with its output in ``log``; ``while_running(proc, deadline)``
    acts on it meanwhile. Returns the exit status (None: timed out) and the output."""
    with log.open("w") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        if while_running is not None:
            while_running(proc, deadline)
        try:
            rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            rc = None
    _kill_session(proc.pid)
    return rc, log.read_text()


def _kill_session(pid: int) -> None:
    """Kill what is left of the command's session (Ray's processes after a killed driver), as a
    batch system does at the end of a job."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _stopped_command(
    argv: Sequence[str], env: dict[str, str], fault: Fault, folder: Path, timeout: float
) -> tuple[int | None, str]:
    """Run ``argv`` with ``fault`` armed; signal the target when a process pauses at the point."""
    env = {**env, FAULT_ENV: f"{fault.point}:{fault.at}", FAULT_DIR_ENV: str(folder)}
    paused = folder / "paused"

    def inject(proc: subprocess.Popen, deadline: float) -> None:
        while not paused.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if paused.exists():
            time.sleep(0.1)  # the pid is written right after the file is created
            pid = proc.pid if fault.target == "driver" else int(paused.read_text())
            os.kill(pid, fault.signal)
            time.sleep(0.5)
            paused.unlink(missing_ok=True)  # let the survivors go on

    return _run(argv, env, folder / "first.log", timeout, inject)


def _verdict(
    first_rc: int | None,
    first_log: str,
    resumed_rc: int | None,
    position: tuple[int, int] | None,
    expected: tuple[int, int],
    epochs_in_csv: list[float],
    weights_delta: float | None = 0.0,
) -> str:
    if resumed_rc != 0:
        return f"FAILED: the re-run exited {resumed_rc}"
    if position != expected:
        return f"LOST WORK: ended at (epoch, iteration) {position}, an unstopped run at {expected}"
    if epochs_in_csv != [float(e) for e in range(1, expected[0] + 1)]:
        return f"LOST WORK: metrics.csv holds epochs {epochs_in_csv}"
    if weights_delta is None:
        return "FAILED: no weights to compare with the unstopped run's"
    if weights_delta > 0:
        return f"resumed, other weights than the unstopped run (max |diff| {weights_delta:.2e})"
    if first_rc == 2:
        return "clear error, nothing lost" if "error:" in first_log else "FAILED: exit 2 without a message"
    return "resumed identically"


def run_fault_case(
    argv: Sequence[str],
    run_dir: Path,
    fault: Fault,
    *,
    mode: str,
    expected: tuple[int, int],
    folder: Path,
    timeout: float = 300.0,
    reference: Path | None = None,
) -> Outcome:
    """Run ``argv`` (an ``ls-train`` command whose run folder is ``run_dir``) stopped by ``fault``,
    then again without it, and judge the result against ``expected`` ``(epoch, global_iter)`` and,
    when given, the weights of the unstopped run in the run folder ``reference``."""
    folder.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in (FAULT_ENV, FAULT_DIR_ENV)}
    start = time.monotonic()
    first_rc, first_log = _stopped_command(argv, env, fault, folder, timeout)
    resumed_rc, resumed_log = _run(argv, env, folder / "resumed.log", timeout)
    state = final_state(run_dir)  # every checkpoint of the run is read once, for both judgements
    position = _position(state)
    csv = run_dir / CSV_FILE
    epochs = [row["epoch"] for row in read_csv_rows(csv)] if csv.exists() else []
    return Outcome(
        mode=mode,
        fault=fault,
        first_rc=first_rc,
        resumed_rc=resumed_rc,
        position=position,
        expected=expected,
        verdict=_verdict(
            first_rc, first_log, resumed_rc, position, expected, epochs,
            0.0 if reference is None else weights_difference(state, final_state(reference)),
        ),
        seconds=time.monotonic() - start,
        first_tail=first_log[-3000:],
        resumed_tail=resumed_log[-3000:],
    )


def format_table(outcomes: Sequence[Outcome]) -> str:
    """A markdown table: mode, fault, exit statuses, where the run ended, verdict, time."""
    lines = [
        "| mode | fault | stopped run exit | re-run exit | ended at (epoch, iter) | verdict | s |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for o in outcomes:
        lines.append(
            f"| {o.mode} | {o.fault} | {o.first_rc} | {o.resumed_rc} | {o.position} | {o.verdict} | "
            f"{o.seconds:.0f} |"
        )
    return "\n".join(lines)


def ls_train_argv(*overrides: str) -> list[str]:
    """The ``ls-train`` command line (through this interpreter) with ``overrides``."""
    return [sys.executable, "-m", "ls_train.cli", "train", "--config-name=quickstart", *overrides]
