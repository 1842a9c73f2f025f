"""Tests of RoIHeads3D (training samples, losses, inference) and of the box and mask heads."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ls_detection.box_head import FastRCNNPredictor3D, TwoMLPHead3D
from ls_detection.mask_head import MaskRCNNHeads3D, MaskRCNNPredictor3D
from ls_detection.poolers import MultiScaleRoIAlign3D
from ls_detection.roi_heads import (
    RoIHeads3D,
    fastrcnn_loss,
    maskrcnn_loss,
    project_masks_on_boxes,
    soft_dice_loss,
)

IMAGE = (8, 16, 16)
C = 8
NUM_CLASSES = 3


def _heads(*, with_mask: bool = True, score_thresh: float = 0.0, detections_per_img: int = 5,
           fg_iou_thresh: float = 0.5, bg_iou_thresh: float = 0.5,
           mask_dice_weight: float = 0.0) -> RoIHeads3D:
    torch.manual_seed(0)
    box_pool = MultiScaleRoIAlign3D(featmap_names=["p2", "p3"], output_size=3, sampling_ratio=2,
                                    canonical_scale=6.0, canonical_level=3)
    mask_parts = {}
    if with_mask:
        mask_parts = {
            "mask_roi_pool": MultiScaleRoIAlign3D(featmap_names=["p2", "p3"], output_size=4, sampling_ratio=2,
                                                  canonical_scale=6.0, canonical_level=3),
            "mask_head": MaskRCNNHeads3D(in_channels=C, layers=[8, 8]),
            "mask_predictor": MaskRCNNPredictor3D(in_channels=8, dim_reduced=8, num_classes=NUM_CLASSES),
        }
    return RoIHeads3D(
        box_roi_pool=box_pool, box_head=TwoMLPHead3D(in_channels=C * 27, representation_size=16),
        box_predictor=FastRCNNPredictor3D(in_channels=16, num_classes=NUM_CLASSES),
        fg_iou_thresh=fg_iou_thresh, bg_iou_thresh=bg_iou_thresh, batch_size_per_image=16,
        positive_fraction=0.25, bbox_reg_weights=None, score_thresh=score_thresh, nms_thresh=0.5,
        detections_per_img=detections_per_img, mask_dice_weight=mask_dice_weight, **mask_parts,
    )


def _features(requires_grad: bool = False) -> OrderedDict[str, Tensor]:
    # anisotropic strides: p2 (2, 4, 4), p3 (4, 8, 8) on an (8, 16, 16) image
    gen = torch.Generator().manual_seed(1)
    feats = OrderedDict([("p2", torch.randn(2, C, 4, 4, 4, generator=gen)),
                         ("p3", torch.randn(2, C, 2, 2, 2, generator=gen))])
    for f in feats.values():
        f.requires_grad_(requires_grad)
    return feats


def _target(boxes: list[list[float]], labels: list[int]) -> dict[str, Tensor]:
    masks = torch.zeros((len(boxes), *IMAGE), dtype=torch.uint8)
    for m, b in zip(masks, boxes, strict=True):
        z1, y1, x1, z2, y2, x2 = (int(v) for v in b)
        m[z1:z2, y1:y2, x1:x2] = 1
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 6),
            "labels": torch.tensor(labels, dtype=torch.int64), "masks": masks}


def _proposals() -> list[Tensor]:
    gen = torch.Generator().manual_seed(2)
    out = []
    for _ in range(2):
        low = torch.rand(12, 3, generator=gen) * torch.tensor([4.0, 8.0, 8.0])
        size = 1 + torch.rand(12, 3, generator=gen) * torch.tensor([4.0, 8.0, 8.0])
        out.append(torch.cat([low, torch.minimum(low + size, torch.tensor([8.0, 16.0, 16.0]))], dim=1))
    return out


TARGETS = [_target([[1, 2, 2, 5, 10, 9], [4, 8, 9, 8, 15, 16]], [1, 2]), _target([], [])]


def test_train_losses_finite_with_gradients() -> None:
    heads = _heads().train()
    feats = _features(requires_grad=True)
    result, losses = heads(feats, _proposals(), [IMAGE, IMAGE], TARGETS)
    assert result == []
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_mask"}
    for name, value in losses.items():
        assert value.dim() == 0 and torch.isfinite(value), name
    assert losses["loss_mask"] > 0 and losses["loss_box_reg"] > 0
    sum(losses.values()).backward()
    for name, f in feats.items():
        assert f.grad is not None and f.grad[0].abs().sum() > 0, name
    for name, p in heads.named_parameters():
        assert p.grad is not None, name


def test_the_dice_weight_reaches_the_mask_loss() -> None:
    losses = {}
    for weight in (0.0, 1.0):
        torch.manual_seed(3)  # the same proposal sampling for both
        _, losses[weight] = _heads(mask_dice_weight=weight).train()(
            _features(), _proposals(), [IMAGE, IMAGE], TARGETS
        )
    torch.testing.assert_close(losses[1.0]["loss_classifier"], losses[0.0]["loss_classifier"])
    assert 0 < losses[1.0]["loss_mask"] - losses[0.0]["loss_mask"] <= 1.0  # a Dice loss is in [0, 1]


def test_zero_gt_batch_trains() -> None:
    heads = _heads().train()
    feats = _features(requires_grad=True)
    _, losses = heads(feats, _proposals(), [IMAGE, IMAGE], [_target([], []), _target([], [])])
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_box_reg"] == 0 and losses["loss_mask"] == 0
    assert losses["loss_mask"].requires_grad and losses["loss_classifier"] > 0
    sum(losses.values()).backward()
    assert feats["p2"].grad is not None


def test_training_samples_match_and_sample() -> None:
    heads = _heads(fg_iou_thresh=0.5, bg_iou_thresh=0.3)
    gt = _target([[0, 0, 0, 4, 4, 4]], [2])
    proposals = torch.tensor([
        [0.0, 0.0, 0.0, 4.0, 4.0, 2.0],  # IoU 0.5 -> foreground, class 2
        [0.0, 0.0, 0.0, 4.0, 4.0, 1.6],  # IoU 0.4 -> ignored, not sampled
        [0.0, 0.0, 0.0, 4.0, 4.0, 1.0],  # IoU 0.25 -> background
        [8.0, 8.0, 8.0, 12.0, 12.0, 12.0],  # disjoint -> background
    ])
    props, matched, labels, targets = heads.select_training_samples([proposals], [gt])
    assert props[0].shape[0] == 4  # 3 sampled proposals + the appended GT box
    rows = {tuple(p.tolist()): (int(lab), t)
            for p, lab, t in zip(props[0], labels[0], targets[0], strict=True)}
    assert rows[(0.0, 0.0, 0.0, 4.0, 4.0, 4.0)][0] == 2  # the GT box itself
    torch.testing.assert_close(rows[(0.0, 0.0, 0.0, 4.0, 4.0, 4.0)][1], torch.zeros(6))
    assert rows[(0.0, 0.0, 0.0, 4.0, 4.0, 2.0)][0] == 2
    assert rows[(0.0, 0.0, 0.0, 4.0, 4.0, 1.0)][0] == 0
    assert rows[(8.0, 8.0, 8.0, 12.0, 12.0, 12.0)][0] == 0
    assert (0.0, 0.0, 0.0, 4.0, 4.0, 1.6) not in {tuple(round(v, 4) for v in k) for k in rows}
    # x extent 2 -> 4 around a centre 1 -> 2: dx = 10 * (2 - 1) / 2 = 5, dw = 5 * log(4 / 2)
    delta = rows[(0.0, 0.0, 0.0, 4.0, 4.0, 2.0)][1]
    dw = 5.0 * torch.log(torch.tensor(2.0))
    torch.testing.assert_close(delta, torch.tensor([0.0, 0.0, 5.0, 0.0, 0.0, dw]))
    assert matched[0].tolist() == [0, 0, 0, 0]


def test_fastrcnn_loss_uses_gt_class_deltas() -> None:
    class_logits = torch.tensor([[0.0, 0.0, 0.0], [2.0, 0.0, 0.0]])
    box_regression = torch.full((2, 18), 100.0)
    box_regression[0, 12:18] = 0.5  # class 2 deltas of the positive RoI
    labels = [torch.tensor([2, 0])]
    targets = [torch.zeros(2, 6)]
    cls_loss, box_loss = fastrcnn_loss(class_logits, box_regression, labels, targets)
    torch.testing.assert_close(cls_loss, F.cross_entropy(class_logits, labels[0]))
    beta = 1 / 9
    torch.testing.assert_close(box_loss, torch.tensor((0.5 - beta / 2) * 6 / 2))


def test_soft_dice_loss_against_its_definition() -> None:
    torch.manual_seed(0)
    logits = torch.randn(3, 2, 4, 4)
    targets = (torch.rand(3, 2, 4, 4) > 0.5).float()
    p = torch.sigmoid(logits)
    expected = torch.stack([
        1 - (2 * (p[k] * targets[k]).sum() + 1) / (p[k].sum() + targets[k].sum() + 1) for k in range(3)
    ]).mean()
    torch.testing.assert_close(soft_dice_loss(logits, targets), expected)
    confident = torch.where(targets > 0, 30.0, -30.0)  # a perfect mask costs (almost) nothing
    assert soft_dice_loss(confident, targets) < 1e-6


def test_mask_loss_adds_the_weighted_dice_term() -> None:
    torch.manual_seed(0)
    masks = torch.zeros(2, 8, 16, 16)
    masks[0, 1:5, 2:9, 3:10] = 1
    masks[1, 4:8, 8:15, 6:12] = 1
    proposals = [torch.tensor([[1.0, 2, 3, 5, 9, 10], [4, 8, 6, 8, 15, 12]])]
    matched, labels = [torch.tensor([0, 1])], [torch.tensor([1, 2])]
    logits = torch.randn(2, NUM_CLASSES, 4, 6, 6, requires_grad=True)
    bce = maskrcnn_loss(logits, proposals, [masks], labels, matched)
    both = maskrcnn_loss(logits, proposals, [masks], labels, matched, dice_weight=0.5)
    targets = project_masks_on_boxes(masks, proposals[0], matched[0], (4, 6, 6))
    picked = logits[torch.arange(2), labels[0]]
    torch.testing.assert_close(bce, F.binary_cross_entropy_with_logits(picked, targets))
    torch.testing.assert_close(both, bce + 0.5 * soft_dice_loss(picked, targets))
    both.backward()
    assert logits.grad is not None and logits.grad[:, 0].abs().sum() == 0  # only the GT class
    with pytest.raises(ValueError, match="mask_dice_weight"):
        _heads(mask_dice_weight=-1.0)


def test_project_masks_on_boxes_aligned() -> None:
    gt = torch.zeros(2, 4, 8, 8, dtype=torch.uint8)
    gt[0, :, :, :4] = 1  # left half along x
    gt[1] = 1
    boxes = torch.tensor([[0.0, 0.0, 0.0, 4.0, 8.0, 8.0], [1.0, 2.0, 2.0, 3.0, 6.0, 6.0]])
    out = project_masks_on_boxes(gt, boxes, torch.tensor([0, 1]), (2, 4, 4))
    assert out.shape == (2, 2, 4, 4)
    expected = torch.zeros(2, 4, 4)
    expected[..., :2] = 1
    torch.testing.assert_close(out[0], expected)
    torch.testing.assert_close(out[1], torch.ones(2, 4, 4))


def test_eval_outputs() -> None:
    heads = _heads(detections_per_img=5).eval()
    feats = _features()
    with torch.no_grad():
        result, losses = heads(feats, _proposals(), [IMAGE, (7, 15, 16)])
    assert losses == {}
    assert len(result) == 2
    for r, shape in zip(result, [IMAGE, (7, 15, 16)], strict=True):
        n = r["boxes"].shape[0]
        assert 0 < n <= 5
        assert r["boxes"].shape == (n, 6) and r["scores"].shape == (n,) and r["labels"].shape == (n,)
        assert r["masks"].shape == (n, 1, 8, 8, 8)
        assert r["labels"].dtype == torch.int64
        assert bool(((r["labels"] >= 1) & (r["labels"] < NUM_CLASSES)).all())
        assert bool((r["boxes"][:, 3:] <= torch.tensor(shape, dtype=torch.float32)).all())
        assert bool((r["boxes"][:, :3] >= 0).all())
        assert bool((r["scores"][:-1] >= r["scores"][1:]).all())
        assert bool(((r["masks"] >= 0) & (r["masks"] <= 1)).all())
    # the masks are the sigmoid of the predicted class's channel
    with torch.no_grad():
        assert heads.mask_roi_pool is not None and heads.mask_head is not None
        assert heads.mask_predictor is not None
        logits = heads.mask_predictor(heads.mask_head(heads.mask_roi_pool(
            feats, [r["boxes"] for r in result], [IMAGE, (7, 15, 16)])))
    labels = torch.cat([r["labels"] for r in result])
    expected = logits[torch.arange(labels.shape[0]), labels].sigmoid()[:, None]
    torch.testing.assert_close(torch.cat([r["masks"] for r in result]), expected)


def test_the_detection_cap_follows_the_voxel_count_with_a_test_caps_shape() -> None:
    heads = _heads(detections_per_img=1).eval()
    with torch.no_grad():
        plain, _ = heads(_features(), _proposals(), [IMAGE, (7, 15, 16)])
    assert [r["boxes"].shape[0] for r in plain] == [1, 1]
    assert heads.capped == [True, True]  # more than one detection survived NMS in each image
    heads.test_caps_shape = (1, 1, 1)  # one detection per voxel: no cap in practice
    with torch.no_grad():
        scaled, _ = heads(_features(), _proposals(), [IMAGE, (7, 15, 16)])
    assert all(r["boxes"].shape[0] > 1 for r in scaled) and heads.capped == [False, False]
    assert heads.detections_for((7, 15, 16)) == 7 * 15 * 16
    heads.test_caps_shape = (8, 16, 16)
    assert heads.detections_for((16, 16, 16)) == 2 and heads.detections_for((1, 2, 2)) == 1
    assert heads.train().detections_for((16, 16, 16)) == 1  # training keeps the plain count


@pytest.mark.parametrize("cap", [3, 50])
def test_min_score_keeps_exactly_the_detections_at_or_above_it(cap: int) -> None:
    """The detections scored >= min_score, their boxes, labels and masks, are those of a run without
    it (NMS and the cap only ever prefer higher scores); ``capped`` then speaks of them alone."""
    heads = _heads(detections_per_img=cap).eval()
    feats, shapes = _features(), [IMAGE, (7, 15, 16)]
    with torch.no_grad():
        full, _ = heads(feats, _proposals(), shapes)
        capped_full = list(heads.capped)
        scores = torch.cat([r["scores"] for r in full])
        threshold = float(scores.median())  # a score that is itself a detection's: ">=" keeps it
        cut, _ = heads(feats, _proposals(), shapes, min_score=threshold)
    assert any(bool((r["scores"] < threshold).any()) for r in full)  # something is dropped
    for r, c in zip(full, cut, strict=True):
        keep = r["scores"] >= threshold
        assert int(keep.sum()) == c["scores"].shape[0]
        for key in ("boxes", "scores", "labels", "masks"):
            torch.testing.assert_close(c[key], r[key][keep], rtol=1e-5, atol=1e-6)
    capped_cut = list(heads.capped)
    with torch.no_grad():  # how many detections >= threshold survive NMS when nothing caps them
        uncapped, _ = _heads(detections_per_img=1000).eval()(feats, _proposals(), shapes)
    above = [int((r["scores"] >= threshold).sum()) for r in uncapped]
    assert capped_cut == [n > cap for n in above]
    assert capped_full == [r["scores"].shape[0] > cap for r in uncapped]
    assert capped_full != capped_cut or cap == 50  # the cap of 3 drops detections below the threshold


def test_min_score_must_be_a_score() -> None:
    heads = _heads()
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="min_score"):
            heads.eval()(_features(), _proposals(), [IMAGE, IMAGE], min_score=bad)


def test_eval_under_half_autocast_gives_float32_boxes_and_scores() -> None:
    """Boxes far from the origin and scores are not rounded to the bf16 of the head's outputs."""
    heads = _heads(detections_per_img=50).eval()
    feats = _features()
    proposals = [p + torch.tensor([0.0, 0.0, 700.0, 0.0, 0.0, 700.0]) for p in _proposals()]
    shapes = [(8, 16, 800), (8, 16, 800)]
    with torch.no_grad():
        reference, _ = heads(feats, proposals, shapes)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            result, _ = heads(feats, proposals, shapes)
    for r, ref in zip(result, reference, strict=True):
        assert r["boxes"].dtype == torch.float32 and r["scores"].dtype == torch.float32
        assert r["boxes"].shape[0] > 0 and not bool((r["boxes"][:, [2, 5]] % 1 == 0).all())
        # each box is a float32 box of the reference up to the bf16 deltas (bf16 coordinates near
        # 700 would be multiples of 4); the order may differ where bf16 scores tie
        gap = (r["boxes"][:, None, :] - ref["boxes"][None, :, :]).abs().amax(dim=2).amin(dim=1)
        assert float(gap.max()) < 0.05


