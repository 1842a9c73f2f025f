"""COCO-style average precision for 3-D masks and 3-D boxes, as pycocotools computes it.

Per image (and class), detections are taken in decreasing score order (stable sort, at most
``max_detections``) and each is greedily matched to the still-unmatched ground-truth instance
with the highest IoU ``>= t`` (ties go to the later ground-truth instance, as pycocotools).
Over the dataset all detections are sorted by score again (stable), precision is made
monotone, and AP at threshold ``t`` is the mean of the interpolated precision at the 101
recall points ``0, 0.01, ..., 1``. COCO AP is the mean over ``t = 0.50:0.05:0.95``; AP50 and
AP75 the values at 0.5 and 0.75; AR the mean over ``t`` of the final recall. There are no crowd
or ignored instances and no area ranges.

Classes: every function works on one class; :func:`summarize` averages per-class results over
the classes that have ground truth (pycocotools' mean over categories). A threshold with no
ground truth at all gives NaN, where pycocotools reports -1.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ls_train.metrics.matching import iou_matrix
from ls_train.metrics.overlaps import box_iou_3d

__all__ = [
    "COCO_THRESHOLDS",
    "RECALL_POINTS",
    "CocoResult",
    "ImageEval",
    "accumulate",
    "evaluate_boxes",
    "evaluate_image",
    "evaluate_masks",
    "summarize",
]

COCO_THRESHOLDS: np.ndarray = np.linspace(0.5, 0.95, round((0.95 - 0.5) / 0.05) + 1, endpoint=True)
RECALL_POINTS: np.ndarray = np.linspace(0.0, 1.0, round((1.0 - 0.0) / 0.01) + 1, endpoint=True)


@dataclass(frozen=True)
class ImageEval:
    """Greedy matches of one image (one class).

    Attributes:
        scores: ``(D,)`` detection scores in decreasing order (stable), after truncation.
        matched: ``(T, D)`` bool, detection ``d`` matched at threshold ``t``.
        n_gt: number of ground-truth instances of the image.
    """

    scores: np.ndarray
    matched: np.ndarray
    n_gt: int


@dataclass(frozen=True)
class CocoResult:
    """AP and final recall at each threshold (NaN where there is no ground truth)."""

    thresholds: np.ndarray
    ap: np.ndarray
    recall: np.ndarray


def _check_thresholds(thresholds: Any) -> np.ndarray:
    th = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    if th.size == 0 or ((th <= 0) | (th > 1)).any():
        raise ValueError(f"IoU thresholds must be a non-empty list in (0, 1], got {th.tolist()}")
    return th


def evaluate_image(
    iou: Any,
    scores: Any,
    *,
    thresholds: Any = COCO_THRESHOLDS,
    max_detections: int | None = None,
) -> ImageEval:
    """Greedy score-ordered matching of one image's detections to its ground truth.

    Args:
        iou: ``(D, G)`` IoU of each detection (rows, in the order of ``scores``) with each
            ground-truth instance.
        scores: ``(D,)`` detection scores.
        thresholds: IoU thresholds ``(T,)``; default COCO's 0.50:0.05:0.95.
        max_detections: keep only the top-scoring detections (pycocotools' ``maxDets``);
            ``None`` keeps all.
    """
    th = _check_thresholds(thresholds)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    ov = np.asarray(iou, dtype=np.float64)
    if ov.ndim != 2 or ov.shape[0] != s.size:
        raise ValueError(f"iou must be (D, G) with D = len(scores) = {s.size}, got shape {ov.shape}")
    if max_detections is not None and max_detections < 1:
        raise ValueError(f"max_detections must be >= 1 or None, got {max_detections}")
    order = np.argsort(-s, kind="mergesort")
    if max_detections is not None:
        order = order[:max_detections]
    s, ov = s[order], ov[order]
    n_det, n_gt = ov.shape
    matched = np.zeros((th.size, n_det), dtype=bool)
    if n_gt and n_det:
        for ti, t in enumerate(th):
            t_eff = min(t, 1 - 1e-10)
            gt_free = np.ones(n_gt, dtype=bool)
            for d in np.flatnonzero((ov >= t_eff).any(axis=1)).tolist():  # others cannot match
                cand = np.where(gt_free & (ov[d] >= t_eff), ov[d], -1.0)
                best = cand.max()
                if best < 0:
                    continue
                g = n_gt - 1 - int(np.argmax(cand[::-1] == best))  # the last of equal IoUs
                gt_free[g] = False
                matched[ti, d] = True
    return ImageEval(scores=s, matched=matched, n_gt=int(n_gt))


def accumulate(evals: Sequence[ImageEval], *, thresholds: Any = COCO_THRESHOLDS) -> CocoResult:
    """AP (101-point interpolated) and recall per threshold over many images of one class.

    Args:
        evals: per-image results of :func:`evaluate_image`, all made with ``thresholds``.
        thresholds: the IoU thresholds ``(T,)`` the evals were made with.
    """
    th = _check_thresholds(thresholds)
    n_gt = sum(e.n_gt for e in evals)
    if n_gt == 0:
        nan = np.full(th.size, np.nan)
        return CocoResult(thresholds=th, ap=nan, recall=nan.copy())
    for i, e in enumerate(evals):
        if e.matched.shape != (th.size, e.scores.size):
            raise ValueError(
                f"image eval {i}: matched has shape {e.matched.shape}, expected ({th.size}, {e.scores.size})"
            )
    scores = np.concatenate([e.scores for e in evals]) if evals else np.zeros(0)
    matched = np.concatenate([e.matched for e in evals], axis=1) if evals else np.zeros((th.size, 0), bool)
    order = np.argsort(-scores, kind="mergesort")
    matched = matched[:, order]
    tps = np.cumsum(matched, axis=1, dtype=np.float64)
    fps = np.cumsum(~matched, axis=1, dtype=np.float64)
    ap = np.zeros(th.size)
    recall = np.zeros(th.size)
    n_det = scores.size
    for ti in range(th.size):
        if n_det == 0:
            continue
        rc = tps[ti] / n_gt
        pr = tps[ti] / (tps[ti] + fps[ti])  # >= 1 detection; pycocotools adds eps here (1e-16 rel.)
        pr = np.maximum.accumulate(pr[::-1])[::-1]  # precision envelope, non-increasing
        idx = np.searchsorted(rc, RECALL_POINTS, side="left")
        q = np.zeros(RECALL_POINTS.size)
        valid = idx < n_det
        q[valid] = pr[idx[valid]]
        ap[ti] = q.mean()
        recall[ti] = rc[-1]
    return CocoResult(thresholds=th, ap=ap, recall=recall)


def _at(result: CocoResult, t: float) -> float:
    hit = np.flatnonzero(np.isclose(result.thresholds, t))
    return float(result.ap[hit[0]]) if hit.size else math.nan


def summarize(per_class: Mapping[int, CocoResult] | Sequence[CocoResult]) -> dict[str, float]:
    """COCO summary over classes: ``{"ap", "ap50", "ap75", "ar"}``.

    Each value is the mean over the classes with ground truth (and over thresholds for ``ap``
    and ``ar``); NaN when no class has ground truth.
    """
    results = list(per_class.values()) if isinstance(per_class, Mapping) else list(per_class)
    results = [r for r in results if not np.isnan(r.ap).all()]
    if not results:
        return {"ap": math.nan, "ap50": math.nan, "ap75": math.nan, "ar": math.nan}

    def mean(values: list[float]) -> float:
        return math.fsum(values) / len(values)

    return {
        "ap": mean([float(v) for r in results for v in r.ap]),
        "ap50": mean([_at(r, 0.5) for r in results]),
        "ap75": mean([_at(r, 0.75) for r in results]),
        "ar": mean([float(v) for r in results for v in r.recall]),
    }


def _scores_for(ids: np.ndarray, pred_scores: Mapping[int, float], what: str) -> np.ndarray:
    missing = [int(i) for i in ids if int(i) not in pred_scores]
    if missing:
        raise ValueError(
            f"{what}: no score for predicted label id(s) {missing[:10]}{'...' if len(missing) > 10 else ''}; "
            f"pred_scores must map every non-zero id of pred_labels to its score"
        )
    return np.array([float(pred_scores[int(i)]) for i in ids], dtype=np.float64)


def evaluate_masks(
    gt_labels: Any,
    pred_labels: Any,
    pred_scores: Mapping[int, float],
    *,
    thresholds: Any = COCO_THRESHOLDS,
    max_detections: int | None = None,
) -> ImageEval:
    """:func:`evaluate_image` with mask IoU from two ``(Z, Y, X)`` label volumes.

    Args:
        gt_labels: ground-truth label volume, 0 = background.
        pred_labels: predicted label volume of the same shape.
        pred_scores: score of every non-zero id of ``pred_labels`` (ids absent from the volume
            are ignored: they have no voxels).
    """
    _, ids_pred, iou = iou_matrix(gt_labels, pred_labels)
    scores = _scores_for(ids_pred, pred_scores, "evaluate_masks")
    return evaluate_image(iou.T, scores, thresholds=thresholds, max_detections=max_detections)


def evaluate_boxes(
    gt_boxes: Any,
    pred_boxes: Any,
    pred_scores: Any,
    *,
    thresholds: Any = COCO_THRESHOLDS,
    max_detections: int | None = None,
) -> ImageEval:
    """:func:`evaluate_image` with 3-D box IoU.

    Args:
        gt_boxes: ``(G, 6)`` ground-truth boxes ``(z1, y1, x1, z2, y2, x2)``.
        pred_boxes: ``(D, 6)`` predicted boxes.
        pred_scores: ``(D,)`` their scores.
    """
    iou = box_iou_3d(pred_boxes, gt_boxes)
    scores = np.asarray(pred_scores, dtype=np.float64).reshape(-1)
    if scores.size != iou.shape[0]:
        raise ValueError(f"pred_scores has {scores.size} values for {iou.shape[0]} pred_boxes")
    return evaluate_image(iou, scores, thresholds=thresholds, max_detections=max_detections)
