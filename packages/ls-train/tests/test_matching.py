"""Tests of ls_train.metrics.matching: IoU from the joint histogram, StarDist matching."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linear_sum_assignment

from ls_train.metrics.labels import boxes_from_labels, compact_labels
from ls_train.metrics.matching import (
    MatchResult,
    average_results,
    iou_matrix,
    match,
    match_overlap,
    overlap_matrix,
    pool_results,
)


def _brute_iou(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reference: one mask pair at a time."""
    ig = np.array(sorted(set(np.unique(gt).tolist()) - {0}), dtype=np.int64)
    ip = np.array(sorted(set(np.unique(pred).tolist()) - {0}), dtype=np.int64)
    out = np.zeros((ig.size, ip.size))
    for a, i in enumerate(ig):
        for b, j in enumerate(ip):
            m, n = gt == i, pred == j
            out[a, b] = (m & n).sum() / (m | n).sum()
    return ig, ip, out


def _stardist_tp(scores: np.ndarray, thr: float) -> int:
    """StarDist's matching(): cost -(score >= thr) - score / (2 n) over the full matrix."""
    n = min(scores.shape)
    if n == 0:
        return 0
    costs = -(scores >= thr).astype(float) - scores / (2 * n)
    r, c = linear_sum_assignment(costs)
    return int(np.count_nonzero(scores[r, c] >= thr))


