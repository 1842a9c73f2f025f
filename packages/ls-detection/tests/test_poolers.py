"""Tests of LevelMapper3D and MultiScaleRoIAlign3D."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch

from ls_detection.poolers import LevelMapper3D, MultiScaleRoIAlign3D, infer_scale
from ls_ops import roi_align3d


def _cube(side: float, corner: float = 0.0) -> list[float]:
    return [corner, corner, corner, corner + side, corner + side, corner + side]


def test_level_mapper_hand_picked_sizes() -> None:
    mapper = LevelMapper3D(k_min=2, k_max=5, canonical_scale=224, canonical_level=4)
    boxes = torch.tensor([
        _cube(224),  # canonical -> level 4
        _cube(112),  # half -> level 3
        _cube(56),  # quarter -> level 2
        _cube(28),  # below the finest level -> clamped to 2
        _cube(448),  # -> level 5
        _cube(2000),  # above the coarsest level -> clamped to 5
        [0, 0, 0, 56, 448, 448],  # anisotropic, cube root of the volume is 224 -> level 4
        [0, 0, 0, 56, 440, 448],  # just below 224^3 -> level 3
        _cube(223.0),  # just below the canonical size -> level 3
    ], dtype=torch.float32)
    levels = mapper([boxes[:4], boxes[4:]])
    assert levels.dtype == torch.int64
    assert levels.tolist() == [2, 1, 0, 0, 3, 3, 2, 1, 1]


def test_infer_scale_per_axis() -> None:
    assert infer_scale((4, 4, 4), (8, 16, 16)) == (0.5, 0.25, 0.25)
    # padded or odd sizes round to the nearest power of two
    assert infer_scale((3, 5, 4), (10, 18, 16)) == (0.25, 0.25, 0.25)


def _features(seed: int = 0) -> OrderedDict[str, torch.Tensor]:
    # image (8, 16, 16); p2 stride (2, 4, 4), p3 stride (4, 8, 8): anisotropic, z finer than y, x
    gen = torch.Generator().manual_seed(seed)
    return OrderedDict([
        ("p2", torch.randn(2, 8, 4, 4, 4, generator=gen)),
        ("p3", torch.randn(2, 8, 2, 2, 2, generator=gen)),
        ("pool", torch.randn(2, 8, 1, 1, 1, generator=gen)),  # not pooled from
    ])


def test_pooled_equals_roi_align_on_chosen_level() -> None:
    feats = _features()
    pooler = MultiScaleRoIAlign3D(featmap_names=["p2", "p3"], output_size=(2, 3, 3), sampling_ratio=2,
                                  canonical_scale=8.0, canonical_level=3)
    boxes = [
        torch.tensor([[0.0, 0.0, 0.0, 4.0, 4.0, 4.0],  # cbrt 4 -> level 2 (p2)
                      [1.0, 2.0, 3.0, 7.0, 13.0, 15.0],  # cbrt(6*11*12) = 9.2 -> level 3 (p3)
                      [2.0, 1.0, 1.0, 6.0, 9.0, 9.0]]),  # cbrt(256) = 6.3 -> level 2
        torch.tensor([[0.5, 0.5, 0.5, 7.5, 15.5, 15.5]]),  # -> level 3 (clamped from 4)
    ]
    out = pooler(feats, boxes, [(8, 16, 16), (8, 16, 16)])
    assert out.shape == (4, 8, 2, 3, 3)
    assert pooler.scales == [(0.5, 0.25, 0.25), (0.25, 0.125, 0.125)]
    assert pooler.map_levels is not None
    assert (pooler.map_levels.k_min, pooler.map_levels.k_max) == (2, 3)
    expected_level = [0, 1, 0, 1]
    rois = torch.cat([torch.cat([torch.full((len(b), 1), float(i)), b], dim=1) for i, b in enumerate(boxes)])
    for k, level in enumerate(expected_level):
        name, scale = ("p2", pooler.scales[0]) if level == 0 else ("p3", pooler.scales[1])
        ref = roi_align3d(feats[name], rois[k : k + 1], (2, 3, 3), scale, 2)
        torch.testing.assert_close(out[k : k + 1], ref, rtol=0, atol=0)
        # and the pooled value differs from the other level (the check is not vacuous)
        other_name, other_scale = ("p3", pooler.scales[1]) if level == 0 else ("p2", pooler.scales[0])
        other = roi_align3d(feats[other_name], rois[k : k + 1], (2, 3, 3), other_scale, 2)
        assert not torch.allclose(out[k : k + 1], other)


def test_feature_strides_match_inferred_scales_and_gradients_flow() -> None:
    feats = OrderedDict((k, v.requires_grad_(True)) for k, v in _features(1).items())
    boxes = [torch.tensor([[0.0, 0.0, 0.0, 4.0, 4.0, 4.0], [1.0, 1.0, 1.0, 8.0, 16.0, 16.0]]),
             torch.zeros(0, 6)]
    inferred = MultiScaleRoIAlign3D(featmap_names=["p2", "p3"], output_size=2, sampling_ratio=2,
                                    canonical_scale=8.0, canonical_level=3)
    given = MultiScaleRoIAlign3D(featmap_names=["p2", "p3"], output_size=2, sampling_ratio=2,
                                 canonical_scale=8.0, canonical_level=3,
                                 feature_strides=[(2, 4, 4), (4, 8, 8)])
    assert given.scales == [(0.5, 0.25, 0.25), (0.25, 0.125, 0.125)]
    out = inferred(feats, boxes, [(8, 16, 16), (7, 15, 16)])
    torch.testing.assert_close(out, given(feats, boxes, [(8, 16, 16), (7, 15, 16)]))
    out.square().sum().backward()
    assert feats["p2"].grad is not None and feats["p2"].grad[0].abs().sum() > 0
    assert feats["p3"].grad is not None and feats["p3"].grad[0].abs().sum() > 0
    assert feats["p2"].grad[1].abs().sum() == 0  # the second image has no boxes
    # scales are inferred at every call: a batch padded too much for inference is refused
    with pytest.raises(ValueError, match=r"cannot hold an image of \(10, 20, 20\).*feature_strides"):
        inferred(feats, boxes, [(10, 20, 20), (7, 15, 16)])


def test_single_level_and_empty_boxes() -> None:
    feats = _features()
    pooler = MultiScaleRoIAlign3D(featmap_names=["p2"], output_size=3, sampling_ratio=2)
    boxes = [torch.tensor([[1.0, 2.0, 3.0, 6.0, 10.0, 12.0]]),
             torch.tensor([[0.0, 0.0, 0.0, 8.0, 16.0, 16.0]])]
    out = pooler(feats, boxes, [(8, 16, 16)] * 2)
    ref = roi_align3d(feats["p2"], boxes, 3, (0.5, 0.25, 0.25), 2)
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    multi = MultiScaleRoIAlign3D(featmap_names=["p2", "p3"], output_size=(1, 2, 3), sampling_ratio=2)
    empty = multi(feats, [torch.zeros(0, 6), torch.zeros(0, 6)], [(8, 16, 16)] * 2)
    assert empty.shape == (0, 8, 1, 2, 3)


def test_bad_inputs() -> None:
    feats = _features()
    pooler = MultiScaleRoIAlign3D(featmap_names=["p2", "p4"], output_size=2, sampling_ratio=2)
    with pytest.raises(KeyError, match="p4"):
        pooler(feats, [torch.zeros(0, 6)] * 2, [(8, 16, 16)] * 2)
    skipping = MultiScaleRoIAlign3D(featmap_names=["p2", "pool"], output_size=2, sampling_ratio=2)
    with pytest.raises(ValueError, match="consecutive"):
        skipping(feats, [torch.zeros(0, 6)] * 2, [(8, 16, 16)] * 2)
    good = MultiScaleRoIAlign3D(featmap_names=["p2", "p3"], output_size=2, sampling_ratio=2)
    with pytest.raises(ValueError, match=r"boxes\[1\] must be \(K, 6\)"):
        good(feats, [torch.zeros(0, 6), torch.zeros(3, 4)], [(8, 16, 16)] * 2)
    with pytest.raises(ValueError, match="1 box tensors for a batch of 2"):
        good(feats, [torch.zeros(0, 6)], [(8, 16, 16)])
    with pytest.raises(ValueError, match="feature_strides"):
        MultiScaleRoIAlign3D(featmap_names=["p2", "p3"], output_size=2, sampling_ratio=2, feature_strides=[4])
