"""The mask predictors; the image-guided one samples the image on the grid that masks are pasted from."""

from __future__ import annotations

import pytest
import torch

from ls_detection import create_detector
from ls_detection.mask_head import (
    ImageGuidedMaskPredictor3D,
    MaskRCNNPredictor3D,
    extended_rois,
    padded_concat,
    padded_concat_reference,
    standardized,
)
from ls_detection.postprocess import paste_masks_in_volume
from ls_ops import roi_align3d


def test_the_image_guided_predictor_gives_logits_on_the_up_sampled_grid() -> None:
    head = ImageGuidedMaskPredictor3D(
        in_channels=8, dim_reduced=6, image_channels=2, layers=[4, 4], num_classes=3
    )
    features = torch.randn(5, 8, 3, 4, 4)
    images = torch.randn(2, 2, 10, 20, 20)
    boxes = [
        torch.tensor([[1.0, 2.0, 2.0, 6.0, 12.0, 14.0]] * 2),
        torch.tensor([[0.0, 0.0, 0.0, 9.5, 19.0, 19.0]] * 3),
    ]
    logits = head(features, images, boxes)
    assert logits.shape == (5, 3, 6, 8, 8)
    logits.sum().backward()
    assert head.upsample.weight.grad is not None and head.refine[0][0].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match=r"images must be \(B, 2, Z, Y, X\), got \(2, 1, 10, 20, 20\)"):
        head(features, images[:, :1], boxes)
    with pytest.raises(ValueError, match=r"4 boxes for 5 mask feature maps"):
        head(features, images, [boxes[0], boxes[1][:2]])
    with pytest.raises(ValueError, match="layers must list at least one"):
        ImageGuidedMaskPredictor3D(in_channels=8, dim_reduced=6, image_channels=1, layers=[], num_classes=2)


def test_a_mask_read_off_the_image_pastes_back_onto_the_object() -> None:
    """With weights that make the logit a threshold of the image, the pasted mask of a loose,
    fractional box around a small anisotropic object is the object: the image is sampled on the
    mask grid exactly where paste_masks_in_volume puts the mask (a half-voxel shift would cost
    about a fifth of the IoU of an object 4 voxels deep)."""
    image = torch.zeros(1, 1, 12, 32, 32)
    image[0, 0, 4:8, 10:22, 9:20] = 1.0  # 4 x 12 x 11 voxels
    head = ImageGuidedMaskPredictor3D(
        in_channels=2, dim_reduced=2, image_channels=1, layers=[1], num_classes=2
    )
    with torch.no_grad():
        for p in head.parameters():
            p.zero_()
        head.refine[0][0].weight[0, 2, 1, 1, 1] = 1.0  # the image channel's centre tap
        head.refine[0][0].bias.fill_(-0.5)
        head.mask_fcn_logits.weight[1, 0] = 10.0
        head.mask_fcn_logits.bias[1] = -2.5  # logit > 0 where the image sample > 0.75
    box = torch.tensor([[2.6, 7.3, 6.8, 9.4, 24.9, 22.2]])
    logits = head(torch.zeros(1, 2, 7, 14, 14), image, [box])
    pasted = paste_masks_in_volume(logits[:, 1:].sigmoid(), box, (12, 32, 32))[0, 0] > 0.5
    truth = image[0, 0] > 0
    iou = (pasted & truth).sum() / (pasted | truth).sum()
    assert iou > 0.9, float(iou)


@pytest.mark.parametrize("layers", [None, [8, 8]])
def test_the_detector_trains_and_predicts_with_either_predictor(layers) -> None:
    torch.manual_seed(0)
    model = create_detector(
        "maskrcnn3d", backbone="resnet3d_18_fpn", num_classes=2,
        backbone_kwargs={"in_channels": 1, "out_features": ["p2"]}, fpn={"out_channels": 8},
        rpn_anchor_generator={"sizes": [8]}, mask_layers=[8], mask_dim_reduced=8,
        mask_image_layers=layers, box_representation_size=32, mask_roi_output_size=[2, 4, 4],
    )
    expected = MaskRCNNPredictor3D if layers is None else ImageGuidedMaskPredictor3D
    assert isinstance(model.roi_heads.mask_predictor, expected)
    image = torch.rand(1, 8, 32, 32)
    masks = torch.zeros(1, 8, 32, 32, dtype=torch.uint8)
    masks[0, 2:6, 8:20, 8:20] = 1
    box = torch.tensor([[2.0, 8.0, 8.0, 6.0, 20.0, 20.0]])
    target = {"boxes": box, "labels": torch.tensor([1]), "masks": masks}
    losses = model([image], [target])
    assert set(losses) >= {"loss_mask", "loss_box_reg"} and all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    model.eval()
    (pred,) = model.predict([image], paste_masks=False)
    assert pred["masks"].shape[1:] == (1, 4, 8, 8)


def test_standardized_patches_have_zero_mean_and_unit_deviation_per_box_and_channel() -> None:
    patches = torch.randn(4, 2, 3, 5, 5) * torch.tensor([3.0, 0.2]).view(1, 2, 1, 1, 1) + 7.0
    out = standardized(patches)
    torch.testing.assert_close(out.mean(dim=(2, 3, 4)), torch.zeros(4, 2), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.std(dim=(2, 3, 4), unbiased=False), torch.ones(4, 2), atol=1e-4, rtol=0)
    assert torch.isfinite(standardized(torch.full((1, 1, 2, 2, 2), 5.0))).all()


