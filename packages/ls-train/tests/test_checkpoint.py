from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

import pytest
import torch
from torch import nn

from ls_train.trainer.checkpoint import (
    STATE_FILE,
    CheckpointError,
    LocalCheckpointManager,
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
    with pytest.raises(OSError, match="disk full"):
        save_state(tmp_path, _state(model, 2))
    monkeypatch.undo()
    assert load_state(tmp_path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == [STATE_FILE]


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
