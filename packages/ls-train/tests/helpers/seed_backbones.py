"""Backbones that a user's config names by ``_target_`` (the tests put this folder on sys.path).

``TinyBody`` honours the ls-backbones contract (two levels of different widths: it needs an FPN);
``BareTensorNet`` is a plain module returning one ``(B, C, D, H, W)`` tensor, like the original
system's backbones, and declares its channels only when asked to.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn

from ls_backbones import Backbone3D, FeatureSpec


class TinyBody(Backbone3D):
    """``p2`` (stride 1, 4, 4) and ``p3`` (stride 2, 8, 8, twice as wide): two strided convolutions."""

    def __init__(self, *, in_channels: int = 1, width: int = 4) -> None:
        super().__init__(in_channels)
        self.width = width
        self.p2 = nn.Conv3d(in_channels, width, 3, stride=(1, 4, 4), padding=1)
        self.p3 = nn.Conv3d(width, 2 * width, 3, stride=2, padding=1)

    def output_shape(self) -> OrderedDict[str, FeatureSpec]:
        return OrderedDict(
            [("p2", FeatureSpec(self.width, (1, 4, 4))), ("p3", FeatureSpec(2 * self.width, (2, 8, 8)))]
        )

    @property
    def size_divisibility(self) -> tuple[int, int, int]:
        return (2, 8, 8)

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        self.check_input(x)
        p2 = self.p2(x).relu()
        return OrderedDict([("p2", p2), ("p3", self.p3(p2).relu())])


class BareTensorNet(nn.Module):
    """Two strided convolutions (stride 2, 4, 4) returning one ``(B, width, D/2, H/4, W/4)`` tensor.

    Args:
        in_channels: input channels.
        width: output channels.
        declare_channels: set the ``out_channels`` attribute (torchvision's contract).
    """

    def __init__(self, in_channels: int = 1, width: int = 8, declare_channels: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(in_channels, width, 3, stride=(1, 2, 2), padding=1)
        self.conv2 = nn.Conv3d(width, width, 3, stride=2, padding=1)
        if declare_channels:
            self.out_channels = width

    def forward(self, x: Tensor) -> Tensor:
        return self.conv2(self.conv1(x).relu()).relu()
