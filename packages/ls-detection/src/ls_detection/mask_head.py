"""Mask head of the RoI heads: 3x3x3 convolutions, then a 2x up-sampling predictor of mask logits."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence

from torch import nn
from torchvision.ops.misc import Conv3dNormActivation

__all__ = ["MaskRCNNHeads3D", "MaskRCNNPredictor3D"]


class MaskRCNNHeads3D(nn.Sequential):
    """A stack of ``Conv3dNormActivation`` layers (kernel 3, "same" padding) over pooled mask features.

    Args:
        in_channels: channels of the pooled features.
        layers: output channels of each layer.
        dilation: dilation of every convolution (padding follows it, so the size is kept).
        norm_layer: normalisation after each convolution (e.g. ``nn.BatchNorm3d``), or ``None``.
    """

    def __init__(self, *, in_channels: int, layers: Sequence[int], dilation: int = 1,
                 norm_layer: Callable[..., nn.Module] | None = None) -> None:
        if len(layers) == 0:
            raise ValueError("MaskRCNNHeads3D: layers must list at least one channel count")
        if dilation < 1:
            raise ValueError(f"MaskRCNNHeads3D: dilation must be >= 1, got {dilation}")
        blocks = []
        channels = in_channels
        for width in layers:
            blocks.append(Conv3dNormActivation(channels, int(width), kernel_size=3, stride=1,
                                               padding=dilation, dilation=dilation, norm_layer=norm_layer))
            channels = int(width)
        super().__init__(*blocks)
        self.out_channels = channels
        for module in self.modules():
            if isinstance(module, nn.Conv3d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)


class MaskRCNNPredictor3D(nn.Sequential):
    """Up-samples mask features 2x (ConvTranspose3d 2/2, ReLU) and predicts one logit volume per class.

    Input ``(K, in_channels, m, m, m)`` -> mask logits ``(K, num_classes, 2m, 2m, 2m)``.

    Args:
        in_channels: channels of the mask head output.
        dim_reduced: channels after the transposed convolution.
        num_classes: number of classes including the background.
    """

    def __init__(self, *, in_channels: int, dim_reduced: int, num_classes: int) -> None:
        if num_classes < 2:
            raise ValueError(f"MaskRCNNPredictor3D: num_classes counts the background and must be >= 2, "
                             f"got {num_classes}")
        super().__init__(OrderedDict([
            ("conv5_mask", nn.ConvTranspose3d(in_channels, dim_reduced, kernel_size=2, stride=2)),
            ("relu", nn.ReLU(inplace=True)),
            ("mask_fcn_logits", nn.Conv3d(dim_reduced, num_classes, kernel_size=1)),
        ]))
        for name, param in self.named_parameters():
            if "weight" in name:
                nn.init.kaiming_normal_(param, mode="fan_out", nonlinearity="relu")
            elif "bias" in name:
                nn.init.zeros_(param)
