"""Instance segmentation metrics on ``(Z, Y, X)`` label volumes, and their registry.

Names are imported lazily, so ``from ls_train.metrics import list_metrics`` loads no metric.
The dense matching that the sparse one is tested against is :mod:`ls_train.metrics.reference`.
"""

from __future__ import annotations

import importlib
from typing import Any

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


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ls_train.metrics' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"ls_train.metrics.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
