"""ls-backbones: 3-D backbones for light-sheet microscopy volumes.

Every backbone takes ``(B, C, D, H, W)`` and returns an ordered dict of 5-D feature maps,
and declares each output's channels and (z, y, x) stride (``output_shape()``) and the
per-axis ``size_divisibility`` of valid inputs. Find them by name::

    import ls_backbones
    ls_backbones.list_backbones()
    net = ls_backbones.create_backbone("resnet3d_50_fpn", in_channels=2)

The model classes are imported on first use, so ``import ls_backbones`` stays cheap.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from ls_backbones.base import (
    Backbone3D,
    FeatureSpec,
    Triple,
    divisible_shape,
    pad_to_divisible,
    to_triple,
)
from ls_backbones.registry import (
    BackboneRegistryError,
    EntryPointRegistry,
    create_backbone,
    get_backbone_builder,
    list_backbones,
)
from ls_core import lazy_exports

try:
    __version__ = version("ls-backbones")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

# public name -> module that defines it (imported lazily by __getattr__)
_LAZY = {
    "ResNet3D": "resnet",
    "BasicBlock3D": "resnet",
    "Bottleneck3D": "resnet",
    "FPN3D": "fpn",
    "LastLevelMaxPool3D": "fpn",
    "BackboneWithFPN3D": "fpn",
    "ViTDet3D": "vitdet",
    "SimpleFeaturePyramid3D": "vitdet",
    "Hiera3D": "hiera",
    "inflate_resnet": "inflate",
    "inflate_fpn": "inflate",
    "inflate_conv_weight": "inflate",
    "FrozenBatchNorm3d": "layers",
    "LayerNorm3d": "layers",
    "DropPath": "layers",
    "make_norm3d": "layers",
}

__all__ = [
    "FPN3D",
    "Backbone3D",
    "BackboneRegistryError",
    "BackboneWithFPN3D",
    "BasicBlock3D",
    "Bottleneck3D",
    "DropPath",
    "EntryPointRegistry",
    "FeatureSpec",
    "FrozenBatchNorm3d",
    "Hiera3D",
    "LastLevelMaxPool3D",
    "LayerNorm3d",
    "ResNet3D",
    "SimpleFeaturePyramid3D",
    "Triple",
    "ViTDet3D",
    "__version__",
    "create_backbone",
    "divisible_shape",
    "get_backbone_builder",
    "inflate_conv_weight",
    "inflate_fpn",
    "inflate_resnet",
    "list_backbones",
    "make_norm3d",
    "pad_to_divisible",
    "to_triple",
]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)


if TYPE_CHECKING:
    from ls_backbones.fpn import FPN3D, BackboneWithFPN3D, LastLevelMaxPool3D
    from ls_backbones.hiera import Hiera3D
    from ls_backbones.inflate import inflate_conv_weight, inflate_fpn, inflate_resnet
    from ls_backbones.layers import DropPath, FrozenBatchNorm3d, LayerNorm3d, make_norm3d
    from ls_backbones.resnet import BasicBlock3D, Bottleneck3D, ResNet3D
    from ls_backbones.vitdet import SimpleFeaturePyramid3D, ViTDet3D
