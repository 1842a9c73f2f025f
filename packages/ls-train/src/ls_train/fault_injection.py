"""Stop a command at a chosen point, run the same command again, and judge the outcome.

The harness of the fault-injection tests (``tests/test_fault_injection.py``) and of the longer matrix in
``benchmarks/faults.py``. A command is started as users start it (its command line, in a subprocess
and its own session), paused at a fault point (:func:`ls_core.faults.fault_point`), sent a signal (to
the command's process, or to the process that reached the point: a Ray worker), let go, and then
started again with the same arguments and no fault. :func:`run_command_case` does this for any
command and a judge of the re-run; the judges here compare with an unstopped run:

- ``ls-train`` (:func:`run_fault_case`): the run's last checkpoint is at the same epoch and
  iteration as the unstopped run's, with one ``metrics.csv`` row per epoch, and, where an unstopped
  run of the same recipe is given to compare with, the same weights;
- ``ls-predict`` (:func:`prediction_judge`): the re-run reused finished tiles and wrote the
  unstopped run's labels, voxel for voxel, and removed its work folder;
- ``ls-data index build`` (:class:`IndexCheck`): the stop left the old
  index as it was (or none), the re-run removed the temporary file of the stopped build and wrote
  the unstopped build's rows.

Verdicts: ``resumed identically`` (the re-run exits 0 and passes its judge), ``clear error, nothing
lost`` (the stopped command exited 2 with an ``error:`` line and the re-run resumed identically);
anything else is ``LOST WORK`` or ``FAILED`` with the reason.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ls_core.faults import FAULT_DIR_ENV, FAULT_ENV
from ls_train.trainer.checkpoint import STATE_FILE, CheckpointError, load_state
from ls_train.trainer.logging import CSV_FILE, read_csv_rows

__all__ = [
    "Fault",
    "IndexCheck",
    "Outcome",
    "Ran",
    "final_position",
    "format_table",
    "index_rows",
    "ls_data_argv",
    "ls_predict_argv",
    "ls_train_argv",
    "prediction_judge",
    "run_command_case",
    "run_fault_case",
]


@dataclass(frozen=True)
class Fault:
    """Where and how a command is stopped.

    Args:
        point: Fault point name (``train.prepare``, ``train.step``, ``train.validation``,
            ``train.checkpoint_write``, ``train.checkpoint``, ``train.evaluation``,
            ``predict.tile``, ``index.build``).
        at: Stop at the ``at``-th time any process reaches the point.
        signal: ``SIGTERM`` or ``SIGKILL``.
        target: ``"driver"`` (the command's process) or ``"paused"`` (the process that reached
            the point; a Ray worker in Ray mode).
        delay: Seconds between the pause and the signal (other threads of the paused process, a
            tile writer, go on meanwhile).
    """

    point: str
    at: int = 1
    signal: signal.Signals = signal.SIGTERM
    target: str = "driver"
    delay: float = 0.1

    def __str__(self) -> str:
        return f"{self.signal.name} {self.target} at {self.point}:{self.at}"


@dataclass
class Ran:
    """One command's exit status (None: timed out) and output."""

    rc: int | None
    log: str


Judge = Callable[[Ran], tuple[str, "str | None"]]
"""Judges a re-run: returns where it ended (for the table) and what is wrong (None: nothing)."""


@dataclass
class Outcome:
    """What happened to one stopped command and its re-run."""

    mode: str
    fault: Fault
    first_rc: int | None
    resumed_rc: int | None
    ended: str
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
) -> Ran:
    """Run ``argv`` in its own session with its output in ``log``; ``while_running(proc, deadline)``
    acts on it meanwhile."""
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
    return Ran(rc, log.read_text())