def _random_labels(rng: np.random.Generator, shape: tuple[int, int, int], n: int, big: bool) -> np.ndarray:
    lab = np.zeros(shape, dtype=np.int64)
    for k in range(1, n + 1):
        lo = rng.integers(0, np.array(shape) - 1)
        hi = lo + rng.integers(1, 4, size=3)
        lab[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = (k * 7_919_000_003) if big else k * 3
    return lab


def test_iou_matrix_hand_case() -> None:
    gt = np.zeros((1, 2, 10), dtype=np.int32)
    pred = np.zeros_like(gt)
    gt[0, 0, 0:4] = 5  # 4 voxels
    gt[0, 1, 0:6] = 9  # 6 voxels
    pred[0, 0, 1:4] = 2  # 3 voxels inside gt 5: IoU 3/4
    pred[0, 1, 3:9] = 4  # 3 of 6 inside gt 9: IoU 3 / 9
    pred[0, 0, 8:10] = 7  # on background
    ig, ip, iou = iou_matrix(gt, pred)
    assert ig.tolist() == [5, 9]
    assert ip.tolist() == [2, 4, 7]
    np.testing.assert_allclose(iou, [[0.75, 0, 0], [0, 3 / 9, 0]])
    _, _, iot = overlap_matrix(gt, pred, "iot")
    _, _, ios = overlap_matrix(gt, pred, "ios")
    np.testing.assert_allclose(iot, [[0.75, 0, 0], [0, 0.5, 0]])
    np.testing.assert_allclose(ios, [[1.0, 0, 0], [0, 0.5, 0]])


@pytest.mark.parametrize("big", [False, True], ids=["small_ids", "huge_ids"])
def test_iou_matrix_equals_per_pair_reference(big: bool) -> None:
    rng = np.random.default_rng(3)
    gt = _random_labels(rng, (6, 9, 11), 12, big)
    pred = _random_labels(rng, (6, 9, 11), 15, big=False)
    pred[gt > 0] = np.where(rng.random(int((gt > 0).sum())) < 0.5, 40, pred[gt > 0])
    ig, ip, iou = iou_matrix(gt, pred)
    rg, rp, ref = _brute_iou(gt, pred)
    np.testing.assert_array_equal(ig, rg)
    np.testing.assert_array_equal(ip, rp)
    np.testing.assert_allclose(iou, ref, rtol=0, atol=1e-12)


def test_iou_matrix_sparse_histogram_path() -> None:
    # Many instances and few overlapping voxels select np.unique over a dense bincount.
    gt = np.arange(1, 2 * 1500 + 1, dtype=np.int64).reshape(1, 2, 1500)
    pred = gt.copy()
    pred[0, 0, :] = pred[0, 1, :]  # pred i+1500 covers gt i and gt i+1500 (3000 x 1500 bins > 2**22)
    _, _, iou = iou_matrix(gt, pred)
    assert iou.shape == (3000, 1500)
    assert np.allclose(iou[np.arange(1500), np.arange(1500)], 0.5)
    assert np.allclose(iou[np.arange(1500, 3000), np.arange(1500)], 0.5)
    assert iou.sum() == pytest.approx(1500.0)


def test_compact_labels_both_paths_agree() -> None:
    lab = np.array([[0, 5, 5, 2], [2, 0, 9, 0]])
    ids, idx = compact_labels(lab)
    ids_big, idx_big = compact_labels(lab * 10**12)
    assert ids.tolist() == [2, 5, 9]
    assert ids_big.tolist() == [2 * 10**12, 5 * 10**12, 9 * 10**12]
    np.testing.assert_array_equal(idx, [0, 2, 2, 1, 1, 0, 3, 0])
    np.testing.assert_array_equal(idx_big, idx)


def test_boxes_from_labels_half_open() -> None:
    lab = np.zeros((4, 5, 6), dtype=np.uint16)
    lab[1:3, 2:5, 0:1] = 7
    lab[3, 0, 5] = 2
    ids, boxes = boxes_from_labels(lab)
    assert ids.tolist() == [2, 7]
    np.testing.assert_array_equal(boxes, [[3, 0, 5, 4, 1, 6], [1, 2, 0, 3, 5, 1]])


def test_match_hand_case_all_metrics() -> None:
    gt = np.zeros((1, 3, 10), dtype=np.int32)
    pred = np.zeros_like(gt)
    gt[0, 0, 0:4] = 1
    pred[0, 0, 1:4] = 1  # IoU 0.75 with gt 1
    gt[0, 1, 0:5] = 2
    pred[0, 1, 0:4] = 2  # IoU 0.8 with gt 2
    gt[0, 2, 0:2] = 3  # missed
    pred[0, 2, 6:9] = 3  # false positive
    r50, r75, r90 = match(gt, pred)
    assert (r50.tp, r50.fp, r50.fn) == (2, 1, 1)
    assert r50.precision == pytest.approx(2 / 3)
    assert r50.recall == pytest.approx(2 / 3)
    assert r50.accuracy == pytest.approx(2 / 4)
    assert r50.f1 == pytest.approx(4 / 6)
    assert r50.mean_matched_iou == pytest.approx((0.75 + 0.8) / 2)
    assert r50.panoptic_quality == pytest.approx((0.75 + 0.8) / (2 + 0.5 + 0.5))
    assert r50.pairs.tolist() == [[1, 1], [2, 2]]
    np.testing.assert_allclose(r50.pair_ious, [0.75, 0.8])
    assert (r75.tp, r75.fp, r75.fn) == (2, 1, 1)
    assert (r90.tp, r90.fp, r90.fn) == (0, 3, 3)
    assert r90.accuracy == 0.0 and r90.mean_matched_iou == 0.0 and r90.panoptic_quality == 0.0


def test_matching_is_optimal_not_greedy() -> None:
    # Greedy by IoU would match (A, P1) and leave B unmatched; the optimum matches both.
    ov = np.array([[0.6, 0.4], [0.35, 0.0]])
    r = match_overlap(ov, 0.3)
    assert r.tp == 2
    assert sorted(map(tuple, r.pairs.tolist())) == [(0, 1), (1, 0)]
    assert r.sum_matched_iou == pytest.approx(0.75)


def test_matching_prefers_larger_iou_among_max_count() -> None:
    ov = np.array([[0.6, 0.55], [0.55, 0.6]])
    r = match_overlap(ov, 0.5)
    assert r.tp == 2
    assert r.mean_matched_iou == pytest.approx(0.6)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(0, 6),
    st.integers(0, 6),
    st.floats(0.05, 1.0),
    st.integers(0, 2**31 - 1),
)
def test_tp_count_equals_stardist(n_true: int, n_pred: int, thr: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    scores = np.where(rng.random((n_true, n_pred)) < 0.5, rng.random((n_true, n_pred)), 0.0)
    r = match_overlap(scores, thr)
    assert r.tp == _stardist_tp(scores, thr)
    assert r.fp == n_pred - r.tp and r.fn == n_true - r.tp
    # Every matched pair clears the threshold and no id is used twice.
    assert (r.pair_ious >= thr).all()
    assert len(set(r.pairs[:, 0].tolist())) == r.tp == len(set(r.pairs[:, 1].tolist()))


def test_match_on_volumes_agrees_with_stardist_definition() -> None:
    rng = np.random.default_rng(11)
    gt = _random_labels(rng, (8, 12, 12), 25, big=False)
    pred = np.roll(gt, 1, axis=2)
    pred[pred % 4 == 0] = 0
    _, _, ref = _brute_iou(gt, pred)
    for r in match(gt, pred, thresholds=(0.1, 0.3, 0.5, 0.7)):
        assert r.tp == _stardist_tp(ref, r.threshold)
        assert r.n_true == ref.shape[0] and r.n_pred == ref.shape[1]


def test_empty_conventions_follow_stardist() -> None:
    empty = np.zeros((2, 3, 4), dtype=np.uint8)
    one = empty.copy()
    one[0, 0, 0:2] = 1
    both = match(empty, empty, thresholds=(0.5,))[0]
    assert (both.tp, both.fp, both.fn) == (0, 0, 0)
    for name in ("precision", "recall", "accuracy", "f1", "mean_matched_iou", "panoptic_quality"):
        assert getattr(both, name) == 0.0
    no_pred = match(one, empty, thresholds=(0.5,))[0]
    assert (no_pred.tp, no_pred.fp, no_pred.fn) == (0, 0, 1)
    assert no_pred.accuracy == 0.0 and no_pred.precision == 0.0 and no_pred.recall == 0.0
    no_gt = match(empty, one, thresholds=(0.5,))[0]
    assert (no_gt.tp, no_gt.fp, no_gt.fn) == (0, 1, 0)
    assert no_gt.accuracy == 0.0 and no_gt.f1 == 0.0


def test_pool_and_average() -> None:
    a = MatchResult.from_counts(threshold=0.5, criterion="iou", tp=3, n_true=4, n_pred=3, sum_matched_iou=2.4)
    b = MatchResult.from_counts(threshold=0.5, criterion="iou", tp=0, n_true=0, n_pred=2, sum_matched_iou=0.0)
    pooled = pool_results([a, b])
    assert (pooled.tp, pooled.fp, pooled.fn) == (3, 2, 1)
    assert pooled.accuracy == pytest.approx(3 / 6)
    assert pooled.panoptic_quality == pytest.approx(2.4 / (3 + 1 + 0.5))
    mean = average_results([a, b])
    assert mean["accuracy"] == pytest.approx((3 / 4 + 0.0) / 2)
    assert mean["precision"] == pytest.approx(0.5)
    assert all(math.isnan(v) for v in average_results([]).values())
    c = MatchResult.from_counts(
        threshold=0.75, criterion="iou", tp=0, n_true=1, n_pred=1, sum_matched_iou=0.0
    )
    with pytest.raises(ValueError, match="one threshold"):
        pool_results([a, c])


def test_bad_inputs_are_named() -> None:
    vol = np.zeros((2, 3, 4), dtype=np.int32)
    with pytest.raises(ValueError, match=r"gt_labels has shape \(2, 3, 4\) but pred_labels has shape"):
        iou_matrix(vol, np.zeros((2, 3, 5), dtype=np.int32))
    with pytest.raises(ValueError, match="pred_labels: label volume must have an integer dtype"):
        iou_matrix(vol, vol.astype(np.float32))
    with pytest.raises(ValueError, match=r"gt_labels: expected a label volume with 3 axes"):
        iou_matrix(vol[0], vol[0])
    with pytest.raises(ValueError, match="negative labels"):
        iou_matrix(vol - 1, vol)
    with pytest.raises(ValueError, match=r"thresholds must lie in \(0, 1\]"):
        match(vol, vol, thresholds=(0.0, 0.5))
    with pytest.raises(ValueError, match="criterion"):
        match(vol, vol, criterion="dice")  # type: ignore[arg-type]
