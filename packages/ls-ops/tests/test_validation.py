"""Bad input gives a clear Python exception naming the argument, never a crash."""

from __future__ import annotations

import math

import pytest
import torch

import ls_ops
from ls_ops import reference

X = torch.randn(2, 3, 4, 5, 6)
ROIS = torch.tensor([[0, 0.0, 0.0, 0.0, 2.0, 2.0, 2.0], [1, 1.0, 1.0, 1.0, 3.0, 4.0, 5.0]])


def roi(*values: float) -> torch.Tensor:
    return torch.tensor([values], dtype=torch.float32)


@pytest.mark.parametrize("fn", [ls_ops.roi_align3d, reference.roi_align3d])
@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"input": X[0]}, ValueError, r"input must be 5-D.*shape \(3, 4, 5, 6\)"),
    ({"input": X.long()}, TypeError, r"input must be a floating-point tensor.*torch.int64"),
    ({"input": X.numpy()}, TypeError, r"input must be a torch.Tensor"),
    ({"rois": ROIS[:, :6]}, ValueError, r"rois must be 2-D with 7 columns.*shape \(2, 6\)"),
    ({"rois": ROIS[0]}, ValueError, r"rois must be 2-D"),
    ({"rois": [ROIS]}, ValueError, r"rois\[0\] must be 2-D with 6 columns"),
    ({"rois": "boxes"}, TypeError, r"rois must be a \(K, 7\) tensor or a list"),
    ({"rois": ROIS.double()}, TypeError, r"input and rois must have one dtype.*float64"),
    ({"rois": roi(0, math.nan, 0, 0, 1, 1, 1)}, ValueError, r"rois contains NaN or infinite"),
    ({"rois": roi(0, 0, 0, 0, math.inf, 1, 1)}, ValueError, r"rois contains NaN or infinite"),
    ({"rois": roi(2, 0, 0, 0, 1, 1, 1)}, ValueError, r"batch indices in \[0, 2\).*roi 0 has 2.0"),
    ({"rois": roi(-1, 0, 0, 0, 1, 1, 1)}, ValueError, r"batch indices"),
    ({"rois": roi(0.5, 0, 0, 0, 1, 1, 1)}, ValueError, r"integer batch indices"),
    ({"output_size": 0}, ValueError, r"output_size must be >= 1"),
    ({"output_size": (2, -1, 2)}, ValueError, r"output_size must be >= 1"),
    ({"output_size": (2, 2)}, TypeError, r"output_size must be an int or a sequence of 3 ints"),
    ({"output_size": 2.5}, TypeError, r"output_size"),
    ({"spatial_scale": -0.5}, ValueError, r"spatial_scale must be finite and > 0"),
    ({"spatial_scale": (1.0, math.nan, 1.0)}, ValueError, r"spatial_scale must be finite"),
    ({"sampling_ratio": (1, 2)}, TypeError, r"sampling_ratio"),
])  # fmt: skip
def test_roi_align3d_rejects(fn, kwargs: dict, error: type, match: str) -> None:
    args = {"input": X, "rois": ROIS, "output_size": 2, **kwargs}
    with pytest.raises(error, match=match):
        fn(**args)


def test_roi_align3d_device_mismatch() -> None:
    meta_rois = ROIS.to("meta")
    with pytest.raises(ValueError, match=r"input and rois must be on one device.*device meta"):
        ls_ops.roi_align3d(X, meta_rois, 2)


def test_kernel_checks_guard_direct_op_calls() -> None:
    """Calling the op directly (as a compiled graph does) still checks batch indices and rois."""
    with pytest.raises(RuntimeError, match="batch index"):
        torch.ops.ls_ops.roi_align3d(X, roi(5, 0, 0, 0, 1, 1, 1), [1.0] * 3, [2] * 3, [-1] * 3, False)
    with pytest.raises(RuntimeError, match="non-finite"):
        torch.ops.ls_ops.roi_align3d(X, roi(0, math.nan, 0, 0, 1, 1, 1), [1.0] * 3, [2] * 3, [-1] * 3, False)
    with pytest.raises(RuntimeError, match="output_size must be positive"):
        torch.ops.ls_ops.roi_align3d(X, ROIS, [1.0] * 3, [2, 0, 2], [-1] * 3, False)
    with pytest.raises(RuntimeError, match="dtypes differ"):
        torch.ops.ls_ops.roi_align3d(X, ROIS.double(), [1.0] * 3, [2] * 3, [-1] * 3, False)
    with pytest.raises(RuntimeError, match="boxes must be"):
        torch.ops.ls_ops.nms3d(torch.zeros(3, 4), torch.zeros(3), 0.5)


BOXES = torch.tensor([[0.0, 0, 0, 1, 1, 1], [0.5, 0.5, 0.5, 2, 2, 2]])
SCORES = torch.tensor([0.9, 0.8])


@pytest.mark.parametrize("fn", [ls_ops.nms3d, reference.nms3d])
@pytest.mark.parametrize(("args", "error", "match"), [
    ((BOXES[:, :4], SCORES, 0.5), ValueError, r"boxes must be 2-D with 6 columns.*shape \(2, 4\)"),
    ((BOXES, SCORES[:1], 0.5), ValueError, r"boxes and scores must have one length"),
    ((BOXES, SCORES[:, None], 0.5), ValueError, r"scores must be 1-D"),
    ((BOXES, SCORES.double(), 0.5), TypeError, r"boxes and scores must have one dtype"),
    ((BOXES.int(), SCORES, 0.5), TypeError, r"boxes must be a floating-point tensor"),
    ((BOXES, torch.tensor([math.nan, 0.5]), 0.5), ValueError, r"scores contains NaN"),
    ((BOXES, SCORES, math.nan), ValueError, r"iou_threshold must not be NaN"),
    ((BOXES, SCORES, "0.5"), TypeError, r"iou_threshold must be a float"),
    ((BOXES, SCORES.to("meta"), 0.5), ValueError, r"one device"),
])  # fmt: skip
def test_nms3d_rejects(fn, args: tuple, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        fn(*args)


@pytest.mark.parametrize("fn", [ls_ops.batched_nms3d, reference.batched_nms3d])
def test_batched_nms3d_rejects(fn) -> None:
    with pytest.raises(TypeError, match="idxs must be an integer tensor"):
        fn(BOXES, SCORES, torch.tensor([0.0, 1.0]), 0.5)
    with pytest.raises(ValueError, match=r"idxs must have shape \(2,\)"):
        fn(BOXES, SCORES, torch.tensor([0, 1, 2]), 0.5)


def test_batched_nms3d_rejects_non_finite_boxes() -> None:
    with pytest.raises(ValueError, match="boxes contains NaN or infinite"):
        ls_ops.batched_nms3d(BOXES.clone().fill_(math.inf), SCORES, torch.tensor([0, 1]), 0.5)


@pytest.mark.parametrize("fn", [ls_ops.box_iou3d, reference.box_iou3d])
def test_box_iou3d_rejects(fn) -> None:
    with pytest.raises(ValueError, match=r"boxes2 must be 2-D with 6 columns"):
        fn(BOXES, BOXES[:, :4])
    with pytest.raises(TypeError, match=r"boxes1 and boxes2 must have one dtype"):
        fn(BOXES, BOXES.double())
