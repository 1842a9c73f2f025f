"""COCO mask AP of whole label volumes, from their sparse overlapping pairs.

:func:`~ls_train.metrics.coco.evaluate_masks` matches detections greedily on the dense
``(D, G)`` IoU matrix: fine for a crop, not for a volume of 10^5 objects. The greedy matching
only ever looks at the pairs whose IoU reaches the threshold, and those are among the
overlapping pairs (:class:`~ls_train.metrics.pairs.OverlapPairs`), so :func:`evaluate_pairs`
runs it on them: detections in the same order (decreasing score, stable, ``max_detections``
kept), each taking the free ground-truth instance of highest IoU ``>= t`` (ties to the later
one), and returns the same :class:`~ls_train.metrics.coco.ImageEval`, array for array, for
:func:`~ls_train.metrics.coco.accumulate` and :func:`~ls_train.metrics.coco.summarize`.

At a threshold where no ground-truth instance is a candidate of two detections (every ``t >
0.5`` with IoU: an instance has at most one partner above one half), every detection with a
candidate is matched, without a loop; otherwise the detections with candidates are taken one by
one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ls_train.metrics.coco import COCO_THRESHOLDS, ImageEval, _check_thresholds
from ls_train.metrics.pairs import OverlapPairs

__all__ = ["evaluate_pairs"]


def _greedy(det: np.ndarray, gt: np.ndarray, iou: np.ndarray, n_gt: int, matched: np.ndarray) -> None:
    """Candidates ``(det, gt, iou)`` of one threshold, ``det`` in score order: mark ``matched``."""
    order = np.lexsort((gt, det))
    det, gt, iou = det[order], gt[order], iou[order]
    starts = np.flatnonzero(np.r_[True, det[1:] != det[:-1]])
    ends = np.r_[starts[1:], det.shape[0]]
    free = np.ones(n_gt, dtype=bool)
    for lo, hi in zip(starts.tolist(), ends.tolist(), strict=True):
        cand = np.where(free[gt[lo:hi]], iou[lo:hi], -1.0)
        best = cand.max()
        if best < 0:
            continue
        k = hi - lo - 1 - int(np.argmax(cand[::-1] == best))  # the later of equal IoUs
        free[gt[lo + k]] = False
        matched[det[lo]] = True


def evaluate_pairs(
    pairs: OverlapPairs,
    scores: Any,
    *,
    thresholds: Any = COCO_THRESHOLDS,
    max_detections: int | None = None,
) -> ImageEval:
    """:func:`~ls_train.metrics.coco.evaluate_masks` of two label volumes, from their pairs.

    Args:
        pairs: The overlapping pairs of the ground truth and the prediction.
        scores: ``(N_pred,)`` score of each predicted instance, in the order of ``pairs.ids_pred``.
        thresholds: IoU thresholds ``(T,)``; default COCO's 0.50:0.05:0.95.
        max_detections: keep only the top-scoring detections; ``None`` keeps all.

    Raises:
        ValueError: scores of another length, bad thresholds or ``max_detections``.
    """
    th = _check_thresholds(thresholds)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if s.size != pairs.n_pred:
        raise ValueError(f"evaluate_pairs: {s.size} scores for {pairs.n_pred} predicted instances")
    if max_detections is not None and max_detections < 1:
        raise ValueError(f"max_detections must be >= 1 or None, got {max_detections}")
    order = np.argsort(-s, kind="mergesort")
    if max_detections is not None:
        order = order[:max_detections]
    rank = np.full(pairs.n_pred, -1, dtype=np.int64)
    rank[order] = np.arange(order.size)
    iou = pairs.overlap("iou")
    kept = rank[pairs.pred] >= 0
    matched = np.zeros((th.size, order.size), dtype=bool)
    for ti, t in enumerate(th):
        cand = kept & (iou >= min(t, 1 - 1e-10))
        det, gt = rank[pairs.pred[cand]], pairs.gt[cand]
        if np.bincount(gt, minlength=1).max(initial=0) <= 1:  # no two detections want one instance
            matched[ti, det] = True
        else:
            _greedy(det, gt, iou[cand], pairs.n_true, matched[ti])
    return ImageEval(scores=s[order], matched=matched, n_gt=pairs.n_true)
