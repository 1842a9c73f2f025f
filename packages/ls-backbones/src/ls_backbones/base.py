"""The backbone contract every ``ls.backbones`` entry honours.

A backbone maps a batch ``(B, C, D, H, W)`` to an ordered dict of 5-D feature maps. It
declares, before any forward pass, each output's channels and stride as a (z, y, x)
3-tuple, and the per-axis ``size_divisibility`` an input must satisfy so that every
output has exactly ``input_size // stride`` voxels per axis. Detectors pad to that
divisibility and wire heads from these declarations, so tests check them against real
forward passes.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ls_core import parse_triple

Triple = tuple[int, int, int]

__all__ = [
    "Backbone3D",
    "FeatureSpec",
    "Triple",
    "divisible_shape",
    "pad_to_divisible",
    "to_triple",
]


def to_triple(value: int | Sequence[int], name: str = "value") -> Triple:
    """Return ``value`` as a (z, y, x) tuple of ints; a single int means the same on every axis.

    Raises:
        ValueError: ``value`` is not an integer or three integers (numpy ones too), naming ``name``.
    """
    return parse_triple(value, name)


@dataclass(frozen=True)
class FeatureSpec:
    """Channels and (z, y, x) stride of one output feature map of a backbone."""

    channels: int
    stride: Triple


def divisible_shape(spatial: Sequence[int], divisibility: Sequence[int]) -> Triple:
    """Smallest (D, H, W) at least ``spatial`` whose sizes are multiples of ``divisibility``."""
    d = to_triple(divisibility, "size_divisibility")
    s = to_triple(spatial, "spatial size")
    return (
        math.ceil(s[0] / d[0]) * d[0],
        math.ceil(s[1] / d[1]) * d[1],
        math.ceil(s[2] / d[2]) * d[2],
    )


def pad_to_divisible(x: Tensor, size_divisibility: int | Sequence[int], value: float = 0.0) -> Tensor:
    """Zero-pad (at the high end of each axis) a ``(B, C, D, H, W)`` tensor to a multiple of
    ``size_divisibility`` per axis, so that box coordinates are unchanged by the padding."""
    if x.dim() != 5:
        raise ValueError(f"pad_to_divisible expects a 5-D tensor (B, C, D, H, W), got shape {tuple(x.shape)}")
    target = divisible_shape(x.shape[-3:], size_divisibility)
    pads = [t - s for t, s in zip(target, x.shape[-3:], strict=True)]
    if not any(pads):
        return x
    # F.pad takes (x_lo, x_hi, y_lo, y_hi, z_lo, z_hi)
    return F.pad(x, (0, pads[2], 0, pads[1], 0, pads[0]), value=value)


class Backbone3D(nn.Module):
    """Base class of 3-D backbones.

    Subclasses call ``super().__init__(in_channels)``, build their layers, implement
    :meth:`output_shape` and :attr:`size_divisibility`, and begin ``forward`` with
    ``self.check_input(x)``.

    Args:
        in_channels: number of channels ``C`` of the input ``(B, C, D, H, W)``.
    """

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        if in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {in_channels}")
        self.in_channels = int(in_channels)

    def output_shape(self) -> OrderedDict[str, FeatureSpec]:
        """Ordered mapping from output name to its channels and (z, y, x) stride."""
        raise NotImplementedError(f"{type(self).__name__} must implement output_shape()")

    @property
    def size_divisibility(self) -> Triple:
        """Per-axis (z, y, x) multiple that the spatial size of an input must be."""
        raise NotImplementedError(f"{type(self).__name__} must implement size_divisibility")

    @property
    def out_features(self) -> list[str]:
        """Names of the output feature maps, in output order."""
        return list(self.output_shape())

    @property
    def feature_channels(self) -> dict[str, int]:
        return {k: v.channels for k, v in self.output_shape().items()}

    @property
    def feature_strides(self) -> dict[str, Triple]:
        return {k: v.stride for k, v in self.output_shape().items()}

    def check_input(self, x: Tensor) -> None:
        """Raise a ValueError naming the shape if ``x`` is not a valid input of this backbone.

        Valid inputs are 5-D ``(B, C, D, H, W)`` floating tensors with ``C == in_channels`` and
        each spatial size a multiple of :attr:`size_divisibility` on its axis. The backbone does
        not pad: use :func:`pad_to_divisible` (a detector's transform does it for you).
        """
        name = type(self).__name__
        if not isinstance(x, Tensor):
            raise TypeError(f"{name} expects a torch.Tensor (B, C, D, H, W), got {type(x).__name__}")
        if x.dim() != 5:
            raise ValueError(
                f"{name} expects a 5-D input (B, C, D, H, W), got a {x.dim()}-D tensor of shape "
                f"{tuple(x.shape)}"
            )
        if not torch.is_floating_point(x):
            raise ValueError(f"{name} expects a floating-point input, got dtype {x.dtype}")
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"{name} was built for in_channels={self.in_channels} but the input of shape "
                f"{tuple(x.shape)} has {x.shape[1]} channels (axis 1)"
            )
        div = self.size_divisibility
        spatial = tuple(x.shape[-3:])
        if any(s % d for s, d in zip(spatial, div, strict=True)):
            raise ValueError(
                f"{name}: spatial size (D, H, W)={spatial} of the input of shape {tuple(x.shape)} "
                f"is not divisible by size_divisibility (z, y, x)={div}; this backbone does not pad. "
                f"Pad to {divisible_shape(spatial, div)} with "
                f"ls_backbones.pad_to_divisible(x, backbone.size_divisibility), or crop."
            )

    def expected_output_shapes(self, input_shape: Sequence[int]) -> dict[str, tuple[int, ...]]:
        """Shapes the outputs have for an input of shape ``(B, C, D, H, W)``, from the declarations."""
        b, _, d, h, w = input_shape
        return {
            k: (b, spec.channels, d // spec.stride[0], h // spec.stride[1], w // spec.stride[2])
            for k, spec in self.output_shape().items()
        }
