"""Sparse matching (ls_train.metrics.pairs, ls_train.metrics.matching) against the dense reference.

The dense implementation (ls_train.metrics.reference) is the specification: on random label
volumes -- touching objects, objects split and merged, shifted predictions, empty volumes,
non-contiguous and huge ids, several dtypes -- the sparse matching gives the same counts, sums
and ratios at every threshold and criterion, and the same pairs wherever the optimum is unique.
"""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ls_train.metrics import matching, pairs
from ls_train.metrics.matching import match, match_overlap, match_pairs, overlap_matrix
from ls_train.metrics.pairs import overlap_pairs
from ls_train.metrics.reference import match_dense, match_overlap_dense, overlap_matrix_dense

THRESHOLDS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.75, 0.9, 1.0)
CRITERIA = ("iou", "iot", "ios")
PRED_MODES = ("shift", "split", "merge", "noisy", "independent", "same", "empty")
ID_STYLES = ("compact", "sparse", "int32_top", "int64_huge")


def _boxes(rng: np.random.Generator, shape: tuple[int, int, int], n: int) -> np.ndarray:
    """Ids 1..n painted as random boxes; later boxes cover earlier ones (touching, cut objects)."""
    lab = np.zeros(shape, dtype=np.int64)
    for k in range(1, n + 1):
        lo = rng.integers(0, np.array(shape))
        hi = lo + rng.integers(1, 5, size=3)
        lab[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = k
    return lab


def _predict(rng: np.random.Generator, gt: np.ndarray, mode: str) -> np.ndarray:
    n = int(gt.max())
    if mode == "shift":
        return np.roll(gt, int(rng.choice([-1, 1])), axis=int(rng.integers(0, 3)))
    if mode == "same":
        return gt.copy()
    if mode == "empty":
        return np.zeros_like(gt)
    if mode == "split":  # each object cut along a random axis into two ids
        axis = int(rng.integers(0, 3))
        coord = np.indices(gt.shape)[axis]
        cut = rng.integers(0, gt.shape[axis], size=n + 1)
        return np.where((gt > 0) & (coord >= cut[gt]), gt + n, gt)
    if mode == "merge":  # random groups of objects share one id
        lut = np.concatenate(([0], rng.integers(1, max(n // 2, 1) + 1, size=n)))
        return lut[gt]
    if mode == "noisy":  # shifted, some voxels erased, some extra objects on top
        pred = np.roll(gt, 1, axis=2)
        pred[rng.random(gt.shape) < 0.15] = 0
        extra = _boxes(rng, gt.shape, 3)
        return np.where(extra > 0, extra + n, pred)
    return _boxes(rng, gt.shape, int(rng.integers(0, 2 * n + 2)))


def _restyle(rng: np.random.Generator, lab: np.ndarray, style: str, dtype: str) -> np.ndarray:
    """Map ids 1..max to distinct ids of a style, in a dtype that holds them."""
    n = int(lab.max())
    if style == "compact":
        ids = np.arange(1, n + 1)
    elif style == "sparse":
        ids = rng.choice(np.arange(1, 50 * n + 2), size=n, replace=False)
    elif style == "int32_top":  # ends at 2**31 - 1
        ids = 2**31 - 1 - rng.choice(np.arange(10 * n + 1), size=n, replace=False)
        ids[:1] = 2**31 - 1
    else:
        ids = rng.choice(np.arange(1, 10**6), size=n, replace=False).astype(np.int64) * (2**42) + 7
    lut = np.concatenate(([0], ids)).astype(np.int64)
    out = lut[lab]
    if dtype == "int32" and out.max(initial=0) < 2**31:
        return out.astype(np.int32)
    if dtype == "uint16" and out.max(initial=0) < 2**16:
        return out.astype(np.uint16)
    return out.astype(np.uint64 if dtype == "uint64" else np.int64)


def _volumes(seed: int, n_true: int, mode: str, style: str, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(3, 9)), int(rng.integers(4, 14)), int(rng.integers(4, 14)))
    gt = _boxes(rng, shape, n_true)
    pred = _predict(rng, gt, mode)
    # Compact after painting: covered objects leave gaps, which _restyle's ids keep.
    return _restyle(rng, gt, style, dtype), _restyle(rng, pred, style, dtype)


def _assert_same(sparse: matching.MatchResult, dense: matching.MatchResult, ov: np.ndarray, ids) -> None:
    """Identical counts, sums, ratios; the pairs identical or an equally optimal matching."""
    assert sparse.as_dict() == dense.as_dict()
    assert sparse.criterion == dense.criterion
    if sparse.pairs.shape == dense.pairs.shape and np.array_equal(sparse.pairs, dense.pairs):
        np.testing.assert_array_equal(sparse.pair_ious, dense.pair_ious)
        return
    # Several optimal matchings (equal count and equal summed overlap): a valid one of them. Never
    # for IoUs of label volumes above 0.5, where an object has at most one partner over 0.5; a random
    # overlap matrix (test_match_overlap_equals_dense_reference) can give a row two such entries.
    above = ov > 0.5
    one_partner = ov.size == 0 or (above.sum(axis=0).max() <= 1 and above.sum(axis=1).max() <= 1)
    unique = sparse.criterion == "iou" and sparse.threshold > 0.5 and one_partner
    assert not unique, "IoU > 0.5 has a unique matching"
    ids_gt, ids_pred = ids
    g = np.searchsorted(ids_gt, sparse.pairs[:, 0])
    p = np.searchsorted(ids_pred, sparse.pairs[:, 1])
    assert len(set(g.tolist())) == len(set(p.tolist())) == sparse.tp
    np.testing.assert_array_equal(sparse.pair_ious, ov[g, p])
    assert (sparse.pair_ious >= sparse.threshold).all()
    assert np.all(np.diff(sparse.pairs[:, 0]) > 0)


@settings(max_examples=300, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_true=st.integers(0, 14),
    mode=st.sampled_from(PRED_MODES),
    style=st.sampled_from(ID_STYLES),
    dtype=st.sampled_from(("int32", "uint16", "uint64", "int64")),
    criterion=st.sampled_from(CRITERIA),
    sorted_histogram=st.booleans(),
)
def test_match_equals_dense_reference(
    seed: int, n_true: int, mode: str, style: str, dtype: str, criterion: str, sorted_histogram: bool
) -> None:
    gt, pred = _volumes(seed, n_true, mode, style, dtype)
    with pytest.MonkeyPatch.context() as mp:
        if sorted_histogram:  # the pair counts of large volumes: sorted runs, not a bincount
            mp.setattr(pairs, "_DENSE_BINS", 0)
        sparse = match(gt, pred, THRESHOLDS, criterion)
    dense = match_dense(gt, pred, THRESHOLDS, criterion)
    ids_gt, ids_pred, ov = overlap_matrix_dense(gt, pred, criterion)
    assert len(sparse) == len(dense) == len(THRESHOLDS)
    for s, d in zip(sparse, dense, strict=True):
        _assert_same(s, d, ov, (ids_gt, ids_pred))


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_true=st.integers(0, 14),
    mode=st.sampled_from(PRED_MODES),
    style=st.sampled_from(ID_STYLES),
    chunk=st.sampled_from((1, 7, 64, 1 << 21)),
)
def test_overlap_pairs_are_the_dense_matrix_bit_for_bit(
    seed: int, n_true: int, mode: str, style: str, chunk: int
) -> None:
    gt, pred = _volumes(seed, n_true, mode, style, "int64")
    op = overlap_pairs(gt, pred, chunk_voxels=chunk)
    for criterion in CRITERIA:
        ids_gt, ids_pred, ov = overlap_matrix_dense(gt, pred, criterion)
        np.testing.assert_array_equal(op.ids_gt, ids_gt)
        np.testing.assert_array_equal(op.ids_pred, ids_pred)
        assert op.ids_gt.dtype == op.ids_pred.dtype == np.int64
        nz_g, nz_p = np.nonzero(ov)
        np.testing.assert_array_equal(op.gt, nz_g)  # sorted by (gt, pred), unique
        np.testing.assert_array_equal(op.pred, nz_p)
        assert np.array_equal(op.overlap(criterion), ov[nz_g, nz_p])  # bit-identical
        assert np.array_equal(op.dense(criterion), ov)
        assert np.array_equal(overlap_matrix(gt, pred, criterion)[2], ov)
    np.testing.assert_array_equal(op.size_gt, [(gt == i).sum() for i in op.ids_gt])
    np.testing.assert_array_equal(op.size_pred, [(pred == i).sum() for i in op.ids_pred])
    np.testing.assert_array_equal(
        op.intersection,
        [
            ((gt == op.ids_gt[a]) & (pred == op.ids_pred[b])).sum()
            for a, b in zip(op.gt, op.pred, strict=True)
        ],
    )


def test_histogram_and_layout_paths_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(5)
    gt = _boxes(rng, (9, 20, 24), 60)
    pred = _predict(rng, gt, "noisy")
    ref = overlap_pairs(gt, pred)
    monkeypatch.setattr(pairs, "_DENSE_BINS", 0)  # sorted runs instead of a bincount histogram
    variants = [
        overlap_pairs(gt, pred),
        overlap_pairs(gt, pred, chunk_voxels=13),
        overlap_pairs(np.asfortranarray(gt), np.asfortranarray(pred), chunk_voxels=100),  # z slabs
    ]
    for v in variants:
        for f in ("ids_gt", "ids_pred", "size_gt", "size_pred", "gt", "pred", "intersection"):
            np.testing.assert_array_equal(getattr(v, f), getattr(ref, f))
    # A non-contiguous view of a larger array.
    big_g = np.zeros((9, 20, 48), dtype=np.int64)
    big_p = np.zeros_like(big_g)
    big_g[:, :, ::2], big_p[:, :, ::2] = gt, pred
    v = overlap_pairs(big_g[:, :, ::2], big_p[:, :, ::2], chunk_voxels=50)
    np.testing.assert_array_equal(v.intersection, ref.intersection)
    np.testing.assert_array_equal(v.gt, ref.gt)


@settings(max_examples=80, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_true=st.integers(0, 9),
    n_pred=st.integers(0, 9),
    density=st.floats(0.05, 1.0),
    quantised=st.booleans(),
    thr=st.sampled_from((0.05, 0.1, 0.3, 0.5, 0.75, 0.9)),
)
# a row with two entries 1.0 over the threshold 0.75: two optimal matchings (found in CI)
@example(seed=15894, n_true=9, n_pred=9, density=0.25, quantised=True, thr=0.75)
def test_match_overlap_equals_dense_reference(
    seed: int, n_true: int, n_pred: int, density: float, quantised: bool, thr: float
) -> None:
    rng = np.random.default_rng(seed)
    scores = np.where(rng.random((n_true, n_pred)) < density, rng.random((n_true, n_pred)), 0.0)
    if quantised:  # many ties
        scores = np.round(scores * 4) / 4
    s, d = match_overlap(scores, thr), match_overlap_dense(scores, thr)
    _assert_same(s, d, scores, (np.arange(n_true), np.arange(n_pred)))


def test_large_component_sparse_solver(monkeypatch: pytest.MonkeyPatch) -> None:
    """Components above the dense-block size go to min_weight_full_bipartite_matching: same optimum."""
    rng = np.random.default_rng(9)
    monkeypatch.setattr(matching, "_DENSE_BLOCK", 0)
    for _ in range(40):
        n, m = rng.integers(2, 12, size=2)
        scores = np.where(rng.random((n, m)) < 0.4, rng.random((n, m)), 0.0)
        for thr in (0.05, 0.2, 0.4):
            s, d = match_overlap(scores, thr), match_overlap_dense(scores, thr)
            _assert_same(s, d, scores, (np.arange(n), np.arange(m)))
    gt = _boxes(rng, (8, 16, 16), 40)
    pred = _predict(rng, gt, "noisy")
    for s, d in zip(match(gt, pred, THRESHOLDS), match_dense(gt, pred, THRESHOLDS), strict=True):
        assert s.as_dict() == d.as_dict()


@pytest.mark.parametrize("n", [30, 300], ids=["dense_block", "sparse_solver"])
def test_chains_at_low_threshold(n: int) -> None:
    """Touching cubes shifted by one voxel: chains of candidates along x below IoU 1/7.

    A chain of 300 (300 x 300 cells) goes to min_weight_full_bipartite_matching.
    """
    gt = np.zeros((4, 4, 4 * n + 1), dtype=np.int32)
    for k in range(n):
        gt[:, :, 4 * k : 4 * k + 4] = 10_000 - 7 * k
    pred = np.zeros_like(gt)
    pred[:, :, 1:] = gt[:, :, :-1]
    pred = np.where(pred > 0, 50_000 - pred, 0)
    for s, d in zip(match(gt, pred, THRESHOLDS), match_dense(gt, pred, THRESHOLDS), strict=True):
        assert s.as_dict() == d.as_dict()
        np.testing.assert_array_equal(s.pairs, d.pairs)
    r = match(gt, pred, (0.1, 0.5))
    assert r[0].tp == r[1].tp == n
    assert r[0].mean_matched_iou == pytest.approx(0.6)  # 48 / 80 voxels, not the 1/7 neighbours


def test_exact_halves_at_iou_one_half() -> None:
    """At t = 0.5 an object split into two exact halves has two partners: one is matched."""
    gt = np.zeros((2, 2, 4), dtype=np.uint8)
    gt[:, :, :] = 3
    pred = np.zeros_like(gt)
    pred[:, :, :2], pred[:, :, 2:] = 8, 9
    (s,) = match(gt, pred, (0.5,))
    (d,) = match_dense(gt, pred, (0.5,))
    assert s.as_dict() == d.as_dict()
    assert (s.tp, s.fp, s.fn, s.sum_matched_iou) == (1, 1, 0, 0.5)
    assert s.pairs.tolist() == [[3, 8]]  # the first of equal partners
    (s,) = match(pred, gt, (0.5,))  # the reverse: two ground-truth halves, one prediction
    assert (s.tp, s.fp, s.fn) == (1, 0, 1) and s.pairs.tolist() == [[8, 3]]


def test_empty_volumes_and_match_pairs() -> None:
    empty = np.zeros((3, 4, 5), dtype=np.int32)
    one = empty.copy()
    one[1, 1:3, 1:4] = 2**31 - 1
    for gt, pred in ((empty, empty), (one, empty), (empty, one), (one, one)):
        for s, d in zip(match(gt, pred, THRESHOLDS), match_dense(gt, pred, THRESHOLDS), strict=True):
            assert s.as_dict() == d.as_dict()
            np.testing.assert_array_equal(s.pairs, d.pairs)
    op = overlap_pairs(one, one)
    assert (op.n_true, op.n_pred, op.n_pairs) == (1, 1, 1)
    assert op.ids_gt.tolist() == [2**31 - 1]
    (r,) = match_pairs(op, (1.0,))
    assert r.pairs.tolist() == [[2**31 - 1, 2**31 - 1]] and r.pair_ious.tolist() == [1.0]
    zero = overlap_pairs(np.zeros((0, 4, 4), dtype=np.int64), np.zeros((0, 4, 4), dtype=np.int64))
    assert (zero.n_true, zero.n_pred, zero.n_pairs) == (0, 0, 0)


def test_uint64_ids_up_to_int64_max() -> None:
    gt = np.zeros((2, 3, 4), dtype=np.uint64)
    gt[0] = 2**63 - 1
    gt[1, 0] = 5
    (r,) = match(gt, gt, (0.9,))
    assert r.pairs.tolist() == [[5, 5], [2**63 - 1, 2**63 - 1]]
    gt[1, 1] = 2**64 - 1
    with pytest.raises(ValueError, match=r"pred_labels: label id 18446744073709551615 does not fit in int64"):
        match(gt[:, :1], gt[:, 1:2])
    with pytest.raises(ValueError, match=r"gt_labels: label id 18446744073709551615"):
        match(gt, gt)


def test_bad_inputs_are_named() -> None:
    vol = np.zeros((2, 3, 4), dtype=np.int32)
    with pytest.raises(
        ValueError, match=r"gt_labels has shape \(2, 3, 4\) but pred_labels has shape \(2, 3, 5\)"
    ):
        match(vol, np.zeros((2, 3, 5), dtype=np.int32))
    with pytest.raises(
        ValueError,
        match=r"gt_labels: label volume must have an integer dtype \(0 = background\), got float64",
    ):
        match(vol.astype(np.float64), vol)
    with pytest.raises(ValueError, match=r"pred_labels: label volume of shape .* holds negative labels"):
        overlap_pairs(vol, vol - 1)
    with pytest.raises(ValueError, match="criterion"):
        match_pairs(overlap_pairs(vol, vol), (0.5,), "dice")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="criterion"):
        overlap_pairs(vol, vol).overlap("dice")  # type: ignore[arg-type]


def test_memory_does_not_grow_with_n_true_times_n_pred() -> None:
    """20 000 x 20 000 objects: the dense matrices would take 3.2 GB each; the sparse pass a few MB."""
    n = 20_000
    gt = np.repeat(np.arange(1, n + 1, dtype=np.int32), 4).reshape(1, 200, 400)
    pred = np.roll(gt, 1, axis=2)
    tracemalloc.start()
    try:
        results = match(gt, pred, (0.1, 0.5, 0.75))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert results[1].tp == n and results[1].mean_matched_iou == pytest.approx(0.6)
    assert results[2].tp == 0
    assert peak < 64 * 2**20, f"peak {peak / 2**20:.0f} MiB"
    assert peak < n * n * 8 / 50
    assert math.isclose(results[0].sum_matched_iou, 0.6 * n, rel_tol=1e-12)