def _kill_session(pid: int) -> None:
    """Kill what is left of the command's session (Ray's processes after a killed driver), as a
    batch system does at the end of a job."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _stopped_command(
    argv: Sequence[str], env: dict[str, str], fault: Fault, folder: Path, timeout: float
) -> tuple[Ran, bool]:
    """Run ``argv`` with ``fault`` armed; signal the target when a process pauses at the point.
    Returns the run and whether the signal was sent."""
    env = {**env, FAULT_ENV: f"{fault.point}:{fault.at}", FAULT_DIR_ENV: str(folder)}
    paused = folder / "paused"
    sent = []

    def inject(proc: subprocess.Popen, deadline: float) -> None:
        while not paused.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if paused.exists():
            time.sleep(fault.delay)  # the pid is written right after the file is created
            pid = proc.pid if fault.target == "driver" else int(paused.read_text())
            os.kill(pid, fault.signal)
            sent.append(pid)
            time.sleep(0.5)
            paused.unlink(missing_ok=True)  # let the survivors go on

    return _run(argv, env, folder / "first.log", timeout, inject), bool(sent)


def _verdict(fault: Fault, first: Ran, resumed: Ran, problem: str | None) -> str:
    if resumed.rc != 0:
        return f"FAILED: the re-run exited {resumed.rc}"
    if problem:
        return problem
    # SIGTERM to the driver is a stop request: "stopped on request" (0), or ls-data's 128 + SIGTERM
    stopped = (0, 128 + signal.SIGTERM)
    if fault.signal == signal.SIGTERM and fault.target == "driver" and first.rc not in stopped:
        return f"FAILED: SIGTERM to the driver ended it with status {first.rc}, not as a stop request"
    if first.rc == 2:
        return "clear error, nothing lost" if "error:" in first.log else "FAILED: exit 2 without a message"
    return "resumed identically"


def run_command_case(
    argv: Sequence[str],
    fault: Fault,
    *,
    mode: str,
    folder: Path,
    judge: Judge,
    after_stop: Callable[[], str | None] | None = None,
    timeout: float = 300.0,
) -> Outcome:
    """Run ``argv`` (any command) stopped by ``fault``, check what the stop left with ``after_stop``
    (a problem, or None), run ``argv`` again without the fault and judge the re-run with ``judge``.
    ``folder`` (created) holds the pause handshake and both commands' output."""
    folder.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in (FAULT_ENV, FAULT_DIR_ENV)}
    start = time.monotonic()
    first, sent = _stopped_command(argv, env, fault, folder, timeout)
    left = None if after_stop is None else after_stop()
    resumed = _run(argv, env, folder / "resumed.log", timeout)
    ended, problem = judge(resumed)
    if not sent:
        problem = f"FAILED: the stopped command never reached {fault.point}:{fault.at}"
    return Outcome(
        mode=mode,
        fault=fault,
        first_rc=first.rc,
        resumed_rc=resumed.rc,
        ended=ended,
        verdict=_verdict(fault, first, resumed, left or problem),
        seconds=time.monotonic() - start,
        first_tail=first.log[-3000:],
        resumed_tail=resumed.log[-3000:],
    )


def _training_problem(
    run_dir: Path, expected: tuple[int, int], reference: Path | None
) -> tuple[str, str | None]:
    state = final_state(run_dir)  # every checkpoint of the run is read once, for both judgements
    position = _position(state)
    csv = run_dir / CSV_FILE
    epochs = [row["epoch"] for row in read_csv_rows(csv)] if csv.exists() else []
    if position != expected:
        return str(position), f"LOST WORK: ended at (epoch, iteration) {position}, unstopped at {expected}"
    if epochs != [float(e) for e in range(1, expected[0] + 1)]:
        return str(position), f"LOST WORK: metrics.csv holds epochs {epochs}"
    delta = 0.0 if reference is None else weights_difference(state, final_state(reference))
    if delta is None:
        return str(position), "FAILED: no weights to compare with the unstopped run's"
    if delta > 0:
        return str(position), f"resumed, other weights than the unstopped run (max |diff| {delta:.2e})"
    return str(position), None


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
    when given, the weights of the unstopped run in the run folder ``reference``. The table's
    "ended at" is the re-run's last ``(epoch, global_iter)``."""
    return run_command_case(
        argv, fault, mode=mode, folder=folder, timeout=timeout,
        judge=lambda resumed: _training_problem(run_dir, expected, reference),
    )


def _labels(output: Path, label_name: str) -> np.ndarray | None:
    from ls_data.io import open_labels

    path = output / "labels" / label_name
    return open_labels(path).read() if path.exists() else None


