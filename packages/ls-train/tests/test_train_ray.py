"""Ray Train on a local 2-CPU Ray instance: 2 gloo workers, a crashed worker restarted from the
last checkpoint (FailureConfig), and a re-run with the same name resuming the run."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from ls_train.config import load_config  # noqa: E402
from ls_train.trainer import load_state, train  # noqa: E402
from ls_train.trainer.logging import read_csv_rows  # noqa: E402

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
    ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": {"PYTHONPATH": str(plugin)}})
    yield tmp_path_factory.mktemp("ray")
    ray.shutdown()
    sys.path.remove(str(plugin))


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
