"""``ls-predict`` on an array in memory (a napari layer's data) or on a file, with the labels back in memory.

:func:`predict_array` writes the array to a temporary OME-Zarr image and runs
:func:`~ls_train.predict.run.run_prediction` on it, writing the labels into that image (no copy);
:func:`predict_file` runs it on a TIFF or OME-Zarr file with a temporary output. Both read the
label volume and the per-object table back and remove the temporary folder. So the labels are
exactly those of ``ls-predict`` with the same config, checkpoint and tiles, whatever the caller.

Progress and cancelling: ``progress(stage, done, total)`` is called after every tile
(``stage="tiles"``) and every written block group (``stage="write"``), and ``cancel()`` is asked
at the same moments; when it answers True the run stops with :class:`PredictionCancelled`.
"""

from __future__ import annotations

import copy
import csv
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ls_train.predict.run import PredictionResult, run_prediction
from ls_train.predict.table import TABLE_COLUMNS

__all__ = ["ArrayPrediction", "PredictionCancelled", "predict_array", "predict_file", "read_table"]

ProgressFn = Callable[[str, int, int], None]
CancelFn = Callable[[], bool]

_INT_COLUMNS = {"id", "class", "voxels", "tiles", "z0", "y0", "x0", "z1", "y1", "x1"}
_PROGRESS_LINE = re.compile(r"(\w+) \[[#.]*\] (\d+)/(\d+)")


class PredictionCancelled(Exception):
    """The caller's ``cancel()`` answered True; nothing is kept."""


@dataclass
class ArrayPrediction:
    """Labels and table of one prediction, in memory.

    Attributes:
        labels: ``(Z, Y, X)`` uint32 instance labels, 0 = background.
        table: The per-object table by column (:data:`~ls_train.predict.table.TABLE_COLUMNS`),
            one entry per object, in id order.
        spacing: ``(sz, sy, sx)`` in micrometres of the labels.
        result: What :func:`~ls_train.predict.run.run_prediction` reported (its paths were temporary).
    """

    labels: np.ndarray
    table: dict[str, np.ndarray]
    spacing: tuple[float, float, float]
    result: PredictionResult


class _ProgressStream:
    """A text stream for :class:`~ls_train.predict.progress.Progress` that turns each redrawn line
    into ``progress(stage, done, total)`` and raises :class:`PredictionCancelled` when asked to."""

    def __init__(self, progress: ProgressFn | None, cancel: CancelFn | None) -> None:
        self.progress = progress
        self.cancel = cancel

    def isatty(self) -> bool:  # a terminal: Progress writes every update
        return True

    def write(self, text: str) -> int:
        if self.cancel is not None and self.cancel():
            raise PredictionCancelled("prediction cancelled")
        match = _PROGRESS_LINE.search(text)
        if match and self.progress is not None:
            self.progress(match.group(1), int(match.group(2)), int(match.group(3)))
        return len(text)

    def flush(self) -> None:
        return None


def read_table(path: str | Path) -> dict[str, np.ndarray]:
    """The per-object CSV table that ``ls-predict`` writes, by column (ints where the column is)."""
    with Path(path).open(newline="") as f:
        rows = list(csv.DictReader(f))
    columns = {}
    for name in TABLE_COLUMNS:
        dtype = np.int64 if name in _INT_COLUMNS else np.float64
        columns[name] = np.array([row[name] for row in rows], dtype=np.float64).astype(dtype)
    return columns


def _with_progress(cfg: Mapping[str, Any], on: bool) -> dict[str, Any]:
    out = copy.deepcopy(dict(cfg))
    if on:  # the progress line is how tiles are reported and cancel is asked
        out["predict"] = dict(out.get("predict") or {}, progress=True)
    return out


def _run(
    cfg: Mapping[str, Any],
    input: Path,
    output: Path,
    checkpoint: str | None,
    progress: ProgressFn | None,
    cancel: CancelFn | None,
    print_fn: Callable[[str], None],
) -> ArrayPrediction:
    from ls_data.io import open_labels

    if cancel is not None and cancel():
        raise PredictionCancelled("prediction cancelled")
    stream = _ProgressStream(progress, cancel)
    result = run_prediction(
        _with_progress(cfg, progress is not None or cancel is not None),
        input=input,
        output=output,
        checkpoint=checkpoint,
        print_fn=print_fn,
        progress_stream=stream,
    )
    reader = open_labels(result.labels)
    labels = np.asarray(reader.read())
    spacing = tuple(float(s) for s in reader.spacing)
    return ArrayPrediction(labels, read_table(result.table), spacing, result)  # type: ignore[arg-type]


def _scratch(work_dir: str | Path | None) -> Path:
    parent = None if work_dir is None else Path(work_dir)
    if parent is not None:
        parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="ls-predict-", dir=parent))


def predict_array(
    cfg: Mapping[str, Any],
    image: np.ndarray,
    *,
    spacing: Sequence[float],
    checkpoint: str | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
    work_dir: str | Path | None = None,
    print_fn: Callable[[str], None] = print,
) -> ArrayPrediction:
    """Segment an in-memory volume exactly as ``ls-predict`` segments a file holding it.

    Args:
        cfg: A resolved experiment config with a ``predict`` section (e.g.
            :func:`ls_train.checkpoint_config.config_from_checkpoint`); ``predict.channels``
            selects channels of ``image``.
        image: ``(Z, Y, X)`` (one channel) or ``(C, Z, Y, X)``, any numeric dtype.
        spacing: ``(sz, sy, sx)`` in micrometres.
        checkpoint: The weights (a checkpoint folder or its ``state.pt``); None for
            ``predict.segmenter=threshold``.
        progress: Called with ``(stage, done, total)`` after each tile and written block group.
        cancel: Asked at the same moments; True stops the run with :class:`PredictionCancelled`.
        work_dir: Where the temporary folder goes (default: the system's temporary folder).
        print_fn: Where ``ls-predict``'s summary lines go.

    Raises:
        DataError: an image that is not 3-D (``(Z, Y, X)`` or ``(C, Z, Y, X)``), or NaN values.
        PredictionCancelled: ``cancel()`` answered True.
        ConfigError / CheckpointError: as :func:`~ls_train.predict.run.run_prediction`.
    """
    from ls_data.errors import DataError
    from ls_data.io import write_ome_zarr

    volume = np.asarray(image)
    if volume.ndim == 3:
        volume = volume[None]
    if volume.ndim != 4:
        raise DataError(
            f"image of shape {tuple(np.shape(image))}: expected a volume (Z, Y, X) or (C, Z, Y, X)"
        )
    scratch = _scratch(work_dir)
    try:
        path = write_ome_zarr(scratch / "image.ome.zarr", volume, spacing)
        return _run(cfg, path, path, checkpoint, progress, cancel, print_fn)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def predict_file(
    cfg: Mapping[str, Any],
    input: str | Path,
    *,
    checkpoint: str | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
    work_dir: str | Path | None = None,
    print_fn: Callable[[str], None] = print,
) -> ArrayPrediction:
    """Segment a TIFF or OME-Zarr image (``predict.level``, ``predict.channels`` apply) into
    labels in memory; the input is not changed. Arguments and errors as :func:`predict_array`."""
    scratch = _scratch(work_dir)
    try:
        return _run(cfg, Path(input), scratch / "prediction.ome.zarr", checkpoint, progress, cancel, print_fn)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
