"""The console of a Ray run: the run's own lines, one progress line per epoch, no Ray internals;
Ray's logs in the run folder. And the relay that prints the rank-0 worker's lines."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ls_train.trainer.console import ConsoleRelay

RAY_INTERNALS = (
    "(TrainController",
    "(RayTrainWorker",
    "PlacementGroupCleaner",
    "TrainingReport(",
    "Token authentication",
)


def test_the_relay_prints_whole_lines_as_they_are_written(tmp_path: Path) -> None:
    path = tmp_path / "console.log"
    path.write_text("written before the relay started\n")
    printed: list[str] = []
    with ConsoleRelay(path, print_fn=printed.append, interval=0.01), path.open("a") as f:
        f.write("epoch 1/2 done\nepoch 2")
        f.flush()
        # the relay's thread may be slow to run on a busy machine (a parallel test run): wait for it
        deadline = time.monotonic() + 60
        while not printed and time.monotonic() < deadline:
            time.sleep(0.01)
        assert printed == ["epoch 1/2 done"]  # the unfinished line waits
        f.write("/2 done\nlast line without an end")
    assert printed == ["epoch 1/2 done", "epoch 2/2 done", "last line without an end"]


def test_on_a_terminal_each_epoch_leaves_one_progress_line(tmp_path: Path) -> None:
    import io

    from ls_train.trainer.logging import RunLogger

    path = tmp_path / "console.log"
    terminal, printed = io.StringIO(), []
    on_terminal = ConsoleRelay(path, stream=terminal, interval=0.01)  # both read from the current end
    in_a_log = ConsoleRelay(path, print_fn=printed.append, interval=0.01)
    with path.open("a", buffering=1) as console:  # what the rank-0 worker of a quiet Ray run writes
        logger = RunLogger(tmp_path / "run", epochs=2, steps_per_epoch=4, log_every_steps=2, stream=console,
                           mark_partial=True)
        for epoch in range(2):
            for step in range(1, 5):
                logger.progress(epoch=epoch, epoch_step=step, global_iter=epoch * 4 + step,
                                losses={"loss": 1.0}, lr=1e-3, skipped=0)
            logger.message(f"epoch {epoch + 1}/2 validation: ap@50 0.5")
    on_terminal._relay(final=True)
    in_a_log._relay(final=True)
    shown = terminal.getvalue().split("\n")  # what stays on the screen: the last redraw of each line
    kept = [line.rsplit("\r\x1b[K", 1)[-1] for line in shown if line]
    assert [line.split(" [")[0] for line in kept] == ["epoch 1/2", "epoch 1/2 validation: ap@50 0.5",
                                                      "epoch 2/2", "epoch 2/2 validation: ap@50 0.5"]
    assert "4/4 loss" in kept[0] and "4/4 loss" in kept[2]
    assert len(printed) == 6 and not any(line.startswith("\r") for line in printed)  # a log: every line


@pytest.mark.slow(seconds=137)
def test_a_ray_run_shows_its_own_lines_only(tmp_path: Path, tiny_overrides: Callable[..., list[str]]) -> None:
    epochs = 3
    overrides = tiny_overrides(
        tmp_path,
        f"trainer.epochs={epochs}",
        "trainer.val_every_epochs=1",
        "trainer.warmup_iters=2",
        "evaluation.run_after_training=false",
        "cluster=cpu",
        "cluster.num_workers=2",
        "cluster.num_cpus=2",
    )
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    done = subprocess.run(
        [sys.executable, "-m", "ls_train.cli", "train", "--config-name=quickstart", *overrides],
        capture_output=True, text=True, env=env, timeout=600,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-5000:]
    lines = out.splitlines()
    assert not [line for line in lines if any(marker in line for marker in RAY_INTERNALS)], out
    for epoch in range(1, epochs + 1):  # 1 iteration per epoch and worker: one progress line each
        assert sum(line.startswith(f"epoch {epoch}/{epochs} [") for line in lines) == 1, out
    assert sum("validation: ap@50" in line for line in lines) == epochs
    assert "each worker computes with 1 thread(s), its CPU allocation; OMP_NUM_THREADS=2" in out
    assert len(lines) < 30, out
    logs = next((tmp_path / "runs" / "quickstart" / "logs").glob("ray-*"))
    assert any(f.name.startswith("worker-") and f.suffix == ".out" for f in logs.iterdir())
