"""One-to-one instance matching of label volumes, with StarDist's definitions, from sparse overlaps.

At each threshold ``t`` the matching is the one-to-one assignment of ground-truth to predicted
instances that first maximises the number of pairs with overlap ``>= t`` and then the sum of
their overlaps, as StarDist's ``matching`` (which solves it with one
``scipy.optimize.linear_sum_assignment`` on the dense cost matrix ``-(1 + overlap / (2 n))``;
:mod:`ls_train.metrics.reference` keeps that dense implementation as the reference).

Here it works from the sparse set of overlapping pairs and never allocates
``N_true × N_pred`` (:func:`~ls_train.metrics.pairs.overlap_pairs`: one pass over the voxels,
memory proportional to the pairs). The candidate pairs (overlap ``>= t``) form a bipartite
graph, and the optimum decomposes over its connected components:

- a pair whose two instances have no other candidate is matched, with no solver. For IoU and
  ``t > 0.5`` every pair is of this kind (an instance has at most one partner above 0.5), so the
  matching is a filter; at ``t = 0.5`` exactly, an instance split into two exact halves has two
  partners at IoU 0.5;
- a component with a single instance on one side (one prediction covering several
  ground-truth instances, or the reverse, as IoT / IoS often give) matches its pair of
  largest overlap;
- any other component (``scipy.sparse.csgraph.connected_components``) is solved exactly with
  ``linear_sum_assignment`` on its own dense block, costs ``-(1 + overlap / (2 n_c))`` with
  ``n_c`` the block's smaller side, or, for a block of more than ``2**16`` cells, with
  ``scipy.sparse.csgraph.min_weight_full_bipartite_matching`` on its sparse edges (its time
  grows about as the square of the component: 0.3 s for a chain of 10^4 instances, 7 s for
  5·10^4; components that large need candidate pairs percolating through the volume).

TP, FP, FN, the summed overlap and every ratio equal those of the dense reference; the pairs
too wherever the optimal matching is unique (always for IoU ``> 0.5``). Where several matchings
are equally optimal (equal counts and equal summed overlap) the two may return different ones;
a star component then takes its first pair in ``(gt id, pred id)`` order. (Both solve the
count-then-sum objective in float64: sums closer than about ``n · 1e-16`` are ties to the
dense reference with ``n`` its matrix side, to the sparse one only below ``n_c · 1e-16``.)

Definitions (``TP`` matched pairs, ``FP`` unmatched predictions, ``FN`` unmatched ground truth):

- precision ``TP / (TP + FP)``, recall ``TP / (TP + FN)``,
- accuracy ``TP / (TP + FP + FN)`` (the Cellpose / StarDist "average precision", the seed's
  ``ap@t``), F1 ``2 TP / (2 TP + FP + FN)``,
- mean matched IoU ``sum(IoU over TP) / TP``,
- panoptic quality ``sum(IoU over TP) / (TP + FP / 2 + FN / 2)``.

Empty-set convention (StarDist's): every ratio whose numerator involves ``TP`` is 0 when
``TP == 0`` -- including a crop where both ground truth and prediction are empty (all metrics
0.0, counts all 0). :class:`~ls_train.metrics.matching_metric.MatchingMetric` can leave such
crops out of its per-crop average.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix, csr_matrix
from scipy.sparse.csgraph import connected_components, min_weight_full_bipartite_matching

from ls_train.metrics.pairs import CRITERIA, Criterion, OverlapPairs, overlap_pairs

__all__ = [
    "CRITERIA",
    "MatchResult",
    "OverlapPairs",
    "average_results",
    "iou_matrix",
    "match",
    "match_overlap",
    "match_pairs",
    "overlap_matrix",
    "overlap_pairs",
    "pool_results",
]

_RATIOS = ("precision", "recall", "accuracy", "f1", "mean_matched_iou", "panoptic_quality")
_DENSE_BLOCK = 1 << 16  # a component of at most this many (gt x pred) cells is solved on a dense block


def _check_criterion(criterion: str) -> None:
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")


def overlap_matrix(
    gt: Any, pred: Any, criterion: Criterion = "iou"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Overlap of every ground-truth instance with every predicted instance, as a dense matrix.

    The matrix has ``N_true × N_pred`` entries: :func:`match` does not use it (see
    :func:`~ls_train.metrics.pairs.overlap_pairs` for the sparse pairs).

    Args:
        gt: ``(Z, Y, X)`` integer ground-truth label volume, 0 = background.
        pred: ``(Z, Y, X)`` integer predicted label volume of the same shape.
        criterion: ``"iou"`` (intersection over union), ``"iot"`` (intersection over the
            ground-truth instance) or ``"ios"`` (intersection over the predicted instance).

    Returns:
        ``(ids_gt (Ng,), ids_pred (Np,), overlap (Ng, Np) float64)``, ids sorted ascending.
    """
    _check_criterion(criterion)
    pairs = overlap_pairs(gt, pred)
    return pairs.ids_gt, pairs.ids_pred, pairs.dense(criterion)


