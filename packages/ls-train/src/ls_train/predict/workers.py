"""The two kinds of work of a prediction, each runnable in this process or in a Ray worker.

- :class:`TileWorker` reads tiles, runs the segmenter and stores the label tiles (pass 1);
- :func:`paint_blocks` paints output blocks from the stored tiles, writes them and returns
  their statistics (pass 3).

Everything they receive is picklable (readers and writers reopen their files lazily), so the
same code runs locally and in Ray actors and tasks, and gives the same result.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from ls_train.predict.checks import is_floating, require_finite
from ls_train.predict.stitch import StitchPlan, paint_block
from ls_train.predict.table import BlockStats, block_stats
from ls_train.predict.tilestore import TileStore
from ls_train.predict.tiling import Box, TileGrid
from ls_train.predict.volume import InputVolume
from ls_train.trainer.faults import fault_point

__all__ = ["MemoryKeeper", "PaintJob", "SegmenterSpec", "TileReport", "TileWorker", "paint_blocks"]


def _malloc_trim() -> Callable[[], Any] | None:
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        return lambda: libc.malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        return None


_TRIM = _malloc_trim()


def _resident_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class MemoryKeeper:
    """Gives the heap's free pages back to the system when resident memory has crept up.

    Tiles of varying content make the model allocate tensors of varying sizes; glibc keeps what
    is freed, so a process's resident memory creeps up tile after tile (by about 0.6 GB over
    120 tiles of the quickstart model, then it levels off). :meth:`check` calls glibc's
    ``malloc_trim`` when the resident memory exceeds the level after the last trim by ``slack``
    (a fraction of it, at least 64 MB). As the model's freed activations alone exceed that, in
    practice this trims after every tile: peak memory 1.6 instead of 2.0 GB, for about 13 % more
    time (the next forward pass faults the pages in again); hence opt-in
    (``predict.trim_memory``). A no-op without glibc or ``/proc``.
    """

    def __init__(self, slack: float = 0.1) -> None:
        self.slack = float(slack)
        self._level: int | None = None

    def check(self) -> bool:
        """Trim if memory crept up; returns whether it trimmed."""
        if _TRIM is None:
            return False
        now = _resident_bytes()
        if now is None:
            return False
        if self._level is None:
            self._level = now
            return False
        if now <= self._level + max(64 << 20, int(self.slack * self._level)):
            return False
        _TRIM()
        self._level = _resident_bytes() or now
        return True


@dataclass
class SegmenterSpec:
    """How to build a segmenter in whatever process runs it (see :mod:`ls_train.predict.segmenters`).

    Attributes:
        name: ``detector`` or ``threshold``.
        cfg: The experiment config (detector: the model to build).
        checkpoint: Weights of the detector.
        kwargs: Segmenter arguments (thresholds, normalisation, ...).
        device: Where a detector runs.
    """

    name: str
    cfg: dict[str, Any]
    checkpoint: str | None
    kwargs: dict[str, Any]
    device: str = "cpu"

    def build(self, model: Any = None) -> Callable[[Sequence[np.ndarray]], list[Any]]:
        """The segmenter; a detector over ``model`` when given (already loaded from the
        checkpoint), else over the checkpoint's weights loaded now."""
        from ls_train.predict.segmenters import DetectorSegmenter, ThresholdSegmenter

        if self.name == "threshold":
            return ThresholdSegmenter(**self.kwargs)
        from ls_train.evaluation.run import model_from_checkpoint
        from ls_train.factory import build_transforms

        if model is None:
            model = model_from_checkpoint(self.cfg, str(self.checkpoint))
        kwargs = dict(self.kwargs)
        if kwargs.pop("per_tile_transforms", False):
            kwargs["tile_transform"] = build_transforms(self.cfg, train=False)
        return DetectorSegmenter(model, device=self.device, **kwargs)


@dataclass
class TileReport:
    """One finished tile: its index, instance count and the model's forward seconds for it (the
    whole segmenter call for segmenters that do not report a forward pass)."""

    index: int
    instances: int
    seconds: float


