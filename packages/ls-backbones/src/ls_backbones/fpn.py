"""Feature Pyramid Network in 3-D, and a wrapper that puts one on top of any backbone.

:class:`FPN3D` is torchvision's ``FeaturePyramidNetwork`` with 3-D operations and the same
parameter names (``inner_blocks.{i}.0.weight``, ``layer_blocks.{i}.0.weight`` and, with a norm,
``inner_blocks.{i}.1.*``), so a 2-D state dict maps onto it by name (see
:func:`ls_backbones.inflate.inflate_fpn`). :class:`BackboneWithFPN3D` is the counterpart of
torchvision's ``BackboneWithFPN`` for any object honouring the backbone contract
(:class:`ls_backbones.Backbone3D`), and is itself a backbone.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from ls_backbones.base import Backbone3D, FeatureSpec, Triple, to_triple
from ls_backbones.layers import NormSpec, make_norm3d

__all__ = ["FPN3D", "BackboneWithFPN3D", "LastLevelMaxPool3D", "extra_level_name"]

_LEVEL = re.compile(r"^p(\d+)$")


def extra_level_name(last_name: str) -> str:
    """Name of a level added above a feature named ``last_name``: ``p{k+1}`` after ``p{k}``,
    otherwise ``"pool"`` (torchvision's name)."""
    match = _LEVEL.match(last_name)
    return f"p{int(match.group(1)) + 1}" if match else "pool"


class LastLevelMaxPool3D(nn.Module):
    """Extra FPN level: subsample the last FPN output with a kernel-1 max-pool.

    The 3-D counterpart of torchvision's ``LastLevelMaxPool`` (``max_pool2d(x, 1, 2, 0)``), with a
    per-axis stride: ``(B, C, D, H, W) -> (B, C, ceil(D/sz), ceil(H/sy), ceil(W/sx))``. The new
    level is named by :func:`extra_level_name` from the last level's name unless ``name`` is given.

    Args:
        stride: subsampling stride, an int or (z, y, x).
        name: name of the new level; None derives it (``p6`` after ``p5``, else ``"pool"``).
    """

    def __init__(self, stride: int | Sequence[int] = 2, name: str | None = None) -> None:
        super().__init__()
        self.stride: Triple = to_triple(stride, "extra level stride")
        if any(s < 1 for s in self.stride):
            raise ValueError(f"LastLevelMaxPool3D stride must be >= 1, got {stride!r}")
        self.name = name

    def level_name(self, last_name: str) -> str:
        """Name the new level gets when the last FPN level is named ``last_name``."""
        return self.name if self.name is not None else extra_level_name(last_name)

    def forward(
        self, results: list[Tensor], x: list[Tensor], names: list[str]
    ) -> tuple[list[Tensor], list[str]]:
        """Append the subsampled last result and its name (torchvision's ``ExtraFPNBlock`` API).

        Args:
            results: FPN outputs, finest first.
            x: the FPN inputs (unused, kept for the torchvision interface).
            names: names of ``results``.
        """
        new_name = self.level_name(names[-1])
        pooled = F.max_pool3d(results[-1], kernel_size=1, stride=self.stride, padding=0)
        return [*results, pooled], [*names, new_name]

    def extra_repr(self) -> str:
        return f"stride={self.stride}" + (f", name={self.name!r}" if self.name is not None else "")


def _conv_norm(in_channels: int, out_channels: int, kernel_size: int, norm: NormSpec) -> nn.Sequential:
    """``Conv3d`` (bias only without a norm) followed by the norm, as torchvision's
    ``Conv2dNormActivation`` with ``activation_layer=None`` (so the conv is submodule ``0``)."""
    has_norm = norm is not None and not (isinstance(norm, str) and norm.lower() == "none")
    layers: list[nn.Module] = [
        nn.Conv3d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=not has_norm)
    ]
    if has_norm:
        layers.append(make_norm3d(norm, out_channels))
    return nn.Sequential(*layers)


