"""Training checkpoints: one ``state.pt`` per checkpoint folder, written atomically, read safely.

A checkpoint holds the model weights, the optimizer and scheduler states, where training
stands (``epoch``: the epoch in progress or next, ``epoch_step``: iterations of it already done,
``step``: optimizer steps so far) and the metrics of that moment. It is written to a temporary
file beside the target and moved into place with :func:`os.replace`, so a killed process leaves
either the old checkpoint or the new one, never half of one. It is read with
``torch.load(weights_only=True)``: no pickled code runs.

In-process runs (``cluster.num_workers=0``) keep their checkpoints with
:class:`LocalCheckpointManager`; Ray runs hand the folder to ``ray.train.report``.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import sys
from collections.abc import Mapping, Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ls_train.atomic import atomic_write, stale_temp_files
from ls_train.storage import StorageFullError, no_space_left
from ls_train.trainer.faults import fault_point

__all__ = [
    "CONFIG_KEY",
    "RANK_KEY",
    "STATE_FILE",
    "UNRANKED",
    "CheckpointError",
    "LocalCheckpointManager",
    "checkpoint_folders",
    "checkpoint_rank",
    "load_first_readable",
    "load_model_weights",
    "load_state",
    "model_state_dict",
    "remove_stale_writes",
    "save_state",
    "unwrap_model",
]

STATE_FILE = "state.pt"

CONFIG_KEY = "config"
"""Key of the JSON text of the resolved experiment config that trained a checkpoint, in its state
(see :mod:`ls_train.checkpoint_config`)."""

RANK_KEY = "checkpoint_rank"
"""Reported metric that ranks checkpoints (higher is better): see :func:`checkpoint_rank`."""

UNRANKED = -sys.float_info.max
"""The rank of a checkpoint that measured no score: below every scored one, and finite, so that it
survives a JSON round trip (Ray's checkpoint bookkeeping stores NaN and inf as null, which its
ranking then fails on when a run resumes)."""


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or does not fit the model."""


def unwrap_model(model: nn.Module) -> nn.Module:
    """The model inside a DistributedDataParallel (or similar ``.module``) wrapper."""
    while isinstance(model, nn.parallel.DistributedDataParallel) or (
        hasattr(model, "module")
        and isinstance(model.module, nn.Module)
        and type(model).__name__.endswith("DataParallel")
    ):
        model = model.module
    return model


def model_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The weights of ``model`` (unwrapped) as CPU tensors."""
    return {k: v.detach().cpu() for k, v in unwrap_model(model).state_dict().items()}


def save_state(directory: str | os.PathLike[str], state: Mapping[str, Any]) -> Path:
    """Write ``state`` to ``directory/state.pt`` atomically (temporary file + ``os.replace``).

    Args:
        directory: Checkpoint folder (created if needed).
        state: Tensors, numbers, strings, lists and dicts only (what ``weights_only`` loads).

    Returns:
        The path of the written file.

    Raises:
        StorageFullError: no space left (or a quota); nothing is left behind and an existing
            ``state.pt`` stays as it was.
        CheckpointError: the file cannot be written for another reason (permissions).
    """
    folder = Path(directory)
    target = folder / STATE_FILE

    def write(f: Any) -> None:
        torch.save(dict(state), f)
        fault_point("train.checkpoint_write")  # written, not yet in place

    try:
        folder.mkdir(parents=True, exist_ok=True)
        return atomic_write(target, write)
    except (OSError, RuntimeError) as exc:  # torch.save may wrap the OSError of its writer
        with suppress(OSError):
            folder.rmdir()  # only when empty: a folder this failed write created
        error = _write_error(target, exc)
        if error is exc:  # a RuntimeError of torch.save that is not about the disk
            raise
        raise error from exc


def _write_error(target: Path, exc: BaseException) -> Exception:
    """The error for a checkpoint file that could not be written: a :class:`StorageFullError` for
    a full disk or a quota, a :class:`CheckpointError` for another ``OSError``; ``exc`` itself
    for anything else."""
    keep = "the checkpoints already on disk are kept: free space"
    if no_space_left(exc) is not None:
        return StorageFullError(f"checkpoint {target}: no space left on device; {keep} and re-run the "
                                f"same command to resume")
    if isinstance(exc, OSError):  # a folder that went read-only
        return CheckpointError(f"checkpoint {target}: cannot be written ({exc.strerror or exc}); {keep} "
                               f"(or fix the folder) and re-run the same command to resume")
    return exc


def load_state(path: str | os.PathLike[str], *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint: a ``state.pt`` file, a folder holding one, or a plain weights file.

    Raises:
        CheckpointError: missing file, or a file ``torch.load(weights_only=True)`` refuses
            (corrupt, or holding pickled objects).
    """
    p = Path(path)
    if p.is_dir():
        p = p / STATE_FILE
    if not p.is_file():
        raise CheckpointError(f"checkpoint {p}: no such file")
    try:
        state = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"checkpoint {p}: cannot be loaded with weights_only=True: {exc}") from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {p}: expected a dict, got {type(state).__name__}")
    return state


