"""AnchorGenerator3D: hand-checked base anchors, counts and positions with anisotropic strides."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList

from ls_detection.anchors import AnchorGenerator3D
from ls_detection.image_list import ImageList3D


def test_base_anchors_by_hand() -> None:
    gen = AnchorGenerator3D(sizes=[[4.0, 8.0]], aspect_ratios=[[1.0, 4.0]], aspect_ratios_z=[[0.5, 2.0]])
    assert gen.num_anchors_per_location() == [8]
    # order: yx ratio (slowest), z ratio, size (fastest); d = s * rz, h = s * sqrt(r), w = s / sqrt(r)
    expected = torch.tensor([
        [-1.0, -2.0, -2.0, 1.0, 2.0, 2.0],    # r=1, rz=0.5, s=4: (d, h, w) = (2, 4, 4)
        [-2.0, -4.0, -4.0, 2.0, 4.0, 4.0],    # r=1, rz=0.5, s=8: (4, 8, 8)
        [-4.0, -2.0, -2.0, 4.0, 2.0, 2.0],    # r=1, rz=2,   s=4: (8, 4, 4)
        [-8.0, -4.0, -4.0, 8.0, 4.0, 4.0],    # r=1, rz=2,   s=8: (16, 8, 8)
        [-1.0, -4.0, -1.0, 1.0, 4.0, 1.0],    # r=4, rz=0.5, s=4: (2, 8, 2)
        [-2.0, -8.0, -2.0, 2.0, 8.0, 2.0],    # r=4, rz=0.5, s=8: (4, 16, 4)
        [-4.0, -4.0, -1.0, 4.0, 4.0, 1.0],    # r=4, rz=2,   s=4: (8, 8, 2)
        [-8.0, -8.0, -2.0, 8.0, 8.0, 2.0],    # r=4, rz=2,   s=8: (16, 16, 4)
    ])
    torch.testing.assert_close(gen.cell_anchors[0], expected)


def test_positions_with_anisotropic_strides() -> None:
    gen = AnchorGenerator3D(sizes=[[4.0]], aspect_ratios=[[1.0, 4.0]], aspect_ratios_z=[[0.5]])
    images = ImageList3D(torch.zeros(2, 1, 4, 8, 16), [(4, 8, 16), (3, 8, 10)])
    feature = torch.zeros(2, 3, 2, 2, 4)  # strides (4 // 2, 8 // 2, 16 // 4) = (2, 4, 4)
    anchors = gen(images, [feature])
    assert len(anchors) == 2 and torch.equal(anchors[0], anchors[1])
    a = anchors[0]
    assert a.shape == (2 * 2 * 4 * 2, 6)
    base = torch.tensor([[-1.0, -2.0, -2.0, 1.0, 2.0, 2.0], [-1.0, -4.0, -1.0, 1.0, 4.0, 1.0]])
    # location (k, j, i) = (1, 0, 2) is location 1 * 8 + 0 * 4 + 2 = 10; centre (2, 0, 8)
    torch.testing.assert_close(a[20], base[0] + torch.tensor([2.0, 0.0, 8.0, 2.0, 0.0, 8.0]))
    torch.testing.assert_close(a[21], torch.tensor([1.0, -4.0, 7.0, 3.0, 4.0, 9.0]))
    centres = ((a[:, :3] + a[:, 3:]) / 2).unique(dim=0)
    zs, ys, xs = (centres[:, k].unique().tolist() for k in range(3))
    assert zs == [0.0, 2.0] and ys == [0.0, 4.0] and xs == [0.0, 4.0, 8.0, 12.0]


def test_counts_over_levels_and_dtype() -> None:
    gen = AnchorGenerator3D(sizes=[[4.0], [8.0, 16.0]], aspect_ratios=[[0.5, 1.0, 2.0], [1.0]],
                            aspect_ratios_z=[[1.0], [0.5, 1.0]])
    assert gen.num_anchors_per_location() == [3, 4]
    images = ImageList3D(torch.zeros(1, 1, 8, 16, 16), [(8, 16, 16)])
    feats = [torch.zeros(1, 2, 4, 8, 8, dtype=torch.float64), torch.zeros(1, 2, 2, 4, 4, dtype=torch.float64)]
    (a,) = gen(images, feats)
    assert a.shape == (4 * 8 * 8 * 3 + 2 * 4 * 4 * 4, 6) and a.dtype == torch.float64
    # the second level starts after the first; its first anchor is at the origin
    torch.testing.assert_close(a[4 * 8 * 8 * 3], gen.cell_anchors[1][0].double())


def test_yx_axes_match_torchvision() -> None:
    sizes, ratios = (16.0, 24.0, 40.0), (0.5, 1.0, 2.0)
    ours = AnchorGenerator3D(sizes=[sizes], aspect_ratios=[ratios], aspect_ratios_z=[[1.0]])
    theirs = AnchorGenerator(sizes=(sizes,), aspect_ratios=(ratios,))
    (a3,) = ours(ImageList3D(torch.zeros(1, 1, 1, 32, 48), [(1, 32, 48)]), [torch.zeros(1, 1, 1, 4, 6)])
    (a2,) = theirs(ImageList(torch.zeros(1, 1, 32, 48), [(32, 48)]), [torch.zeros(1, 1, 4, 6)])
    torch.testing.assert_close(a3[:, [2, 1, 5, 4]], a2)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="one entry per feature level"):
        AnchorGenerator3D(sizes=[[4.0], [8.0]], aspect_ratios=[[1.0]], aspect_ratios_z=[[1.0]])
    with pytest.raises(ValueError, match=r"aspect_ratios_z\[0\] must hold values > 0"):
        AnchorGenerator3D(sizes=[[4.0]], aspect_ratios=[[1.0]], aspect_ratios_z=[[0.0]])
    with pytest.raises(ValueError, match=r"sizes\[0\] must be a non-empty list"):
        AnchorGenerator3D(sizes=[4.0], aspect_ratios=[[1.0]], aspect_ratios_z=[[1.0]])
    gen = AnchorGenerator3D(sizes=[[4.0]], aspect_ratios=[[1.0]], aspect_ratios_z=[[1.0]])
    images = ImageList3D(torch.zeros(1, 1, 4, 4, 4), [(4, 4, 4)])
    with pytest.raises(ValueError, match="built for 1 feature levels but got 2"):
        gen(images, [torch.zeros(1, 1, 2, 2, 2)] * 2)
    with pytest.raises(ValueError, match=r"feature_maps\[0\] must be \(B, C, D, H, W\), got \(1, 2, 2, 2\)"):
        gen(images, [torch.zeros(1, 2, 2, 2)])


def test_anchors_of_half_feature_maps_are_float32() -> None:
    """bf16 feature maps (autocast) on a wide volume: anchors keep float32 coordinates."""
    gen = AnchorGenerator3D(sizes=[[8.0]], aspect_ratios=[[0.5, 1.0, 2.0]], aspect_ratios_z=[[1.0]])
    images = ImageList3D(torch.zeros(1, 1, 4, 8, 2048), [(4, 8, 2048)])
    (reference,) = gen(images, [torch.zeros(1, 2, 1, 2, 512)])
    (anchors,) = gen(images, [torch.zeros(1, 2, 1, 2, 512, dtype=torch.bfloat16)])
    assert anchors.dtype == torch.float32 and torch.equal(anchors, reference)
