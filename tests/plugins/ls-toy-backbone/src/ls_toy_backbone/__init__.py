"""A two-level strided-conv backbone, declared in ``ls.backbones`` by this distribution."""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn

from ls_backbones import Backbone3D, FeatureSpec, Triple


class ToyBackbone3D(Backbone3D):
    """Two stride-2 convolutions: outputs ``c1`` (stride 2) and ``c2`` (stride 4)."""

    def __init__(self, in_channels: int = 1, width: int = 8) -> None:
        super().__init__(in_channels)
        self.width = width
        self.conv1 = nn.Conv3d(in_channels, width, 3, stride=2, padding=1)
        self.conv2 = nn.Conv3d(width, 2 * width, 3, stride=2, padding=1)

    def output_shape(self) -> OrderedDict[str, FeatureSpec]:
        return OrderedDict(
            c1=FeatureSpec(self.width, (2, 2, 2)), c2=FeatureSpec(2 * self.width, (4, 4, 4))
        )

    @property
    def size_divisibility(self) -> Triple:
        return (4, 4, 4)

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        self.check_input(x)
        c1 = self.conv1(x).relu()
        return OrderedDict(c1=c1, c2=self.conv2(c1).relu())