def load_model_weights(model: nn.Module, state: Mapping[str, Any], *, source: str = "checkpoint") -> None:
    """Load the weights of a checkpoint (``state["model"]``, or ``state`` itself) into ``model``.

    Raises:
        CheckpointError: the checkpoint was made for another model configuration; the message
            names the missing and unexpected keys and the keys whose shapes differ.
    """
    weights = state.get("model", state)
    target = unwrap_model(model)
    own = target.state_dict()
    missing = sorted(set(own) - set(weights))
    unexpected = sorted(set(weights) - set(own))
    shapes = [
        f"{k}: checkpoint {tuple(weights[k].shape)} vs model {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(weights))
        if isinstance(weights[k], torch.Tensor) and tuple(weights[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or shapes:

        def some(keys: list[str]) -> str:
            return ", ".join(keys[:8]) + (f", ... ({len(keys)} in all)" if len(keys) > 8 else "")

        parts = []
        if missing:
            parts.append(f"missing in the checkpoint: {some(missing)}")
        if unexpected:
            parts.append(f"not in the model: {some(unexpected)}")
        if shapes:
            parts.append(f"shape mismatch: {some(shapes)}")
        raise CheckpointError(
            f"{source} does not fit the model of this config ({type(target).__name__}); it was made "
            f"with another model configuration. " + "; ".join(parts)
        )
    target.load_state_dict(weights)


def checkpoint_rank(value: Any, order: str) -> float:
    """The rank of a checkpoint whose score is ``value`` (``order``: ``"max"`` or ``"min"``).

    A finite number: the score itself (negated for ``"min"``), or :data:`UNRANKED` when the
    checkpoint measured no score (an epoch without validation, a stop checkpoint) or a non-finite
    one. So the checkpoints kept besides the latest are the best among the validated ones, and a
    checkpoint without a score never breaks the ranking.
    """
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        return UNRANKED
    return float(value) if order == "max" else -float(value)


def _rank(metrics: Mapping[str, Any], attribute: str, order: str) -> float:
    if RANK_KEY in metrics:
        return checkpoint_rank(metrics[RANK_KEY], "max")
    return checkpoint_rank(metrics.get(attribute), order)  # an index written before RANK_KEY


class LocalCheckpointManager:
    """Checkpoints of an in-process run under ``run_dir/checkpoints``, best ``num_to_keep`` kept.

    Checkpoints are ranked by ``metrics[RANK_KEY]`` (see :func:`checkpoint_rank`; entries of an
    older index by ``metrics[score_attribute]``), unscored ones last; the latest one is always
    kept, so a run can resume from it. The bookkeeping lives in ``checkpoints/index.json``
    (written atomically).

    Args:
        run_dir: The run's folder.
        num_to_keep: Checkpoints kept.
        score_attribute: Metric that ranks checkpoints.
        score_order: ``"max"`` or ``"min"``.
    """

    def __init__(
        self, run_dir: str | os.PathLike[str], *, num_to_keep: int, score_attribute: str, score_order: str
    ) -> None:
        self.folder = Path(run_dir) / "checkpoints"
        self.num_to_keep = int(num_to_keep)
        self.score_attribute = score_attribute
        self.score_order = score_order
        self._index_path = self.folder / "index.json"
        self.entries: list[dict[str, Any]] = []
        if self._index_path.is_file():
            self.entries = json.loads(self._index_path.read_text())["checkpoints"]
        self.entries = [e for e in self.entries if (self.folder / e["name"] / STATE_FILE).is_file()]

    def latest(self) -> Path | None:
        """Folder of the most recent checkpoint, or None."""
        return self.folder / self.entries[-1]["name"] if self.entries else None

    def newest_first(self) -> list[Path]:
        """Every kept checkpoint folder, the most recent first."""
        return [self.folder / e["name"] for e in reversed(self.entries)]

    def best(self) -> Path | None:
        """Folder of the best-ranked checkpoint, or None when none measured a score."""
        ranked = [
            (rank, -i, e["name"])
            for i, e in enumerate(self.entries)
            if (rank := _rank(e["metrics"], self.score_attribute, self.score_order)) > UNRANKED
        ]
        return self.folder / max(ranked)[2] if ranked else None

    def save(self, name: str, state: Mapping[str, Any], metrics: Mapping[str, Any]) -> Path:
        """Write checkpoint ``name`` and drop the worst ones beyond ``num_to_keep``.

        The index is written before any checkpoint is removed, so a write that fails (a full disk:
        :class:`StorageFullError`) leaves every checkpoint the index lists on disk.
        """
        folder = self.folder / name
        save_state(folder, state)
        plain = {
            k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)
        }
        latest = {"name": name, "metrics": plain}
        ranked = sorted(
            (e for e in self.entries if e["name"] != name),
            key=lambda e: _rank(e["metrics"], self.score_attribute, self.score_order),
        )
        dropped = ranked[: max(0, len(ranked) + 1 - self.num_to_keep)]
        kept = [e for e in self.entries if e["name"] != name and e not in dropped] + [latest]
        text = json.dumps({"checkpoints": kept}, indent=1).encode()
        try:
            atomic_write(self._index_path, lambda f: f.write(text))
        except OSError as exc:
            raise _write_error(self._index_path, exc) from exc
        self.entries = kept
        for entry in dropped:
            shutil.rmtree(self.folder / entry["name"], ignore_errors=True)
        return folder


_NAME = re.compile(r"^checkpoint_epoch(\d+)_iter(\d+)(_partial)?$")


def checkpoint_folders(run_dir: str | os.PathLike[str]) -> list[Path]:
    """The checkpoint folders (``checkpoint_epochEEEE_iterIIIIIIII[_partial]``) directly under
    ``run_dir`` that hold a ``state.pt``, the furthest (by iteration, then epoch) first."""
    found = []
    for folder in Path(run_dir).glob("checkpoint_epoch*"):
        match = _NAME.match(folder.name)
        if match and (folder / STATE_FILE).is_file():
            found.append(((int(match[2]), int(match[1])), folder))
    return [folder for _, folder in sorted(found, key=lambda kf: kf[0], reverse=True)]


def remove_stale_writes(run_dir: str | os.PathLike[str]) -> list[str]:
    """Remove what killed writes left in the run folder ``run_dir``: the temporary files of
    :func:`save_state` and of the run's other atomic writes (``result.json``, ``metrics.csv``,
    ``checkpoints/index.json``) whose writer is gone (see :func:`ls_train.atomic.stale_temp_files`),
    and the checkpoint folders that held nothing else (a new checkpoint whose write was killed).
    Returns what was removed, relative to ``run_dir`` (folders end with ``/``)."""
    run = Path(run_dir)
    local = run / "checkpoints"
    folders = [run, local, *sorted(run.glob("checkpoint_epoch*")), *sorted(local.glob("checkpoint_epoch*"))]
    removed = []
    for folder in folders:
        stale = stale_temp_files(folder)
        for path in stale:
            path.unlink(missing_ok=True)
            removed.append(str(path.relative_to(run)))
        if stale and folder != run and _NAME.match(folder.name):
            with suppress(OSError):
                folder.rmdir()  # only when nothing else is in it
                removed.append(f"{folder.relative_to(run)}/")
    return removed


def load_first_readable(
    candidates: Sequence[Path], *, skipped: list[str] | None = None
) -> tuple[Path, dict[str, Any]] | None:
    """The first of ``candidates`` (checkpoint folders) that loads, with its state; None if none.

    A checkpoint that cannot be read (truncated by a full disk or a kill during a copy) is
    skipped, with a line naming it and the reason appended to ``skipped``.
    """
    for folder in candidates:
        try:
            return folder, load_state(folder)
        except CheckpointError as exc:
            if skipped is not None:
                skipped.append(f"skipped an unreadable checkpoint: {exc}")
    return None
