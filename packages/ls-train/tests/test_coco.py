"""Tests of ls_train.metrics.coco: COCO AP against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ls_train.metrics.coco import (
    COCO_THRESHOLDS,
    accumulate,
    evaluate_boxes,
    evaluate_image,
    evaluate_masks,
    summarize,
)
from ls_train.metrics.coco_metric import CocoAPMetric
from ls_train.metrics.overlaps import box_iou_3d, mask_iou

# Interpolated precision is 1 on the 51 recall points 0..0.50 and 2/3 on the 50 points above.
A = (51 * 1.0 + 50 * (2 / 3)) / 101
# Precision 1 up to recall 0.5, nothing above.
B = 51 / 101


def _three_predictions() -> tuple[np.ndarray, np.ndarray]:
    # rows: detections (scores 0.9, 0.8, 0.7); columns: 2 ground-truth instances.
    iou = np.array([[0.82, 0.0], [0.6, 0.1], [0.0, 0.58]])
    return iou, np.array([0.9, 0.8, 0.7])


def test_thresholds_and_recall_points_as_pycocotools() -> None:
    np.testing.assert_allclose(COCO_THRESHOLDS, np.arange(10) * 0.05 + 0.5)


def test_three_predictions_exact_ap() -> None:
    iou, scores = _three_predictions()
    ev = evaluate_image(iou, scores)
    # t = 0.5, 0.55: TP, FP, TP; t = 0.6 .. 0.8: TP, FP, FP; t >= 0.85: nothing matches.
    assert ev.matched[:, 0].tolist() == [True] * 7 + [False] * 3
    assert not ev.matched[:, 1].any()
    assert ev.matched[:, 2].tolist() == [True] * 2 + [False] * 8
    res = accumulate([ev])
    np.testing.assert_allclose(res.ap, [A, A, B, B, B, B, B, 0, 0, 0], rtol=1e-12)
    np.testing.assert_allclose(res.recall, [1, 1, 0.5, 0.5, 0.5, 0.5, 0.5, 0, 0, 0])
    s = summarize([res])
    assert s["ap"] == pytest.approx((2 * A + 5 * B) / 10, rel=1e-12)
    assert s["ap50"] == pytest.approx(A, rel=1e-12)
    assert s["ap75"] == pytest.approx(B, rel=1e-12)


def test_input_order_does_not_matter_scores_do() -> None:
    iou, scores = _three_predictions()
    perm = [2, 0, 1]
    ap = accumulate([evaluate_image(iou[perm], scores[perm])]).ap
    np.testing.assert_allclose(ap, accumulate([evaluate_image(iou, scores)]).ap)
    # A false positive ranked above the only true positive halves the precision everywhere.
    ev = evaluate_image(np.array([[0.0], [0.9]]), np.array([0.9, 0.1]))
    np.testing.assert_allclose(accumulate([ev]).ap, [0.5] * 9 + [0.0])


def test_greedy_in_score_order_as_pycocotools() -> None:
    # d0 (higher score) takes g0, its best IoU; d1 only overlaps g0 and becomes a FP,
    # although an optimal assignment would have matched both.
    iou = np.array([[0.7, 0.6], [0.65, 0.0]])
    ev = evaluate_image(iou, np.array([0.9, 0.8]))
    assert ev.matched[0].tolist() == [True, False]


def test_equal_iou_tie_goes_to_later_ground_truth() -> None:
    ev = evaluate_image(np.array([[0.7, 0.7]]), np.array([1.0]), thresholds=[0.5])
    assert ev.matched.tolist() == [[True]]
    ev2 = evaluate_image(np.array([[0.7, 0.7], [0.0, 0.7]]), np.array([1.0, 0.9]), thresholds=[0.5])
    # d0 took g1 (the later), so d1 finds g1 taken and g0 below threshold.
    assert ev2.matched.tolist() == [[True, False]]


def test_multi_image_accumulation_and_max_detections() -> None:
    ev1 = evaluate_image(np.array([[0.9]]), np.array([0.5]), thresholds=[0.5])
    ev2 = evaluate_image(np.array([[0.0], [0.8]]), np.array([0.95, 0.4]), thresholds=[0.5])
    # Merged ranking: FP (0.95), TP (0.5), TP (0.4); 2 GT. rc = .0,.5,1 pr = 0,.5,.667.
    res = accumulate([ev1, ev2], thresholds=[0.5])
    assert res.ap[0] == pytest.approx(2 / 3, rel=1e-12)
    top1 = evaluate_image(np.array([[0.0], [0.8]]), np.array([0.95, 0.4]), thresholds=[0.5], max_detections=1)
    assert top1.scores.tolist() == [0.95]
    assert accumulate([ev1, top1], thresholds=[0.5]).ap[0] == pytest.approx(51 / 101 * 0.5, rel=1e-12)


def test_no_ground_truth_is_nan_no_detection_is_zero() -> None:
    no_gt = evaluate_image(np.zeros((2, 0)), np.array([0.5, 0.4]))
    assert np.isnan(accumulate([no_gt]).ap).all()
    assert math.isnan(summarize([accumulate([no_gt])])["ap"])
    no_det = evaluate_image(np.zeros((0, 3)), np.zeros(0))
    np.testing.assert_array_equal(accumulate([no_det]).ap, np.zeros(10))


def test_masks_from_label_volumes() -> None:
    gt = np.zeros((2, 4, 10), dtype=np.int32)
    pred = np.zeros_like(gt)
    gt[0, 0, 0:10] = 3
    pred[0, 0, 0:8] = 11  # IoU 0.8
    gt[1, 2, 0:5] = 4
    pred[1, 2, 0:5] = 12  # IoU 1.0
    pred[1, 3, 0:5] = 13  # FP
    ev = evaluate_masks(gt, pred, {11: 0.9, 12: 0.8, 13: 0.95, 99: 0.1})
    assert ev.scores.tolist() == [0.95, 0.9, 0.8]
    assert ev.matched[0].tolist() == [False, True, True]
    assert ev.matched[COCO_THRESHOLDS.tolist().index(0.85)].tolist() == [False, False, True]
    with pytest.raises(ValueError, match=r"no score for predicted label id\(s\) \[13\]"):
        evaluate_masks(gt, pred, {11: 0.9, 12: 0.8})


def test_box_iou_degenerate_matches_torchvision() -> None:
    import torch
    from torchvision.ops import box_iou

    rng = np.random.default_rng(0)
    lo = rng.uniform(0, 20, size=(7, 2))
    b2 = np.concatenate([lo, lo + rng.uniform(0.5, 10, size=(7, 2))], axis=1)
    lo2 = rng.uniform(0, 20, size=(5, 2))
    c2 = np.concatenate([lo2, lo2 + rng.uniform(0.5, 10, size=(5, 2))], axis=1)

    def lift(b: np.ndarray) -> np.ndarray:  # (y1, x1, y2, x2) -> z in [2, 5)
        n = b.shape[0]
        return np.concatenate([np.full((n, 1), 2.0), b[:, :2], np.full((n, 1), 5.0), b[:, 2:]], axis=1)

    ours = box_iou_3d(lift(b2), lift(c2))
    # torchvision boxes are (x1, y1, x2, y2); IoU does not care about the axis order.
    ref = box_iou(torch.from_numpy(b2[:, [1, 0, 3, 2]]), torch.from_numpy(c2[:, [1, 0, 3, 2]])).numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-12)


def test_box_ap_degenerate_hand_computation() -> None:
    gt = np.array([[0, 0, 0, 1, 10, 10], [0, 20, 20, 1, 30, 30]], dtype=float)
    pred = np.array(
        [
            [0, 0, 0, 1, 10, 8],  # IoU 0.8 with gt 0
            [0, 0, 0, 1, 10, 6],  # IoU 0.6 with gt 0 (duplicate)
            [0, 20, 20, 1, 30, 25.8],  # IoU 0.58 with gt 1
        ]
    )
    iou = box_iou_3d(pred, gt)
    np.testing.assert_allclose(iou, [[0.8, 0], [0.6, 0], [0, 0.58]])
    res = accumulate([evaluate_boxes(gt, pred, [0.9, 0.8, 0.7])])
    # As the three-prediction case, with the first IoU 0.8 (matched up to t = 0.8).
    np.testing.assert_allclose(res.ap, [A, A, B, B, B, B, B, 0, 0, 0], rtol=1e-12)


def test_mask_iou_overlapping_masks() -> None:
    rng = np.random.default_rng(1)
    a = rng.random((4, 3, 5, 6)) > 0.6
    b = rng.random((3, 3, 5, 6)) > 0.5
    ref = np.array([[(x & y).sum() / (x | y).sum() for y in b] for x in a])
    np.testing.assert_allclose(mask_iou(a, b), ref, rtol=1e-12)
    np.testing.assert_allclose(mask_iou(a.astype(np.float32) * 0.9, b), ref, rtol=1e-12)


def test_class_aware_averages_over_classes() -> None:
    gt = np.zeros((1, 4, 8), dtype=np.int32)
    gt[0, 0, :4] = 1  # class 1
    gt[0, 1, :4] = 2  # class 2
    pred = gt.copy()
    pred[0, 3, :4] = 3  # class 2, a false positive ranked first
    meta = {"gt_classes": {1: 1, 2: 2}, "pred_classes": {1: 1, 2: 2, 3: 2}}
    m = CocoAPMetric(iou_type="mask", class_aware=True)
    m.update(gt, pred, {1: 0.9, 2: 0.5, 3: 0.8}, meta)
    out = m.compute()
    assert out["coco_mask_ap"] == pytest.approx((1.0 + 0.5) / 2)
    agnostic = CocoAPMetric(iou_type="mask")
    agnostic.update(gt, pred, {1: 0.9, 2: 0.5, 3: 0.8})
    # One class: TP (0.9), FP (0.8), TP (0.5) over 2 GT.
    assert agnostic.compute()["coco_mask_ap"] == pytest.approx(A)
    with pytest.raises(ValueError, match=r"meta\['gt_classes'\]"):
        m.update(gt, pred, {1: 0.9, 2: 0.5, 3: 0.8}, {})


def test_metric_with_detector_boxes_in_meta() -> None:
    gt = np.zeros((2, 12, 12), dtype=np.int32)
    gt[0:1, 0:10, 0:10] = 1
    pred = gt.copy()
    m = CocoAPMetric(iou_type="box")
    boxes = np.array([[0, 0, 0, 1, 10, 8], [0, 0, 0, 1, 10, 6]], dtype=float)
    m.update(gt, pred, {1: 1.0}, {"pred_boxes": boxes, "pred_box_scores": [0.9, 0.95]})
    res = m.compute()
    # ranking: IoU 0.6 (0.95) matches for t <= 0.6 and takes the GT; 0.8 then matches for 0.65..0.8.
    per_t = np.array([1, 1, 1] + [0.5] * 4 + [0, 0, 0])
    assert res["coco_box_ap"] == pytest.approx(per_t.mean())
    with pytest.raises(ValueError, match="pred_box_scores"):
        m.update(gt, pred, {1: 1.0}, {"pred_boxes": boxes})


def test_class_aware_detector_boxes_need_their_classes() -> None:
    gt = np.zeros((2, 12, 12), dtype=np.int32)
    gt[0:1, 0:10, 0:10] = 1
    gt[0:1, 10:12, 10:12] = 2
    boxes = np.array([[0, 0, 0, 1, 10, 10], [0, 10, 10, 1, 12, 12]], dtype=float)
    meta = {
        "crop_id": "c",
        "gt_classes": {1: 1, 2: 2},
        "pred_classes": {1: 1, 2: 2},
        "gt_boxes": boxes,
        "pred_boxes": boxes,
        "pred_box_scores": [0.9, 0.8],
    }
    m = CocoAPMetric(iou_type="box", class_aware=True)
    with pytest.raises(ValueError, match=r"meta\['pred_box_classes'\]"):
        m.update(gt, gt, {1: 0.9, 2: 0.8}, meta)
    # Right boxes, swapped classes: every detection is in the wrong class.
    m.update(gt, gt, {1: 0.9, 2: 0.8}, {**meta, "pred_box_classes": [2, 1], "gt_box_classes": [1, 2]})
    assert m.compute()["coco_box_ap"] == 0.0
    m.reset()
    m.update(gt, gt, {1: 0.9, 2: 0.8}, {**meta, "pred_box_classes": [1, 2], "gt_box_classes": [1, 2]})
    assert m.compute()["coco_box_ap"] == 1.0
