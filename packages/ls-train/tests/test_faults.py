from __future__ import annotations

import math
import os
import signal
from pathlib import Path

import pytest

from ls_train.trainer.faults import BadStepCounter, NonFiniteLossError, StopRequest, request_stop


def test_bad_steps_are_skipped_counted_and_reset_by_a_good_one() -> None:
    bad = BadStepCounter(max_bad_steps=3)
    assert bad.check(1.0, step=1)
    assert not bad.check(math.nan, step=2)
    assert not bad.check(math.inf, step=3)
    assert bad.check(0.5, step=4)
    assert (bad.in_a_row, bad.total) == (0, 2)
    restored = BadStepCounter(max_bad_steps=3)
    restored.load_state_dict(bad.state_dict())
    assert restored.total == 2


def test_too_many_bad_steps_in_a_row_stop_with_a_clear_message() -> None:
    bad = BadStepCounter(max_bad_steps=2)
    assert not bad.check(math.nan, step=7)
    with pytest.raises(
        NonFiniteLossError, match=r"iteration 8.*2 iterations in a row.*max_bad_steps=2.*loss_mask=nan"
    ):
        bad.check(-math.inf, step=8, losses={"loss_mask": math.nan})


def test_sigterm_sets_the_stop_flag_and_the_handler_is_restored(tmp_path: Path) -> None:
    before = signal.getsignal(signal.SIGTERM)
    stop = StopRequest(tmp_path)
    assert not stop.requested
    os.kill(os.getpid(), signal.SIGTERM)
    assert stop.requested
    stop.restore()
    assert signal.getsignal(signal.SIGTERM) == before


def test_the_stop_file_is_seen_by_workers(tmp_path: Path) -> None:
    stop = StopRequest(tmp_path, install=False)
    assert not stop.requested
    request_stop(tmp_path)
    assert stop.requested


def test_a_fault_point_is_inert_unless_named_then_pauses_its_nth_caller(tmp_path: Path, monkeypatch) -> None:
    import threading
    import time

    from ls_train.trainer.faults import FAULT_DIR_ENV, FAULT_ENV, fault_point

    monkeypatch.delenv(FAULT_ENV, raising=False)
    fault_point("train.step")  # unset: returns at once, writes nothing
    assert not list(tmp_path.iterdir())
    monkeypatch.setenv(FAULT_ENV, "train.step:2")
    monkeypatch.setenv(FAULT_DIR_ENV, str(tmp_path))
    fault_point("train.validation")  # another point: nothing
    fault_point("train.step")  # the first call of two: goes on
    assert not (tmp_path / "paused").exists()
    second = threading.Thread(target=fault_point, args=("train.step",))
    second.start()
    # the thread writes its pid into the file it creates: wait for the pid (on a busy machine, a
    # parallel test run, the thread can be slow to start or be paused between creating and writing)
    paused = tmp_path / "paused"
    deadline = time.monotonic() + 60
    while not (paused.exists() and paused.read_text()) and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    assert second.is_alive() and paused.read_text() == str(os.getpid())
    (tmp_path / "paused").unlink()  # the test's "let go"
    second.join(timeout=10)
    assert not second.is_alive()
    fault_point("train.step")  # the third call: goes on
    assert (tmp_path / "count-train.step").read_text() == "xxx"


def _reaped_pid() -> int:
    """The pid of a process that ran and was reaped (so it no longer runs)."""
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_killed_write_leaves_a_temporary_file_named_after_its_writer(tmp_path: Path) -> None:
    """A SIGKILL between the write and the rename: the old file stays, and the temporary file names
    this machine and the writing process, so that a later run can tell it is stale."""
    import subprocess
    import sys

    from ls_train.atomic import _host_tag, stale_temp_files

    target = tmp_path / "state.pt"
    target.write_bytes(b"old")
    code = (
        "import os, signal, sys\n"
        "from ls_train.atomic import atomic_write\n"
        "atomic_write(sys.argv[1], lambda f: (f.write(b'new'), os.kill(os.getpid(), signal.SIGKILL)))\n"
    )
    killed = subprocess.Popen([sys.executable, "-c", code, str(target)])
    assert killed.wait() == -signal.SIGKILL
    [left] = [p for p in tmp_path.iterdir() if p != target]
    assert left.name.startswith(f".state.pt.tmp-{_host_tag()}-{killed.pid}-") and left.name.endswith(".tmp")
    assert target.read_bytes() == b"old" and stale_temp_files(tmp_path) == [left]


