"""Overlap pairs of two label volumes accumulated block by block (volumes read from disk).

:func:`~ls_train.metrics.pairs.overlap_pairs` needs both volumes in memory. A
:class:`PairAccumulator` takes them as blocks -- any cover of the volume by disjoint boxes, in
any order, e.g. read one at a time from an OME-Zarr or TIFF -- and gives the same
:class:`~ls_train.metrics.pairs.OverlapPairs`, array for array (ids, sizes, pairs and
intersections are exact integer counts, so neither the block shape nor the order changes
them). Memory: one block, plus the per-object tables and the pairs.

Each block is cut into runs along x (the voxels of one row with the same ``(gt, pred)`` labels)
and everything is counted on the runs, which are far fewer than the voxels:

- per object: voxel count and the sums of its voxels' ``z``, ``y``, ``x`` coordinates (exact
  int64; the centroid is their mean), for each volume;
- per overlapping pair: the shared voxels.

A block's rows are reduced by id (sorted, summed) and added to the running tables, which fold
their pending parts in when these outgrow the table, so the tables stay proportional to the
objects and pairs seen, not to the number of blocks. Accumulators of disjoint parts of a
volume merge exactly (:meth:`PairAccumulator.merge`), e.g. one per worker.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ls_train.metrics.pairs import OverlapPairs

__all__ = ["PairAccumulator", "overlap_pairs_from_blocks"]

_INT64_MAX = np.iinfo(np.int64).max
_FOLD_MIN_ROWS = 1 << 16  # pending rows are folded into a table once they exceed max(this, table rows)


def _reduce(keys: Sequence[np.ndarray], values: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Sort rows by ``keys`` and sum ``values`` (``(n, m)`` int64) over rows of equal keys.

    Returns:
        The unique key columns (sorted lexicographically, ``keys[0]`` most significant) and the
        summed values.
    """
    n = values.shape[0]
    if n == 0:
        return [k[:0] for k in keys], values[:0]
    order = np.argsort(keys[0], kind="stable") if len(keys) == 1 else np.lexsort(tuple(keys[::-1]))
    keys = [k[order] for k in keys]
    values = values[order]
    new = np.zeros(n, dtype=bool)
    new[0] = True
    for k in keys:
        new[1:] |= k[1:] != k[:-1]
    starts = np.flatnonzero(new)
    return [k[starts] for k in keys], np.add.reduceat(values, starts, axis=0)


class _Table:
    """Sorted unique key rows with summed int64 value columns, accumulated from parts."""

    def __init__(self, n_keys: int, n_values: int) -> None:
        self.keys = [np.zeros(0, dtype=np.int64) for _ in range(n_keys)]
        self.values = np.zeros((0, n_values), dtype=np.int64)
        self._parts: list[tuple[list[np.ndarray], np.ndarray]] = []
        self._pending = 0

    def add(self, keys: list[np.ndarray], values: np.ndarray) -> None:
        if values.shape[0] == 0:
            return
        self._parts.append((keys, values))
        self._pending += values.shape[0]
        if self._pending > max(_FOLD_MIN_ROWS, self.values.shape[0]):
            self.fold()

    def fold(self) -> None:
        if not self._parts:
            return
        parts = [(self.keys, self.values), *self._parts]
        keys = [np.concatenate([p[0][i] for p in parts]) for i in range(len(self.keys))]
        values = np.concatenate([p[1] for p in parts])
        self.keys, self.values = _reduce(keys, values)
        self._parts, self._pending = [], 0

    def merge(self, other: _Table) -> None:
        other.fold()
        self.add(list(other.keys), other.values)


def _run_labels(flat: np.ndarray, starts: np.ndarray, what: str, shape: tuple[int, ...]) -> np.ndarray:
    """The label of each run as int64, checked (every value of the block starts some run)."""
    values = flat[starts]
    if values.size and np.issubdtype(values.dtype, np.signedinteger) and values.min() < 0:
        raise ValueError(f"{what}: label block of shape {shape} holds negative labels (min {values.min()})")
    if values.size and values.dtype.kind == "u" and values.dtype.itemsize >= 8:
        top = int(values.max())
        if top > _INT64_MAX:
            raise ValueError(
                f"{what}: label id {top} does not fit in int64 (ids are reported as int64); "
                f"relabel ids above {_INT64_MAX}"
            )
    return values.astype(np.int64, copy=False)


