from __future__ import annotations

import argparse
import errno
import math
import os
from pathlib import Path

import pytest
import torch
from torch import nn

from ls_train.storage import StorageFullError
from ls_train.trainer import checkpoint as checkpoint_module
from ls_train.trainer.checkpoint import (
    RANK_KEY,
    STATE_FILE,
    UNRANKED,
    CheckpointError,
    LocalCheckpointManager,
    checkpoint_folders,
    checkpoint_rank,
    load_first_readable,
    load_model_weights,
    load_state,
    save_state,
)


def _state(model: nn.Module, epoch: int) -> dict:
    return {"model": model.state_dict(), "epoch": epoch, "metrics": {"ap@50": 0.5}}


def test_round_trip_with_weights_only(tmp_path: Path) -> None:
    model = nn.Linear(3, 2)
    path = save_state(tmp_path / "ck", _state(model, 3))
    assert path.name == STATE_FILE
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    state = load_state(tmp_path / "ck")
    other = nn.Linear(3, 2)
    load_model_weights(other, state)
    assert torch.equal(other.weight, model.weight) and state["epoch"] == 3


def test_a_failed_write_leaves_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = nn.Linear(3, 2)
    save_state(tmp_path, _state(model, 1))

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(CheckpointError, match=r"state\.pt: cannot be written \(disk full\); the checkpoints"):
        save_state(tmp_path, _state(model, 2))
    monkeypatch.undo()
    assert load_state(tmp_path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == [STATE_FILE]


def test_a_full_disk_is_a_storage_full_error_naming_the_file_and_leaves_nothing(mount_tmpfs) -> None:
    """A real 64 KiB tmpfs: torch.save's own error wraps the ENOSPC; the message names the file."""
    disk = mount_tmpfs("disk", "size=64k")
    manager = LocalCheckpointManager(disk, num_to_keep=1, score_attribute="ap@50", score_order="max")
    manager.save("e1", {"w": torch.zeros(100)}, {"ap@50": 0.5})
    with pytest.raises(StorageFullError, match=rf"checkpoint {disk}/checkpoints/e2/state\.pt: no space left"):
        manager.save("e2", {"w": torch.zeros(100_000)}, {"ap@50": 0.9})
    assert sorted(p.name for p in (disk / "checkpoints").iterdir()) == ["e1", "index.json"]
    again = LocalCheckpointManager(disk, num_to_keep=1, score_attribute="ap@50", score_order="max")
    assert again.latest().name == "e1" and load_state(again.latest())["w"].shape == (100,)


def test_an_index_that_cannot_be_written_drops_no_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With num_to_keep=1 the new checkpoint replaces the old one only once the index says so: a
    full disk while writing the index leaves the old checkpoint listed and on disk."""
    manager = LocalCheckpointManager(tmp_path, num_to_keep=1, score_attribute="ap@50", score_order="max")
    manager.save("e1", {"w": torch.zeros(3)}, {"ap@50": 0.5})
    real = checkpoint_module.atomic_write

    def full_for_the_index(path, write):
        if Path(path).name == "index.json":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, write)

    monkeypatch.setattr(checkpoint_module, "atomic_write", full_for_the_index)
    with pytest.raises(StorageFullError, match=r"checkpoints/index\.json: no space left on device"):
        manager.save("e2", {"w": torch.ones(3)}, {"ap@50": 0.9})
    monkeypatch.undo()
    again = LocalCheckpointManager(tmp_path, num_to_keep=1, score_attribute="ap@50", score_order="max")
    assert again.latest().name == "e1" and load_state(again.latest())["w"].sum() == 0


def test_pickled_objects_are_refused(tmp_path: Path) -> None:
    torch.save({"model": {}, "evil": argparse.Namespace(a=1)}, tmp_path / STATE_FILE)
    with pytest.raises(CheckpointError, match="weights_only=True"):
        load_state(tmp_path)
    with pytest.raises(CheckpointError, match="no such file"):
        load_state(tmp_path / "absent")


def test_a_checkpoint_of_another_model_names_the_mismatched_keys(tmp_path: Path) -> None:
    save_state(tmp_path, {"model": nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2)).state_dict()})
    other = nn.Sequential(nn.Linear(3, 5), nn.Linear(5, 2), nn.ReLU(), nn.Linear(2, 1))
    with pytest.raises(CheckpointError) as err:
        load_model_weights(other, load_state(tmp_path))
    text = str(err.value)
    assert "another model configuration" in text
    assert "missing in the checkpoint: 3.bias, 3.weight" in text
    assert "0.weight: checkpoint (4, 3) vs model (5, 3)" in text


def test_local_manager_keeps_the_best_and_the_latest(tmp_path: Path) -> None:
    manager = LocalCheckpointManager(tmp_path, num_to_keep=2, score_attribute="ap@50", score_order="max")
    model = nn.Linear(2, 2)
    for name, score in [("e1", 0.2), ("e2", 0.9), ("e3", 0.1), ("e4", math.nan)]:
        manager.save(name, {"model": model.state_dict()}, {"ap@50": score})
    kept = sorted(p.name for p in (tmp_path / "checkpoints").iterdir() if p.is_dir())
    assert kept == ["e2", "e4"]
    assert manager.latest().name == "e4" and manager.best().name == "e2"
    again = LocalCheckpointManager(tmp_path, num_to_keep=2, score_attribute="ap@50", score_order="max")
    assert again.latest().name == "e4"


def test_the_rank_is_finite_and_puts_unscored_checkpoints_last() -> None:
    assert checkpoint_rank(0.7, "max") == 0.7 and checkpoint_rank(0.7, "min") == -0.7
    for missing in (None, math.nan, math.inf, -math.inf, True, "0.7"):
        assert checkpoint_rank(missing, "max") == UNRANKED
    assert math.isfinite(UNRANKED) and checkpoint_rank(-1e300, "max") > UNRANKED


def test_the_best_checkpoint_is_a_ranked_one_and_the_latest_is_kept(tmp_path: Path) -> None:
    model = nn.Linear(3, 2)
    manager = LocalCheckpointManager(tmp_path, num_to_keep=2, score_attribute="ap@50", score_order="max")
    manager.save("e1", _state(model, 1), {RANK_KEY: UNRANKED})
    assert manager.best() is None  # nothing validated yet
    manager.save("e2", _state(model, 2), {"ap@50": 0.4, RANK_KEY: 0.4})
    manager.save("e3", _state(model, 3), {RANK_KEY: UNRANKED})  # a stop checkpoint
    assert manager.best().name == "e2" and manager.latest().name == "e3"
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir() if p.is_dir()) == ["e2", "e3"]


def test_the_furthest_readable_checkpoint_folder_is_found(tmp_path: Path) -> None:
    model = nn.Linear(3, 2)
    for name, epoch in [("checkpoint_epoch0001_iter00000008", 1), ("checkpoint_epoch0002_iter00000016", 2),
                        ("checkpoint_epoch0002_iter00000019_partial", 2)]:
        save_state(tmp_path / name, _state(model, epoch))
    (tmp_path / "checkpoint_epoch0003_iter00000024").mkdir()  # no state.pt: not a checkpoint
    (tmp_path / "notes").mkdir()
    folders = checkpoint_folders(tmp_path)
    assert [f.name for f in folders] == [
        "checkpoint_epoch0002_iter00000019_partial",
        "checkpoint_epoch0002_iter00000016",
        "checkpoint_epoch0001_iter00000008",
    ]
    truncated = folders[0] / STATE_FILE
    truncated.write_bytes(truncated.read_bytes()[:100])
    skipped: list[str] = []
    folder, state = load_first_readable(folders, skipped=skipped)
    assert folder == folders[1] and state["epoch"] == 2
    assert len(skipped) == 1 and str(truncated) in skipped[0]
    assert load_first_readable([], skipped=skipped) is None