class TileWorker:
    """Segments tiles and stores them (pass 1). Reads the next batch while the model runs.

    Args:
        volume: The input.
        grid: The tile grid.
        store: The work folder.
        segmenter: How to build the segmenter (built on first use, once per worker).
        batch_size: Tiles per segmenter call.
        threads: Torch threads in this worker (None: leave torch's setting).
        trim_memory: Give freed memory back to the system after tiles (:class:`MemoryKeeper`).
        segmenter_instance: ``segmenter`` already built (in this process); None builds it on
            first use.
    """

    def __init__(
        self,
        volume: InputVolume,
        grid: TileGrid,
        store: TileStore,
        segmenter: SegmenterSpec,
        *,
        batch_size: int = 1,
        threads: int | None = None,
        trim_memory: bool = False,
        segmenter_instance: Callable[[Sequence[np.ndarray]], list[Any]] | None = None,
    ) -> None:
        self.volume = volume
        self.grid = grid
        self.store = store
        self.spec = segmenter
        self.batch_size = int(batch_size)
        self.threads = threads
        self._segmenter: Any = segmenter_instance
        self._memory = MemoryKeeper() if trim_memory else None
        self._check_finite = is_floating(volume.dtype)

    def _read(self, indices: Sequence[int]) -> list[np.ndarray]:
        return [self._read_tile(i) for i in indices]

    def _read_tile(self, index: int) -> np.ndarray:
        """Tile ``index`` as float32; NaN or infinite values in it raise NonFiniteInputError (a
        floating-point volume too large for :func:`~ls_train.predict.checks.scan_finite` is
        checked here, tile by tile, as it is read)."""
        box = self.grid.box(index)
        tile = np.asarray(self.volume.read(tuple(slice(lo, hi) for lo, hi in box)), dtype=np.float32)
        if self._check_finite:
            note = (
                f"; the tiles finished so far stay in {self.store.root}: a run on the input corrected "
                f"in place resumes from them, a run with other settings or another input replaces them"
            )
            require_finite(tile, self.volume.path, self.volume.channels, box, f"tile {index}", note)
        return tile

    def run(
        self, indices: Sequence[int], on_tile: Callable[[TileReport], None] | None = None
    ) -> list[TileReport]:
        """Segment and store ``indices`` in batches; returns one report per tile.

        ``on_tile`` is called with each report as its tile is segmented (for progress).
        """
        import torch

        if self.threads is not None:
            torch.set_num_threads(int(self.threads))
        if self._segmenter is None:
            self._segmenter = self.spec.build()
        batches = [list(indices[k : k + self.batch_size]) for k in range(0, len(indices), self.batch_size)]
        reports: list[TileReport] = []
        with ThreadPoolExecutor(max_workers=2) as pool:
            reading = pool.submit(self._read, batches[0]) if batches else None
            writes = []
            for k, batch in enumerate(batches):
                images = reading.result()
                if k + 1 < len(batches):
                    reading = pool.submit(self._read, batches[k + 1])
                start = time.perf_counter()
                tiles = self._segmenter(images)
                seconds = time.perf_counter() - start
                del images
                if self._memory is not None:
                    self._memory.check()
                # a detector reports its forward pass alone; other segmenters count whole
                seconds = getattr(self._segmenter, "last_forward_seconds", seconds) / len(batch)
                for index, tile in zip(batch, tiles, strict=True):
                    while len(writes) > 2 * self.batch_size:  # bound the tiles waiting to be written
                        writes.pop(0).result()
                    writes.append(pool.submit(self.store.write, index, tile))
                    reports.append(TileReport(index, int(tile.scores.shape[0]), seconds))
                    if on_tile is not None:
                        on_tile(reports[-1])
                    fault_point("predict.tile")  # after a tile was handed to the writer
            for w in writes:
                w.result()
        return reports


@dataclass
class PaintJob:
    """Everything pass 3 needs for any block: geometry, stitch plan, stored tiles, writers."""

    grid: TileGrid
    plan: StitchPlan
    store: TileStore
    labels: Any
    image: Any = None
    volume: InputVolume | None = None


def paint_blocks(job: PaintJob, blocks: Sequence[Box]) -> list[BlockStats]:
    """Paint, write (labels, and the image copy when ``job.image``) and measure ``blocks``."""

    def read_tile(t: int, region: Box) -> np.ndarray:
        return job.store.read(t, region)

    out = []
    for block in blocks:
        labels = paint_block(job.grid, job.plan, read_tile, block)
        offset = tuple(lo for lo, _ in block)
        job.labels.write(offset, labels)
        if job.image is not None and job.volume is not None:
            job.image.write(offset, job.volume.read(tuple(slice(lo, hi) for lo, hi in block)))
        out.append(block_stats(labels, offset))
    return out
