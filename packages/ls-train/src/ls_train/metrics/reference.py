"""Dense reference of the matching: the specification the sparse matching is tested against.

This is the implementation :mod:`ls_train.metrics.matching` had before it became sparse, kept
unchanged: the full ``(N_true, N_pred)`` int64 intersection matrix from a joint histogram, the
overlap matrix, and one ``scipy.optimize.linear_sum_assignment`` on the dense cost matrix of
the rows and columns that have a candidate, per threshold. It allocates several
``N_true × N_pred`` matrices (about 4 GB at 10^4 objects): use it for tests and benchmarks.
Same signatures and results as :func:`~ls_train.metrics.matching.match`,
:func:`~ls_train.metrics.matching.match_overlap` and
:func:`~ls_train.metrics.matching.overlap_matrix`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from ls_train.metrics.labels import compact_labels
from ls_train.metrics.matching import MatchResult, _check_thresholds, _overlap_args
from ls_train.metrics.pairs import CRITERIA, Criterion, check_label_pair

__all__ = ["match_dense", "match_overlap_dense", "overlap_matrix_dense"]


def _intersections(
    gt: np.ndarray, pred: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    g_ids, g = compact_labels(gt)
    p_ids, p = compact_labels(pred)
    ng, np_ = g_ids.size, p_ids.size
    size_g = np.bincount(g, minlength=ng + 1)[1:]
    size_p = np.bincount(p, minlength=np_ + 1)[1:]
    inter = np.zeros((ng, np_), dtype=np.int64)
    if ng and np_:
        both = (g > 0) & (p > 0)
        keys = (g[both] - 1) * np_ + (p[both] - 1)
        n_bins = ng * np_
        if n_bins <= max(4 * keys.size, 1 << 22):
            inter = np.bincount(keys, minlength=n_bins).reshape(ng, np_)
        else:  # many instances, little overlap: a sparse histogram of the keys present
            uniq, counts = np.unique(keys, return_counts=True)
            inter[uniq // np_, uniq % np_] = counts
    return g_ids, p_ids, inter, size_g, size_p


def overlap_matrix_dense(
    gt: Any, pred: Any, criterion: Criterion = "iou"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dense reference of :func:`~ls_train.metrics.matching.overlap_matrix`.

    Returns:
        ``(ids_gt (Ng,), ids_pred (Np,), overlap (Ng, Np) float64)``, ids sorted ascending.
    """
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
    g, p = check_label_pair(gt, pred)
    g_ids, p_ids, inter, size_g, size_p = _intersections(g, p)
    inter_f = inter.astype(np.float64)
    if criterion == "iou":
        denom = size_g[:, None] + size_p[None, :] - inter
    elif criterion == "iot":
        denom = np.broadcast_to(size_g[:, None], inter.shape)
    else:
        denom = np.broadcast_to(size_p[None, :], inter.shape)
    return g_ids, p_ids, inter_f / np.maximum(denom, 1)


def match_overlap_dense(
    overlap: np.ndarray,
    threshold: float,
    *,
    ids_gt: np.ndarray | None = None,
    ids_pred: np.ndarray | None = None,
    criterion: str = "iou",
) -> MatchResult:
    """Dense reference of :func:`~ls_train.metrics.matching.match_overlap`.

    One ``linear_sum_assignment`` on the rows and columns with a candidate; each candidate pair
    costs ``-(1 + overlap / (2 n))`` with ``n`` the smaller side of that matrix, others 0.
    """
    (t,) = _check_thresholds([threshold])
    ov, ids_gt, ids_pred = _overlap_args(overlap, ids_gt, ids_pred)  # the same checks as the fast path
    n_true, n_pred = ov.shape
    ok = ov >= t
    rows = np.flatnonzero(ok.any(axis=1))
    cols = np.flatnonzero(ok.any(axis=0))
    if rows.size == 0:
        return MatchResult.from_counts(
            threshold=t, criterion=criterion, tp=0, n_true=n_true, n_pred=n_pred, sum_matched_iou=0.0
        )
    sub = ov[np.ix_(rows, cols)]
    sub_ok = ok[np.ix_(rows, cols)]
    # Each candidate pair is worth 1 plus a tie-breaker below 1 / (2 n): the count comes first.
    n = min(sub.shape)
    cost = np.where(sub_ok, -(1.0 + sub / (2.0 * n)), 0.0)
    r, c = linear_sum_assignment(cost)
    keep = sub_ok[r, c]
    r, c = r[keep], c[keep]
    pair_ious = sub[r, c]
    order = np.argsort(rows[r], kind="stable")
    pairs = np.stack([ids_gt[rows[r]], ids_pred[cols[c]]], axis=1)[order].astype(np.int64)
    return MatchResult.from_counts(
        threshold=t,
        criterion=criterion,
        tp=int(keep.sum()),
        n_true=n_true,
        n_pred=n_pred,
        sum_matched_iou=math.fsum(pair_ious.tolist()),
        pairs=pairs,
        pair_ious=pair_ious[order],
    )


def match_dense(
    gt: Any,
    pred: Any,
    thresholds: Iterable[float] = (0.5, 0.75, 0.9),
    criterion: Criterion = "iou",
) -> list[MatchResult]:
    """Dense reference of :func:`~ls_train.metrics.matching.match`: one :class:`MatchResult` per threshold."""
    ts = _check_thresholds(thresholds)
    ids_gt, ids_pred, ov = overlap_matrix_dense(gt, pred, criterion)
    return [match_overlap_dense(ov, t, ids_gt=ids_gt, ids_pred=ids_pred, criterion=criterion) for t in ts]
