"""ViTDet in 3-D: a plain ViT backbone and the simple feature pyramid built on it.

After "Exploring Plain Vision Transformer Backbones for Object Detection" (Li et al., 2022)
and detectron2's ``modeling/backbone/vit.py``, written for volumes ``(B, C, D, H, W)`` with
per-axis (z, y, x) patch, window and scale sizes. Parameter names follow detectron2's so
2-D checkpoints can be converted key by key (``rel_pos_h``/``rel_pos_w`` -> ``rel_pos_y``/
``rel_pos_x``, plus ``rel_pos_z``; 2-D ``pos_embed`` and ``patch_embed.proj`` need inflating).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ls_backbones.base import Backbone3D, FeatureSpec, Triple, to_triple
from ls_backbones.layers import NormSpec, make_norm3d
from ls_backbones.vit_layers import Block3D, PatchEmbed3D, get_abs_pos3d
from ls_core import parse_triple

__all__ = ["SimpleFeaturePyramid3D", "ViTDet3D", "vitdet3d_b", "vitdet3d_s"]


def _check_block_indexes(indexes: Sequence[int], depth: int, name: str) -> tuple[int, ...]:
    out = []
    for i in indexes:
        if isinstance(i, bool) or int(i) != i or not 0 <= int(i) < depth:
            raise ValueError(
                f"{name} must hold block indexes in [0, depth={depth}), got {i!r} in {indexes!r}"
            )
        out.append(int(i))
    return tuple(sorted(set(out)))


class ViTDet3D(Backbone3D):
    """Plain 3-D Vision Transformer backbone of ViTDet, with one output at stride ``patch_size``.

    ``(B, in_channels, D, H, W)`` -> ``{out_feature: (B, embed_dim, D/pz, H/py, W/px)}``. Input
    sizes must be multiples of ``patch_size`` per axis (``size_divisibility = patch_size``).

    Args:
        in_channels: channels of the input volume.
        patch_size: (z, y, x) size of the non-overlapping patches (``patch_embed.proj``: Conv3d
            with kernel = stride = patch_size); a single int means the same on every axis.
        embed_dim: token channels.
        depth: number of transformer blocks.
        num_heads: attention heads per block (``embed_dim`` must be divisible by it).
        mlp_ratio: MLP hidden width relative to ``embed_dim``.
        qkv_bias: bias of the ``qkv`` projections.
        drop_path_rate: stochastic depth of the last block; block ``i`` uses
            ``drop_path_rate * i / (depth - 1)``.
        use_abs_pos: learn absolute position embeddings ``pos_embed`` ``(1, N (+1), embed_dim)``
            on the pretraining token grid, trilinearly resized to other grids.
        pretrain_img_size: (z, y, x) size of the pretraining inputs; its token grid
            ``pretrain_img_size // patch_size`` sizes ``pos_embed``.
        pretrain_use_cls_token: ``pos_embed`` has a leading cls-token row (dropped when used).
        use_rel_pos: decomposed relative position bias on z, y and x in every block
            (``blocks.{i}.attn.rel_pos_{z,y,x}``).
        rel_pos_zero_init: start the relative position tables at zero.
        window_size: (z, y, x) window in tokens of the windowed blocks, or 0 for none. The
            token grid is zero-padded to a multiple of the window and cropped after.
        window_block_indexes: blocks with windowed attention; the others attend globally.
        residual_block_indexes: blocks followed by a conv ``residual`` block
            (1^3 -> 3^3 -> 1^3 with LayerNorm, starting as the identity).
        out_feature: name of the output.
        img_size: (z, y, x) typical training input size; its token grid sizes the relative
            position tables of the global blocks (as detectron2's ``img_size``). Other input
            sizes interpolate the tables.

    Raises:
        ValueError: on inconsistent sizes, heads, or block indexes (naming the argument).
    """

    def __init__(
        self,
        *,
        in_channels: int = 1,
        patch_size: int | Triple = 16,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path_rate: float = 0.0,
        use_abs_pos: bool = True,
        pretrain_img_size: int | Triple = (64, 224, 224),
        pretrain_use_cls_token: bool = False,
        use_rel_pos: bool = False,
        rel_pos_zero_init: bool = True,
        window_size: int | Triple = 0,
        window_block_indexes: Sequence[int] = (),
        residual_block_indexes: Sequence[int] = (),
        out_feature: str = "last_feat",
        img_size: int | Triple = (64, 128, 128),
    ) -> None:
        super().__init__(in_channels)
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        if embed_dim < 1 or num_heads < 1 or embed_dim % num_heads:
            raise ValueError(
                f"embed_dim={embed_dim} must be a positive multiple of num_heads={num_heads}"
            )
        if mlp_ratio <= 0:
            raise ValueError(f"mlp_ratio must be > 0, got {mlp_ratio}")
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_path_rate}")
        if not isinstance(out_feature, str) or not out_feature:
            raise ValueError(f"out_feature must be a non-empty string, got {out_feature!r}")
        self.patch_size = parse_triple(patch_size, "patch_size", positive=True)
        window = to_triple(window_size, "window_size")
        if any(window) and not all(v > 0 for v in window):
            raise ValueError(
                f"window_size must be 0 (global attention) or positive on every axis (z, y, x), "
                f"got {window_size!r}"
            )
        self.window_size: Triple | None = window if all(window) else None
        self.window_block_indexes = _check_block_indexes(
            window_block_indexes, depth, "window_block_indexes"
        )
        self.residual_block_indexes = _check_block_indexes(
            residual_block_indexes, depth, "residual_block_indexes"
        )
        if self.window_size is None and self.window_block_indexes:
            raise ValueError(
                f"window_block_indexes={tuple(window_block_indexes)!r} need a window_size > 0; "
                f"pass window_block_indexes=() for global attention in every block"
            )
        if self.window_size is not None and not self.window_block_indexes:
            raise ValueError(
                f"window_size={window_size!r} has no effect without window_block_indexes; "
                f"name the blocks that use windowed attention or pass window_size=0"
            )
        pretrain = parse_triple(pretrain_img_size, "pretrain_img_size", positive=True)
        self.pretrain_grid: Triple = _grid(pretrain, self.patch_size, "pretrain_img_size")
        global_grid = _grid(parse_triple(img_size, "img_size", positive=True), self.patch_size, "img_size")

        self.embed_dim = embed_dim
        self.depth = depth
        self.num_heads = num_heads
        self.out_feature = out_feature
        self.pretrain_use_cls_token = pretrain_use_cls_token
        self.patch_embed = PatchEmbed3D(self.patch_size, in_channels, embed_dim)
        self.pos_embed: nn.Parameter | None = None
        if use_abs_pos:
            n = math.prod(self.pretrain_grid) + int(pretrain_use_cls_token)
            self.pos_embed = nn.Parameter(torch.zeros(1, n, embed_dim))
        # stochastic depth rising linearly from 0 (in Python, so the model builds on "meta")
        rates = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
        self.blocks = nn.ModuleList(
            Block3D(
                embed_dim,
                num_heads,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                drop_path=rates[i],
                use_rel_pos=use_rel_pos,
                rel_pos_zero_init=rel_pos_zero_init,
                window_size=self.window_size if i in self.window_block_indexes else None,
                use_residual_block=i in self.residual_block_indexes,
                input_size=global_grid,
            )
            for i in range(depth)
        )
        if self.pos_embed is not None:
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.apply(_init_vit_weights)

    def output_shape(self) -> OrderedDict[str, FeatureSpec]:
        return OrderedDict([(self.out_feature, FeatureSpec(self.embed_dim, self.patch_size))])

    @property
    def size_divisibility(self) -> Triple:
        return self.patch_size

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        """``(B, C, D, H, W)`` -> ``{out_feature: (B, embed_dim, D/pz, H/py, W/px)}``."""
        self.check_input(x)
        x = self.patch_embed(x)  # (B, D', H', W', C)
        if self.pos_embed is not None:
            grid = (x.shape[1], x.shape[2], x.shape[3])
            x = x + get_abs_pos3d(
                self.pos_embed, self.pretrain_use_cls_token, self.pretrain_grid, grid
            )
        for block in self.blocks:
            x = block(x)
        return OrderedDict([(self.out_feature, x.permute(0, 4, 1, 2, 3))])


def _grid(size: Triple, patch: Triple, name: str) -> Triple:
    grid = (size[0] // patch[0], size[1] // patch[1], size[2] // patch[2])
    if min(grid) < 1:
        raise ValueError(f"{name}={size} is smaller than patch_size={patch} on some axis")
    return grid


def _init_vit_weights(m: nn.Module) -> None:
    """detectron2's ViT init: truncated normal (std 0.02) Linear weights, zero biases, unit LN."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def _global_block_indexes(depth: int) -> tuple[int, ...]:
    """ViTDet's global blocks: the last of each quarter (12 -> 2, 5, 8, 11; 24 -> 5, 11, 17, 23)."""
    return tuple(sorted({(i + 1) * depth // 4 - 1 for i in range(4)} - {-1}))


def _vitdet_preset(arch: dict[str, Any], kwargs: dict[str, Any]) -> ViTDet3D:
    cfg: dict[str, Any] = {
        **arch,
        "drop_path_rate": 0.1,
        "window_size": (2, 4, 4),
        "use_rel_pos": True,
        **kwargs,
    }
    if "window_block_indexes" not in kwargs:
        if to_triple(cfg["window_size"], "window_size") == (0, 0, 0):
            cfg["window_block_indexes"] = ()
        else:
            global_blocks = set(_global_block_indexes(cfg["depth"]))
            cfg["window_block_indexes"] = tuple(
                i for i in range(cfg["depth"]) if i not in global_blocks
            )
            if not cfg["window_block_indexes"]:  # depth <= 4: every block is global
                cfg["window_size"] = 0
    return ViTDet3D(**cfg)


_PRESET_DOC = """ViTDet3D-{size} ({embed} channels, {depth} blocks, {heads} heads), ViTDet's recipe in 3-D.

    Defaults: patch 16, ``drop_path_rate=0.1``, ``use_rel_pos=True``, ``window_size=(2, 4, 4)``
    in every block except the global ones (the last of each quarter: 2, 5, 8, 11 for depth 12;
    recomputed when ``depth`` is overridden; none when ``window_size=0`` or ``depth <= 4``).
    Any keyword of
    :class:`ViTDet3D` overrides these.

    Why (2, 4, 4): a typical 64x128x128 crop with patch 16 is a (4, 8, 8) token grid. 2-D
    ViTDet's 14x14 windows (its pretraining grid) would cover that grid whole, making the
    windowed blocks global; (2, 4, 4) tiles it exactly (2x2x2 windows, no padding waste) and
    keeps cost linear in volume for larger crops and whole-volume inference, while the four
    global blocks mix information across windows. z is half the in-plane size because
    light-sheet z spacing is typically 2-5x the xy spacing, so the window spans a roughly
    isotropic physical region.
    """


def vitdet3d_s(**kwargs: Any) -> ViTDet3D:
    return _vitdet_preset({"embed_dim": 384, "depth": 12, "num_heads": 6}, kwargs)


def vitdet3d_b(**kwargs: Any) -> ViTDet3D:
    return _vitdet_preset({"embed_dim": 768, "depth": 12, "num_heads": 12}, kwargs)


vitdet3d_s.__doc__ = _PRESET_DOC.format(size="S", embed=384, depth=12, heads=6)
vitdet3d_b.__doc__ = _PRESET_DOC.format(size="B", embed=768, depth=12, heads=12)


# ----------------------------------------------------------------------------------------
# Simple feature pyramid


class _Conv3dNorm(nn.Conv3d):
    """Conv3d followed by its ``norm`` child (detectron2's ``Conv2d(..., norm=...)`` layout)."""

    def __init__(self, *args: Any, norm: nn.Module, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.norm = norm

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(super().forward(x))


def _scale_exponents(factor: float | Sequence[float], index: int) -> Triple:
    """Per-axis log2 of a scale factor (a power of two, or a (z, y, x) triple of them)."""
    values = (factor,) * 3 if isinstance(factor, int | float) else tuple(factor)
    msg = (
        f"scale_factors[{index}]={factor!r} must be a power of two (..., 0.25, 0.5, 1, 2, 4, ...) "
        f"or a (z, y, x) triple of powers of two"
    )
    if len(values) != 3:
        raise ValueError(msg)
    exps = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v <= 0:
            raise ValueError(msg)
        e = round(math.log2(v))
        if 2.0**e != v:
            raise ValueError(msg)
        exps.append(e)
    return (exps[0], exps[1], exps[2])


class SimpleFeaturePyramid3D(Backbone3D):
    """ViTDet's simple feature pyramid in 3-D, built from one output of a plain backbone.

    Each level rescales the backbone feature by its scale factor (ConvTranspose3d with
    kernel = stride 2 on the axes that need it, repeated for 4x with norm + GELU between and
    halving channels each time; MaxPool3d for factors below 1; nothing for 1), then applies
    a 1^3 and a 3^3 Conv3d, each followed by ``norm`` (no bias when normed). Levels are named
    ``p{k}`` with ``2**k`` their in-plane (y) stride; ``top_block`` adds one more by max-pool
    (kernel 1, stride 2) of the last level.

    ``(B, C, D, H, W)`` -> ``{p{k}: (B, out_channels, D/sz, H/sy, W/sx)}``, finest first.

    Args:
        net: a backbone honouring the :class:`Backbone3D` contract, e.g. :class:`ViTDet3D`.
        in_feature: the output of ``net`` to build from; default its only output.
        out_channels: channels of every level.
        scale_factors: per level, a power of two or a (z, y, x) triple of them, e.g.
            ``(2, 4, 4)`` for anisotropic volumes; levels must go from finest to coarsest
            in-plane. Stride per axis is the net's stride divided by the factor.
        top_block: add the extra max-pooled level after the last.
        norm: normalisation after each conv and between upsampling steps (see
            :func:`~ls_backbones.layers.make_norm3d`).

    Raises:
        ValueError: for scale factors that are not powers of two, give fractional strides,
            collide in name, or are out of order, and for an unknown ``in_feature``.
    """

    def __init__(
        self,
        net: nn.Module,
        in_feature: str | None = None,
        out_channels: int = 256,
        scale_factors: Sequence[float | Sequence[float]] = (4.0, 2.0, 1.0, 0.5),
        top_block: bool = True,
        norm: NormSpec = "layernorm",
    ) -> None:
        specs = net.output_shape()
        if in_feature is None:
            if len(specs) != 1:
                raise ValueError(
                    f"net {type(net).__name__} has outputs {list(specs)}; choose one with in_feature"
                )
            in_feature = next(iter(specs))
        elif in_feature not in specs:
            raise ValueError(
                f"in_feature={in_feature!r} is not an output of {type(net).__name__}; "
                f"its outputs are {list(specs)}"
            )
        super().__init__(net.in_channels)
        if out_channels < 1:
            raise ValueError(f"out_channels must be >= 1, got {out_channels}")
        if len(scale_factors) == 0:
            raise ValueError("scale_factors must name at least one level")
        self.net = net
        self.in_feature = in_feature
        self.out_channels = int(out_channels)
        dim = specs[in_feature].channels
        net_stride = specs[in_feature].stride
        normed = norm is not None and not (isinstance(norm, str) and norm.lower() == "none")

        self._strides: OrderedDict[str, Triple] = OrderedDict()
        self._stage_names: list[str] = []
        for i, factor in enumerate(scale_factors):
            exps = _scale_exponents(factor, i)
            stride = _level_stride(net_stride, exps, factor, i)
            k = math.log2(stride[1])
            if k != int(k):
                raise ValueError(
                    f"scale_factors[{i}]={factor!r} gives stride {stride}; levels are named p<k> "
                    f"after a power-of-two in-plane (y) stride 2**k, so the net's y stride "
                    f"{net_stride[1]} must be a power of two"
                )
            name = f"p{int(k)}"
            if name in self._strides:
                raise ValueError(
                    f"scale_factors[{i}]={factor!r} gives level {name} (stride {stride}) which "
                    f"another factor already gives (stride {self._strides[name]}); names must be "
                    f"unique: {list(scale_factors)!r}"
                )
            if self._strides and stride[1] < next(reversed(self._strides.values()))[1]:
                raise ValueError(
                    f"scale_factors must go from finest to coarsest (decreasing in-plane scale), "
                    f"got {list(scale_factors)!r}"
                )
            self._strides[name] = stride
            stage_name = f"simfp_{int(k)}"
            self.add_module(stage_name, self._make_level(dim, exps, norm, normed))
            self._stage_names.append(stage_name)
        self.scale_factors = tuple(scale_factors)

        self.top_block: nn.Module | None = None
        if top_block:
            last_name, last = next(reversed(self._strides.items()))
            self._top_in = last_name
            self._strides[f"p{int(last_name[1:]) + 1}"] = (last[0] * 2, last[1] * 2, last[2] * 2)
            self.top_block = nn.MaxPool3d(kernel_size=1, stride=2)
        net_div = net.size_divisibility
        self._size_divisibility: Triple = tuple(  # type: ignore[assignment]
            math.lcm(net_div[a], *(s[a] for s in self._strides.values())) for a in range(3)
        )

    def _make_level(self, dim: int, exps: Triple, norm: NormSpec, normed: bool) -> nn.Sequential:
        layers: list[nn.Module] = []
        n_up = max(max(exps), 0)
        if dim % (2**n_up):
            raise ValueError(
                f"the net's {dim} channels cannot be halved {n_up} times for a level upsampled by "
                f"{tuple(2**e for e in exps)}"
            )
        channels = dim
        for step in range(n_up):
            if step > 0:
                layers += [make_norm3d(norm, channels), nn.GELU()]
            up = tuple(2 if e > step else 1 for e in exps)
            layers.append(nn.ConvTranspose3d(channels, channels // 2, kernel_size=up, stride=up))
            channels //= 2
        down = tuple(2 ** (-e) if e < 0 else 1 for e in exps)
        if max(down) > 1:
            layers.append(nn.MaxPool3d(kernel_size=down, stride=down))
        layers.append(
            _Conv3dNorm(channels, self.out_channels, 1, bias=not normed,
                        norm=make_norm3d(norm, self.out_channels))
        )
        layers.append(
            _Conv3dNorm(self.out_channels, self.out_channels, 3, padding=1, bias=not normed,
                        norm=make_norm3d(norm, self.out_channels))
        )
        return nn.Sequential(*layers)

    def output_shape(self) -> OrderedDict[str, FeatureSpec]:
        return OrderedDict(
            (name, FeatureSpec(self.out_channels, stride)) for name, stride in self._strides.items()
        )

    @property
    def size_divisibility(self) -> Triple:
        return self._size_divisibility

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        """``(B, C, D, H, W)`` -> ``{p{k}: (B, out_channels, D/sz, H/sy, W/sx)}``."""
        self.check_input(x)
        feature = self.net(x)[self.in_feature]
        out: OrderedDict[str, Tensor] = OrderedDict()
        for name, stage_name in zip(self._strides, self._stage_names, strict=False):
            out[name] = getattr(self, stage_name)(feature)
        if self.top_block is not None:
            top_name = next(reversed(self._strides))
            out[top_name] = self.top_block(out[self._top_in])
        return out


def _level_stride(net_stride: Triple, exps: Triple, factor: Any, index: int) -> Triple:
    stride = []
    for s, e in zip(net_stride, exps, strict=True):
        if e > 0 and s % (2**e):
            raise ValueError(
                f"scale_factors[{index}]={factor!r} gives a fractional stride: the net's stride "
                f"(z, y, x)={net_stride} divided by {tuple(2.0**v for v in exps)}"
            )
        stride.append(s // 2**e if e > 0 else s * 2 ** (-e))
    return (stride[0], stride[1], stride[2])
