"""One-to-one instance matching of label volumes, with StarDist's definitions.

The overlap of every ground-truth × predicted pair comes from a single joint histogram of
``(gt index, pred index)`` over the voxels where both volumes are foreground; no per-pair
mask is ever built. At each threshold ``t`` the matching is the one-to-one assignment that
first maximises the number of pairs with overlap ``>= t`` and then the sum of their overlaps
(``scipy.optimize.linear_sum_assignment``), as StarDist's ``matching``. For IoU and ``t > 0.5``
the matching is unique.

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
from typing import Any, Literal

import numpy as np
from scipy.optimize import linear_sum_assignment

from ls_train.metrics.labels import as_label_volume, compact_labels

__all__ = [
    "CRITERIA",
    "MatchResult",
    "average_results",
    "iou_matrix",
    "match",
    "match_overlap",
    "overlap_matrix",
    "pool_results",
]

Criterion = Literal["iou", "iot", "ios"]
CRITERIA: tuple[str, ...] = ("iou", "iot", "ios")
_RATIOS = ("precision", "recall", "accuracy", "f1", "mean_matched_iou", "panoptic_quality")


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


def _check_pair(gt: Any, pred: Any) -> tuple[np.ndarray, np.ndarray]:
    g = as_label_volume(gt, "gt_labels")
    p = as_label_volume(pred, "pred_labels")
    if g.shape != p.shape:
        raise ValueError(
            f"gt_labels has shape {g.shape} but pred_labels has shape {p.shape}; they must match"
        )
    return g, p


def overlap_matrix(
    gt: Any, pred: Any, criterion: Criterion = "iou"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Overlap of every ground-truth instance with every predicted instance.

    Args:
        gt: ``(Z, Y, X)`` integer ground-truth label volume, 0 = background.
        pred: ``(Z, Y, X)`` integer predicted label volume of the same shape.
        criterion: ``"iou"`` (intersection over union), ``"iot"`` (intersection over the
            ground-truth instance) or ``"ios"`` (intersection over the predicted instance).

    Returns:
        ``(ids_gt (Ng,), ids_pred (Np,), overlap (Ng, Np) float64)``, ids sorted ascending.
    """
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
    g, p = _check_pair(gt, pred)
    g_ids, p_ids, inter, size_g, size_p = _intersections(g, p)
    inter_f = inter.astype(np.float64)
    if criterion == "iou":
        denom = size_g[:, None] + size_p[None, :] - inter
    elif criterion == "iot":
        denom = np.broadcast_to(size_g[:, None], inter.shape)
    else:
        denom = np.broadcast_to(size_p[None, :], inter.shape)
    return g_ids, p_ids, inter_f / np.maximum(denom, 1)


def iou_matrix(gt: Any, pred: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IoU of every ground-truth × predicted instance pair of two label volumes.

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
    pairs and, among those, the largest summed overlap.

    Args:
        overlap: ``(Ng, Np)`` overlaps in ``[0, 1]``.
        threshold: in ``(0, 1]``.
        ids_gt: ``(Ng,)`` ids reported in ``pairs``; default ``0..Ng-1``.
        ids_pred: ``(Np,)`` ids reported in ``pairs``; default ``0..Np-1``.
        criterion: recorded in the result.
    """
    (t,) = _check_thresholds([threshold])
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


def match(
    gt: Any,
    pred: Any,
    thresholds: Iterable[float] = (0.5, 0.75, 0.9),
    criterion: Criterion = "iou",
) -> list[MatchResult]:
    """Match the instances of two label volumes at each threshold.

    Args:
        gt: ``(Z, Y, X)`` integer ground-truth label volume, 0 = background.
        pred: ``(Z, Y, X)`` integer predicted label volume of the same shape.
        thresholds: overlap thresholds in ``(0, 1]``.
        criterion: ``"iou"``, ``"iot"`` or ``"ios"`` (see :func:`overlap_matrix`).

    Returns:
        One :class:`MatchResult` per threshold, in the order given.
    """
    ts = _check_thresholds(thresholds)
    ids_gt, ids_pred, ov = overlap_matrix(gt, pred, criterion)
    return [match_overlap(ov, t, ids_gt=ids_gt, ids_pred=ids_pred, criterion=criterion) for t in ts]


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