class FPN3D(nn.Module):
    """Feature Pyramid Network (Lin et al., 2017) on 3-D feature maps.

    Input: a mapping of ``len(in_channels_list)`` feature maps ``(B, C_i, D_i, H_i, W_i)``, finest
    first. Output: an ``OrderedDict`` with the same names, each ``(B, out_channels, D_i, H_i, W_i)``,
    plus the extra block's level if there is one. Level ``i`` is
    ``layer_blocks[i](inner_blocks[i](x_i) + nearest_upsample(top_down_{i+1}, size of level i))``.

    Args:
        in_channels_list: channels of each input level, finest first.
        out_channels: channels of every output level.
        extra_block: block adding a level above the last one (e.g. :class:`LastLevelMaxPool3D`),
            or None.
        norm: norm after each convolution (then the convolutions have no bias), a name or callable
            as in :func:`ls_backbones.layers.make_norm3d`; None for none (torchvision's default).
    """

    def __init__(
        self,
        in_channels_list: Sequence[int],
        out_channels: int,
        extra_block: LastLevelMaxPool3D | None = None,
        norm: NormSpec = None,
    ) -> None:
        super().__init__()
        in_channels_list = [int(c) for c in in_channels_list]
        if not in_channels_list or any(c < 1 for c in in_channels_list):
            raise ValueError(
                f"FPN3D in_channels_list must be non-empty with entries >= 1, got {in_channels_list}"
            )
        if out_channels < 1:
            raise ValueError(f"FPN3D out_channels must be >= 1, got {out_channels}")
        self.in_channels_list = in_channels_list
        self.out_channels = int(out_channels)
        self.inner_blocks = nn.ModuleList(_conv_norm(c, out_channels, 1, norm) for c in in_channels_list)
        self.layer_blocks = nn.ModuleList(
            _conv_norm(out_channels, out_channels, 3, norm) for _ in in_channels_list
        )
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_uniform_(m.weight, a=1)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        self.extra_block = extra_block

    def forward(self, x: Mapping[str, Tensor]) -> OrderedDict[str, Tensor]:
        """Top-down pathway with lateral connections; see the class docstring for shapes."""
        names = list(x)
        feats = list(x.values())
        if len(feats) != len(self.inner_blocks):
            raise ValueError(
                f"FPN3D was built for {len(self.inner_blocks)} levels (in_channels_list="
                f"{self.in_channels_list}) but got {len(feats)}: {names}"
            )
        for name, f, c in zip(names, feats, self.in_channels_list, strict=True):
            if f.dim() != 5 or f.shape[1] != c:
                raise ValueError(
                    f"FPN3D input {name!r} has shape {tuple(f.shape)}; expected a 5-D (B, {c}, D, H, W) "
                    f"feature map"
                )
        last_inner = self.inner_blocks[-1](feats[-1])
        results = [self.layer_blocks[-1](last_inner)]
        for idx in range(len(feats) - 2, -1, -1):
            lateral = self.inner_blocks[idx](feats[idx])
            top_down = F.interpolate(last_inner, size=lateral.shape[-3:], mode="nearest")
            last_inner = lateral + top_down
            results.insert(0, self.layer_blocks[idx](last_inner))
        if self.extra_block is not None:
            results, names = self.extra_block(results, feats, names)
        return OrderedDict(zip(names, results, strict=True))


def _lcm(a: Triple, b: Triple) -> Triple:
    return (math.lcm(a[0], b[0]), math.lcm(a[1], b[1]), math.lcm(a[2], b[2]))


