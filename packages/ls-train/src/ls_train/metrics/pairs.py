"""The sparse overlap of two label volumes: the (gt, pred) pairs that share voxels.

Two instance label volumes of ``N_true`` and ``N_pred`` objects overlap in ``K`` pairs, and
``K`` is of the order of the number of objects (an object touches a few others), never
``N_true × N_pred``. :func:`overlap_pairs` finds them from chunks of about two million voxels,
with memory proportional to ``K`` plus the number of objects:

1. per volume (two light passes: the largest id, then the counts), the sorted non-zero ids and
   their sizes (voxel counts): a ``bincount`` when the ids are at most a few times the voxel
   count, sorted run counts otherwise (e.g. 64-bit hashes);
2. one joint pass for the pairs: per chunk, each voxel's ``(gt index, pred index)``, both
   foreground, encoded as one int64 key ``gt * N_pred + pred`` on the compact indices;
   consecutive equal keys are run-length encoded (an object's voxels come in runs along x),
   the runs sorted and summed, and the partial counts of the chunks merged at the end. A joint
   histogram of at most ``2**20`` bins (small crops) is a ``bincount`` instead.

The overlaps are then ``intersection / (size_gt + size_pred - intersection)`` (IoU),
``/ size_gt`` (IoT) or ``/ size_pred`` (IoS), computed with the same floating-point operations
as the dense matrix of :func:`ls_train.metrics.reference.overlap_matrix_dense`, so each value
is bit-identical to its entry there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ls_train.metrics.labels import as_label_volume

__all__ = ["CRITERIA", "Criterion", "OverlapPairs", "check_label_pair", "overlap_pairs"]

Criterion = Literal["iou", "iot", "ios"]
CRITERIA: tuple[str, ...] = ("iou", "iot", "ios")

CHUNK_VOXELS = 1 << 21  # voxels per step of the pass over the volumes
_DENSE_BINS = 1 << 20  # a joint histogram of at most this many bins is counted with bincount
_INT64_MAX = np.iinfo(np.int64).max


def check_label_pair(gt: Any, pred: Any) -> tuple[np.ndarray, np.ndarray]:
    """``gt`` and ``pred`` as label volumes of one shape (errors name ``gt_labels`` / ``pred_labels``)."""
    g = as_label_volume(gt, "gt_labels")
    p = as_label_volume(pred, "pred_labels")
    if g.shape != p.shape:
        raise ValueError(
            f"gt_labels has shape {g.shape} but pred_labels has shape {p.shape}; they must match"
        )
    return g, p


@dataclass(frozen=True, eq=False)  # holds arrays: compare fields explicitly
class OverlapPairs:
    """The instances of two label volumes and the pairs of them that share voxels.

    Attributes:
        ids_gt: ``(N_true,)`` int64 sorted non-zero ground-truth ids.
        ids_pred: ``(N_pred,)`` int64 sorted non-zero predicted ids.
        size_gt: ``(N_true,)`` int64 voxel count of each ground-truth instance.
        size_pred: ``(N_pred,)`` int64 voxel count of each predicted instance.
        gt: ``(K,)`` int64 index into ``ids_gt`` of each overlapping pair.
        pred: ``(K,)`` int64 index into ``ids_pred`` of each pair.
        intersection: ``(K,)`` int64 voxels the pair shares (``>= 1``).

    Pairs are sorted by ``(gt, pred)`` and unique.
    """

    ids_gt: np.ndarray
    ids_pred: np.ndarray
    size_gt: np.ndarray
    size_pred: np.ndarray
    gt: np.ndarray
    pred: np.ndarray
    intersection: np.ndarray

    @property
    def n_true(self) -> int:
        return int(self.ids_gt.size)

    @property
    def n_pred(self) -> int:
        return int(self.ids_pred.size)

    @property
    def n_pairs(self) -> int:
        return int(self.gt.size)

    def overlap(self, criterion: Criterion = "iou") -> np.ndarray:
        """``(K,)`` float64 overlap of each pair: ``"iou"``, ``"iot"`` (over the ground-truth
        instance) or ``"ios"`` (over the predicted instance)."""
        if criterion not in CRITERIA:
            raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
        inter = self.intersection
        if criterion == "iou":
            denom = self.size_gt[self.gt] + self.size_pred[self.pred] - inter
        elif criterion == "iot":
            denom = self.size_gt[self.gt]
        else:
            denom = self.size_pred[self.pred]
        return inter.astype(np.float64) / np.maximum(denom, 1)

    def dense(self, criterion: Criterion = "iou") -> np.ndarray:
        """The ``(N_true, N_pred)`` float64 overlap matrix (zero where instances do not overlap).

        Allocates ``N_true × N_pred`` values: for small crops and COCO-style evaluation only.
        """
        out = np.zeros((self.n_true, self.n_pred), dtype=np.float64)
        out[self.gt, self.pred] = self.overlap(criterion)
        return out


def _chunks(arrays: tuple[np.ndarray, ...], chunk: int) -> Callable[[], Iterator[tuple[np.ndarray, ...]]]:
    """A factory of iterators over the same voxels of ``arrays`` (one shape), as 1-D chunks.

    C-contiguous arrays are cut into flat views; others into z slabs (each slab copied once).
    """
    shape = arrays[0].shape
    if all(a.flags.c_contiguous for a in arrays):
        flats = tuple(a.reshape(-1) for a in arrays)
        n = flats[0].size

        def flat_chunks() -> Iterator[tuple[np.ndarray, ...]]:
            for start in range(0, n, chunk):
                yield tuple(f[start : start + chunk] for f in flats)

        return flat_chunks
    plane = max(1, int(np.prod(shape[1:], dtype=np.int64)))
    step = max(1, chunk // plane)

    def slab_chunks() -> Iterator[tuple[np.ndarray, ...]]:
        for z in range(0, shape[0], step):
            yield tuple(a[z : z + step].reshape(-1) for a in arrays)

    return slab_chunks


def _runs(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Run-length encoding of a 1-D array: ``(value of each run, its length)``."""
    if values.size == 0:
        return values, np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(values[1:] != values[:-1]) + 1
    starts = np.concatenate(([0], starts))
    lengths = np.diff(np.append(starts, values.size))
    return values[starts], lengths.astype(np.int64, copy=False)


