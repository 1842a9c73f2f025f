"""Ray Train on a local 2-CPU Ray instance: 2 gloo workers, a crashed worker restarted from the
last checkpoint (FailureConfig), a re-run with the same name resuming the run, and a run stopped
between two validations resuming (checkpoints without a score never break Ray's ranking), a full
disk during a checkpoint write."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
import ray

from ls_train.config import load_config
from ls_train.trainer import TrainingStopped, load_state, train
from ls_train.trainer.logging import read_csv_rows

CRASH_MODULE = '''
import os
from pathlib import Path


class CrashOnce:
    """Identity transform that kills its process at the ``at_call``-th call over all processes."""

    def __init__(self, *, counter: str, at_call: int) -> None:
        self.counter, self.at_call = Path(counter), at_call

    def __call__(self, image, target, meta):
        with self.counter.open("a") as f:
            f.write("x")
        if self.counter.stat().st_size == self.at_call:
            os._exit(3)
        return image, target, meta


class Vanish:
    """Identity transform that fails as a read of a deleted file does."""

    def __init__(self, *, path: str) -> None:
        self.path = path

    def __call__(self, image, target, meta):
        raise FileNotFoundError(f"volume {self.path} disappeared")


class RecordThreads:
    """Identity transform that appends the worker's torch thread count to a file."""

    def __init__(self, *, path: str) -> None:
        self.path = Path(path)

    def __call__(self, image, target, meta):
        import torch

        with self.path.open("a") as f:
            f.write(f"{torch.get_num_threads()}\\n")
        return image, target, meta


class StopAt:
    """Identity transform that writes the run's stop file at the ``at_call``-th call (a SIGTERM
    to the driver does the same)."""

    def __init__(self, *, counter: str, at_call: int, stop_file: str) -> None:
        self.counter, self.at_call, self.stop_file = Path(counter), at_call, Path(stop_file)

    def __call__(self, image, target, meta):
        with self.counter.open("a") as f:
            f.write("x")
        if self.counter.stat().st_size == self.at_call:
            self.stop_file.write_text("stop")
        return image, target, meta
