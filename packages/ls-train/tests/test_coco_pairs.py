"""COCO mask AP from sparse pairs (``evaluate_pairs``) against the dense ``evaluate_masks``."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ls_train.metrics.coco import COCO_THRESHOLDS, accumulate, evaluate_masks, summarize
from ls_train.metrics.coco_pairs import evaluate_pairs
from ls_train.metrics.pairs import overlap_pairs


def _labels(rng: np.random.Generator, shape: tuple[int, ...], n: int, longest: int) -> np.ndarray:
    """Boxes painted over each other, ids sparse (``3 * k + 1``)."""
    out = np.zeros(shape, np.int32)
    for k in range(1, n + 1):
        lo = [int(rng.integers(0, s)) for s in shape]
        size = [int(rng.integers(1, longest + 1)) for _ in shape]
        out[tuple(slice(a, min(s, a + b)) for a, b, s in zip(lo, size, shape, strict=True))] = 3 * k + 1
    return out


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    thresholds=st.sampled_from([COCO_THRESHOLDS, (0.1, 0.3, 0.5), (0.05, 0.5, 0.9)]),
    max_detections=st.sampled_from([None, 1, 5]),
    shifted=st.booleans(),
)
def test_sparse_matching_equals_evaluate_masks(seed, thresholds, max_detections, shifted):
    rng = np.random.default_rng(seed)
    gt = _labels(rng, (6, 20, 20), 12, 8)
    pred = np.roll(gt, 1, axis=2) if shifted else _labels(rng, (6, 20, 20), 12, 8)
    ids = np.unique(pred[pred > 0])
    scores = {int(i): float(rng.choice([0.3, 0.6, 0.9])) for i in ids}  # ties
    want = evaluate_masks(gt, pred, scores, thresholds=thresholds, max_detections=max_detections)
    pairs = overlap_pairs(gt, pred)
    got = evaluate_pairs(
        pairs,
        [scores[int(i)] for i in pairs.ids_pred],
        thresholds=thresholds,
        max_detections=max_detections,
    )
    np.testing.assert_array_equal(got.scores, want.scores)
    np.testing.assert_array_equal(got.matched, want.matched)
    assert got.n_gt == want.n_gt
    a, b = accumulate([got], thresholds=thresholds), accumulate([want], thresholds=thresholds)
    np.testing.assert_array_equal(a.ap, b.ap)


def test_a_tie_goes_to_the_later_instance_and_decides_the_next_detection():
    """Detection 1 overlaps two instances equally (IoU 1/3) and takes the later one, which the
    next detection (IoU 0.4 with it) then finds taken: the greedy path, as evaluate_masks."""
    gt = np.zeros((1, 1, 10), np.int32)
    gt[0, 0, 0:4], gt[0, 0, 4:8] = 1, 2
    pred = np.zeros_like(gt)
    pred[0, 0, 2:6], pred[0, 0, 6:9] = 5, 6
    scores = {5: 0.9, 6: 0.8}
    pairs = overlap_pairs(gt, pred)
    got = evaluate_pairs(pairs, [0.9, 0.8], thresholds=(0.25, 0.5))
    want = evaluate_masks(gt, pred, scores, thresholds=(0.25, 0.5))
    np.testing.assert_array_equal(got.matched, want.matched)
    assert got.matched.tolist() == [[True, False], [False, False]]
    ap50 = summarize([accumulate([got], thresholds=(0.25, 0.5))])["ap50"]
    assert ap50 == 0.0


def test_bad_scores_and_caps_are_refused():
    gt = np.ones((1, 2, 2), np.int32)
    pairs = overlap_pairs(gt, gt)
    with pytest.raises(ValueError, match="2 scores for 1 predicted"):
        evaluate_pairs(pairs, [0.5, 0.6])
    with pytest.raises(ValueError, match="max_detections"):
        evaluate_pairs(pairs, [0.5], max_detections=0)