class PairAccumulator:
    """Overlap pairs, object sizes and centroids of two label volumes, fed block by block.

    Args:
        names: How error messages name the ground-truth and the predicted volume (file paths).

    Example::

        acc = PairAccumulator()
        for window in windows:  # disjoint boxes covering the volume
            acc.add(gt_reader.read(window), pred_reader.read(window), origin=starts_of(window))
        pairs = acc.pairs()  # == overlap_pairs(gt, pred), array for array
    """

    def __init__(self, names: tuple[str, str] = ("gt_labels", "pred_labels")) -> None:
        self.names = (str(names[0]), str(names[1]))
        # per object: voxels, sum z, sum y, sum x
        self._gt = _Table(1, 4)
        self._pred = _Table(1, 4)
        self._pairs = _Table(2, 1)
        self.voxels = 0

    def add(self, gt: Any, pred: Any, origin: Sequence[int] = (0, 0, 0)) -> None:
        """Count one block: ``gt`` and ``pred`` ``(z, y, x)`` integer label blocks of one shape,
        whose first voxel is at ``origin`` in the volume (for the centroids).

        Raises:
            ValueError: shapes differ, not 3-D, a non-integer dtype, negative ids or ids beyond
                int64 (the message names the volume).
        """
        g, p = np.asarray(gt), np.asarray(pred)
        for arr, what in ((g, self.names[0]), (p, self.names[1])):
            if arr.ndim != 3:
                raise ValueError(f"{what}: expected a (z, y, x) label block, got shape {arr.shape}")
            if arr.dtype != np.bool_ and not np.issubdtype(arr.dtype, np.integer):
                raise ValueError(
                    f"{what}: label volume must have an integer dtype (0 = background), got {arr.dtype}"
                )
        if g.shape != p.shape:
            raise ValueError(
                f"{self.names[0]} block has shape {g.shape} but {self.names[1]} block has shape {p.shape}; "
                f"they must match"
            )
        n = g.size
        if n == 0:
            return
        _, ny, nx = g.shape
        gf = np.ascontiguousarray(g).reshape(-1)
        pf = np.ascontiguousarray(p).reshape(-1)
        change = np.empty(n, dtype=bool)
        change[0] = True
        np.not_equal(gf[1:], gf[:-1], out=change[1:])
        change[1:] |= pf[1:] != pf[:-1]
        change[::nx] = True  # runs stay within a row
        starts = np.flatnonzero(change)
        del change
        length = np.diff(np.append(starts, n)).astype(np.int64)
        gv = _run_labels(gf, starts, self.names[0], g.shape)
        pv = _run_labels(pf, starts, self.names[1], p.shape)
        row, x0 = np.divmod(starts.astype(np.int64), nx)
        z, y = np.divmod(row, ny)
        oz, oy, ox = (int(o) for o in origin)
        stats = np.stack(
            [length, length * (z + oz), length * (y + oy), length * (x0 + ox) + length * (length - 1) // 2],
            axis=1,
        )
        fg_g, fg_p = gv != 0, pv != 0
        self._gt.add(*_reduce([gv[fg_g]], stats[fg_g]))
        self._pred.add(*_reduce([pv[fg_p]], stats[fg_p]))
        both = fg_g & fg_p
        self._pairs.add(*_reduce([gv[both], pv[both]], length[both, None]))
        self.voxels += n

    def merge(self, other: PairAccumulator) -> None:
        """Add the counts of ``other`` (fed with blocks disjoint from this one's)."""
        self._gt.merge(other._gt)
        self._pred.merge(other._pred)
        self._pairs.merge(other._pairs)
        self.voxels += other.voxels

    def _folded(self) -> tuple[_Table, _Table, _Table]:
        for t in (self._gt, self._pred, self._pairs):
            t.fold()
        return self._gt, self._pred, self._pairs

    def pairs(self) -> OverlapPairs:
        """The instances and overlapping pairs seen so far (see :func:`overlap_pairs_from_blocks`)."""
        gt, pred, pairs = self._folded()
        ids_gt, ids_pred = gt.keys[0], pred.keys[0]
        return OverlapPairs(
            ids_gt=ids_gt.copy(),
            ids_pred=ids_pred.copy(),
            size_gt=gt.values[:, 0].copy(),
            size_pred=pred.values[:, 0].copy(),
            gt=np.searchsorted(ids_gt, pairs.keys[0]).astype(np.int64),
            pred=np.searchsorted(ids_pred, pairs.keys[1]).astype(np.int64),
            intersection=pairs.values[:, 0].copy(),
        )

    def centroids(self) -> tuple[np.ndarray, np.ndarray]:
        """``((N_true, 3), (N_pred, 3))`` float64 centroids ``(z, y, x)`` in voxels of the volume,
        rows in the order of :meth:`pairs`' ``ids_gt`` / ``ids_pred``."""
        gt, pred, _ = self._folded()
        return tuple(  # type: ignore[return-value]
            t.values[:, 1:] / np.maximum(t.values[:, :1], 1) for t in (gt, pred)
        )


def overlap_pairs_from_blocks(
    blocks: Iterable[tuple[Any, Any] | tuple[Any, Any, Sequence[int]]],
    *,
    names: tuple[str, str] = ("gt_labels", "pred_labels"),
) -> OverlapPairs:
    """:func:`~ls_train.metrics.pairs.overlap_pairs` of two volumes given as blocks.

    Args:
        blocks: ``(gt_block, pred_block)`` or ``(gt_block, pred_block, origin)`` for disjoint
            boxes that together cover the volumes (any shapes, any order). The result equals
            ``overlap_pairs`` of the whole volumes, array for array.
        names: how errors name the two volumes.
    """
    acc = PairAccumulator(names)
    for block in blocks:
        acc.add(*block)
    return acc.pairs()
