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