def test_no_detections_give_empty_tensors() -> None:
    heads = _heads(score_thresh=1.0).eval()
    with torch.no_grad():
        result, _ = heads(_features(), _proposals(), [IMAGE, IMAGE])
    for r in result:
        assert r["boxes"].shape == (0, 6) and r["scores"].shape == (0,) and r["labels"].shape == (0,)
        assert r["masks"].shape == (0, 1, 8, 8, 8)
    # no proposals at all
    with torch.no_grad():
        result, _ = heads(_features(), [torch.zeros(0, 6), torch.zeros(0, 6)], [IMAGE, IMAGE])
    assert result[0]["boxes"].shape == (0, 6) and result[1]["masks"].shape == (0, 1, 8, 8, 8)


def test_without_mask_branch() -> None:
    heads = _heads(with_mask=False).train()
    _, losses = heads(_features(), _proposals(), [IMAGE, IMAGE], TARGETS)
    assert set(losses) == {"loss_classifier", "loss_box_reg"}
    heads.eval()
    with torch.no_grad():
        result, _ = heads(_features(), _proposals(), [IMAGE, IMAGE])
    assert "masks" not in result[0]


def test_bad_targets() -> None:
    heads = _heads().train()
    bad = [_target([[1, 2, 2, 5, 10, 9]], [3]), _target([], [])]
    with pytest.raises(ValueError, match=r"targets\[0\]\['labels'\] holds class 3.*num_classes=3"):
        heads(_features(), _proposals(), [IMAGE, IMAGE], bad)
    with pytest.raises(ValueError, match="targets are required"):
        heads(_features(), _proposals(), [IMAGE, IMAGE], None)
    no_masks = [{k: v for k, v in t.items() if k != "masks"} for t in TARGETS]
    with pytest.raises(ValueError, match=r"targets\[0\] has no 'masks' key"):
        heads(_features(), _proposals(), [IMAGE, IMAGE], no_masks)
    with pytest.raises(ValueError, match="mask branch needs"):
        RoIHeads3D(box_roi_pool=nn.Identity(), box_head=nn.Identity(), box_predictor=nn.Identity(),
                   fg_iou_thresh=0.5, bg_iou_thresh=0.5, batch_size_per_image=4, positive_fraction=0.25,
                   bbox_reg_weights=None, score_thresh=0.05, nms_thresh=0.5, detections_per_img=10,
                   mask_head=nn.Identity())


def test_head_shapes() -> None:
    x = torch.randn(5, C, 3, 3, 3)
    rep = TwoMLPHead3D(in_channels=C * 27, representation_size=16)(x)
    logits, deltas = FastRCNNPredictor3D(in_channels=16, num_classes=4)(rep)
    assert rep.shape == (5, 16) and logits.shape == (5, 4) and deltas.shape == (5, 24)
    with pytest.raises(ValueError, match="in_channels=100"):
        TwoMLPHead3D(in_channels=100, representation_size=16)(x)
    head = MaskRCNNHeads3D(in_channels=C, layers=[4, 6], dilation=2, norm_layer=nn.BatchNorm3d)
    m = head(torch.randn(2, C, 4, 4, 4))
    assert m.shape == (2, 6, 4, 4, 4)
    assert MaskRCNNPredictor3D(in_channels=6, dim_reduced=5, num_classes=4)(m).shape == (2, 4, 8, 8, 8)
