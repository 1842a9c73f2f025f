"""``maskrcnn3d`` takes modules in place of the parts it builds, as torchvision's ``MaskRCNN`` does."""

from __future__ import annotations

import copy

import pytest
import torch

from ls_detection import (
    AnchorGenerator3D,
    FastRCNNPredictor3D,
    ImageGuidedMaskPredictor3D,
    MaskRCNNHeads3D,
    MaskRCNNPredictor3D,
    RPNHead3D,
    TwoMLPHead3D,
)

# where each part sits in the model, and the settings of the small detector that only build it,
# back at the builder's defaults (a part given refuses other values)
PARTS = {
    "rpn_anchor_generator": ("rpn.anchor_generator", {}),
    "rpn_head": ("rpn.head", {}),
    "box_roi_pool": ("roi_heads.box_roi_pool", {}),
    "box_head": ("roi_heads.box_head", {}),
    "box_predictor": ("roi_heads.box_predictor", {}),
    "mask_roi_pool": ("roi_heads.mask_roi_pool", {"mask_roi_output_size": 14}),
    "mask_head": ("roi_heads.mask_head", {"mask_layers": (256,) * 4}),
    "mask_predictor": ("roi_heads.mask_predictor", {"mask_dim_reduced": 256}),
}


def _part(model: torch.nn.Module, path: str) -> torch.nn.Module:
    return copy.deepcopy(model.get_submodule(path))


def _detections(model: torch.nn.Module, image: torch.Tensor) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        return model.eval()([image])[0]


def _assert_same_model(given: torch.nn.Module, reference: torch.nn.Module, image: torch.Tensor) -> None:
    """Same modules (names and shapes); with the reference's weights, the same detections."""
    shapes = {k: v.shape for k, v in reference.state_dict().items()}
    assert {k: v.shape for k, v in given.state_dict().items()} == shapes
    given.load_state_dict(reference.state_dict())
    expected, got = _detections(reference, image), _detections(given, image)
    assert len(expected["boxes"]) > 0
    for key, value in expected.items():
        torch.testing.assert_close(got[key], value, msg=key)


@pytest.mark.parametrize("key", list(PARTS))
def test_each_part_given_as_a_module_gives_the_built_model(key, small_detector, scene) -> None:
    torch.manual_seed(0)
    reference = small_detector()
    path, defaults = PARTS[key]
    part = _part(reference, path)
    given = small_detector(**{**defaults, key: part})
    assert given.get_submodule(path) is part  # used as is
    _assert_same_model(given, reference, scene()[0])


def test_every_part_given_at_once(small_detector, scene) -> None:
    torch.manual_seed(0)
    reference = small_detector()
    kwargs = {"box_representation_size": 1024, "box_roi_output_size": 7}
    for key, (path, defaults) in PARTS.items():
        kwargs |= {**defaults, key: _part(reference, path)}
    _assert_same_model(small_detector(**kwargs), reference, scene()[0])


def test_a_setting_of_a_given_part_is_refused_naming_both(small_detector) -> None:
    head = TwoMLPHead3D(in_channels=32 * 7**3, representation_size=128)
    predictor = FastRCNNPredictor3D(in_channels=128, num_classes=2)
    with pytest.raises(ValueError, match=r"box_head and box_predictor are given, so box_representation_size "
                                         r"is unused; leave it at its default 1024 \(got 64\)"):
        small_detector(box_head=head, box_predictor=predictor, box_representation_size=64)
    with pytest.raises(ValueError, match=r"mask_head is given, so mask_layers is unused"):
        small_detector(mask_head=MaskRCNNHeads3D(in_channels=32, layers=[16]))
    with pytest.raises(ValueError, match=r"rpn_head is given, so rpn_conv_depth is unused"):
        small_detector(rpn_head=RPNHead3D(in_channels=32, num_anchors=3), rpn_conv_depth=0)
    # a default given as a list (as a config gives it) is no setting
    model = small_detector(mask_head=MaskRCNNHeads3D(in_channels=32, layers=[16]), mask_layers=[256] * 4)
    assert model.roi_heads.mask_predictor.conv5_mask.in_channels == 16


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"box_predictor": FastRCNNPredictor3D(in_channels=128, num_classes=3)},
         r"box_predictor predicts 3 classes, but num_classes is 2"),
        ({"box_predictor": FastRCNNPredictor3D(in_channels=64, num_classes=2)},
         r"box_predictor takes 64 input channels, but gets 128 \(box_representation_size\)"),
        ({"box_head": TwoMLPHead3D(in_channels=100, representation_size=128)},
         r"box_head takes 100 input channels, but gets 10976"),
        ({"box_head": TwoMLPHead3D(in_channels=32 * 7**3, representation_size=64)},
         r"box_head gives 64 features per RoI, but box_representation_size is 128"),
        ({"rpn_head": RPNHead3D(in_channels=16, num_anchors=3), "rpn_conv_depth": 1},
         r"rpn_head takes 16 input channels, but gets 32 \(the backbone's channels\)"),
        ({"rpn_head": RPNHead3D(in_channels=32, num_anchors=2)},
         r"rpn_head predicts 2 anchors per location, but rpn_anchor_generator gives 3"),
        ({"rpn_anchor_generator": AnchorGenerator3D(sizes=[(8,)], aspect_ratios=[(1.0,)],
                                                    aspect_ratios_z=[(1.0,)])},
         r"rpn_anchor_generator: anchors for 1 levels, but the backbone has 4 feature levels"),
        ({"mask_predictor": ImageGuidedMaskPredictor3D(in_channels=32, dim_reduced=8, image_channels=2,
                                                       layers=[8], num_classes=2), "mask_dim_reduced": 256},
         r"mask_predictor reads 2 image channels, but the images have 1"),
        ({"mask_predictor": MaskRCNNPredictor3D(in_channels=32, dim_reduced=8, num_classes=3),
          "mask_dim_reduced": 256}, r"mask_predictor predicts 3 classes, but num_classes is 2"),
        ({"mask_predictor": MaskRCNNPredictor3D(in_channels=16, dim_reduced=8, num_classes=2),
          "mask_dim_reduced": 256}, r"mask_predictor takes 16 input channels, but gets 32 \(mask_head"),
        ({"box_head": {"representation_size": 64}}, r"box_head must be a torch.nn.Module, got dict"),
    ],
)  # fmt: skip
def test_a_wrong_module_is_named(kwargs, message, small_detector) -> None:
    with pytest.raises(ValueError, match=message):
        small_detector(**kwargs)
