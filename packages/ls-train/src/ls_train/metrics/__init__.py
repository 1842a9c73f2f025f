"""Instance segmentation metrics on ``(Z, Y, X)`` label volumes, and their registry.

Names are imported lazily, so ``from ls_train.metrics import list_metrics`` loads no metric.
The dense matching that the sparse one is tested against is :mod:`ls_train.metrics.reference`.
"""

from __future__ import annotations

from ls_core import lazy_exports

_EXPORTS = {
    "Metric": "base",
    "MatchResult": "matching",
    "average_results": "matching",
    "iou_matrix": "matching",
    "match": "matching",
    "match_overlap": "matching",
    "match_pairs": "matching",
    "overlap_matrix": "matching",
    "OverlapPairs": "pairs",
    "overlap_pairs": "pairs",
    "pool_results": "matching",
    "box_iou_3d": "overlaps",
    "mask_iou": "overlaps",
    "boxes_from_labels": "labels",
    "COCO_THRESHOLDS": "coco",
    "CocoResult": "coco",
    "ImageEval": "coco",
    "accumulate": "coco",
    "evaluate_boxes": "coco",
    "evaluate_image": "coco",
    "evaluate_masks": "coco",
    "summarize": "coco",
    "MatchingMetric": "matching_metric",
    "CocoAPMetric": "coco_metric",
    "metric_key": "keys",
    "parse_metric_key": "keys",
    "MetricRegistryError": "registry",
    "create_metric": "registry",
    "get_metric": "registry",
    "list_metrics": "registry",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)