def prediction_judge(output: Path, reference: Path, label_name: str = "instances") -> Judge:
    """The judge of an ``ls-predict`` re-run writing ``output``: it printed that it reused finished
    tiles ("N already done"), wrote the labels of the unstopped run's output ``reference`` voxel for
    voxel and removed its work folder. "ended at": tiles reused of all."""

    def judge(resumed: Ran) -> tuple[str, str | None]:
        planned = re.search(r", (\d+) tiles? of ", resumed.log)
        reused = re.search(r"; (\d+) already done in ", resumed.log)
        done = int(reused.group(1)) if reused else 0
        ended = f"{done} of {planned.group(1) if planned else '?'} tiles reused"
        labels, expected = _labels(output, label_name), _labels(reference, label_name)
        if labels is None or expected is None:
            return ended, f"FAILED: no label image in {output if labels is None else reference}"
        if labels.shape != expected.shape or not np.array_equal(labels, expected):
            wrong = int((labels != expected).sum()) if labels.shape == expected.shape else labels.size
            return ended, f"LOST WORK: labels differ from the unstopped run's in {wrong} voxels"
        if not done:
            return ended, "LOST WORK: no finished tile was reused (the re-run started over)"
        work = output.with_name(output.name + ".ls-predict")
        return ended, f"FAILED: the work folder {work} was left" if work.exists() else None

    return judge


def index_rows(index: Path) -> dict[str, list[tuple]]:
    """Every row of a crop index but its metadata (build time, report), table by table."""
    with contextlib.closing(sqlite3.connect(f"file:{index}?mode=ro", uri=True)) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        tables.remove("meta")
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY rowid").fetchall() for t in tables}


def _temp_files(index: Path) -> list[str]:
    return sorted(p.name for p in index.parent.glob(index.name + ".tmp-*"))


@dataclass
class IndexCheck:
    """The checks of a stopped ``ls-data index build`` of ``index``: :meth:`after_stop` (the index of
    before the build, byte for byte, or none when ``before`` is None; notes the temporary files the
    stop left) and :meth:`judge` (the re-run removed them and wrote the rows of the unstopped
    build's index ``reference``; "ended at": the crops indexed and the temporary files the stop
    left)."""

    index: Path
    reference: Path
    before: bytes | None = None
    left: list[str] = field(default_factory=list)

    def after_stop(self) -> str | None:
        self.left = _temp_files(self.index)
        if self.before is None:
            return "LOST WORK: the stopped build left an index" if self.index.exists() else None
        if not self.index.exists() or self.index.read_bytes() != self.before:
            return "LOST WORK: the stopped build removed or changed the index that was there"
        return None

    def judge(self, resumed: Ran) -> tuple[str, str | None]:
        if not self.index.exists():
            return "no index", "FAILED: the re-run wrote no index"
        rows = index_rows(self.index)
        ended = f"{len(rows.get('crops', []))} crops; the stop left {len(self.left)} temporary file(s)"
        left = _temp_files(self.index)
        if left:
            return ended, f"FAILED: temporary file(s) left: {', '.join(left)}"
        return ended, None if rows == index_rows(self.reference) else "LOST WORK: other rows than unstopped"


def format_table(outcomes: Sequence[Outcome]) -> str:
    """A markdown table: mode, fault, exit statuses, where the re-run ended, verdict, time."""
    lines = [
        "| mode | fault | stopped run exit | re-run exit | ended at | verdict | s |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for o in outcomes:
        lines.append(
            f"| {o.mode} | {o.fault} | {o.first_rc} | {o.resumed_rc} | {o.ended} | {o.verdict} | "
            f"{o.seconds:.0f} |"
        )
    return "\n".join(lines)


def ls_train_argv(*overrides: str) -> list[str]:
    """The ``ls-train`` command line (through this interpreter) with ``overrides``."""
    return [sys.executable, "-m", "ls_train.cli", "train", "--config-name=quickstart", *overrides]


def ls_predict_argv(*overrides: str) -> list[str]:
    """The ``ls-predict`` command line (through this interpreter) with ``overrides``."""
    return [sys.executable, "-m", "ls_train.cli", "predict", "--config-name=quickstart", *overrides]


def ls_data_argv(*args: str) -> list[str]:
    """The ``ls-data`` command line (through this interpreter) with ``args``."""
    return [sys.executable, "-m", "ls_data.cli", *args]
