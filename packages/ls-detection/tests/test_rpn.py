"""RPNHead3D and RegionProposalNetwork3D: shapes, flattening order, matching, losses, proposals."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch

from ls_detection.anchors import AnchorGenerator3D
from ls_detection.image_list import ImageList3D
from ls_detection.rpn import RegionProposalNetwork3D, RPNHead3D, concat_box_prediction_layers

CHANNELS = 4


def make_rpn(*, pre: int = 50, post: int = 20, nms_thresh: float = 0.7, conv_depth: int = 1,
             score_thresh: float = 0.0) -> RegionProposalNetwork3D:
    anchors = AnchorGenerator3D(sizes=[[4.0], [8.0]], aspect_ratios=[[0.5, 1.0, 2.0]] * 2,
                                aspect_ratios_z=[[1.0]] * 2)
    head = RPNHead3D(in_channels=CHANNELS, num_anchors=3, conv_depth=conv_depth)
    return RegionProposalNetwork3D(
        anchor_generator=anchors, head=head, fg_iou_thresh=0.5, bg_iou_thresh=0.3, batch_size_per_image=32,
        positive_fraction=0.5, pre_nms_top_n={"training": pre, "testing": pre},
        post_nms_top_n={"training": post, "testing": post}, nms_thresh=nms_thresh, score_thresh=score_thresh,
    )


def make_inputs(batch: int = 2) -> tuple[ImageList3D, OrderedDict[str, torch.Tensor]]:
    sizes = [(8, 16, 16), (6, 13, 16)][:batch]
    images = ImageList3D(torch.zeros(batch, 1, 8, 16, 16), sizes)
    g = torch.Generator().manual_seed(0)
    features = OrderedDict(p2=torch.randn(batch, CHANNELS, 4, 8, 8, generator=g),
                           p3=torch.randn(batch, CHANNELS, 2, 4, 4, generator=g))
    return images, features


def test_head_shapes_and_depth() -> None:
    head = RPNHead3D(in_channels=CHANNELS, num_anchors=5, conv_depth=2)
    assert len(head.conv) == 2
    logits, deltas = head([torch.zeros(2, CHANNELS, 4, 6, 8), torch.zeros(2, CHANNELS, 2, 3, 4)])
    assert [tuple(t.shape) for t in logits] == [(2, 5, 4, 6, 8), (2, 5, 2, 3, 4)]
    assert [tuple(t.shape) for t in deltas] == [(2, 30, 4, 6, 8), (2, 30, 2, 3, 4)]
    assert len(RPNHead3D(in_channels=CHANNELS, num_anchors=1, conv_depth=0).conv) == 0
    with pytest.raises(ValueError, match="num_anchors must be an int >= 1"):
        RPNHead3D(in_channels=CHANNELS, num_anchors=0)


def test_flattening_order_matches_anchor_order() -> None:
    b, a, d, h, w = 2, 3, 2, 3, 4
    # logit of (image, anchor, z, y, x) holds its expected flat index: image-major, then location, then anchor
    index = torch.arange(b * d * h * w * a, dtype=torch.float32).reshape(b, d, h, w, a)
    logits = index.permute(0, 4, 1, 2, 3).contiguous()
    # delta channel a * 6 + c holds 10 * flat index + c
    deltas = (10 * index[..., None] + torch.arange(6.0)).reshape(b, d, h, w, a * 6).permute(0, 4, 1, 2, 3)
    flat_logits, flat_deltas = concat_box_prediction_layers([logits, logits[:, :, :1]],
                                                            [deltas, deltas[:, :, :1]])
    n_level0 = d * h * w * a
    n_level1 = 1 * h * w * a
    total = b * (n_level0 + n_level1)
    assert flat_logits.shape == (total, 1) and flat_deltas.shape == (total, 6)
    per_image = flat_logits.reshape(b, -1)
    arange = lambda n: torch.arange(n, dtype=torch.float32)
    torch.testing.assert_close(per_image[:, :n_level0].reshape(-1), arange(b * n_level0))
    torch.testing.assert_close(per_image[1, n_level0:], arange(n_level1) + n_level0)
    deltas_per_image = flat_deltas.reshape(b, -1, 6)[:, :n_level0].reshape(-1, 6)
    expected = 10 * torch.arange(b * n_level0, dtype=torch.float32)[:, None] + torch.arange(6.0)
    torch.testing.assert_close(deltas_per_image, expected)


def test_matcher_and_labels() -> None:
    rpn = make_rpn()
    anchors = torch.tensor([
        [0.0, 0.0, 0.0, 4.0, 4.0, 4.0],      # equal to the GT box: positive
        [0.0, 0.0, 1.0, 4.0, 4.0, 5.0],      # IoU 3/5 = 0.6 >= 0.5: positive
        [0.0, 0.0, 2.0, 4.0, 4.0, 6.0],      # IoU 2/6 ~ 0.33: between thresholds, ignored
        [10.0, 10.0, 10.0, 14.0, 14.0, 14.0],  # disjoint: negative
    ])
    gt = torch.tensor([[0.0, 0.0, 0.0, 4.0, 4.0, 4.0]])
    targets = [{"boxes": gt}, {"boxes": torch.zeros(0, 6)}]
    labels, matched = rpn.assign_targets_to_anchors([anchors, anchors], targets)
    assert labels[0].tolist() == [1.0, 1.0, -1.0, 0.0]
    torch.testing.assert_close(matched[0], gt.expand(4, 6))
    assert labels[1].tolist() == [0.0, 0.0, 0.0, 0.0] and matched[1].shape == (4, 6)


def test_low_quality_matches_are_positive() -> None:
    rpn = make_rpn()
    anchors = torch.tensor([[0.0, 0.0, 0.0, 2.0, 2.0, 2.0], [20.0, 20.0, 20.0, 22.0, 22.0, 22.0]])
    gt = torch.tensor([[0.0, 0.0, 0.0, 4.0, 4.0, 4.0]])  # best IoU 1/8 < bg_iou_thresh
    labels, _ = rpn.assign_targets_to_anchors([anchors], [{"boxes": gt}])
    assert labels[0].tolist() == [1.0, 0.0]


def test_training_losses_with_and_without_boxes() -> None:
    torch.manual_seed(0)
    rpn = make_rpn().train()
    images, features = make_inputs()
    targets = [{"boxes": torch.tensor([[1.0, 2.0, 3.0, 5.0, 8.0, 9.0]])}, {"boxes": torch.zeros(0, 6)}]
    proposals, losses = rpn(images, features, targets)
    assert set(losses) == {"loss_objectness", "loss_rpn_box_reg"}
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_rpn_box_reg"] > 0
    sum(losses.values()).backward()
    for p in rpn.head.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all()
    assert rpn.head.cls_logits.weight.grad.abs().sum() > 0
    assert rpn.head.bbox_pred.weight.grad.abs().sum() > 0
    assert len(proposals) == 2 and all(p.shape[1] == 6 and p.shape[0] <= 20 for p in proposals)


def test_training_without_any_boxes() -> None:
    rpn = make_rpn().train()
    images, features = make_inputs()
    _, losses = rpn(images, features, [{"boxes": torch.zeros(0, 6)}] * 2)
    assert losses["loss_rpn_box_reg"].item() == 0.0
    assert torch.isfinite(losses["loss_objectness"]) and losses["loss_objectness"] > 0
    sum(losses.values()).backward()
    assert rpn.head.cls_logits.weight.grad.abs().sum() > 0


def test_eval_proposals_inside_each_volume() -> None:
    rpn = make_rpn(post=7).eval()
    images, features = make_inputs()
    with torch.no_grad():
        proposals, losses = rpn(images, features)
    assert losses == {}
    for boxes, size in zip(proposals, images.image_sizes, strict=True):
        assert 0 < boxes.shape[0] <= 7 and boxes.dtype == torch.float32
        assert (boxes[:, :3] >= 0).all()
        assert (boxes[:, 3:] <= torch.tensor(size, dtype=torch.float32)).all()
        assert (boxes[:, 3:] - boxes[:, :3] >= rpn.min_size).all()


def test_pre_nms_top_n_is_per_level_and_score_threshold() -> None:
    rpn = make_rpn(pre=4, post=1000, nms_thresh=1.0).eval()
    images, features = make_inputs(batch=1)
    with torch.no_grad():
        (boxes,), _ = rpn(images, features)
    assert boxes.shape[0] == 2 * 4  # 4 per level, two levels, nothing suppressed at IoU threshold 1
    rpn.score_thresh = 1.0  # sigmoid < 1 everywhere
    with torch.no_grad():
        (boxes,), _ = rpn(images, features)
    assert boxes.shape == (0, 6)


def test_test_caps_follow_the_voxel_count_of_each_image() -> None:
    """With test_caps_shape (4, 8, 16), an 8x16x16 image (4x the voxels) keeps 4x the proposals
    and 4x the anchors per level; a 6x13x16 one ceil(1248 / 512 x cap); training is unscaled."""
    rpn = make_rpn(pre=2, post=3, nms_thresh=1.0).eval()
    rpn.test_caps_shape = (4, 8, 16)
    assert rpn.post_nms_top_n((8, 16, 16)) == 12 and rpn.post_nms_top_n((6, 13, 16)) == 8
    assert rpn.pre_nms_top_n((8, 16, 16)) == 8 and rpn.post_nms_top_n((1, 1, 1)) == 1
    images, features = make_inputs()
    with torch.no_grad():
        proposals, _ = rpn(images, features)
    assert [p.shape[0] for p in proposals] == [12, 8]
    rpn.test_caps_shape = None
    with torch.no_grad():
        proposals, _ = rpn(images, features)
    assert [p.shape[0] for p in proposals] == [3, 3]
    rpn.test_caps_shape = (4, 8, 16)
    rpn.train()
    assert rpn.post_nms_top_n((8, 16, 16)) == 3 and rpn.pre_nms_top_n((8, 16, 16)) == 2


@pytest.mark.parametrize("shape", [(4, 8), (4, 0, 8), (4, 8.0, 8), (True, 8, 8)])
def test_a_bad_test_caps_shape_is_named(shape) -> None:
    anchors = AnchorGenerator3D(sizes=[[4.0]], aspect_ratios=[[1.0]], aspect_ratios_z=[[1.0]])
    with pytest.raises(ValueError, match=r"RegionProposalNetwork3D: test_caps_shape must be 3 positive ints"):
        RegionProposalNetwork3D(
            anchor_generator=anchors, head=RPNHead3D(in_channels=CHANNELS, num_anchors=1), fg_iou_thresh=0.5,
            bg_iou_thresh=0.3, batch_size_per_image=8, positive_fraction=0.5,
            pre_nms_top_n={"training": 1, "testing": 1}, post_nms_top_n={"training": 1, "testing": 1},
            nms_thresh=0.7, test_caps_shape=shape,
        )


def test_errors() -> None:
    rpn = make_rpn().train()
    images, features = make_inputs()
    with pytest.raises(ValueError, match="needs targets in training mode"):
        rpn(images, features)
    with pytest.raises(ValueError, match=r"targets\[1\]\['boxes'\] must be an \(N, 6\) tensor, got \(3, 4\)"):
        rpn(images, features, [{"boxes": torch.zeros(0, 6)}, {"boxes": torch.zeros(3, 4)}])
    with pytest.raises(ValueError, match=r"features\['p3'\] must be \(B=2, C, D, H, W\)"):
        rpn(images, OrderedDict(p2=features["p2"], p3=features["p3"][:1]), [{"boxes": torch.zeros(0, 6)}] * 2)
    with pytest.raises(ValueError, match="exactly the keys 'training' and 'testing'"):
        RegionProposalNetwork3D(anchor_generator=rpn.anchor_generator, head=rpn.head, fg_iou_thresh=0.7,
                                bg_iou_thresh=0.3, batch_size_per_image=8, positive_fraction=0.5,
                                pre_nms_top_n={"train": 5}, post_nms_top_n={"training": 1, "testing": 1},
                                nms_thresh=0.7)
    with pytest.raises(ValueError, match="bg_iou_thresh <= fg_iou_thresh"):
        RegionProposalNetwork3D(anchor_generator=rpn.anchor_generator, head=rpn.head, fg_iou_thresh=0.3,
                                bg_iou_thresh=0.7, batch_size_per_image=8, positive_fraction=0.5,
                                pre_nms_top_n={"training": 1, "testing": 1},
                                post_nms_top_n={"training": 1, "testing": 1}, nms_thresh=0.7)
