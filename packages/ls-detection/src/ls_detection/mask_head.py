"""Mask head of the RoI heads: 3x3x3 convolutions, then a 2x up-sampling predictor of mask logits
(optionally refined with the image itself sampled on the mask grid)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torchvision.ops.misc import Conv3dNormActivation

from ls_ops import roi_align3d

__all__ = [
    "ImageGuidedMaskPredictor3D",
    "MaskRCNNHeads3D",
    "MaskRCNNPredictor3D",
    "extended_rois",
    "padded_concat",
    "padded_concat_reference",
    "standardized",
]


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


class ImageGuidedMaskPredictor3D(nn.Module):
    """:class:`MaskRCNNPredictor3D` whose logits also see the image, sampled on the mask grid.

    The pooled mask features come from a pyramid level whose voxels span several image voxels
    (stride 4 in y and x at ``p2`` of the usual backbones), so the head can only guess where
    inside such a voxel an object's border lies: on small, anisotropic objects that costs most of
    the mask IoU (a box-perfect mask head reached 0.84 mean IoU on the quickstart's held-out
    objects, with the true boxes). Here the up-sampled mask features are concatenated with the
    (normalised, padded) input image resampled by RoIAlign3D onto the same ``2m`` grid of each
    box, the grid on which the mask targets are defined and from which masks are pasted, and a
    few 3x3x3 convolutions predict the logits from both.

    With ``standardize``, each box's image patch is also given standardised (per box and channel:
    minus its mean, over its standard deviation), so the refining convolutions see where the
    border lies relative to the box's own intensities, whatever the brightness, background and
    contrast of the volume (with a ``margin``, the statistics cover the extended patch).

    With ``margin``, the image is sampled on the mask grid extended by ``margin`` cells on each side
    of each box (same cell size: the inner cells are sampled exactly as without it), the
    up-sampled features are padded with zeros to that grid, and the logits are cut back to the
    box: the convolutions next to the box's faces see what lies just outside it (the background
    level, a neighbour) instead of zero padding.

    Input: mask-head features ``(K, in_channels, m...)``, the batch ``(B, C, Z, Y, X)`` the boxes
    refer to, and the boxes of each image (``(K_i, 6)``, in the batch's voxel coordinates) ->
    logits ``(K, num_classes, 2m...)``.

    Args:
        in_channels: channels of the mask head output.
        dim_reduced: channels after the transposed convolution.
        image_channels: channels of the image.
        layers: output channels of the refining 3x3x3 convolutions (at least one).
        num_classes: number of classes including the background.
        standardize: also pass each patch standardised per box and channel.
        margin: cells of image context sampled beyond each face of the box (0: none).
    """

    uses_image = True
    """Tells :class:`~ls_detection.roi_heads.RoIHeads3D` to pass the image and the boxes."""

    def __init__(self, *, in_channels: int, dim_reduced: int, image_channels: int, layers: Sequence[int],
                 num_classes: int, standardize: bool = False, margin: int = 0) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"ImageGuidedMaskPredictor3D: num_classes counts the background and must be "
                             f">= 2, got {num_classes}")
        if len(layers) == 0 or min(int(w) for w in layers) < 1:
            raise ValueError(f"ImageGuidedMaskPredictor3D: layers must list at least one channel count "
                             f">= 1, got {list(layers)}")
        if image_channels < 1:
            raise ValueError(f"ImageGuidedMaskPredictor3D: image_channels must be >= 1, got {image_channels}")
        self.image_channels = int(image_channels)
        self.standardize = bool(standardize)
        if isinstance(margin, bool) or not isinstance(margin, int) or margin < 0:
            raise ValueError(f"ImageGuidedMaskPredictor3D: margin must be an int >= 0, got {margin!r}")
        self.margin = margin
        self.upsample = nn.ConvTranspose3d(in_channels, dim_reduced, kernel_size=2, stride=2)
        blocks = []
        channels = dim_reduced + self.image_channels * (2 if self.standardize else 1)
        for width in layers:
            blocks.append(Conv3dNormActivation(channels, int(width), kernel_size=3, stride=1, padding=1,
                                               norm_layer=None))
            channels = int(width)
        self.refine = nn.Sequential(*blocks)
        self.mask_fcn_logits = nn.Conv3d(channels, num_classes, kernel_size=1)
        for name, param in self.named_parameters():
            if "weight" in name:
                nn.init.kaiming_normal_(param, mode="fan_out", nonlinearity="relu")
            elif "bias" in name:
                nn.init.zeros_(param)

    def forward(self, features: Tensor, images: Tensor, boxes: Sequence[Tensor]) -> Tensor:
        if images.dim() != 5 or images.shape[1] != self.image_channels:
            raise ValueError(f"ImageGuidedMaskPredictor3D: images must be (B, {self.image_channels}, Z, Y, "
                             f"X), got {tuple(images.shape)}")
        if len(boxes) != images.shape[0]:
            raise ValueError(f"ImageGuidedMaskPredictor3D: {len(boxes)} box tensors for a batch of "
                             f"{images.shape[0]} images")
        x = torch.relu(self.upsample(features))
        rois = torch.cat([
            torch.cat([torch.full_like(b[:, :1], i), b], dim=1) for i, b in enumerate(boxes)
        ]).to(images.dtype)
        if rois.shape[0] != x.shape[0]:
            raise ValueError(f"ImageGuidedMaskPredictor3D: {rois.shape[0]} boxes for {x.shape[0]} mask "
                             f"feature maps")
        grid = tuple(x.shape[-3:])
        m = self.margin
        if m:
            rois = extended_rois(rois, grid, m)
            grid = tuple(n + 2 * m for n in grid)
        patches = roi_align3d(images, rois, grid, 1.0, -1, aligned=True).to(x.dtype)
        parts = [patches, standardized(patches)] if self.standardize else [patches]
        logits = self.mask_fcn_logits(self.refine(padded_concat(x, parts, m)))
        return logits[..., m:-m, m:-m, m:-m] if m else logits


def padded_concat(x: Tensor, parts: Sequence[Tensor], margin: int) -> Tensor:
    """``torch.cat([pad(x, margin), *parts], dim=1)`` for ``(K, C, Z, Y, X)`` tensors, written into
    one tensor in ``x``'s memory format.

    The same values as padding and concatenating, without the padded copy, the concatenated copy
    and, with channels-last weights, the layout conversion the convolution would make of a
    default-layout concatenation (on the CPU these three cost twice the refining convolutions).
    """
    channels_last = x.is_contiguous(memory_format=torch.channels_last_3d) and not x.is_contiguous()
    layout = torch.channels_last_3d if channels_last else torch.contiguous_format
    spatial = tuple(parts[0].shape[2:]) if parts else tuple(n + 2 * margin for n in x.shape[2:])
    width = x.shape[1] + sum(int(p.shape[1]) for p in parts)
    out = torch.empty((x.shape[0], width, *spatial), dtype=x.dtype, device=x.device, memory_format=layout)
    inner = out[:, : x.shape[1]]
    if margin:  # zero the shell of x's channels only
        for axis in (2, 3, 4):
            inner.narrow(axis, 0, margin).zero_()
            inner.narrow(axis, inner.shape[axis] - margin, margin).zero_()
        inner = inner[..., margin:-margin, margin:-margin, margin:-margin]
    inner.copy_(x)
    start = x.shape[1]
    for part in parts:
        out[:, start : start + part.shape[1]].copy_(part)
        start += part.shape[1]
    return out


def padded_concat_reference(x: Tensor, parts: Sequence[Tensor], margin: int) -> Tensor:
    """The definition :func:`padded_concat` is tested and benchmarked against: pad, then cat."""
    return torch.cat([nn.functional.pad(x, [margin] * 6), *parts], dim=1)


def extended_rois(rois: Tensor, grid: Sequence[int], margin: int) -> Tensor:
    """``(K, 7)`` RoIs ``(batch, z1, y1, x1, z2, y2, x2)`` grown by ``margin`` cells of a ``grid``
    ``(gz, gy, gx)`` on each face, so that the grown grid of ``grid + 2 margin`` cells has the
    same cells inside the original box."""
    cells = (rois[:, 4:] - rois[:, 1:4]) / torch.tensor(grid, dtype=rois.dtype, device=rois.device)
    return torch.cat([rois[:, :1], rois[:, 1:4] - margin * cells, rois[:, 4:] + margin * cells], dim=1)


def standardized(patches: Tensor, eps: float = 1e-3) -> Tensor:
    """``(K, C, ...)`` patches minus their mean over the spatial axes, over their standard deviation
    (per patch and channel; a deviation below ``eps`` is taken as ``eps``: a flat patch stays finite)."""
    if patches.numel() == 0:  # no boxes: torch's std would warn of zero degrees of freedom
        return patches
    dims = tuple(range(2, patches.dim()))
    mean = patches.mean(dim=dims, keepdim=True)
    std = patches.std(dim=dims, keepdim=True, unbiased=False)
    return (patches - mean) / std.clamp(min=eps)
