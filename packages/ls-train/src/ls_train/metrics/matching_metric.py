"""The ``matching`` metric: the seed's ``ap@t`` and StarDist's metrics, per crop and pooled."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from ls_train.metrics.base import Metric, crop_key
from ls_train.metrics.keys import metric_key
from ls_train.metrics.matching import (
    CRITERIA,
    Criterion,
    MatchResult,
    average_results,
    match,
    pool_results,
)

__all__ = ["MatchingMetric"]

# Result attribute -> key prefix in compute() / per_crop().
_NAMES = {
    "accuracy": "ap",
    "precision": "precision",
    "recall": "recall",
    "f1": "f1",
    "mean_matched_iou": "mean_iou",
    "panoptic_quality": "pq",
}


class MatchingMetric(Metric):
    """One-to-one matching of predicted to ground-truth instances at several IoU thresholds.

    ``compute()`` keys, for each threshold ``t`` written in percent (``@50`` for 0.5):

    - ``ap@t`` (accuracy ``TP / (TP + FP + FN)``, the seed's metric), ``precision@t``,
      ``recall@t``, ``f1@t``, ``mean_iou@t`` (mean IoU of matched pairs), ``pq@t`` (panoptic
      quality): the mean of the per-crop values (the seed's way);
    - the same with ``_pooled`` appended: TP, FP, FN and matched IoU summed over all crops first;
    - ``tp@t``, ``fp@t``, ``fn@t``: the pooled counts;
    - ``n_crops``, ``n_crops_averaged`` (crops in the per-crop mean), ``n_gt``, ``n_pred``.

    Each crop is matched by :func:`~ls_train.metrics.matching.match`: exact, from the sparse
    overlapping pairs, so memory grows with the objects of a crop, not with their product.

    A crop with neither ground truth nor prediction has all metrics 0 by StarDist's convention;
    with ``skip_empty_crops`` (the default) it is left out of the per-crop mean (it adds
    nothing to the pooled values either way).

    Args:
        thresholds: IoU thresholds in ``(0, 1]``.
        criterion: ``"iou"``, ``"iot"`` or ``"ios"`` (see :func:`~ls_train.metrics.matching.overlap_matrix`).
        skip_empty_crops: leave crops without any instance out of the per-crop mean.
    """

    name: ClassVar[str] = "matching"

    def __init__(
        self,
        *,
        thresholds: Sequence[float] = (0.5, 0.75, 0.9),
        criterion: Criterion = "iou",
        skip_empty_crops: bool = True,
    ) -> None:
        ts = [float(t) for t in thresholds]
        if not ts or any(not (0.0 < t <= 1.0) for t in ts):
            raise ValueError(
                f"matching: thresholds must be a non-empty list in (0, 1], got {list(thresholds)}"
            )
        if len(set(ts)) != len(ts):
            raise ValueError(f"matching: thresholds contain duplicates: {ts}")
        if criterion not in CRITERIA:
            raise ValueError(f"matching: criterion must be one of {CRITERIA}, got {criterion!r}")
        self.thresholds = ts
        self.criterion = criterion
        self.skip_empty_crops = bool(skip_empty_crops)
        self._crops: list[dict[str, Any]] = []

    def config(self) -> dict[str, Any]:
        return {
            "thresholds": list(self.thresholds),
            "criterion": self.criterion,
            "skip_empty_crops": self.skip_empty_crops,
        }

    def reset(self) -> None:
        self._crops = []

    def update(
        self,
        gt_labels: Any,
        pred_labels: Any,
        pred_scores: Mapping[int, float] | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        """Match one crop (``pred_scores`` is not used: matching ignores scores)."""
        results = match(gt_labels, pred_labels, self.thresholds, self.criterion)
        self.add_results(results, crop_key(meta, len(self._crops)))

    def add_results(self, results: Sequence[MatchResult], crop_id: str) -> None:
        """Add one crop (or a whole volume) matched elsewhere, e.g. by
        :func:`~ls_train.metrics.matching.match_pairs` on pairs accumulated block by block.

        Args:
            results: one result per threshold, in the order of ``thresholds``, of this criterion.

        Raises:
            ValueError: other thresholds or another criterion.
        """
        ts = [float(r.threshold) for r in results]
        if ts != self.thresholds or any(r.criterion != self.criterion for r in results):
            raise ValueError(
                f"matching: results at thresholds {ts} ({[r.criterion for r in results]}) do not fit "
                f"this metric's thresholds {self.thresholds} ({self.criterion})"
            )
        self._crops.append(
            {
                "crop_id": str(crop_id),
                "n_true": results[0].n_true,
                "n_pred": results[0].n_pred,
                "tp": [r.tp for r in results],
                "sum_iou": [r.sum_matched_iou for r in results],
            }
        )

    def _payload(self) -> list[dict[str, Any]]:
        return [dict(c, tp=list(c["tp"]), sum_iou=list(c["sum_iou"])) for c in self._crops]

    def _merge_payload(self, payload: Any) -> None:
        for c in payload:
            if len(c["tp"]) != len(self.thresholds):
                raise ValueError(f"matching: merged crop {c.get('crop_id')!r} has {len(c['tp'])} thresholds")
            self._crops.append(dict(c, tp=list(c["tp"]), sum_iou=list(c["sum_iou"])))

    def _results(self, crop: Mapping[str, Any], i: int) -> MatchResult:
        return MatchResult.from_counts(
            threshold=self.thresholds[i],
            criterion=self.criterion,
            tp=int(crop["tp"][i]),
            n_true=int(crop["n_true"]),
            n_pred=int(crop["n_pred"]),
            sum_matched_iou=float(crop["sum_iou"][i]),
        )

    def _averaged_crops(self) -> list[Mapping[str, Any]]:
        if not self.skip_empty_crops:
            return self._crops
        return [c for c in self._crops if c["n_true"] or c["n_pred"]]

    def compute(self) -> dict[str, float]:
        out: dict[str, float] = {}
        averaged = self._averaged_crops()
        for i, t in enumerate(self.thresholds):
            mean = average_results([self._results(c, i) for c in averaged])
            for attr, short in _NAMES.items():
                out[metric_key(short, t)] = mean[attr]
            if self._crops:
                pooled = pool_results([self._results(c, i) for c in self._crops])
                pooled_vals = {a: float(getattr(pooled, a)) for a in _NAMES}
                counts = {"tp": pooled.tp, "fp": pooled.fp, "fn": pooled.fn}
            else:
                pooled_vals = dict.fromkeys(_NAMES, math.nan)
                counts = {"tp": 0, "fp": 0, "fn": 0}
            for attr, short in _NAMES.items():
                out[metric_key(short, t, pooled=True)] = pooled_vals[attr]
            for k, v in counts.items():
                out[metric_key(k, t)] = float(v)
        out["n_crops"] = float(len(self._crops))
        out["n_crops_averaged"] = float(len(averaged))
        out["n_gt"] = float(sum(c["n_true"] for c in self._crops))
        out["n_pred"] = float(sum(c["n_pred"] for c in self._crops))
        return out

    def per_crop(self) -> list[dict[str, Any]]:
        rows = []
        for c in self._crops:
            row: dict[str, Any] = {"crop_id": c["crop_id"], "n_gt": c["n_true"], "n_pred": c["n_pred"]}
            for i, t in enumerate(self.thresholds):
                r = self._results(c, i)
                for attr, short in _NAMES.items():
                    row[metric_key(short, t)] = float(getattr(r, attr))
                row[metric_key("tp", t)] = r.tp
                row[metric_key("fp", t)] = r.fp
                row[metric_key("fn", t)] = r.fn
            rows.append(row)
        return rows