def test_stale_temporary_files_are_those_no_writer_will_finish(tmp_path: Path) -> None:
    from ls_train.atomic import _host_tag, stale_temp_files

    host, dead, old = _host_tag(), _reaped_pid(), 3600.0
    names = {
        f".state.pt.tmp-{host}-{dead}-ab12_xyz.tmp": True,  # this machine, the writer is gone
        f".state.pt.tmp-{host}-{os.getpid()}-ab12_xyz.tmp": False,  # a live writer (this process)
        f".state.pt.tmp-{host}-{os.getppid()}-ab12_xyz.tmp": False,  # a live writer
        f".state.pt.tmp-{host}x-{dead}-young123.tmp": False,  # another machine, written just now
        f".state.pt.tmp-{host}x-{dead}-old12345.tmp": True,  # another machine, untouched for an hour
        ".state.pt.k2j4_9ab.tmp": True,  # the older name without its writer, untouched for an hour
        ".state.pt.k2j4_9ac.tmp": False,  # ... written just now
        "state.pt.tmp": False,  # not a temporary file of atomic_write
        ".hidden.tmp": False,
    }
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    for name in (f".state.pt.tmp-{host}x-{dead}-old12345.tmp", ".state.pt.k2j4_9ab.tmp", ".hidden.tmp"):
        os.utime(tmp_path / name, (os.path.getmtime(tmp_path / name) - old,) * 2)
    assert [p.name for p in stale_temp_files(tmp_path)] == sorted(n for n, stale in names.items() if stale)


def test_what_killed_writes_left_in_a_run_folder_is_removed(tmp_path: Path) -> None:
    """Ray runs (checkpoint folders in the run folder) and in-process runs (under checkpoints/):
    the stale temporary files go, and a checkpoint folder that held nothing else goes with them;
    checkpoints, live writers' files and other files stay."""
    from ls_train.atomic import _host_tag
    from ls_train.trainer.checkpoint import remove_stale_writes

    run, host, dead = tmp_path / "run", _host_tag(), _reaped_pid()
    stale = f".state.pt.tmp-{host}-{dead}-abcd1234.tmp"
    live = f".state.pt.tmp-{host}-{os.getpid()}-abcd1234.tmp"
    files = [
        "checkpoint_epoch0001_iter00000002/state.pt",
        f"checkpoint_epoch0001_iter00000002/{stale}",  # an overwrite killed: the old state.pt stays
        f"checkpoint_epoch0002_iter00000004/{stale}",  # a new checkpoint killed: the folder goes too
        f"checkpoint_epoch0003_iter00000006/{live}",  # being written now
        f".result.json.tmp-{host}-{dead}-abcd1234.tmp",
        f".metrics.csv.tmp-{host}-{dead}-abcd1234.tmp",
        "metrics.csv",
        f"checkpoints/.index.json.tmp-{host}-{dead}-abcd1234.tmp",
        f"checkpoints/checkpoint_epoch0002_iter00000004/{stale}",
        f"logs/{stale}",  # not a place of the run's writes
    ]
    for name in files:
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_bytes(b"x")
    removed = remove_stale_writes(run)
    assert sorted(removed) == sorted([
        f".metrics.csv.tmp-{host}-{dead}-abcd1234.tmp",
        f".result.json.tmp-{host}-{dead}-abcd1234.tmp",
        f"checkpoint_epoch0001_iter00000002/{stale}",
        f"checkpoint_epoch0002_iter00000004/{stale}",
        "checkpoint_epoch0002_iter00000004/",
        f"checkpoints/.index.json.tmp-{host}-{dead}-abcd1234.tmp",
        f"checkpoints/checkpoint_epoch0002_iter00000004/{stale}",
        "checkpoints/checkpoint_epoch0002_iter00000004/",
    ])
    left = sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file())
    assert left == sorted(["checkpoint_epoch0001_iter00000002/state.pt",
                           f"checkpoint_epoch0003_iter00000006/{live}", "metrics.csv", f"logs/{stale}"])
    assert remove_stale_writes(run) == []
