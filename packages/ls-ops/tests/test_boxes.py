"""ls_ops.box_volume3d / box_iou3d against the reference and torchvision's 2-D box_iou."""

from __future__ import annotations

import torch
import torchvision

import ls_ops
from ls_ops import reference


def random_boxes(n: int, extent: float, max_size: float, g: torch.Generator,
                 dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``(n, 6)`` boxes with low corners in ``[0, extent)`` and sides in ``(0, max_size]``."""
    lo = torch.rand(n, 3, generator=g, dtype=dtype) * extent
    return torch.cat([lo, lo + torch.rand(n, 3, generator=g, dtype=dtype) * max_size + 1e-3], dim=1)


def test_volume_and_iou_by_hand() -> None:
    a = torch.tensor([[0.0, 0, 0, 2, 2, 2]])
    b = torch.tensor([[1.0, 1, 1, 3, 3, 3], [2.0, 0, 0, 4, 2, 2], [0.0, 0, 0, 2, 2, 2]])
    assert ls_ops.box_volume3d(b).tolist() == [8.0, 8.0, 8.0]
    torch.testing.assert_close(ls_ops.box_iou3d(a, b), torch.tensor([[1 / 15, 0.0, 1.0]]))


def test_matches_reference_and_torchvision() -> None:
    g = torch.Generator().manual_seed(0)
    a, b = random_boxes(30, 10.0, 6.0, g), random_boxes(20, 10.0, 6.0, g)
    torch.testing.assert_close(ls_ops.box_iou3d(a, b), reference.box_iou3d(a, b))
    torch.testing.assert_close(ls_ops.box_volume3d(a), reference.box_volume3d(a))
    # boxes sharing one z extent: the 3-D IoU is the 2-D IoU of their (y, x) rectangles
    a[:, 0], a[:, 3], b[:, 0], b[:, 3] = 1.0, 3.0, 1.0, 3.0
    two_d = lambda t: t[:, [2, 1, 5, 4]]
    torch.testing.assert_close(ls_ops.box_iou3d(a, b), torchvision.ops.box_iou(two_d(a), two_d(b)))
    assert ls_ops.box_iou3d(a[:0], b).shape == (0, 20)