def _sum_by_value(values: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique ``values`` and the sum of ``counts`` over each (an exact integer sum)."""
    if values.size == 0:
        return values, counts
    order = np.argsort(values, kind="stable")
    values, counts = values[order], counts[order]
    starts = np.concatenate(([0], np.flatnonzero(values[1:] != values[:-1]) + 1))
    return values[starts], np.add.reduceat(counts, starts)


class _Relabel:
    """The sorted non-zero ids of a label volume, their sizes, and the map id -> 1..N (0 = background)."""

    def __init__(
        self, chunks: Callable[[], Iterator[tuple[np.ndarray, ...]]], what: str, n_voxels: int
    ) -> None:
        top = 0
        for (c,) in chunks():
            if c.size:
                top = max(top, int(c.max()))
        if top > _INT64_MAX:
            raise ValueError(
                f"{what}: label id {top} does not fit in int64 (ids are reported as int64); "
                f"relabel ids above {_INT64_MAX}"
            )
        self._lut: np.ndarray | None = None
        self._sorted: np.ndarray | None = None
        if top <= 4 * n_voxels + (1 << 16):
            counts = np.zeros(top + 1, dtype=np.int64)
            for (c,) in chunks():
                counts += np.bincount(c.astype(np.intp, copy=False), minlength=top + 1)
            ids = np.flatnonzero(counts[1:]) + 1
            self.sizes = counts[ids]
            self._lut = np.zeros(top + 1, dtype=np.int64)
            self._lut[ids] = np.arange(1, ids.size + 1)
            self.ids = ids.astype(np.int64)
        else:  # ids far beyond the voxel count (hashes): sorted runs instead of a lookup table
            parts_v, parts_c = [], []
            for (c,) in chunks():
                v, n = _sum_by_value(*_runs(c))
                parts_v.append(v)
                parts_c.append(n)
            values, sizes = _sum_by_value(np.concatenate(parts_v), np.concatenate(parts_c))
            keep = values != 0
            self._sorted = values[keep]
            self.sizes = sizes[keep].astype(np.int64, copy=False)
            self.ids = self._sorted.astype(np.int64)

    def index(self, chunk: np.ndarray) -> np.ndarray:
        """``(n,)`` int64: 0 for background, ``k + 1`` for the voxels of ``ids[k]``."""
        if self._lut is not None:
            return self._lut[chunk]
        assert self._sorted is not None
        idx = np.searchsorted(self._sorted, chunk).astype(np.int64) + 1
        idx[chunk == 0] = 0
        return idx


def overlap_pairs(gt: Any, pred: Any, *, chunk_voxels: int = CHUNK_VOXELS) -> OverlapPairs:
    """The instances of two label volumes and their overlapping pairs, in one pass over the voxels.

    Memory: the two per-id tables, the ``K`` pairs, and a few arrays of ``chunk_voxels`` values;
    never ``N_true × N_pred``.

    Args:
        gt: ``(Z, Y, X)`` integer ground-truth label volume, 0 = background (any integer dtype;
            ids need not be consecutive; at most ``2**63 - 1``).
        pred: ``(Z, Y, X)`` integer predicted label volume of the same shape.
        chunk_voxels: voxels handled per step.

    Raises:
        ValueError: shapes differ, a non-integer dtype, negative ids, ids beyond int64 (the
            message names ``gt_labels`` or ``pred_labels``).
    """
    g, p = check_label_pair(gt, pred)
    chunk = max(1, int(chunk_voxels))
    n_voxels = int(g.size)
    rel_g = _Relabel(_chunks((g,), chunk), "gt_labels", n_voxels)
    rel_p = _Relabel(_chunks((p,), chunk), "pred_labels", n_voxels)
    n_true, n_pred = rel_g.ids.size, rel_p.ids.size
    n_bins = n_true * n_pred
    empty = np.zeros(0, dtype=np.int64)
    keys, inter = empty, empty
    if n_bins:
        hist = np.zeros(n_bins, dtype=np.int64) if n_bins <= _DENSE_BINS else None
        parts_k, parts_c = [], []
        for cg, cp in _chunks((g, p), chunk)():
            ig, ip = rel_g.index(cg), rel_p.index(cp)
            both = (ig > 0) & (ip > 0)
            key = (ig[both] - 1) * n_pred + (ip[both] - 1)
            if hist is not None:
                hist += np.bincount(key, minlength=n_bins)
            elif key.size:
                k, c = _sum_by_value(*_runs(key))
                parts_k.append(k)
                parts_c.append(c)
        if hist is not None:
            keys = np.flatnonzero(hist)
            inter = hist[keys]
        elif parts_k:
            keys, inter = _sum_by_value(np.concatenate(parts_k), np.concatenate(parts_c))
    keys = keys.astype(np.int64, copy=False)
    return OverlapPairs(
        ids_gt=rel_g.ids,
        ids_pred=rel_p.ids,
        size_gt=rel_g.sizes.astype(np.int64, copy=False),
        size_pred=rel_p.sizes.astype(np.int64, copy=False),
        gt=keys // max(n_pred, 1),
        pred=keys % max(n_pred, 1),
        intersection=inter.astype(np.int64, copy=False),
    )