class BackboneWithFPN3D(Backbone3D):
    """A backbone followed by an :class:`FPN3D`; itself a backbone.

    Input ``(B, body.in_channels, D, H, W)``; output an ``OrderedDict`` with the selected body
    features (same names, ``out_channels`` channels, the body's strides) and, with
    ``extra_pool``, one more level subsampled from the last by ``extra_pool_stride``, named
    ``p{k+1}`` when the last selected feature is ``p{k}`` and ``"pool"`` otherwise.

    Args:
        body: any module honouring the backbone contract (``output_shape()``,
            ``size_divisibility``, ``in_channels``, ``forward -> OrderedDict``).
        in_features: body outputs fed to the FPN, in the body's order; None for all of them.
        out_channels: channels of every FPN output.
        extra_pool: add the max-pooled extra level (torchvision's ``LastLevelMaxPool``).
        extra_pool_stride: stride of that level relative to the last one, int or (z, y, x).
        norm: norm inside the FPN (name or callable, see :func:`ls_backbones.layers.make_norm3d`).

    Attributes:
        body: the backbone.
        fpn: the :class:`FPN3D`.
        out_channels: channels of every output (read by torchvision-style detection heads).
    """

    def __init__(
        self,
        body: nn.Module,
        in_features: Sequence[str] | None = None,
        out_channels: int = 256,
        extra_pool: bool = True,
        extra_pool_stride: int | Triple = 2,
        norm: NormSpec = None,
    ) -> None:
        missing = [a for a in ("output_shape", "size_divisibility", "in_channels") if not hasattr(body, a)]
        if missing:
            raise TypeError(
                f"BackboneWithFPN3D body {type(body).__name__} does not honour the backbone contract; "
                f"missing: {', '.join(missing)}"
            )
        super().__init__(int(body.in_channels))
        body_spec: OrderedDict[str, FeatureSpec] = body.output_shape()
        available = list(body_spec)
        in_features = available if in_features is None else list(in_features)
        unknown = [f for f in in_features if f not in body_spec]
        if not in_features or unknown:
            raise ValueError(
                f"BackboneWithFPN3D in_features {in_features!r} must be a non-empty subset of the "
                f"body's outputs {available}" + (f"; unknown: {unknown}" if unknown else "")
            )
        positions = [available.index(f) for f in in_features]
        if positions != sorted(set(positions)):
            raise ValueError(
                f"BackboneWithFPN3D in_features {in_features!r} must follow the body's output order "
                f"{available} without repeats"
            )
        self.in_features = in_features
        self.body = body
        extra = LastLevelMaxPool3D(extra_pool_stride) if extra_pool else None
        self.fpn = FPN3D([body_spec[f].channels for f in in_features], out_channels, extra, norm)
        self.out_channels = int(out_channels)

        spec: OrderedDict[str, FeatureSpec] = OrderedDict(
            (f, FeatureSpec(self.out_channels, body_spec[f].stride)) for f in in_features
        )
        divisibility = to_triple(body.size_divisibility, "body size_divisibility")
        if extra is not None:
            last = spec[in_features[-1]].stride
            extra_stride = (last[0] * extra.stride[0], last[1] * extra.stride[1], last[2] * extra.stride[2])
            name = extra.level_name(in_features[-1])
            if name in spec:
                raise ValueError(
                    f"BackboneWithFPN3D extra level name {name!r} clashes with in_features {in_features}"
                )
            spec[name] = FeatureSpec(self.out_channels, extra_stride)
            divisibility = _lcm(divisibility, extra_stride)
        self._spec = spec
        self._size_divisibility = divisibility

    def output_shape(self) -> OrderedDict[str, FeatureSpec]:
        """Every FPN level with ``out_channels`` channels and its (z, y, x) stride, finest first."""
        return OrderedDict(self._spec)

    @property
    def size_divisibility(self) -> Triple:
        """Per axis, the lcm of the body's divisibility and the extra level's stride."""
        return self._size_divisibility

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        """``(B, C, D, H, W) -> OrderedDict(name -> (B, out_channels, D/sz, H/sy, W/sx))``."""
        self.check_input(x)
        feats = self.body(x)
        missing = [f for f in self.in_features if f not in feats]
        if missing:
            raise KeyError(
                f"BackboneWithFPN3D: body {type(self.body).__name__} did not return {missing}; it "
                f"returned {list(feats)}"
            )
        return self.fpn(OrderedDict((f, feats[f]) for f in self.in_features))