def test_no_patches_standardize_to_no_patches_without_a_warning() -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's std of an empty batch warns of zero degrees of freedom
        assert standardized(torch.zeros(0, 2, 3, 5, 5)).shape == (0, 2, 3, 5, 5)


def test_the_standardized_input_makes_the_logits_independent_of_brightness_and_offset() -> None:
    """With only the standardised channel feeding the logits, an image scaled by 3 and offset by 50
    gives the same logits: the border is read relative to the box's own intensities."""
    torch.manual_seed(0)
    head = ImageGuidedMaskPredictor3D(
        in_channels=2, dim_reduced=2, image_channels=1, layers=[3], num_classes=2, standardize=True
    )
    assert head.refine[0][0].weight.shape[1] == 4  # features, image, standardised image
    with torch.no_grad():
        head.refine[0][0].weight[:, :3] = 0.0
    image = torch.rand(1, 1, 8, 16, 16)
    box = [torch.tensor([[1.0, 2.0, 3.0, 7.0, 14.0, 13.0]])]
    features = torch.randn(1, 2, 2, 4, 4)
    torch.testing.assert_close(head(features, image * 3 + 50, box), head(features, image, box),
                               atol=1e-4, rtol=1e-4)
    with torch.no_grad():
        head.refine[0][0].weight[:, 2] = 1.0  # the raw image channel does depend on them
    assert not torch.allclose(head(features, image * 3 + 50, box), head(features, image, box), atol=1e-2)


def test_standardize_needs_the_image_guided_predictor() -> None:
    with pytest.raises(ValueError, match="mask_image_margin needs mask_image_layers"):
        create_detector(
            "maskrcnn3d", backbone="resnet3d_18_fpn", num_classes=2,
            backbone_kwargs={"in_channels": 1, "out_features": ["p2"]}, fpn={"out_channels": 8},
            mask_image_margin=1,
        )
    with pytest.raises(ValueError, match="mask_image_standardize needs mask_image_layers"):
        create_detector(
            "maskrcnn3d", backbone="resnet3d_18_fpn", num_classes=2,
            backbone_kwargs={"in_channels": 1, "out_features": ["p2"]}, fpn={"out_channels": 8},
            mask_image_standardize=True,
        )


def test_the_margin_samples_the_box_cells_exactly_as_without_it_and_the_context_around_them() -> None:
    torch.manual_seed(0)
    image = torch.rand(1, 1, 10, 24, 24)
    rois = torch.tensor([[0.0, 2.3, 5.1, 6.0, 7.7, 17.2, 15.4]])
    grid = (4, 8, 6)
    plain = roi_align3d(image, rois, grid, 1.0, -1, aligned=True)
    wide = roi_align3d(image, extended_rois(rois, grid, 2), (8, 12, 10), 1.0, -1, aligned=True)
    torch.testing.assert_close(wide[..., 2:-2, 2:-2, 2:-2], plain)
    torch.testing.assert_close(extended_rois(rois, grid, 0), rois)


def test_a_predictor_with_a_margin_gives_logits_on_the_box_grid_that_see_outside_the_box() -> None:
    torch.manual_seed(0)
    head = ImageGuidedMaskPredictor3D(
        in_channels=4, dim_reduced=3, image_channels=1, layers=[4], num_classes=2, margin=1
    )
    features = torch.randn(1, 4, 2, 4, 4)
    image = torch.rand(1, 1, 10, 24, 24)
    box = [torch.tensor([[2.0, 6.0, 6.0, 8.0, 18.0, 18.0]])]
    logits = head(features, image, box)
    assert logits.shape == (1, 2, 4, 8, 8)
    outside = image.clone()
    outside[:, :, :, :, :5] += 1.0  # only beyond the box's x1 face (6.0): less than a cell away
    assert not torch.allclose(head(features, outside, box)[..., 0], logits[..., 0])
    head.margin = 0  # the same weights without the context see no change
    without = head(features, image, box)
    torch.testing.assert_close(head(features, outside, box), without)
    with pytest.raises(ValueError, match="margin must be an int >= 0"):
        ImageGuidedMaskPredictor3D(in_channels=4, dim_reduced=3, image_channels=1, layers=[4],
                                   num_classes=2, margin=-1)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("margin", [0, 1, 2])
def test_padded_concat_is_pad_then_cat_in_the_layout_of_its_input(channels_last: bool, margin: int) -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 2, 4, 6, generator=gen)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last_3d)
    x.requires_grad_(True)
    grid = (2 + 2 * margin, 4 + 2 * margin, 6 + 2 * margin)
    parts = [torch.randn(3, c, *grid, generator=gen).requires_grad_(True) for c in (1, 2)]
    reference = padded_concat_reference(x, parts, margin)
    assert torch.equal(reference, torch.cat([torch.nn.functional.pad(x, [margin] * 6), *parts], dim=1))
    # NaNs freed at once: the next allocation of that size likely reuses their memory, so a margin
    # left unzeroed shows
    torch.full(reference.shape, float("nan"))
    out = padded_concat(x, parts, margin)
    assert torch.equal(out, reference)
    layout = torch.channels_last_3d if channels_last else torch.contiguous_format
    assert out.is_contiguous(memory_format=layout)
    weights = torch.randn(reference.shape, generator=gen)
    grads = torch.autograd.grad((out * weights).sum(), [x, *parts])
    expected = torch.autograd.grad((reference * weights).sum(), [x, *parts])
    for got, want in zip(grads, expected, strict=True):
        assert torch.equal(got, want)
