"""ls_ops.nms3d / batched_nms3d (CPU kernel) against the reference and torchvision's 2-D nms."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ls_ops
from ls_ops import reference

# Deterministic examples (CI reruns see the same cases) and no deadline (2 shared cores).
PROPERTY = settings(derandomize=True, deadline=None, max_examples=150,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def random_boxes(n: int, extent: float, max_size: float, g: torch.Generator,
                 dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``(n, 6)`` boxes with low corners in ``[0, extent)`` and sides in ``(0, max_size]``."""
    lo = torch.rand(n, 3, generator=g, dtype=dtype) * extent
    return torch.cat([lo, lo + torch.rand(n, 3, generator=g, dtype=dtype) * max_size + 1e-3], dim=1)


@st.composite
def nms_case(draw: st.DrawFn, max_boxes: int = 60) -> tuple:
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    n = draw(st.integers(0, max_boxes))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    boxes = random_boxes(n, draw(st.sampled_from([4.0, 20.0])), draw(st.sampled_from([2.0, 10.0])), g, dtype)
    if draw(st.booleans()):  # integer corners: many exact ties in IoU
        boxes = boxes.round()
    if draw(st.booleans()):  # tied scores: the order must be stable
        scores = torch.randint(0, 4, (n,), generator=g).to(dtype)
    else:
        scores = torch.rand(n, generator=g, dtype=dtype)
    threshold = draw(st.sampled_from([0.0, 0.1, 0.3, 0.5, 0.7, 1.0]))
    return boxes, scores, threshold


@PROPERTY
@given(nms_case())
def test_nms3d_matches_reference(case: tuple) -> None:
    boxes, scores, threshold = case
    keep = ls_ops.nms3d(boxes, scores, threshold)
    assert keep.dtype == torch.int64
    assert torch.equal(keep, reference.nms3d(boxes, scores, threshold))
    # kept boxes come by decreasing score, and none of them overlaps another above the threshold
    assert bool((scores[keep][1:] <= scores[keep][:-1]).all())
    iou = ls_ops.box_iou3d(boxes[keep], boxes[keep]).double().nan_to_num(0.0)
    assert not bool((iou.triu(1) > threshold).any())


@PROPERTY
@given(nms_case(), st.integers(1, 4))
def test_batched_nms3d_matches_reference(case: tuple, categories: int) -> None:
    boxes, scores, threshold = case
    idxs = torch.arange(boxes.shape[0]) % categories
    assert torch.equal(ls_ops.batched_nms3d(boxes, scores, idxs, threshold),
                       reference.batched_nms3d(boxes, scores, idxs, threshold))


def test_batched_nms3d_separates_negative_coordinates() -> None:
    boxes = torch.tensor([[-10.0, -10, -10, 0, 0, 0], [-10.0, -10, -10, 0, 0, 0]])
    keep = ls_ops.batched_nms3d(boxes, torch.tensor([0.9, 0.8]), torch.tensor([0, 1]), 0.5)
    assert keep.tolist() == [0, 1]


@pytest.mark.parametrize("dz", [1.0, 2.0, 0.5])
@pytest.mark.parametrize("threshold", [0.2, 0.5, 0.8])
def test_shared_z_extent_equals_torchvision(dz: float, threshold: float) -> None:
    g = torch.Generator().manual_seed(0)
    n = 500
    yx = torch.rand(n, 2, generator=g) * 60
    hw = torch.rand(n, 2, generator=g) * 15
    scores = torch.rand(n, generator=g)
    z = torch.full((n, 1), 3.0)
    boxes3 = torch.cat([z, yx, z + dz, yx + hw], dim=1)
    boxes2 = torch.cat([yx[:, 1:], yx[:, :1], (yx + hw)[:, 1:], (yx + hw)[:, :1]], dim=1)  # x1 y1 x2 y2
    expected = torchvision.ops.nms(boxes2, scores, threshold)
    assert torch.equal(ls_ops.nms3d(boxes3, scores, threshold), expected)


def test_ties_are_stable_and_empty_input() -> None:
    boxes = torch.tensor([[0.0, 0, 0, 1, 1, 1]] * 3 + [[5.0, 5, 5, 6, 6, 6]])
    scores = torch.tensor([0.5, 0.5, 0.5, 0.5])
    assert ls_ops.nms3d(boxes, scores, 0.5).tolist() == [0, 3]
    empty = ls_ops.nms3d(torch.zeros(0, 6), torch.zeros(0), 0.5)
    assert empty.shape == (0,) and empty.dtype == torch.int64
    no_idxs = torch.zeros(0, dtype=torch.long)
    assert ls_ops.batched_nms3d(torch.zeros(0, 6), torch.zeros(0), no_idxs, 0.5).numel() == 0


def test_nan_boxes_are_kept_and_never_suppress() -> None:
    """Documented outcome: a NaN box has NaN IoU with everything; it is kept and suppresses nothing."""
    boxes = torch.tensor([[0.0, 0, 0, 2, 2, 2], [math.nan, 0, 0, 2, 2, 2], [0.0, 0, 0, 2, 2, 1.9]])
    scores = torch.tensor([0.9, 0.95, 0.8])
    assert ls_ops.nms3d(boxes, scores, 0.5).tolist() == [1, 0]
    assert reference.nms3d(boxes, scores, 0.5).tolist() == [1, 0]


# --- the CUDA kernel and sweep, run on the CPU (conftest.cuda_emulated) -------------------------


@settings(PROPERTY, max_examples=60)
@given(nms_case(max_boxes=200))
def test_cuda_nms3d_kernel_matches_reference(cuda_emulated, case: tuple) -> None:
    """Up to 4 blocks of 64 boxes: mask words across blocks, the diagonal blocks, partial blocks."""
    boxes, scores, threshold = case
    expected = reference.nms3d(boxes, scores, threshold)
    assert torch.equal(cuda_emulated.nms3d(boxes, scores, threshold), expected)


def test_cuda_nms3d_kernel_nan_boxes_and_block_edges(cuda_emulated) -> None:
    """NaN boxes on either side of a block edge are kept and suppress nothing; a chain of
    overlapping boxes across the 64-box blocks is suppressed as by the greedy rule."""
    g = torch.Generator().manual_seed(5)
    n = 150
    lo = torch.arange(n, dtype=torch.float64)[:, None] * torch.tensor([0.1, 0.0, 0.0])
    boxes = torch.cat([lo, lo + 1.0], dim=1)  # box i overlaps box i+1: IoU 0.9 / 1.1 = 0.82
    for i in (63, 64, 127):
        boxes[i, 1] = math.nan
    scores = torch.rand(n, generator=g, dtype=torch.float64)
    for threshold in (0.5, 0.85, 0.95):
        keep = cuda_emulated.nms3d(boxes, scores, threshold)
        assert torch.equal(keep, reference.nms3d(boxes, scores, threshold))
        assert {63, 64, 127} <= set(keep.tolist())


def test_half_precision_boxes() -> None:
    g = torch.Generator().manual_seed(1)
    boxes = random_boxes(50, 20.0, 8.0, g, torch.float32).round().half()
    scores = torch.rand(50, generator=g).half()
    assert torch.equal(ls_ops.nms3d(boxes, scores, 0.4), ls_ops.nms3d(boxes.float(), scores.float(), 0.4))


def test_opcheck_nms3d() -> None:
    g = torch.Generator().manual_seed(2)
    boxes = random_boxes(40, 10.0, 5.0, g, torch.float32)
    scores = torch.rand(40, generator=g)
    torch.library.opcheck(torch.ops.ls_ops.nms3d.default, (boxes, scores, 0.3))