'''


@pytest.fixture(scope="module")
def tiny(tiny_overrides: Callable[..., list[str]]) -> Callable[..., list[str]]:
    """``tiny(root, *extra)``: the tiny quickstart on 2 Ray CPU workers, no final evaluation."""
    return lambda root, *extra: tiny_overrides(
        root,
        "trainer.warmup_iters=2",
        "trainer.val_every_epochs=1",
        "evaluation.run_after_training=false",
        "cluster=cpu",
        "cluster.num_workers=2",
        *extra,
    )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    plugin = tmp_path_factory.mktemp("crash")
    (plugin / "ls_test_crash.py").write_text(textwrap.dedent(CRASH_MODULE))
    sys.path.insert(0, str(plugin))
    # an inherited OMP_NUM_THREADS=2 would give each of the 2 workers 2 threads on 2 CPUs
    env = {"PYTHONPATH": str(plugin), "OMP_NUM_THREADS": "2"}
    # address="local": a new instance of this test's own, never a cluster that another process
    # (a parallel test, a `ray start` on the machine) recorded in /tmp/ray or RAY_ADDRESS names
    ray.init(address="local", num_cpus=2, include_dashboard=False, runtime_env={"env_vars": env})
    yield tmp_path_factory.mktemp("ray")
    ray.shutdown()
    sys.path.remove(str(plugin))


@pytest.mark.slow(seconds=141)
def test_two_workers_survive_a_crash_and_a_rerun_resumes(
    cluster: Path, tiny: Callable[..., list[str]]
) -> None:
    counter = cluster / "calls"
    crash = f"transforms.transforms_list=[{{_target_:ls_test_crash.CrashOnce,counter:'{counter}',at_call:3}}]"
    cfg = load_config("quickstart", tiny(cluster, "trainer.epochs=2", "trainer.run_name=r", crash))
    result = train(cfg)
    run = cluster / "runs" / "r"
    # 2 crops over 2 workers: one iteration per epoch; the 3rd sample (epoch 2) killed a worker,
    # the group restarted from the epoch-1 checkpoint and finished
    assert counter.stat().st_size >= 4
    assert result.latest_checkpoint.parent == run
    state = load_state(result.latest_checkpoint)
    assert (state["epoch"], state["global_iter"]) == (2, 2)
    assert result.metrics["epoch"] == 2 and "ap@50" in result.metrics
    assert result.best_checkpoint is not None
    rows = read_csv_rows(run / "metrics.csv")
    assert [r["epoch"] for r in rows] == [1.0, 2.0]
    assert (run / "curves.png").exists() and list((run / "tensorboard").glob("events.*"))

    # the same name resumes (epochs 1-2 are not re-run: their rows keep their values under a new seed)
    more = train(
        load_config("quickstart", tiny(cluster, "trainer.epochs=3", "trainer.run_name=r", "trainer.seed=5"))
    )
    assert load_state(more.latest_checkpoint)["global_iter"] == 3
    again = read_csv_rows(run / "metrics.csv")
    assert [r["epoch"] for r in again] == [1.0, 2.0, 3.0]
    assert again[:2] == rows


@pytest.mark.slow(seconds=124)
def test_a_run_stopped_between_validations_resumes_to_the_same_end(
    cluster: Path, tiny: Callable[..., list[str]]
) -> None:
    run = cluster / "runs" / "s"
    counter = cluster / "stop_calls"
    stop = (
        "transforms.transforms_list=[{_target_:ls_test_crash.StopAt,"
        f"counter:'{counter}',at_call:3,stop_file:'{run / 'STOP'}'}}]"
    )
    common = ("trainer.epochs=3", "trainer.val_every_epochs=2", "trainer.run_name=s", "trainer.num_to_keep=1")
    # epoch 1 is not validated (its checkpoint has no score); the stop file appears in epoch 2
    first = train(load_config("quickstart", tiny(cluster, *common, stop)))
    assert first.stopped and first.best_checkpoint is None
    assert first.latest_checkpoint.name == "checkpoint_epoch0001_iter00000002_partial"
    snapshot = json.loads((run / "checkpoint_manager_snapshot.json").read_text())
    ranks = [r["metrics"]["checkpoint_rank"] for r in snapshot["checkpoint_results"]]
    assert ranks and all(isinstance(r, float) for r in ranks)  # never null after the JSON round trip

    # the same command resumes: Ray restores its bookkeeping (unscored checkpoints included) and
    # ranks the next ones; the run ends where an unstopped one ends
    second = train(load_config("quickstart", tiny(cluster, *common)))
    assert not second.stopped
    state = load_state(second.latest_checkpoint)
    assert (state["epoch"], state["epoch_step"], state["global_iter"]) == (3, 0, 3)
    assert "ap@50" in load_state(second.best_checkpoint)["metrics"]  # the best is a validated one
    assert [r["epoch"] for r in read_csv_rows(run / "metrics.csv")] == [1.0, 2.0, 3.0]
    assert not (run / "STOP").exists()


@pytest.mark.slow(seconds=55)
def test_a_worker_failure_beyond_max_failures_is_one_clear_message(
    cluster: Path, tiny: Callable[..., list[str]]
) -> None:
    vanish = "transforms.transforms_list=[{_target_:ls_test_crash.Vanish,path:'/data/gone.tif'}]"
    cfg = load_config("quickstart", tiny(cluster, "trainer.run_name=v", "trainer.max_failures=0", vanish))
    with pytest.raises(TrainingStopped, match=r"Ray Train failed \(after trainer.max_failures=0 restarts.*"
                       r"worker \d: .*volume /data/gone.tif disappeared.*re-run the same command to resume"):
        train(cfg)


@pytest.mark.slow(seconds=53)
def test_each_worker_computes_with_its_cpu_allocation(cluster: Path, tiny: Callable[..., list[str]]) -> None:
    threads = cluster / "threads"
    record = f"transforms.transforms_list=[{{_target_:ls_test_crash.RecordThreads,path:'{threads}'}}]"
    train(load_config("quickstart", tiny(cluster, "trainer.run_name=t", "trainer.epochs=1", record)))
    assert threads.read_text().split() == ["1", "1"]  # cluster=cpu: {CPU: 1} per worker


@pytest.mark.slow(seconds=145)
def test_a_full_disk_during_a_checkpoint_write_stops_with_a_clear_error_and_the_rerun_resumes(
    cluster: Path, tiny: Callable[..., list[str]], mount_tmpfs: Callable[[str, str], Path]
) -> None:
    """The run folder on a real 9 MiB tmpfs: the epoch-1 checkpoint (about 6 MiB) fits, the epoch-2
    one does not. Every worker stops at once (no Ray retry, which would only fill the disk again)
    with one error naming the file; nothing is left half-written; the rerun resumes."""
    disk = mount_tmpfs("runs", "size=9m")
    common = ("trainer.epochs=2", "trainer.run_name=full", f"trainer.runs_root={disk}")
    cfg = load_config("quickstart", tiny(cluster, *common))
    run = disk / "full"
    refused = run / "checkpoint_epoch0002_iter00000002" / "state.pt"
    with pytest.raises(TrainingStopped, match=rf"checkpoint {refused}: no space left on device; the "
                       r"checkpoints already on disk are kept: free space and re-run the same command"):
        train(cfg)
    assert not refused.parent.exists() and not list(run.rglob("*.tmp"))
    assert load_state(run / "checkpoint_epoch0001_iter00000001")["global_iter"] == 1
    subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
    again = train(load_config("quickstart", tiny(cluster, *common)))
    assert load_state(again.latest_checkpoint)["global_iter"] == 2
    assert [r["epoch"] for r in read_csv_rows(run / "metrics.csv")] == [1.0, 2.0]
