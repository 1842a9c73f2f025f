"""MaskRCNN3D end to end: losses in train mode, predictions in eval mode, and bad inputs."""

from __future__ import annotations

import math

import pytest
import torch

LOSSES = {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg", "loss_mask"}


def _train_step(model, images, targets):
    model.train()
    losses = model(images, targets)
    assert set(losses) == LOSSES
    for name, value in losses.items():
        assert value.dim() == 0 and math.isfinite(value.item()), name
    sum(losses.values()).backward()
    return losses


@pytest.mark.slow(seconds=7)
def test_train_mode_returns_five_finite_losses_and_gradients_reach_the_backbone(small_detector, scene):
    torch.manual_seed(0)
    model = small_detector()
    image, target = scene()
    _train_step(model, [image, image.flip(-1)], [target, {**target, "masks": target["masks"].flip(-1),
                "boxes": target["boxes"][:, [0, 1, 5, 3, 4, 2]] * torch.tensor([1, 1, -1, 1, 1, -1]) +
                torch.tensor([0, 0, 64, 0, 0, 64])}])  # fmt: skip
    stem = model.backbone.body.conv1.weight if hasattr(model.backbone, "body") else None
    grads = [p.grad for p in model.backbone.parameters() if p.requires_grad]
    assert stem is None or stem.grad is not None
    assert all(g is not None for g in grads)
    assert sum(g.abs().sum().item() for g in grads) > 0


def test_a_crop_without_objects_trains(small_detector, scene):
    torch.manual_seed(0)
    model = small_detector()
    image, _ = scene()
    empty = {
        "boxes": torch.zeros(0, 6),
        "labels": torch.zeros(0, dtype=torch.int64),
        "masks": torch.zeros(0, *image.shape[1:], dtype=torch.uint8),
    }
    losses = _train_step(model, [image], [empty])
    assert losses["loss_mask"].item() == 0.0


def test_eval_mode_returns_documented_shapes_in_the_input_coordinates(small_detector, ellipsoid_scene):
    torch.manual_seed(0)
    model = small_detector(box_score_thresh=0.0).eval()
    # sizes that are not multiples of the backbone's divisibility: padding is undone
    image, _ = ellipsoid_scene((13, 50, 41), centres=[(6, 20, 20)], radii=[(3, 6, 6)])
    with torch.no_grad():
        (pred,) = model([image])
    n = pred["boxes"].shape[0]
    assert pred["boxes"].shape == (n, 6) and pred["boxes"].dtype == torch.float32
    assert pred["labels"].shape == (n,) and pred["labels"].dtype == torch.int64
    assert pred["scores"].shape == (n,)
    assert pred["masks"].shape == (n, 1, 13, 50, 41)
    if n:
        assert (pred["boxes"][:, 3:] <= torch.tensor([13.0, 50.0, 41.0]) + 1e-4).all()
        assert (pred["boxes"][:, :3] >= -1e-4).all()
        assert ((pred["masks"] >= 0) & (pred["masks"] <= 1)).all()


def test_no_detections_give_empty_tensors_of_the_right_shapes(small_detector, scene):
    model = small_detector(box_score_thresh=1.01).eval()
    image, _ = scene()
    with torch.no_grad():
        (pred,) = model([image])
    assert pred["boxes"].shape == (0, 6)
    assert pred["labels"].shape == (0,)
    assert pred["scores"].shape == (0,)
    assert pred["masks"].shape == (0, 1, *image.shape[1:])


def test_predict_restores_the_training_mode(small_detector, scene):
    model = small_detector().train()
    image, _ = scene()
    model.predict([image])
    assert model.training


def _bad(model, images, targets, match):
    model.train()
    with pytest.raises(ValueError, match=match):
        model(images, targets)


def test_bad_inputs_raise_clear_errors(small_detector, scene):
    model = small_detector(num_classes=2)
    image, target = scene()
    _bad(model, [image[0]], [target], r"images\[0\].*\(16, 64, 64\)")
    _bad(model, torch.zeros(16, 64, 64), [target], r"\(16, 64, 64\)")
    _bad(model, [image], None, r"targets")
    bad_labels = {**target, "labels": torch.tensor([1, 1, 2, 1])}
    _bad(model, [image], [bad_labels], r"labels.*class 2.*num_classes=2")
    degenerate = target["boxes"].clone()
    degenerate[1, 5] = degenerate[1, 2]
    _bad(model, [image], [{**target, "boxes": degenerate}], r"boxes")
    outside = target["boxes"].clone()
    outside[2, 4] = 80.0
    _bad(model, [image], [{**target, "boxes": outside}], r"boxes")
    _bad(model, [image], [{**target, "masks": target["masks"][:, :, :32]}], r"masks")
    _bad(model, [image], [{**target, "labels": target["labels"].tolist()}], r"targets\[0\]\['labels'\].*list")
    poisoned = image.clone()
    poisoned[0, 3, 4, 5] = math.nan
    _bad(model, [image, poisoned], [target, target], r"images\[1\].*NaN or infinite")


def test_float64_images_are_computed_in_the_model_dtype(small_detector, scene):
    """numpy volumes arrive as float64; the model (float32) takes them as float32."""
    torch.manual_seed(0)
    model = small_detector()
    image, target = scene()
    torch.manual_seed(1)
    expected = model([image], [target])
    torch.manual_seed(1)
    losses = model([image.double()], [target])
    assert all(v.dtype == torch.float32 for v in losses.values())
    torch.testing.assert_close(losses, expected)


@pytest.mark.parametrize(
    ("backbone", "backbone_kwargs", "shape"),
    [
        (
            "vitdet3d_s_sfp",
            {"in_channels": 1, "embed_dim": 48, "depth": 2, "num_heads": 2, "patch_size": (4, 8, 8),
             "img_size": (16, 64, 64), "pretrain_img_size": (16, 64, 64), "sfp_out_channels": 32},
            (16, 64, 64),
        ),
        (
            "hiera3d_t_fpn",
            {"in_channels": 1, "embed_dim": 16, "num_heads": 1, "stages": (1, 1, 1, 1),
             "input_size": (16, 64, 64), "q_stride": (1, 2, 2), "mask_unit_size": (1, 8, 8),
             "patch_stride": (2, 4, 4), "patch_kernel": (3, 7, 7), "patch_padding": (1, 3, 3),
             "fpn_out_channels": 32},
            (16, 64, 64),
        ),
    ],
)  # fmt: skip
def test_transformer_backbones_build_train_and_predict(
    small_detector, ellipsoid_scene, backbone, backbone_kwargs, shape
):
    torch.manual_seed(0)
    model = small_detector(backbone=backbone, backbone_kwargs=backbone_kwargs, rpn_anchor_generator=None)
    image, target = ellipsoid_scene(shape, centres=[(8, 20, 20), (8, 44, 40)], radii=[(3, 7, 7), (3, 6, 6)])
    _train_step(model, [image], [target])
    model.eval()
    with torch.no_grad():
        (pred,) = model([image])
    assert pred["masks"].shape[1:] == (1, *shape)
