"""Overlap pairs accumulated block by block (ls_train.metrics.blocks) against the whole-array pass.

Any cover of the volumes by blocks, in any order, split over several accumulators and merged,
gives ``overlap_pairs`` of the whole arrays array for array (ids, sizes, pairs, intersections,
dtypes), so the matching is the dense reference's; the centroids are scipy's.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from ls_train.metrics import blocks
from ls_train.metrics.blocks import PairAccumulator, overlap_pairs_from_blocks
from ls_train.metrics.matching import match_pairs
from ls_train.metrics.pairs import overlap_pairs
from ls_train.metrics.reference import match_dense

FIELDS = ("ids_gt", "ids_pred", "size_gt", "size_pred", "gt", "pred", "intersection")
THRESHOLDS = (0.1, 0.3, 0.5, 0.75, 0.9)


def _boxes(rng: np.random.Generator, shape: tuple[int, int, int], n: int) -> np.ndarray:
    lab = np.zeros(shape, dtype=np.int64)
    for k in range(1, n + 1):
        lo = rng.integers(0, np.array(shape))
        hi = lo + rng.integers(1, 6, size=3)
        lab[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = k
    return lab


def _pair(seed: int, n: int, mode: str, style: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(1, 9)), int(rng.integers(1, 17)), int(rng.integers(1, 17)))
    gt = _boxes(rng, shape, n)
    if mode == "shift":
        pred = np.roll(gt, 1, axis=int(rng.integers(0, 3)))
    elif mode == "merge":
        pred = np.concatenate(([0], rng.integers(1, max(n // 2, 1) + 1, size=n)))[gt]
    elif mode == "empty":
        pred = np.zeros_like(gt)
    else:
        pred = _boxes(rng, shape, int(rng.integers(0, 2 * n + 2)))
    if style == "huge":  # 64-bit hashes: no lookup table possible
        lut = np.concatenate(([0], rng.choice(10**6, size=2 * n + 2, replace=False) * 2**42 + 7))
        return lut[gt].astype(np.uint64), lut[pred].astype(np.uint64)
    if style == "uint16":
        return gt.astype(np.uint16), pred.astype(np.uint16)
    return gt.astype(np.int32), pred.astype(np.int32)


def _blocks(gt: np.ndarray, pred: np.ndarray, block: tuple[int, int, int], rng: Any = None):
    """``(gt, pred, origin)`` of a ``block`` grid (the last blocks clipped), shuffled with ``rng``."""
    starts = [(z, y, x) for z in range(0, gt.shape[0], block[0]) for y in range(0, gt.shape[1], block[1])
              for x in range(0, gt.shape[2], block[2])]  # fmt: skip
    if rng is not None:
        starts = [starts[i] for i in rng.permutation(len(starts))]
    for o in starts:
        w = tuple(slice(a, a + b) for a, b in zip(o, block, strict=True))
        yield gt[w], pred[w], o


def _assert_equal(a, b) -> None:
    for name in FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and np.array_equal(x, y), name


@settings(max_examples=120, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(0, 12),
    mode=st.sampled_from(("shift", "merge", "empty", "independent")),
    style=st.sampled_from(("int32", "uint16", "huge")),
    block=st.tuples(st.integers(1, 9), st.integers(1, 17), st.integers(1, 17)),
    fold=st.booleans(),
)
def test_blocks_equal_overlap_pairs_of_the_whole_arrays(
    seed: int, n: int, mode: str, style: str, block: tuple[int, int, int], fold: bool
) -> None:
    gt, pred = _pair(seed, n, mode, style)
    with pytest.MonkeyPatch.context() as mp:
        if fold:  # fold the pending parts into the tables after every block
            mp.setattr(blocks, "_FOLD_MIN_ROWS", 0)
        got = overlap_pairs_from_blocks(_blocks(gt, pred, block, np.random.default_rng(seed)))
    _assert_equal(got, overlap_pairs(gt, pred))


@pytest.mark.parametrize("criterion", ["iou", "iot", "ios"])
@pytest.mark.parametrize("seed", range(4))
def test_matching_from_blocks_equals_the_dense_reference(seed: int, criterion: str) -> None:
    rng = np.random.default_rng(seed)
    gt = _boxes(rng, (6, 20, 20), 30)
    pred = np.where(rng.random(gt.shape) < 0.1, 0, np.roll(gt, 1, axis=2))
    got = match_pairs(overlap_pairs_from_blocks(_blocks(gt, pred, (4, 7, 9))), THRESHOLDS, criterion)
    for s, d in zip(got, match_dense(gt, pred, THRESHOLDS, criterion), strict=True):
        assert s.as_dict() == d.as_dict()
        if criterion == "iou" and s.threshold > 0.5:  # a unique matching
            np.testing.assert_array_equal(s.pairs, d.pairs)


def test_centroids_and_merged_accumulators() -> None:
    rng = np.random.default_rng(3)
    gt = _boxes(rng, (8, 16, 24), 25)
    pred = np.roll(gt, 2, axis=1) * 3
    parts = [PairAccumulator(), PairAccumulator()]
    for k, b in enumerate(_blocks(gt, pred, (3, 5, 7))):
        parts[k % 2].add(*b)
    parts[0].merge(parts[1])
    _assert_equal(parts[0].pairs(), overlap_pairs(gt, pred))
    assert parts[0].voxels == gt.size
    cg, cp = parts[0].centroids()
    ids = overlap_pairs(gt, pred)
    np.testing.assert_allclose(cg, ndimage.center_of_mass(gt > 0, gt, ids.ids_gt), rtol=0, atol=1e-12)
    np.testing.assert_allclose(cp, ndimage.center_of_mass(pred > 0, pred, ids.ids_pred), rtol=0, atol=1e-12)


def test_bad_blocks_name_the_volume() -> None:
    acc = PairAccumulator(names=("gt=truth.tif", "pred=out.ome.zarr"))
    ok = np.ones((2, 3, 4), dtype=np.uint16)
    with pytest.raises(ValueError, match=r"pred=out.ome.zarr: label volume must have an integer dtype"):
        acc.add(ok, ok.astype(np.float32))
    with pytest.raises(ValueError, match=r"gt=truth.tif: label block .* negative labels"):
        acc.add(-ok.astype(np.int8), ok)
    with pytest.raises(ValueError, match=r"pred=out.ome.zarr: label id 18446744073709551615 does not fit"):
        acc.add(ok, np.full((2, 3, 4), 2**64 - 1, dtype=np.uint64))
    with pytest.raises(ValueError, match=r"gt=truth.tif block has shape \(2, 3, 4\) but pred=out.ome.zarr"):
        acc.add(ok, ok[:, :, :2])
    assert acc.voxels == 0 and acc.pairs().n_true == 0
