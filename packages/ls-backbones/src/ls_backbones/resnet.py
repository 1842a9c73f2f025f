"""ResNet3D: torchvision's ResNet (v1.5) with 3-D operations and per-axis strides.

Module and parameter names are exactly torchvision's (``conv1``, ``bn1``, ``layer1.0.conv2``,
``layer2.0.downsample.0`` ...), so 2-D ImageNet weights map onto it by name (see
:mod:`ls_backbones.inflate`). Outputs are named after detectron2's levels: ``p2`` is
``layer1`` (stride 4 with the default stem), ``p3`` is ``layer2``, ``p4`` ``layer3`` and
``p5`` ``layer4``.

Light-sheet volumes are anisotropic, so every stride and kernel size is a (z, y, x) triple.
For example, to keep full z resolution through the stem and the first stages::

    ResNet3D(depth=50, stem_kernel_size=(3, 7, 7), stem_stride=(1, 2, 2),
             pool_stride=(1, 2, 2), stage_strides=(1, (1, 2, 2), 2, 2))
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

from ls_backbones.base import Backbone3D, FeatureSpec, Triple, to_triple
from ls_backbones.layers import NormSpec, make_norm3d

__all__ = [
    "BasicBlock3D",
    "Bottleneck3D",
    "ResNet3D",
    "resnet3d_18",
    "resnet3d_34",
    "resnet3d_50",
    "resnet3d_101",
    "resnet3d_152",
]

IntOrTriple = int | Sequence[int]
NormLayer = Callable[[int], nn.Module]

#: output name -> index of the residual stage (``layer{index}``) that produces it
STAGE_OF_FEATURE: dict[str, int] = {"p2": 1, "p3": 2, "p4": 3, "p5": 4}

#: planes (bottleneck width before expansion) of layer1..layer4, as in torchvision
STAGE_PLANES: tuple[int, int, int, int] = (64, 128, 256, 512)


def _conv3x3x3(in_planes: int, out_planes: int, stride: IntOrTriple = 1, groups: int = 1) -> nn.Conv3d:
    """3x3x3 convolution with padding 1, no bias."""
    return nn.Conv3d(
        in_planes, out_planes, kernel_size=3, stride=to_triple(stride, "stride"), padding=1,
        groups=groups, bias=False,
    )


def _conv1x1x1(in_planes: int, out_planes: int, stride: IntOrTriple = 1) -> nn.Conv3d:
    """1x1x1 convolution, no bias."""
    return nn.Conv3d(in_planes, out_planes, kernel_size=1, stride=to_triple(stride, "stride"), bias=False)


def _default_norm(channels: int) -> nn.Module:
    return nn.BatchNorm3d(channels)


class BasicBlock3D(nn.Module):
    """Two 3x3x3 convolutions with a residual connection (ResNet-18/34).

    Shapes: ``(B, inplanes, D, H, W) -> (B, planes, D/sz, H/sy, W/sx)`` for stride
    ``(sz, sy, sx)``.

    Args:
        inplanes: input channels.
        planes: output channels.
        stride: stride of ``conv1`` (and of ``downsample``), an int or (z, y, x).
        downsample: module applied to the identity branch when the shape changes.
        groups: must be 1 (as in torchvision).
        base_width: must be 64 (as in torchvision).
        norm_layer: callable ``channels -> nn.Module``; default ``nn.BatchNorm3d``.
    """

    expansion: int = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: IntOrTriple = 1,
        downsample: nn.Module | None = None,
        groups: int = 1,
        base_width: int = 64,
        norm_layer: NormLayer | None = None,
    ) -> None:
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ValueError(
                f"BasicBlock3D (ResNet-18/34) only supports groups=1 and width_per_group=64, got "
                f"groups={groups}, width_per_group={base_width}; use depth >= 50 for ResNeXt widths"
            )
        norm_layer = norm_layer or _default_norm
        self.conv1 = _conv3x3x3(inplanes, planes, stride)
        self.bn1 = norm_layer(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3x3(planes, planes)
        self.bn2 = norm_layer(planes)
        self.downsample = downsample
        self.stride = to_triple(stride, "stride")

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class Bottleneck3D(nn.Module):
    """1x1x1 -> 3x3x3 -> 1x1x1 bottleneck with a residual connection (ResNet-50/101/152).

    The stride sits on the 3x3x3 convolution (``conv2``), torchvision's "v1.5" variant.
    Shapes: ``(B, inplanes, D, H, W) -> (B, 4 * planes, D/sz, H/sy, W/sx)``.

    Args:
        inplanes: input channels.
        planes: bottleneck planes; the block outputs ``4 * planes`` channels.
        stride: stride of ``conv2`` (and of ``downsample``), an int or (z, y, x).
        downsample: module applied to the identity branch when the shape changes.
        groups: groups of the 3x3x3 convolution (ResNeXt cardinality).
        base_width: width per group; the inner width is ``int(planes * base_width / 64) * groups``.
        norm_layer: callable ``channels -> nn.Module``; default ``nn.BatchNorm3d``.
    """

    expansion: int = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: IntOrTriple = 1,
        downsample: nn.Module | None = None,
        groups: int = 1,
        base_width: int = 64,
        norm_layer: NormLayer | None = None,
    ) -> None:
        super().__init__()
        norm_layer = norm_layer or _default_norm
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = _conv1x1x1(inplanes, width)
        self.bn1 = norm_layer(width)
        self.conv2 = _conv3x3x3(width, width, stride, groups)
        self.bn2 = norm_layer(width)
        self.conv3 = _conv1x1x1(width, planes * self.expansion)
        self.bn3 = norm_layer(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = to_triple(stride, "stride")

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += identity
        return self.relu(out)


#: depth -> (block class, blocks per stage), as torchvision
ARCHITECTURES: dict[int, tuple[type[BasicBlock3D] | type[Bottleneck3D], tuple[int, int, int, int]]] = {
    18: (BasicBlock3D, (2, 2, 2, 2)),
    34: (BasicBlock3D, (3, 4, 6, 3)),
    50: (Bottleneck3D, (3, 4, 6, 3)),
    101: (Bottleneck3D, (3, 4, 23, 3)),
    152: (Bottleneck3D, (3, 8, 36, 3)),
}


def _check_exact(kernel: Triple, stride: Triple, padding: Triple, what: str) -> None:
    """Raise unless a (kernel, stride, padding) window maps every size n divisible by the stride
    to exactly n / stride on each axis: floor((n + 2p - k) / s) + 1 == n / s  <=>  k - s <= 2p <= k - 1.
    """
    for axis, k, s, p in zip("zyx", kernel, stride, padding, strict=True):
        if k < 1 or s < 1 or p < 0:
            raise ValueError(
                f"{what}: kernel, stride must be >= 1 and padding >= 0, got kernel={kernel}, "
                f"stride={stride}, padding={padding} (z, y, x)"
            )
        if not k - s <= 2 * p <= k - 1:
            raise ValueError(
                f"{what}: kernel={kernel}, stride={stride}, padding={padding} (z, y, x) would not map "
                f"an input size divisible by the stride to exactly size // stride on axis {axis} "
                f"(need kernel - stride <= 2 * padding <= kernel - 1 there, i.e. padding = kernel // 2 "
                f"for odd kernels)"
            )


class ResNet3D(Backbone3D):
    """torchvision's ResNet with 3-D operations: a backbone returning layer1..layer4 outputs.

    Input ``(B, in_channels, D, H, W)`` with each spatial size a multiple of
    :attr:`size_divisibility`; output an ``OrderedDict`` with the requested ``out_features``,
    feature ``pN`` of shape ``(B, C_N, D / sz_N, H / sy_N, W / sx_N)`` where ``C_N`` and
    ``(sz_N, sy_N, sx_N)`` are declared by :meth:`output_shape` (``C`` = 64/128/256/512 times
    the block expansion, 1 for depth 18/34 and 4 for 50/101/152).

    Only the stages up to the deepest requested output are built (``out_features=("p2", "p3")``
    builds layer1 and layer2 only).

    Args:
        depth: 18, 34, 50, 101 or 152.
        in_channels: channels of the input volume.
        out_features: the outputs to return, a subset of ``("p2", "p3", "p4", "p5")`` in that
            order (``p2`` = layer1 ... ``p5`` = layer4).
        stem_out_channels: channels of the stem convolution (torchvision: 64).
        stem_kernel_size: kernel of the stem convolution, int or (z, y, x).
        stem_stride: stride of the stem convolution, int or (z, y, x).
        stem_padding: padding of the stem convolution; None means ``kernel // 2`` per axis.
        stem_pool: whether the stem ends with a max-pool (torchvision: yes).
        pool_kernel_size: kernel of the stem max-pool, int or (z, y, x).
        pool_stride: stride of the stem max-pool, int or (z, y, x).
        pool_padding: padding of the stem max-pool, int or (z, y, x).
        stage_strides: strides of layer1..layer4 (4 entries, each an int or (z, y, x)); the
            stride sits on the first block of each stage.
        norm: normalisation: ``"batchnorm"``, ``"groupnorm"``, ``"frozenbn"`` (see
            :func:`ls_backbones.layers.make_norm3d` for all names) or a callable
            ``channels -> nn.Module``.
        num_groups: groups of GroupNorm when ``norm="groupnorm"``.
        zero_init_residual: initialise the last norm weight of each residual branch to zero, so
            each block starts as the identity.
        groups: ResNeXt cardinality (Bottleneck only).
        width_per_group: ResNeXt width per group (Bottleneck only; 64 for plain ResNet).
        frozen_stages: stages to freeze (``requires_grad=False`` and their norm layers kept in
            eval mode by :meth:`train`): -1 freezes nothing, 0 freezes the stem (conv1, bn1),
            ``k`` in 1..4 freezes the stem and layer1..layer``k``. This is mmdetection's
            ``frozen_stages``; detectron2's ``FREEZE_AT`` is ``frozen_stages + 1``.

    Raises:
        ValueError: unknown depth (the valid depths are listed), bad ``out_features``, strides,
            kernels or paddings that would make an output size inexact, or ``frozen_stages``
            beyond the built stages.
    """

    def __init__(
        self,
        *,
        depth: int = 50,
        in_channels: int = 1,
        out_features: Sequence[str] = ("p2", "p3", "p4", "p5"),
        stem_out_channels: int = 64,
        stem_kernel_size: IntOrTriple = 7,
        stem_stride: IntOrTriple = 2,
        stem_padding: IntOrTriple | None = None,
        stem_pool: bool = True,
        pool_kernel_size: IntOrTriple = 3,
        pool_stride: IntOrTriple = 2,
        pool_padding: IntOrTriple = 1,
        stage_strides: Sequence[IntOrTriple] = (1, 2, 2, 2),
        norm: NormSpec = "batchnorm",
        num_groups: int = 32,
        zero_init_residual: bool = False,
        groups: int = 1,
        width_per_group: int = 64,
        frozen_stages: int = -1,
    ) -> None:
        super().__init__(in_channels)
        if depth not in ARCHITECTURES:
            raise ValueError(
                f"unsupported ResNet3D depth {depth!r}; valid depths: "
                f"{', '.join(map(str, ARCHITECTURES))}"
            )
        block, layers = ARCHITECTURES[depth]
        self.depth = depth

        out_features = tuple(out_features)
        unknown = [f for f in out_features if f not in STAGE_OF_FEATURE]
        if not out_features or unknown:
            raise ValueError(
                f"out_features must be a non-empty subset of {tuple(STAGE_OF_FEATURE)}, got "
                f"{out_features!r}" + (f" (unknown: {unknown})" if unknown else "")
            )
        order = [STAGE_OF_FEATURE[f] for f in out_features]
        if order != sorted(set(order)):
            raise ValueError(
                f"out_features must be in order {tuple(STAGE_OF_FEATURE)} without repeats, got "
                f"{out_features!r}"
            )
        self._out_features = out_features
        num_stages = max(order)
        self.num_stages = num_stages

        stage_strides = list(stage_strides)
        if len(stage_strides) != 4:
            raise ValueError(
                f"stage_strides must have 4 entries (layer1..layer4), each an int or (z, y, x), got "
                f"{stage_strides!r}"
            )
        strides = [to_triple(s, f"stage_strides[{i}]") for i, s in enumerate(stage_strides)]
        if any(v < 1 for s in strides for v in s):
            raise ValueError(f"stage_strides must be >= 1, got {stage_strides!r}")

        if not -1 <= frozen_stages <= num_stages:
            raise ValueError(
                f"frozen_stages must be in -1..{num_stages} (-1: none, 0: stem, k: stem and "
                f"layer1..layer{{k}}; this model builds {num_stages} stages for out_features "
                f"{out_features!r}), got {frozen_stages}"
            )
        self.frozen_stages = frozen_stages

        if stem_out_channels < 1:
            raise ValueError(f"stem_out_channels must be >= 1, got {stem_out_channels}")
        k_stem = to_triple(stem_kernel_size, "stem_kernel_size")
        s_stem = to_triple(stem_stride, "stem_stride")
        p_stem = (
            (k_stem[0] // 2, k_stem[1] // 2, k_stem[2] // 2)
            if stem_padding is None
            else to_triple(stem_padding, "stem_padding")
        )
        _check_exact(k_stem, s_stem, p_stem, "ResNet3D stem convolution")
        stride = s_stem
        if stem_pool:
            k_pool = to_triple(pool_kernel_size, "pool_kernel_size")
            s_pool = to_triple(pool_stride, "pool_stride")
            p_pool = to_triple(pool_padding, "pool_padding")
            _check_exact(k_pool, s_pool, p_pool, "ResNet3D stem max-pool")
            if any(2 * p > k for p, k in zip(p_pool, k_pool, strict=True)):
                raise ValueError(
                    f"ResNet3D stem max-pool: padding {p_pool} must be at most half the kernel "
                    f"{k_pool} on each axis"
                )
            stride = _mul(stride, s_pool)

        norm_layer: NormLayer = partial(make_norm3d, norm, num_groups=num_groups)
        self._norm_layer = norm_layer
        self._groups = groups
        self._base_width = width_per_group

        self.conv1 = nn.Conv3d(
            in_channels, stem_out_channels, kernel_size=k_stem, stride=s_stem, padding=p_stem,
            bias=False,
        )
        self.bn1 = norm_layer(stem_out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool: nn.Module = (
            nn.MaxPool3d(kernel_size=k_pool, stride=s_pool, padding=p_pool) if stem_pool else nn.Identity()
        )

        self._inplanes = stem_out_channels
        self._specs: OrderedDict[str, FeatureSpec] = OrderedDict()
        stage_specs: dict[int, FeatureSpec] = {}
        for i in range(num_stages):
            layer = self._make_layer(block, STAGE_PLANES[i], layers[i], strides[i])
            self.add_module(f"layer{i + 1}", layer)
            stride = _mul(stride, strides[i])
            stage_specs[i + 1] = FeatureSpec(self._inplanes, stride)
        for name in out_features:
            self._specs[name] = stage_specs[STAGE_OF_FEATURE[name]]
        self._size_divisibility = stage_specs[num_stages].stride

        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm3d | nn.GroupNorm) and m.affine:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if not isinstance(m, BasicBlock3D | Bottleneck3D):
                    continue
                weight = getattr(m.bn3 if isinstance(m, Bottleneck3D) else m.bn2, "weight", None)
                if isinstance(weight, Tensor):
                    with torch.no_grad():
                        weight.zero_()

        self._freeze_stages()

    def _make_layer(
        self,
        block: type[BasicBlock3D] | type[Bottleneck3D],
        planes: int,
        blocks: int,
        stride: Triple,
    ) -> nn.Sequential:
        downsample = None
        out_planes = planes * block.expansion
        if stride != (1, 1, 1) or self._inplanes != out_planes:
            downsample = nn.Sequential(
                _conv1x1x1(self._inplanes, out_planes, stride), self._norm_layer(out_planes)
            )
        kwargs = {"groups": self._groups, "base_width": self._base_width, "norm_layer": self._norm_layer}
        modules = [block(self._inplanes, planes, stride, downsample, **kwargs)]
        self._inplanes = out_planes
        modules += [block(out_planes, planes, **kwargs) for _ in range(1, blocks)]
        return nn.Sequential(*modules)

    def _frozen_modules(self) -> list[nn.Module]:
        if self.frozen_stages < 0:
            return []
        mods: list[nn.Module] = [self.conv1, self.bn1]
        mods += [getattr(self, f"layer{i}") for i in range(1, self.frozen_stages + 1)]
        return mods

    def _freeze_stages(self) -> None:
        for m in self._frozen_modules():
            m.eval()
            for p in m.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True) -> ResNet3D:
        """Set train/eval mode; the frozen stages (``frozen_stages``) always stay in eval mode,
        so their batch-norm statistics do not change."""
        super().train(mode)
        if mode:
            for m in self._frozen_modules():
                m.eval()
        return self

    def output_shape(self) -> OrderedDict[str, FeatureSpec]:
        """Channels and cumulative (z, y, x) stride of each requested output, in order."""
        return OrderedDict(self._specs)

    @property
    def size_divisibility(self) -> Triple:
        """Stride of the deepest built stage per axis (every output is then exactly input // stride)."""
        return self._size_divisibility

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        """``(B, C, D, H, W) -> OrderedDict(name -> (B, C_name, D/sz, H/sy, W/sx))``."""
        self.check_input(x)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        stages: dict[int, Tensor] = {}
        for i in range(1, self.num_stages + 1):
            x = getattr(self, f"layer{i}")(x)
            stages[i] = x
        return OrderedDict((name, stages[STAGE_OF_FEATURE[name]]) for name in self._out_features)


def _mul(a: Triple, b: Triple) -> Triple:
    return (a[0] * b[0], a[1] * b[1], a[2] * b[2])


def _preset(depth: int, kwargs: dict[str, Any]) -> ResNet3D:
    if "depth" in kwargs:
        raise TypeError(
            f"resnet3d_{depth} fixes depth={depth}; got depth={kwargs['depth']!r} as well "
            f"(use ResNet3D(depth=...) or the 'resnet3d' builder to choose the depth)"
        )
    return ResNet3D(depth=depth, **kwargs)


def resnet3d_18(**kwargs: Any) -> ResNet3D:
    """ResNet3D-18 (BasicBlock3D, 2-2-2-2); ``kwargs`` go to :class:`ResNet3D` (not ``depth``)."""
    return _preset(18, kwargs)


def resnet3d_34(**kwargs: Any) -> ResNet3D:
    """ResNet3D-34 (BasicBlock3D, 3-4-6-3); ``kwargs`` go to :class:`ResNet3D` (not ``depth``)."""
    return _preset(34, kwargs)


def resnet3d_50(**kwargs: Any) -> ResNet3D:
    """ResNet3D-50 (Bottleneck3D, 3-4-6-3); ``kwargs`` go to :class:`ResNet3D` (not ``depth``)."""
    return _preset(50, kwargs)


def resnet3d_101(**kwargs: Any) -> ResNet3D:
    """ResNet3D-101 (Bottleneck3D, 3-4-23-3); ``kwargs`` go to :class:`ResNet3D` (not ``depth``)."""
    return _preset(101, kwargs)


def resnet3d_152(**kwargs: Any) -> ResNet3D:
    """ResNet3D-152 (Bottleneck3D, 3-8-36-3); ``kwargs`` go to :class:`ResNet3D` (not ``depth``)."""
    return _preset(152, kwargs)
