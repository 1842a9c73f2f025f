"""The ``coco_ap`` metric: COCO-style AP over IoU 0.50:0.95 for 3-D masks and boxes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import numpy as np

from ls_train.metrics.base import Metric, crop_key
from ls_train.metrics.coco import COCO_THRESHOLDS, ImageEval, accumulate, evaluate_image, summarize
from ls_train.metrics.labels import boxes_from_labels
from ls_train.metrics.matching import iou_matrix
from ls_train.metrics.overlaps import box_iou_3d

__all__ = ["CocoAPMetric"]

IoUType = Literal["mask", "box", "both"]
_KINDS = {"mask": ("mask",), "box": ("box",), "both": ("mask", "box")}


def _class_map(meta: Mapping[str, Any] | None, key: str, ids: np.ndarray) -> np.ndarray:
    if meta is None or key not in meta:
        raise ValueError(f"coco_ap with class_aware=True needs meta[{key!r}]: a mapping label id -> class id")
    mapping = meta[key]
    missing = [int(i) for i in ids if int(i) not in mapping]
    if missing:
        raise ValueError(f"coco_ap: meta[{key!r}] has no class for label id(s) {missing[:10]}")
    return np.array([int(mapping[int(i)]) for i in ids], dtype=np.int64)


class CocoAPMetric(Metric):
    """COCO average precision of scored instances, for masks, boxes or both.

    Masks are the instances of the label volumes; boxes are their bounding boxes, unless
    ``meta`` carries detector boxes: ``meta["pred_boxes"]`` ``(N, 6)`` with
    ``meta["pred_box_scores"]`` ``(N,)`` and optionally ``meta["gt_boxes"]`` ``(G, 6)``, which
    are then used for box AP. With ``class_aware`` such boxes also need
    ``meta["pred_box_classes"]`` ``(N,)`` (and ``meta["gt_box_classes"]`` ``(G,)`` with
    ``gt_boxes``).

    ``compute()`` keys, for each evaluated kind ``k`` in ``mask`` / ``box``: ``coco_k_ap`` (mean
    over IoU 0.50:0.05:0.95), ``coco_k_ap50``, ``coco_k_ap75``, ``coco_k_ar`` (mean final recall);
    NaN when no crop has ground truth.

    Crops are ordered by ``meta["crop_id"]`` before accumulation, so that merging the states of
    several workers gives exactly the single-process result when crop ids are unique.

    Args:
        iou_type: ``"mask"``, ``"box"`` or ``"both"``.
        max_detections: keep the top-scoring detections per crop (pycocotools' ``maxDets``,
            100 there); ``None`` keeps all, which suits crops with hundreds of cells.
        class_aware: evaluate each class separately and average over classes (pycocotools'
            mean over categories); then ``meta["gt_classes"]`` and ``meta["pred_classes"]`` map
            label ids to class ids.
    """

    name: ClassVar[str] = "coco_ap"

    def __init__(
        self,
        *,
        iou_type: IoUType = "both",
        max_detections: int | None = None,
        class_aware: bool = False,
    ) -> None:
        if iou_type not in _KINDS:
            raise ValueError(f"coco_ap: iou_type must be one of {list(_KINDS)}, got {iou_type!r}")
        if max_detections is not None and (isinstance(max_detections, bool) or int(max_detections) < 1):
            raise ValueError(
                f"coco_ap: max_detections must be a positive int or None, got {max_detections!r}"
            )
        self.iou_type = iou_type
        self.max_detections = None if max_detections is None else int(max_detections)
        self.class_aware = bool(class_aware)
        self._records: list[dict[str, Any]] = []
        self._crop_ids: list[str] = []

    def config(self) -> dict[str, Any]:
        return {
            "iou_type": self.iou_type,
            "max_detections": self.max_detections,
            "class_aware": self.class_aware,
        }

    def reset(self) -> None:
        self._records = []
        self._crop_ids = []

    def _add(
        self,
        index: int,
        crop: str,
        kind: str,
        iou: np.ndarray,
        scores: np.ndarray,
        cls_gt: np.ndarray,
        cls_pred: np.ndarray,
    ) -> None:
        for c in np.union1d(cls_gt, cls_pred).tolist():
            rows, cols = cls_pred == c, cls_gt == c
            ev = evaluate_image(iou[np.ix_(rows, cols)], scores[rows], max_detections=self.max_detections)
            self._records.append(
                {
                    "crop_index": index,
                    "crop_id": crop,
                    "kind": kind,
                    "class": int(c),
                    "scores": ev.scores,
                    "matched": ev.matched,
                    "n_gt": ev.n_gt,
                }
            )

    def _meta_boxes(
        self, meta: Mapping[str, Any], crop: str, gt_labels: Any, cls_gt_labels: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Box IoU ``(D, G)``, scores and classes from detector boxes given in ``meta``."""
        if "pred_box_scores" not in meta:
            raise ValueError(
                f"coco_ap, crop {crop!r}: meta['pred_boxes'] given without meta['pred_box_scores']"
            )
        if "gt_boxes" in meta:
            gt_boxes = np.asarray(meta["gt_boxes"], dtype=np.float64)
        else:
            gt_boxes = boxes_from_labels(gt_labels, "gt_labels")[1]
        iou = box_iou_3d(meta["pred_boxes"], gt_boxes)
        n_det, n_gt = iou.shape
        box_scores = np.asarray(meta["pred_box_scores"], dtype=np.float64).reshape(-1)
        if box_scores.size != n_det:
            raise ValueError(
                f"coco_ap, crop {crop!r}: meta['pred_box_scores'] has {box_scores.size} values for "
                f"{n_det} meta['pred_boxes']"
            )
        if not self.class_aware:
            return iou, box_scores, np.ones(n_gt, np.int64), np.ones(n_det, np.int64)
        cls_pred = self._box_classes(meta, "pred_box_classes", n_det, crop)
        if "gt_boxes" in meta:
            cls_gt = self._box_classes(meta, "gt_box_classes", n_gt, crop)
        else:
            cls_gt = cls_gt_labels
        return iou, box_scores, cls_gt, cls_pred

    @staticmethod
    def _box_classes(meta: Mapping[str, Any], key: str, n: int, crop: str) -> np.ndarray:
        if key not in meta:
            raise ValueError(
                f"coco_ap with class_aware=True, crop {crop!r}: detector boxes in meta need meta[{key!r}], "
                f"the class of each box ({n},)"
            )
        classes = np.asarray(meta[key]).reshape(-1).astype(np.int64)
        if classes.size != n:
            raise ValueError(f"coco_ap, crop {crop!r}: meta[{key!r}] has {classes.size} values for {n} boxes")
        return classes

    def update(
        self,
        gt_labels: Any,
        pred_labels: Any,
        pred_scores: Mapping[int, float] | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        """Add one crop; ``pred_scores`` must give the score of every predicted label id."""
        if pred_scores is None:
            raise ValueError("coco_ap.update needs pred_scores: a mapping predicted label id -> score")
        crop = crop_key(meta, len(self._crop_ids))
        ids_gt, ids_pred, mask_iou = iou_matrix(gt_labels, pred_labels)
        missing = [int(i) for i in ids_pred if int(i) not in pred_scores]
        if missing:
            raise ValueError(
                f"coco_ap, crop {crop!r}: pred_scores has no score for label id(s) {missing[:10]}"
            )
        scores = np.array([float(pred_scores[int(i)]) for i in ids_pred], dtype=np.float64)
        if self.class_aware:
            cls_gt = _class_map(meta, "gt_classes", ids_gt)
            cls_pred = _class_map(meta, "pred_classes", ids_pred)
        else:
            cls_gt, cls_pred = np.ones(ids_gt.size, np.int64), np.ones(ids_pred.size, np.int64)
        index = len(self._crop_ids)
        kinds = _KINDS[self.iou_type]
        if "mask" in kinds:
            self._add(index, crop, "mask", mask_iou.T, scores, cls_gt, cls_pred)
        if "box" in kinds:
            if meta is not None and "pred_boxes" in meta:
                box_iou, box_scores, box_cls_gt, box_cls_pred = self._meta_boxes(
                    meta, crop, gt_labels, cls_gt
                )
                self._add(index, crop, "box", box_iou, box_scores, box_cls_gt, box_cls_pred)
            else:
                _, gt_boxes = boxes_from_labels(gt_labels, "gt_labels")
                _, pred_boxes = boxes_from_labels(pred_labels, "pred_labels")
                self._add(index, crop, "box", box_iou_3d(pred_boxes, gt_boxes), scores, cls_gt, cls_pred)
        self._crop_ids.append(crop)

    def _payload(self) -> dict[str, Any]:
        return {"crop_ids": list(self._crop_ids), "records": [dict(r) for r in self._records]}

    def _merge_payload(self, payload: Any) -> None:
        offset = len(self._crop_ids)
        for r in payload["records"]:
            if np.shape(r["matched"]) != (COCO_THRESHOLDS.size, np.size(r["scores"])):
                raise ValueError(f"coco_ap: merged record of crop {r.get('crop_id')!r} is malformed")
            self._records.append(dict(r, crop_index=int(r["crop_index"]) + offset))
        self._crop_ids.extend(str(c) for c in payload["crop_ids"])

    def _summary(self, records: list[dict[str, Any]], kind: str) -> dict[str, float]:
        by_class: dict[int, list[ImageEval]] = {}
        for r in sorted(records, key=lambda r: r["crop_id"]):  # stable: equal ids keep arrival order
            if r["kind"] == kind:
                ev = ImageEval(
                    scores=np.asarray(r["scores"]), matched=np.asarray(r["matched"]), n_gt=r["n_gt"]
                )
                by_class.setdefault(r["class"], []).append(ev)
        summary = summarize({c: accumulate(evs) for c, evs in by_class.items()})
        return {f"coco_{kind}_{k}": v for k, v in summary.items()}

    def compute(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for kind in _KINDS[self.iou_type]:
            out.update(self._summary(self._records, kind))
        return out

    def per_crop(self) -> list[dict[str, Any]]:
        crops: list[list[dict[str, Any]]] = [[] for _ in self._crop_ids]
        for r in self._records:
            crops[r["crop_index"]].append(r)
        rows = []
        for crop, recs in zip(self._crop_ids, crops, strict=True):
            row: dict[str, Any] = {"crop_id": crop}
            for kind in _KINDS[self.iou_type]:
                row.update(self._summary(recs, kind))
            rows.append(row)
        return rows