def iou_matrix(gt: Any, pred: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IoU of every ground-truth × predicted instance pair of two label volumes (dense).

    Args:
        gt: ``(Z, Y, X)`` integer label volume, 0 = background.
        pred: ``(Z, Y, X)`` integer label volume of the same shape.

    Returns:
        ``(ids_gt (Ng,), ids_pred (Np,), iou (Ng, Np) float64)``.
    """
    return overlap_matrix(gt, pred, "iou")


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if num > 0 and den > 0 else 0.0


@dataclass(frozen=True, eq=False)  # holds arrays: compare fields explicitly
class MatchResult:
    """Counts and StarDist metrics of a matching at one threshold.

    Attributes:
        threshold: overlap threshold ``t``; a pair matches when its overlap is ``>= t``.
        criterion: ``"iou"``, ``"iot"`` or ``"ios"``.
        tp, fp, fn: true positives (matched pairs), false positives, false negatives.
        n_true, n_pred: number of ground-truth and predicted instances.
        sum_matched_iou: sum of the overlap over the matched pairs.
        precision, recall, accuracy, f1, mean_matched_iou, panoptic_quality: see the module doc.
        pairs: ``(TP, 2)`` int64 ``(gt id, pred id)`` of the matched pairs (empty when pooled).
        pair_ious: ``(TP,)`` their overlaps.
    """

    threshold: float
    criterion: str
    tp: int
    fp: int
    fn: int
    n_true: int
    n_pred: int
    sum_matched_iou: float
    precision: float
    recall: float
    accuracy: float
    f1: float
    mean_matched_iou: float
    panoptic_quality: float
    pairs: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), dtype=np.int64), repr=False)
    pair_ious: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)

    @classmethod
    def from_counts(
        cls,
        *,
        threshold: float,
        criterion: str,
        tp: int,
        n_true: int,
        n_pred: int,
        sum_matched_iou: float,
        pairs: np.ndarray | None = None,
        pair_ious: np.ndarray | None = None,
    ) -> MatchResult:
        """Build a result (all ratios) from ``TP``, the instance counts and the summed overlap."""
        if not 0 <= tp <= min(n_true, n_pred):
            raise ValueError(f"tp={tp} must lie in [0, min(n_true={n_true}, n_pred={n_pred})]")
        fp, fn = n_pred - tp, n_true - tp
        return cls(
            threshold=float(threshold),
            criterion=criterion,
            tp=int(tp),
            fp=int(fp),
            fn=int(fn),
            n_true=int(n_true),
            n_pred=int(n_pred),
            sum_matched_iou=float(sum_matched_iou),
            precision=_ratio(tp, tp + fp),
            recall=_ratio(tp, tp + fn),
            accuracy=_ratio(tp, tp + fp + fn),
            f1=_ratio(2 * tp, 2 * tp + fp + fn),
            mean_matched_iou=_ratio(sum_matched_iou, tp),
            panoptic_quality=_ratio(sum_matched_iou, tp + fp / 2 + fn / 2),
            pairs=np.zeros((0, 2), dtype=np.int64) if pairs is None else pairs,
            pair_ious=np.zeros(0) if pair_ious is None else pair_ious,
        )

    def as_dict(self) -> dict[str, float]:
        """Counts and ratios as a flat dict of floats (no pairs)."""
        keys = ("threshold", "tp", "fp", "fn", "n_true", "n_pred", "sum_matched_iou", *_RATIOS)
        return {k: float(getattr(self, k)) for k in keys}


def _check_thresholds(thresholds: Iterable[float]) -> tuple[float, ...]:
    ts = tuple(float(t) for t in thresholds)
    if not ts:
        raise ValueError("thresholds is empty; give at least one threshold in (0, 1]")
    bad = [t for t in ts if not (0.0 < t <= 1.0)]
    if bad:
        raise ValueError(f"thresholds must lie in (0, 1], got {bad} in {list(ts)}")
    return ts


def _overlap_args(overlap: Any, ids_gt: Any, ids_pred: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A ``(Ng, Np)`` float64 overlap matrix and the ``(Ng,)`` / ``(Np,)`` ids of its rows and
    columns (default ``0..N-1``), checked."""
    ov = np.asarray(overlap, dtype=np.float64)
    if ov.ndim != 2:
        raise ValueError(f"overlap must be a (Ng, Np) matrix, got shape {ov.shape}")
    n_true, n_pred = ov.shape
    ids_gt = np.arange(n_true) if ids_gt is None else np.asarray(ids_gt)
    ids_pred = np.arange(n_pred) if ids_pred is None else np.asarray(ids_pred)
    if ids_gt.shape != (n_true,) or ids_pred.shape != (n_pred,):
        raise ValueError(
            f"ids_gt {ids_gt.shape} / ids_pred {ids_pred.shape} do not fit overlap of shape {ov.shape}"
        )
    return ov, ids_gt, ids_pred


def _rank_in_group(labels: np.ndarray) -> np.ndarray:
    """For each element, how many elements before it carry the same label."""
    order = np.argsort(labels, kind="stable")
    ordered = labels[order]
    starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
    first = np.repeat(starts, np.diff(np.append(starts, labels.size)))
    rank = np.empty(labels.size, dtype=np.int64)
    rank[order] = np.arange(labels.size) - first
    return rank


def _solve_block(
    rows: np.ndarray, cols: np.ndarray, score: np.ndarray, n_rows: int, n_cols: int
) -> np.ndarray:
    """Exact matching of one component: the most pairs, then the largest summed overlap.

    Args:
        rows, cols: ``(E,)`` the component's candidate pairs, local indices in
            ``[0, n_rows)`` / ``[0, n_cols)``.
        score: ``(E,)`` their overlaps.

    Returns:
        Indices into the ``E`` pairs of the matched ones.
    """
    n = min(n_rows, n_cols)
    worth = 1.0 + score / (2.0 * n)  # the tie-breaker sums below 1/2: the count comes first
    if n_rows * n_cols <= _DENSE_BLOCK:
        cost = np.zeros((n_rows, n_cols))
        cost[rows, cols] = -worth
        edge = np.full((n_rows, n_cols), -1, dtype=np.int64)
        edge[rows, cols] = np.arange(rows.size)
        r, c = linear_sum_assignment(cost)
        e = edge[r, c]
        return e[e >= 0]
    # A large component: sparse.  Each row also gets a private dummy column of weight 1, so a
    # full matching of the rows exists; every row is matched once, so the dummies add a constant.
    dummy = np.arange(n_rows)
    graph = csr_matrix(
        (
            np.concatenate([1.0 + worth, np.ones(n_rows)]),
            (np.concatenate([rows, dummy]), np.concatenate([cols, n_cols + dummy])),
        ),
        shape=(n_rows, n_cols + n_rows),
    )
    r, c = min_weight_full_bipartite_matching(graph, maximize=True)
    real = c < n_cols
    keys = rows.astype(np.int64) * n_cols + cols
    order = np.argsort(keys)
    return order[np.searchsorted(keys[order], r[real].astype(np.int64) * n_cols + c[real])]


def _assign_components(gi: np.ndarray, pj: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Exact matching of candidate pairs whose instances have other candidates, per component."""
    ug, g = np.unique(gi, return_inverse=True)
    up, p = np.unique(pj, return_inverse=True)
    m, k = ug.size, up.size
    graph = coo_matrix((np.ones(g.size, dtype=np.int8), (g, m + p)), shape=(m + k, m + k))
    n_comp, label = connected_components(graph, directed=False)
    comp_g, comp_p = label[:m], label[m:]
    rows_in = np.bincount(comp_g, minlength=n_comp)
    cols_in = np.bincount(comp_p, minlength=n_comp)
    comp = comp_g[g]
    chosen = [np.zeros(0, dtype=np.int64)]
    star = (rows_in == 1) | (cols_in == 1)
    es = np.flatnonzero(star[comp])
    if es.size:  # one instance on one side: its candidate of largest overlap (first on ties)
        order = es[np.lexsort((es, -score[es], comp[es]))]
        c = comp[order]
        chosen.append(order[np.concatenate(([True], c[1:] != c[:-1]))])
    eg = np.flatnonzero(~star[comp])
    if eg.size:
        local_g, local_p = _rank_in_group(comp_g), _rank_in_group(comp_p)
        order = eg[np.argsort(comp[eg], kind="stable")]
        c = comp[order]
        for block in np.split(order, np.flatnonzero(c[1:] != c[:-1]) + 1):
            b = comp[block[0]]
            picked = _solve_block(local_g[g[block]], local_p[p[block]], score[block], rows_in[b], cols_in[b])
            chosen.append(block[picked])
    return np.concatenate(chosen)


def _assign(gi: np.ndarray, pj: np.ndarray, score: np.ndarray, n_true: int, n_pred: int) -> np.ndarray:
    """The optimal one-to-one matching among candidate pairs (see the module doc).

    Args:
        gi, pj: ``(E,)`` int64 ground-truth / predicted index of each candidate pair (unique
            pairs), in ``[0, n_true)`` / ``[0, n_pred)``.
        score: ``(E,)`` their overlaps.

    Returns:
        Sorted indices into the ``E`` candidates of the matched pairs.
    """
    if gi.size == 0:
        return np.zeros(0, dtype=np.int64)
    deg_g = np.bincount(gi, minlength=n_true)
    deg_p = np.bincount(pj, minlength=n_pred)
    alone = (deg_g[gi] == 1) & (deg_p[pj] == 1)
    chosen = np.flatnonzero(alone)
    rest = np.flatnonzero(~alone)
    if rest.size:
        chosen = np.concatenate([chosen, rest[_assign_components(gi[rest], pj[rest], score[rest])]])
    return np.sort(chosen)


def _matched_result(
    *,
    threshold: float,
    criterion: str,
    n_true: int,
    n_pred: int,
    gt_ids: np.ndarray,
    pred_ids: np.ndarray,
    score: np.ndarray,
) -> MatchResult:
    """A :class:`MatchResult` from the matched pairs' ids and overlaps (sorted by gt)."""
    tp = int(score.size)
    if tp == 0:
        return MatchResult.from_counts(
            threshold=threshold, criterion=criterion, tp=0, n_true=n_true, n_pred=n_pred, sum_matched_iou=0.0
        )
    return MatchResult.from_counts(
        threshold=threshold,
        criterion=criterion,
        tp=tp,
        n_true=n_true,
        n_pred=n_pred,
        sum_matched_iou=math.fsum(score.tolist()),
        pairs=np.stack([gt_ids, pred_ids], axis=1).astype(np.int64),
        pair_ious=score.astype(np.float64, copy=False),
    )


def match_overlap(
    overlap: np.ndarray,
    threshold: float,
    *,
    ids_gt: np.ndarray | None = None,
    ids_pred: np.ndarray | None = None,
    criterion: str = "iou",
) -> MatchResult:
    """Optimal one-to-one matching on a precomputed ``(Ng, Np)`` overlap matrix.

    Among all one-to-one matchings of pairs with overlap ``>= threshold`` the one with the most
    pairs and, among those, the largest summed overlap (solved per connected component of the
    candidate pairs, see the module doc).

    Args:
        overlap: ``(Ng, Np)`` overlaps in ``[0, 1]``.
        threshold: in ``(0, 1]``.
        ids_gt: ``(Ng,)`` ids reported in ``pairs``; default ``0..Ng-1``.
        ids_pred: ``(Np,)`` ids reported in ``pairs``; default ``0..Np-1``.
        criterion: recorded in the result.
    """
    (t,) = _check_thresholds([threshold])
    ov, ids_gt, ids_pred = _overlap_args(overlap, ids_gt, ids_pred)
    n_true, n_pred = ov.shape
    gi, pj = np.nonzero(ov >= t)
    score = ov[gi, pj]
    sel = _assign(gi.astype(np.int64), pj.astype(np.int64), score, n_true, n_pred)
    return _matched_result(
        threshold=t,
        criterion=criterion,
        n_true=n_true,
        n_pred=n_pred,
        gt_ids=ids_gt[gi[sel]],
        pred_ids=ids_pred[pj[sel]],
        score=score[sel],
    )


def match_pairs(
    pairs: OverlapPairs,
    thresholds: Iterable[float] = (0.5, 0.75, 0.9),
    criterion: Criterion = "iou",
) -> list[MatchResult]:
    """Match the instances of :func:`~ls_train.metrics.pairs.overlap_pairs` at each threshold.

    Args:
        pairs: the instances and overlapping pairs of two label volumes.
        thresholds: overlap thresholds in ``(0, 1]``.
        criterion: ``"iou"``, ``"iot"`` or ``"ios"`` (see :func:`overlap_matrix`).

    Returns:
        One :class:`MatchResult` per threshold, in the order given.
    """
    ts = _check_thresholds(thresholds)
    _check_criterion(criterion)
    ov = pairs.overlap(criterion)
    results = []
    for t in ts:
        cand = np.flatnonzero(ov >= t)
        gi, pj, score = pairs.gt[cand], pairs.pred[cand], ov[cand]
        sel = _assign(gi, pj, score, pairs.n_true, pairs.n_pred)
        results.append(
            _matched_result(
                threshold=t,
                criterion=criterion,
                n_true=pairs.n_true,
                n_pred=pairs.n_pred,
                gt_ids=pairs.ids_gt[gi[sel]],
                pred_ids=pairs.ids_pred[pj[sel]],
                score=score[sel],
            )
        )
    return results


def match(
    gt: Any,
    pred: Any,
    thresholds: Iterable[float] = (0.5, 0.75, 0.9),
    criterion: Criterion = "iou",
) -> list[MatchResult]:
    """Match the instances of two label volumes at each threshold.

    One pass over the voxels for the overlapping pairs
    (:func:`~ls_train.metrics.pairs.overlap_pairs`), then :func:`match_pairs`; memory grows with
    the number of objects and overlapping pairs, never with ``N_true × N_pred``.

    Args:
        gt: ``(Z, Y, X)`` integer ground-truth label volume, 0 = background.
        pred: ``(Z, Y, X)`` integer predicted label volume of the same shape.
        thresholds: overlap thresholds in ``(0, 1]``.
        criterion: ``"iou"``, ``"iot"`` or ``"ios"`` (see :func:`overlap_matrix`).

    Returns:
        One :class:`MatchResult` per threshold, in the order given.

    Raises:
        ValueError: bad thresholds or criterion; volumes of different shapes, non-integer,
            negative or beyond-int64 labels (naming ``gt_labels`` / ``pred_labels``).
    """
    ts = _check_thresholds(thresholds)
    _check_criterion(criterion)
    return match_pairs(overlap_pairs(gt, pred), ts, criterion)


def pool_results(results: Sequence[MatchResult]) -> MatchResult:
    """Pool per-crop results at one threshold: sum TP / FP / FN and matched IoU, then the ratios.

    Raises:
        ValueError: empty input or results at different thresholds / criteria.
    """
    if not results:
        raise ValueError("pool_results needs at least one MatchResult")
    t, crit = results[0].threshold, results[0].criterion
    if any(r.threshold != t or r.criterion != crit for r in results):
        raise ValueError("pool_results: all results must share one threshold and criterion")
    return MatchResult.from_counts(
        threshold=t,
        criterion=crit,
        tp=sum(r.tp for r in results),
        n_true=sum(r.n_true for r in results),
        n_pred=sum(r.n_pred for r in results),
        sum_matched_iou=math.fsum(r.sum_matched_iou for r in results),
    )


def average_results(results: Sequence[MatchResult]) -> dict[str, float]:
    """Mean of each ratio over per-crop results (the seed's way), summed exactly (``math.fsum``).

    Returns:
        ``{"precision", "recall", "accuracy", "f1", "mean_matched_iou", "panoptic_quality"}``
        averaged; NaN for every key when ``results`` is empty.
    """
    if not results:
        return dict.fromkeys(_RATIOS, math.nan)
    return {k: math.fsum(getattr(r, k) for r in results) / len(results) for k in _RATIOS}
