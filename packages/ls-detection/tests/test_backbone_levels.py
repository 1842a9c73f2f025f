"""Backbones a detector accepts: the ls-backbones contract, or a module returning one tensor."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import Tensor, nn

from ls_backbones import Backbone3D, FeatureSpec
from ls_detection import backbone_levels, create_detector, feature_levels

HEADS = {"mask_layers": (8,), "mask_dim_reduced": 8, "box_representation_size": 32}


class BareTensor(nn.Module):
    """``(B, 1, D, H, W) -> (B, width, D/2, H/4, W/4)``, no declarations unless asked."""

    def __init__(self, width: int = 8, declare: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(1, width, 3, stride=(1, 2, 2), padding=1)
        self.conv2 = nn.Conv3d(width, width, 3, stride=2, padding=1)
        if declare:
            self.out_channels = width

    def forward(self, x: Tensor) -> Tensor:
        return self.conv2(self.conv1(x).relu())


class OneLevel(Backbone3D):
    """A contract backbone of one declared level ``c4`` that returns a bare tensor."""

    def __init__(self) -> None:
        super().__init__(1)
        self.conv = nn.Conv3d(1, 8, 3, stride=(2, 4, 4), padding=1)

    def output_shape(self) -> OrderedDict[str, FeatureSpec]:
        return OrderedDict(c4=FeatureSpec(8, (2, 4, 4)))

    @property
    def size_divisibility(self) -> tuple[int, int, int]:
        return (2, 4, 4)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


def _scene() -> tuple[Tensor, dict[str, Tensor]]:
    torch.manual_seed(0)
    masks = torch.zeros(1, 8, 32, 32, dtype=torch.uint8)
    masks[0, 2:6, 8:20, 10:22] = 1
    target = {"boxes": torch.tensor([[2.0, 8.0, 10.0, 6.0, 20.0, 22.0]]), "labels": torch.tensor([1])}
    return torch.rand(1, 8, 32, 32), {**target, "masks": masks}


@pytest.mark.parametrize(
    ("backbone", "extra", "level"),
    [
        (BareTensor(), {"backbone_out_channels": 8}, "0"),
        (BareTensor(declare=True), {}, "0"),
        (OneLevel(), {}, "c4"),
    ],
    ids=["channels-given", "out_channels-attribute", "contract-one-level"],
)
def test_a_backbone_returning_one_tensor_is_one_level_that_trains_and_predicts(backbone, extra, level):
    model = create_detector(
        "maskrcnn3d", backbone=backbone, num_classes=2, rpn_anchor_generator={"sizes": [8, 16]},
        **HEADS, **extra,
    )  # fmt: skip
    assert model.feature_names == (level,)
    image, target = _scene()
    losses = model([image], [target])
    assert len(losses) == 5 and all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert all(p.grad is not None for p in backbone.parameters())
    (pred,) = model.predict([image])
    assert pred["masks"].shape[1:] == (1, 8, 32, 32) and pred["boxes"].shape[1] == 6


def test_unknown_channels_name_the_backbone():
    with pytest.raises(
        ValueError, match=r"backbone '[\w.-]*BareTensor' declares no output channels.*out_channels"
    ):
        create_detector("maskrcnn3d", backbone=BareTensor(), num_classes=2)
    with pytest.raises(ValueError, match=r"backbone_out_channels=16 but backbone .*BareTensor' declares 8"):
        create_detector(
            "maskrcnn3d", backbone=BareTensor(declare=True), num_classes=2, backbone_out_channels=16
        )


def test_an_fpn_wraps_only_a_contract_module_and_a_module_takes_no_kwargs():
    with pytest.raises(ValueError, match=r"fpn: .*BareTensor declares no output_shape\(\).*fpn=None"):
        create_detector("maskrcnn3d", backbone=BareTensor(), num_classes=2, fpn={"out_channels": 8})
    with pytest.raises(
        ValueError, match=r"backbone_kwargs \['in_channels'\] are for a backbone given by name"
    ):
        create_detector(
            "maskrcnn3d", backbone=BareTensor(), num_classes=2, backbone_kwargs={"in_channels": 1}
        )


def test_levels_declared_by_a_contract_backbone():
    from ls_backbones import create_backbone

    net = create_backbone("resnet3d_18_fpn", fpn_out_channels=16)
    levels = backbone_levels(net, name="resnet3d_18_fpn")
    assert levels.names == ("p2", "p3", "p4", "p5", "p6") and levels.channels == 16
    assert levels.strides[0] == (4, 4, 4) and levels.size_divisibility == net.size_divisibility


def test_feature_levels_wraps_a_tensor_and_checks_mappings():
    x = torch.zeros(1, 8, 2, 4, 4)
    assert list(feature_levels(x, ("0",), "net")) == ["0"]
    with pytest.raises(TypeError, match=r"backbone 'net' returned one tensor .* declares 2 levels"):
        feature_levels(x, ("p2", "p3"), "net")
    with pytest.raises(KeyError, match=r"returned levels \['p2'\] but declares \['p2', 'p3'\]"):
        feature_levels({"p2": x}, ("p2", "p3"), "net")
    with pytest.raises(TypeError, match=r"returned list"):
        feature_levels([x], ("0",), "net")
