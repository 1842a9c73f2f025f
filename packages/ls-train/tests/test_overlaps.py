"""box_iou_3d is ls_ops.box_iou3d on numpy boxes: the same numbers as the numpy IoU it replaced."""

from __future__ import annotations

import numpy as np
import pytest

from ls_train.metrics.overlaps import box_iou_3d


def numpy_box_iou_3d(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The metric's own IoU before it used ls-ops (kept here as the reference)."""
    lo = np.maximum(a[:, None, :3], b[None, :, :3])
    hi = np.minimum(a[:, None, 3:], b[None, :, 3:])
    inter = np.clip(hi - lo, 0.0, None).prod(axis=2)
    vol_a = (a[:, 3:] - a[:, :3]).prod(axis=1)
    vol_b = (b[:, 3:] - b[:, :3]).prod(axis=1)
    union = vol_a[:, None] + vol_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def random_boxes(rng: np.random.Generator, n: int, *, empty: float = 0.2) -> np.ndarray:
    lo = rng.uniform(0, 30, size=(n, 3))
    size = rng.uniform(0.5, 12, size=(n, 3))
    size[rng.random((n, 3)) < empty] = 0.0  # flat and empty boxes
    return np.concatenate([lo, lo + size], axis=1)


@pytest.mark.parametrize("seed", range(5))
def test_same_numbers_as_the_numpy_iou(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a, b = random_boxes(rng, 40), random_boxes(rng, 30)
    b[:5] = a[:5]  # identical boxes (IoU 1, or 0 for two empty ones)
    b[5:8, :3] = a[5:8, 3:]  # touching corners
    b[5:8, 3:] = a[5:8, 3:] + 1
    np.testing.assert_array_equal(box_iou_3d(a, b), numpy_box_iou_3d(a, b))


@pytest.mark.parametrize(
    ("a", "b", "shape"),
    [
        (np.zeros((0, 6)), np.zeros((3, 6)), (0, 3)),
        ([[0, 0, 0, 2, 2, 2]], np.zeros((0, 6)), (1, 0)),
        ([[0, 0, 0, 0, 0, 0]], [[0, 0, 0, 0, 0, 0]], (1, 1)),
        (np.arange(12, dtype=np.int64).reshape(2, 6), np.arange(12.0).reshape(2, 6)[::-1], (2, 2)),
    ],
)
def test_shapes_dtypes_and_layouts(a: object, b: object, shape: tuple[int, int]) -> None:
    iou = box_iou_3d(a, b)
    assert iou.shape == shape and iou.dtype == np.float64 and not np.isnan(iou).any()
    np.testing.assert_array_equal(iou, numpy_box_iou_3d(np.asarray(a, float), np.asarray(b, float)))


@pytest.mark.parametrize(
    ("a", "pattern"),
    [
        (np.zeros((2, 4)), r"boxes_a: expected boxes of shape \(N, 6\).*got \(2, 4\)"),
        ([[0, 0, 0, 1, 1, -1]], r"boxes_a: box 0 = .* has a max corner below its min corner"),
    ],
)
def test_bad_boxes_name_the_argument(a: object, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        box_iou_3d(a, np.zeros((1, 6)))
