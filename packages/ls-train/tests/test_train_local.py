"""In-process training (cluster.num_workers=0): outputs, resume, non-finite losses, SIGTERM, SIGKILL."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import ls_train.factory
from ls_train.config import load_config
from ls_train.trainer import TrainingStopped, load_state, train
from ls_train.trainer.logging import read_csv_rows


@pytest.fixture(scope="module")
def tiny(tiny_overrides: Callable[..., list[str]]) -> Callable[..., list[str]]:
    """``tiny(root, *extra)``: the tiny quickstart, in process, 2 steps per epoch, no final evaluation."""
    return lambda root, *extra: tiny_overrides(
        root,
        "trainer.max_steps_per_epoch=2",
        "trainer.val_every_epochs=1",
        "trainer.warmup_iters=2",
        "trainer.log_every_steps=1",
        "evaluation.run_after_training=false",
        "cluster=local",
        *extra,
    )


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("local")


@pytest.mark.slow(seconds=18)
def test_a_run_writes_checkpoints_csv_tensorboard_and_curves_then_resumes(
    root: Path, tiny: Callable[..., list[str]], capsys
) -> None:
    cfg = load_config("quickstart", tiny(root, "trainer.epochs=2", "trainer.run_name=a"))
    result = train(cfg)
    run = root / "runs" / "a"
    assert result.run_dir == run and not result.stopped
    rows = read_csv_rows(run / "metrics.csv")
    assert [r["epoch"] for r in rows] == [1.0, 2.0]
    assert {"loss", "loss_mask", "lr", "ap@50", "coco_mask_ap"} <= set(rows[-1])
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert (run / "curves.png").stat().st_size > 1000
    assert result.latest_checkpoint.name == "checkpoint_epoch0002_iter00000004"
    assert result.best_checkpoint is not None
    state = load_state(result.latest_checkpoint)
    assert (state["epoch"], state["epoch_step"], state["global_iter"]) == (2, 0, 4)
    assert state["scheduler"]["last_epoch"] == 4  # one optimizer step per iteration
    assert "ap@50" in state["metrics"]
    out = capsys.readouterr().out
    assert "epoch 1/2 [" in out and "ETA" in out and "validation: ap@50" in out

    # same name, more epochs: continues at epoch 3 with the optimizer and schedule state
    resumed = train(load_config("quickstart", tiny(root, "trainer.epochs=3", "trainer.run_name=a")))
    assert "resuming a at epoch 3, iteration 0 (4 iterations done)" in capsys.readouterr().out
    assert load_state(resumed.latest_checkpoint)["global_iter"] == 6
    assert [r["epoch"] for r in read_csv_rows(run / "metrics.csv")] == [1.0, 2.0, 3.0]
    # a new name starts fresh; with gradient accumulation over 2 iterations: one optimizer step
    fresh = train(
        load_config(
            "quickstart", tiny(root, "trainer.epochs=1", "trainer.run_name=b", "trainer.grad_accum_steps=2")
        )
    )
    assert "resuming" not in capsys.readouterr().out
    state = load_state(fresh.latest_checkpoint)
    assert state["global_iter"] == 2 and state["scheduler"]["last_epoch"] == 1


@pytest.mark.slow(seconds=8)
def test_a_run_stopped_mid_epoch_resumes_with_the_batches_not_yet_trained(
    root: Path, tiny: Callable[..., list[str]], monkeypatch
) -> None:
    """Stopped after the first batch of an epoch, the resumed run trains the epoch's other
    batches: not the first one again (nor is it loaded again), and none is left out."""
    from ls_data.dataset import SkittlezDataset

    run = root / "runs" / "mid"
    overrides = tiny(root, "trainer.epochs=1", "trainer.run_name=mid", "datasets.shuffle=false")
    cfg = load_config("quickstart", overrides)
    fetched: list[tuple[str, tuple[int, ...]]] = []
    stop_after_first = [True]
    real = SkittlezDataset.__getitem__

    def getitem(self, i):
        sample = real(self, i)
        if self.index.path.name == "index_train.sqlite":
            fetched.append((sample[2]["volume_name"], tuple(sample[2]["origin"])))
            if stop_after_first[0]:  # a SIGTERM / STOP file during the first step
                (run / "STOP").write_text("stop")
                stop_after_first[0] = False
        return sample

    monkeypatch.setattr(SkittlezDataset, "__getitem__", getitem)
    assert train(cfg).stopped
    first, fetched[:] = list(fetched), []
    index = json.loads((run / "checkpoints" / "index.json").read_text())
    state = load_state(run / "checkpoints" / index["checkpoints"][-1]["name"])
    assert len(first) == 1 and (state["epoch"], state["epoch_step"]) == (0, 1)
    (run / "STOP").unlink(missing_ok=True)
    assert not train(cfg).stopped
    assert len(fetched) == 1 and fetched[0] != first[0]


@pytest.mark.slow(seconds=33)
def test_a_run_stopped_mid_epoch_and_resumed_trains_the_weights_of_an_unstopped_run(
    root: Path, tiny: Callable[..., list[str]], monkeypatch
) -> None:
    """Same shuffle, augmentations and RoI sampling after the resume (the sampler's order is a
    function of the epoch; the checkpoint carries the RNG states): bit-identical weights."""
    import ls_train.trainer.loop as loop

    full = train(load_config("quickstart", tiny(root, "trainer.epochs=3", "trainer.run_name=w_full")))
    overrides = tiny(root, "trainer.epochs=3", "trainer.run_name=w_stop")
    run = root / "runs" / "w_stop"
    steps = [0]
    real_point = loop.fault_point

    def point(name: str) -> None:
        real_point(name)
        if name == "train.step":
            steps[0] += 1
            if steps[0] == 2:  # seen at the next step: the run stops after step 1 of epoch 2
                (run / "STOP").write_text("stop")

    monkeypatch.setattr(loop, "fault_point", point)
    first = train(load_config("quickstart", overrides))
    assert first.stopped
    stopped = load_state(first.latest_checkpoint)
    assert (stopped["epoch"], stopped["epoch_step"], stopped["global_iter"]) == (1, 1, 3)
    assert len(stopped["rng"]) == 1 and set(stopped["rng"][0]) >= {"torch", "numpy", "python"}
    (run / "STOP").unlink()
    monkeypatch.setattr(loop, "fault_point", real_point)
    resumed = train(load_config("quickstart", overrides))
    a, b = load_state(full.latest_checkpoint), load_state(resumed.latest_checkpoint)
    assert a["global_iter"] == b["global_iter"] == 6
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), f"{key} differs after the resume"


@pytest.mark.slow(seconds=8)
def test_a_checkpoint_without_rng_states_resumes_and_says_so(
    root: Path, tiny: Callable[..., list[str]], capsys
) -> None:
    from ls_train.trainer import save_state

    overrides = tiny(root, "trainer.epochs=1", "trainer.run_name=old_rng")
    done = train(load_config("quickstart", overrides))
    state = load_state(done.latest_checkpoint)
    del state["rng"]  # a checkpoint of an older version
    save_state(done.latest_checkpoint, state)
    capsys.readouterr()
    train(load_config("quickstart", tiny(root, "trainer.epochs=2", "trainer.run_name=old_rng")))
    out = capsys.readouterr().out
    assert "holds no random-generator states" in out and "resuming old_rng at epoch 2" in out


@pytest.mark.slow(seconds=10)
def test_a_detector_with_a_target_spacing_gets_the_crops_spacing(
    root: Path, tiny: Callable[..., list[str]]
) -> None:
    """models.target_spacing resizes every crop by its meta spacing (2, 0.5, 0.5 here), in training
    and in validation; without the spacings the detector would refuse the batch."""
    spaced = ("trainer.epochs=1", "trainer.run_name=spaced", "models.target_spacing=[2.0,1.0,1.0]")
    cfg = load_config("quickstart", tiny(root, *spaced))
    result = train(cfg)
    rows = read_csv_rows(result.run_dir / "metrics.csv")
    assert math.isfinite(rows[-1]["loss"]) and "ap@50" in rows[-1]


@pytest.mark.slow(seconds=11)
def test_non_finite_losses_are_skipped_then_stop_the_run(
    root: Path, tiny: Callable[..., list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    def overrides(epochs: int) -> list[str]:
        return tiny(root, f"trainer.epochs={epochs}", "trainer.run_name=badloss", "trainer.max_bad_steps=2")

    train(load_config("quickstart", overrides(1)))  # 2 crops: 2 iterations per epoch
    real_build = ls_train.factory.build_model
    calls = {"n": 0}

    def poisoned(cfg):
        model = real_build(cfg)
        forward = model.forward

        def maybe_nan(images, targets=None, **kwargs):
            out = forward(images, targets, **kwargs)
            if model.training:
                calls["n"] += 1
                if calls["n"] in (1, 3, 4):  # epoch 2: one bad step, a good one; epoch 3: two bad in a row
                    out = {k: v * math.nan for k, v in out.items()}
            return out

        model.forward = maybe_nan
        return model

    monkeypatch.setattr(ls_train.factory, "build_model", poisoned)
    with pytest.raises(
        TrainingStopped,
        match=r"iteration 6: the loss was non-finite .* 2 iterations in a row .*"
        r"3 skipped in all.*last good checkpoint is kept",
    ):
        train(load_config("quickstart", overrides(3)))
    folder = root / "runs" / "badloss" / "checkpoints"
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == [
        "checkpoint_epoch0001_iter00000002",
        "checkpoint_epoch0002_iter00000004",
    ]
    last_good = load_state(folder / "checkpoint_epoch0002_iter00000004")
    assert all(torch.isfinite(v).all() for v in last_good["model"].values() if v.is_floating_point())
    assert last_good["bad_steps"] == {"in_a_row": 0, "total": 1}
    assert [r["skipped_steps"] for r in read_csv_rows(root / "runs" / "badloss" / "metrics.csv")] == [
        0.0,
        1.0,
    ]


def _cli(tiny: Callable[..., list[str]], root: Path, run_name: str, epochs: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "ls_train.cli",
        "train",
        "--config-name=quickstart",
        *tiny(
            root, f"trainer.epochs={epochs}", f"trainer.run_name={run_name}", "trainer.val_every_epochs=10"
        ),
    ]


def _wait_for_checkpoint(proc: subprocess.Popen, index: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not index.exists():
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.2)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
@pytest.mark.slow(seconds=31)
def test_a_signalled_run_resumes_from_its_last_checkpoint(
    root: Path, tiny: Callable[..., list[str]], sig: signal.Signals
) -> None:
    name = f"sig{int(sig)}"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        _cli(tiny, root, name, 50), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    index = root / "runs" / name / "checkpoints" / "index.json"
    _wait_for_checkpoint(proc, index)
    proc.send_signal(sig)
    out = proc.communicate(timeout=120)[0]
    if sig == signal.SIGTERM:
        assert proc.returncode == 0, out[-3000:]
        assert "stop requested: checkpoint written" in out and "re-run with trainer.run_name=" + name in out
    else:
        assert proc.returncode == -signal.SIGKILL
    saved = load_state(
        root / "runs" / name / "checkpoints" / json.loads(index.read_text())["checkpoints"][-1]["name"]
    )
    done = saved["global_iter"]
    assert done >= 2
    again = subprocess.run(
        _cli(tiny, root, name, saved["epoch"] + 1), capture_output=True, text=True, env=env, timeout=300
    )
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert (
        f"resuming {name} at epoch {saved['epoch'] + 1}, iteration {saved['epoch_step']} "
        f"({done} iterations done)" in again.stdout
    )


@pytest.mark.slow(seconds=8)
def test_a_truncated_last_checkpoint_resumes_from_the_one_before(
    root: Path, tiny: Callable[..., list[str]], capsys
) -> None:
    """A state.pt cut short (a full disk, a kill during a copy) is skipped with a message naming it;
    the run resumes from the previous checkpoint and ends where an unbroken run ends."""
    overrides = ("trainer.run_name=trunc", "trainer.num_to_keep=3")
    first = train(load_config("quickstart", tiny(root, "trainer.epochs=2", *overrides)))
    latest = first.latest_checkpoint / "state.pt"
    latest.write_bytes(latest.read_bytes()[: latest.stat().st_size // 2])
    capsys.readouterr()
    resumed = train(load_config("quickstart", tiny(root, "trainer.epochs=3", *overrides)))
    out = capsys.readouterr().out
    assert f"skipped an unreadable checkpoint: checkpoint {latest}" in out
    assert "resuming trunc at epoch 2, iteration 0 (2 iterations done)" in out
    state = load_state(resumed.latest_checkpoint)
    assert (state["epoch"], state["global_iter"]) == (3, 6)


@pytest.mark.slow(seconds=13)
def test_a_checkpoint_that_cannot_be_written_is_a_clear_error_and_keeps_the_last_one(
    root: Path, tiny: Callable[..., list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk during the epoch-2 checkpoint: the run stops naming the file (TrainingStopped:
    exit status 1 from ls-train), no temporary file left, the epoch-1 checkpoint intact; the same
    command resumes."""
    import errno

    overrides = tiny(root, "trainer.epochs=2", "trainer.run_name=full")
    real_save = torch.save
    calls = {"n": 0}

    def save(obj, f, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    with pytest.raises(TrainingStopped, match=r"checkpoint .*iter00000004/state\.pt: no space left on "
                       r"device; the checkpoints already on disk are kept"):
        train(load_config("quickstart", overrides))
    folder = root / "runs" / "full" / "checkpoints"
    assert not [p for p in folder.rglob("*") if p.name.endswith(".tmp")]
    assert load_state(folder / "checkpoint_epoch0001_iter00000002")["global_iter"] == 2
    monkeypatch.setattr(torch, "save", real_save)
    assert load_state(train(load_config("quickstart", overrides)).latest_checkpoint)["global_iter"] == 4


def test_ray_that_cannot_start_is_a_clear_error(
    root: Path, tiny: Callable[..., list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """On an overloaded machine Ray's own start can time out (a bare Exception from ray.init): one
    TrainingStopped message (exit status 1) that says to re-run, not a traceback."""
    import ray

    def slow_start(*args, **kwargs):
        raise Exception("The current node timed out during startup. This could happen because ...")

    monkeypatch.setattr(ray, "init", slow_start)
    overrides = tiny(root, "trainer.epochs=1", "trainer.run_name=noray", "cluster=cpu",
                     "cluster.num_workers=2")
    with pytest.raises(TrainingStopped, match=r"Ray could not start \(The current node timed out during "
                       r"startup.*re-run the same command to resume"):
        train(load_config("quickstart", overrides))
