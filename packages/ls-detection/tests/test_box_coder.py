"""BoxCoder3D: round trips, hand-checked decoding, torchvision's 2-D coder on the y/x axes."""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.models.detection._utils import BoxCoder

from ls_detection.box_coder import BoxCoder3D


def random_boxes(n: int, generator: torch.Generator, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    lo = torch.rand(n, 3, generator=generator, dtype=dtype) * 50
    extent = torch.rand(n, 3, generator=generator, dtype=dtype) * 30 + 0.5
    return torch.cat((lo, lo + extent), dim=1)


@pytest.mark.parametrize("weights", [(1.0,) * 6, (10.0, 10.0, 10.0, 5.0, 5.0, 5.0), (1, 2, 3, 4, 5, 6)])
def test_encode_decode_round_trip(weights: tuple[float, ...]) -> None:
    g = torch.Generator().manual_seed(0)
    coder = BoxCoder3D(weights)
    gt, anchors = random_boxes(40, g), random_boxes(40, g)
    deltas = coder.encode_single(gt, anchors)
    assert deltas.shape == (40, 6) and deltas.dtype == torch.float64
    decoded = coder.decode_single(deltas, anchors)
    torch.testing.assert_close(decoded, gt, rtol=0, atol=1e-10)


def test_encode_and_decode_lists_per_image() -> None:
    g = torch.Generator().manual_seed(1)
    coder = BoxCoder3D((1.0,) * 6)
    gts = [random_boxes(3, g), random_boxes(0, g), random_boxes(5, g)]
    anchors = [random_boxes(3, g), random_boxes(0, g), random_boxes(5, g)]
    deltas = coder.encode(gts, anchors)
    assert isinstance(deltas, tuple) and [d.shape[0] for d in deltas] == [3, 0, 5]
    decoded = coder.decode(torch.cat(deltas), anchors)
    assert decoded.shape == (8, 1, 6)
    torch.testing.assert_close(decoded[:, 0], torch.cat(gts), rtol=0, atol=1e-10)


def test_decode_with_weights_by_hand() -> None:
    coder = BoxCoder3D((10.0, 10.0, 10.0, 5.0, 5.0, 5.0))
    anchor = torch.tensor([[0.0, 0.0, 0.0, 10.0, 20.0, 40.0]])  # centre (5, 10, 20), extents (10, 20, 40)
    # centre shifted by (+1, -2, +4) voxels = (0.1, -0.1, 0.1) extents; extents x2, x1, x0.5
    codes = torch.tensor([[1.0, -1.0, 1.0, 5 * math.log(2.0), 0.0, 5 * math.log(0.5)]])
    decoded = coder.decode_single(codes, anchor)
    expected = torch.tensor([[6 - 10.0, 8 - 10.0, 24 - 10.0, 6 + 10.0, 8 + 10.0, 24 + 10.0]])
    torch.testing.assert_close(decoded, expected)
    torch.testing.assert_close(coder.encode_single(expected, anchor), codes)


def test_decode_several_boxes_per_reference() -> None:
    coder = BoxCoder3D((1.0,) * 6)
    anchors = torch.tensor([[0.0, 0.0, 0.0, 2.0, 4.0, 8.0], [1.0, 1.0, 1.0, 3.0, 3.0, 3.0]])
    codes = torch.zeros(2, 6 * 3)
    codes[:, 6 + 0] = 0.5  # second box of each reference moves by half the z extent
    decoded = coder.decode(codes, [anchors[:1], anchors[1:]])
    assert decoded.shape == (2, 3, 6)
    torch.testing.assert_close(decoded[:, 0], anchors)
    torch.testing.assert_close(decoded[:, 2], anchors)
    torch.testing.assert_close(decoded[:, 1], anchors + torch.tensor([[1.0, 0, 0, 1.0, 0, 0]]))


def test_matches_torchvision_on_the_yx_axes() -> None:
    g = torch.Generator().manual_seed(2)
    gt, anchors = random_boxes(20, g, torch.float32), random_boxes(20, g, torch.float32)
    coder = BoxCoder3D((7.0, 2.0, 3.0, 11.0, 5.0, 6.0))
    tv = BoxCoder((3.0, 2.0, 6.0, 5.0))  # (wx, wy, ww, wh)
    to_2d = [2, 1, 5, 4]  # (x1, y1, x2, y2)
    ours = coder.encode_single(gt, anchors)
    theirs = tv.encode_single(gt[:, to_2d], anchors[:, to_2d])
    torch.testing.assert_close(ours[:, [2, 1, 5, 4]], theirs)
    codes = torch.randn(20, 6, generator=g)
    ours_dec = coder.decode_single(codes, anchors)
    theirs_dec = tv.decode_single(codes[:, [2, 1, 5, 4]], anchors[:, to_2d])
    torch.testing.assert_close(ours_dec[:, to_2d], theirs_dec)


def test_decode_clips_large_log_extents() -> None:
    coder = BoxCoder3D((1.0,) * 6, bbox_xform_clip=math.log(4.0))
    anchor = torch.tensor([[0.0, 0.0, 0.0, 2.0, 2.0, 2.0]])
    decoded = coder.decode_single(torch.tensor([[0.0, 0.0, 0.0, 100.0, 100.0, 0.0]]), anchor)
    torch.testing.assert_close(decoded, torch.tensor([[-3.0, -3.0, 0.0, 5.0, 5.0, 2.0]]))


def test_decode_of_no_boxes() -> None:
    coder = BoxCoder3D((1.0,) * 6)
    assert coder.decode(torch.zeros(0, 6), [torch.zeros(0, 6)]).shape == (0, 1, 6)
    assert coder.decode(torch.zeros(0, 12), [torch.zeros(0, 6)]).shape == (0, 2, 6)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="6 floats"):
        BoxCoder3D((1.0, 1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="> 0"):
        BoxCoder3D((1.0, 1.0, 0.0, 1.0, 1.0, 1.0))
    coder = BoxCoder3D((1.0,) * 6)
    with pytest.raises(ValueError, match=r"proposals must have shape \(N, 6\), got \(3, 4\)"):
        coder.encode_single(torch.zeros(3, 6), torch.zeros(3, 4))
    with pytest.raises(ValueError, match=r"rel_codes must have shape \(N, 6 \* K\)"):
        coder.decode_single(torch.zeros(3, 7), torch.zeros(3, 6))


def test_decode_of_half_deltas_keeps_float32_coordinates() -> None:
    """Deltas from a head under bf16/fp16 autocast: the reference boxes are not rounded to them."""
    coder = BoxCoder3D((10.0, 10.0, 10.0, 5.0, 5.0, 5.0))
    boxes = [torch.tensor([[3.3, 101.7, 701.3, 9.1, 150.2, 745.9]])]
    for dtype in (torch.bfloat16, torch.float16):
        decoded = coder.decode(torch.zeros(1, 12, dtype=dtype), boxes)
        assert decoded.dtype == torch.float32
        torch.testing.assert_close(decoded[0, 1], boxes[0][0])
    assert coder.decode(torch.zeros(1, 6, dtype=torch.float64), boxes).dtype == torch.float64
