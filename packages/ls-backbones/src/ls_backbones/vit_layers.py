"""Transformer pieces of :class:`~ls_backbones.vitdet.ViTDet3D`: 3-D windows, decomposed
relative position bias, attention, the ViTDet block and its optional conv residual block.

Token grids are channels-last ``(B, D, H, W, C)`` (z, y, x order) throughout, as detectron2's
ViT keeps ``(B, H, W, C)``. Module and parameter names follow detectron2's
``modeling/backbone/vit.py`` with ``rel_pos_h``/``rel_pos_w`` becoming ``rel_pos_y``/``rel_pos_x``
and a new ``rel_pos_z``, so 2-D checkpoints can be converted key by key.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ls_backbones.base import Triple
from ls_backbones.layers import DropPath, LayerNorm3d, Mlp

__all__ = [
    "Attention3D",
    "Block3D",
    "PatchEmbed3D",
    "ResBottleneckBlock3D",
    "decomposed_rel_pos_bias",
    "get_abs_pos3d",
    "get_rel_pos",
    "window_partition3d",
    "window_unpartition3d",
]


def window_partition3d(x: Tensor, window: Triple) -> tuple[Tensor, Triple]:
    """Split a token grid into non-overlapping windows, zero-padding it to a multiple of them.

    Args:
        x: tokens ``(B, D, H, W, C)``.
        window: window size ``(wz, wy, wx)`` in tokens.

    Returns:
        ``(windows, padded)``: windows ``(B * nW, wz, wy, wx, C)`` ordered batch-major then
        z, y, x of the window grid, and the padded grid size ``(Dp, Hp, Wp)``.
    """
    b, d, h, w, c = x.shape
    wz, wy, wx = window
    pd, ph, pw = (-d) % wz, (-h) % wy, (-w) % wx
    if pd or ph or pw:
        # F.pad pads from the last axis backwards: (C lo, C hi, x lo, x hi, y lo, y hi, z lo, z hi)
        x = F.pad(x, (0, 0, 0, pw, 0, ph, 0, pd))
    dp, hp, wp = d + pd, h + ph, w + pw
    x = x.view(b, dp // wz, wz, hp // wy, wy, wp // wx, wx, c)
    windows = x.permute(0, 1, 3, 5, 2, 4, 6, 7).reshape(-1, wz, wy, wx, c)
    return windows, (dp, hp, wp)


def window_unpartition3d(windows: Tensor, window: Triple, padded: Triple, size: Triple) -> Tensor:
    """Inverse of :func:`window_partition3d`: reassemble windows and crop the padding.

    Args:
        windows: ``(B * nW, wz, wy, wx, C)``.
        window: window size ``(wz, wy, wx)``.
        padded: padded grid ``(Dp, Hp, Wp)`` returned by :func:`window_partition3d`.
        size: original grid ``(D, H, W)``.

    Returns:
        tokens ``(B, D, H, W, C)``.
    """
    wz, wy, wx = window
    dp, hp, wp = padded
    nz, ny, nx = dp // wz, hp // wy, wp // wx
    b = windows.shape[0] // (nz * ny * nx)
    x = windows.view(b, nz, ny, nx, wz, wy, wx, -1)
    x = x.permute(0, 1, 4, 2, 5, 3, 6, 7).reshape(b, dp, hp, wp, -1)
    if (dp, hp, wp) != tuple(size):
        x = x[:, : size[0], : size[1], : size[2]].contiguous()
    return x


def get_rel_pos(size: int, rel_pos: Tensor) -> Tensor:
    """Relative position embeddings of every (query, key) pair along one axis of length ``size``.

    As detectron2's ``get_rel_pos`` for equal query and key lengths: a table whose length is
    not ``2 * size - 1`` is first resized by linear interpolation (``align_corners=False``).

    Args:
        size: number of tokens on the axis.
        rel_pos: table ``(L, C)``; row ``i`` is the embedding of offset ``i - (L - 1) // 2``.

    Returns:
        ``(size, size, C)`` with entry ``[q, k] = table[q - k + size - 1]``.
    """
    length = 2 * size - 1
    if rel_pos.shape[0] != length:
        resized = F.interpolate(
            rel_pos.t().unsqueeze(0), size=length, mode="linear", align_corners=False
        )
        rel_pos = resized.squeeze(0).t()
    coords = torch.arange(size, device=rel_pos.device)
    return rel_pos[coords[:, None] - coords[None, :] + (size - 1)]


def decomposed_rel_pos_bias(
    q: Tensor, rel_pos_z: Tensor, rel_pos_y: Tensor, rel_pos_x: Tensor, grid: Triple
) -> Tensor:
    """Decomposed relative position bias of MViTv2 / ViTDet, in 3-D.

    ``bias[q, k] = q . Rz[qz - kz] + q . Ry[qy - ky] + q . Rx[qx - kx]`` with the unscaled query
    (as detectron2's ``add_decomposed_rel_pos``), to be added to the scaled ``q . k`` logits.

    Args:
        q: queries ``(B, heads, N, C_head)``, ``N = D * H * W`` in z, y, x raster order.
        rel_pos_z, rel_pos_y, rel_pos_x: tables ``(L_axis, C_head)``, resized if needed.
        grid: token grid ``(D, H, W)``.

    Returns:
        bias ``(B, heads, N, N)`` in the dtype of ``q``.
    """
    d, h, w = grid
    b, nh, n, c = q.shape
    if n != d * h * w:
        raise ValueError(f"queries of shape {tuple(q.shape)} do not match the token grid {grid}")
    rz = get_rel_pos(d, rel_pos_z).to(q.dtype)
    ry = get_rel_pos(h, rel_pos_y).to(q.dtype)
    rx = get_rel_pos(w, rel_pos_x).to(q.dtype)
    r_q = q.reshape(b, nh, d, h, w, c)
    bias_z = torch.einsum("bnzyxc,zkc->bnzyxk", r_q, rz)
    bias_y = torch.einsum("bnzyxc,ykc->bnzyxk", r_q, ry)
    bias_x = torch.einsum("bnzyxc,xkc->bnzyxk", r_q, rx)
    bias = (
        bias_z[..., :, None, None] + bias_y[..., None, :, None] + bias_x[..., None, None, :]
    )
    return bias.reshape(b, nh, n, n)


def get_abs_pos3d(
    abs_pos: Tensor, has_cls_token: bool, pretrain_grid: Triple, grid: Triple
) -> Tensor:
    """Absolute position embeddings for a token grid, resized from the pretraining grid.

    Args:
        abs_pos: ``(1, N_pre (+1), C)`` with ``N_pre = prod(pretrain_grid)`` in z, y, x raster
            order, preceded by the cls token's embedding when ``has_cls_token`` (dropped).
        has_cls_token: whether ``abs_pos`` starts with a cls token's embedding.
        pretrain_grid: token grid ``(D0, H0, W0)`` of the pretraining images.
        grid: token grid ``(D, H, W)`` of the current input.

    Returns:
        ``(1, D, H, W, C)``: the embeddings unchanged when the grids agree, otherwise resized
        by trilinear interpolation (``align_corners=False``).
    """
    if has_cls_token:
        abs_pos = abs_pos[:, 1:]
    pos = abs_pos.reshape(1, *pretrain_grid, abs_pos.shape[-1])
    if tuple(grid) != tuple(pretrain_grid):
        pos = F.interpolate(
            pos.permute(0, 4, 1, 2, 3), size=tuple(grid), mode="trilinear", align_corners=False
        ).permute(0, 2, 3, 4, 1)
    return pos


class PatchEmbed3D(nn.Module):
    """Non-overlapping 3-D patch embedding: ``proj`` is a Conv3d with kernel = stride = patch.

    Maps ``(B, C_in, D, H, W)`` to channels-last tokens ``(B, D/pz, H/py, W/px, embed_dim)``.
    """

    def __init__(self, patch_size: Triple, in_channels: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv3d(in_channels, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).permute(0, 2, 3, 4, 1)


class Attention3D(nn.Module):
    """Multi-head self-attention over a 3-D token grid, with optional decomposed rel-pos bias.

    Args:
        dim: channels of the tokens.
        num_heads: attention heads (``dim`` must be divisible by it).
        qkv_bias: whether ``qkv`` has a bias.
        use_rel_pos: add the decomposed relative position bias (parameters ``rel_pos_z``,
            ``rel_pos_y``, ``rel_pos_x`` of shape ``(2 * size - 1, dim // num_heads)``).
        rel_pos_zero_init: start the tables at zero (otherwise truncated normal, std 0.02).
        input_size: token grid ``(D, H, W)`` the tables are sized for (the window, or the
            whole grid for global attention); other sizes interpolate them.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        qkv_bias: bool = True,
        use_rel_pos: bool = False,
        rel_pos_zero_init: bool = True,
        input_size: Triple | None = None,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim={dim} must be divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.use_rel_pos = use_rel_pos
        if use_rel_pos:
            if input_size is None:
                raise ValueError("input_size (D, H, W) is required when use_rel_pos=True")
            for axis, size in zip("zyx", input_size, strict=True):
                table = nn.Parameter(torch.zeros(2 * size - 1, self.head_dim))
                if not rel_pos_zero_init:
                    nn.init.trunc_normal_(table, std=0.02)
                setattr(self, f"rel_pos_{axis}", table)

    def forward(self, x: Tensor) -> Tensor:
        """Attend over all tokens of each grid: ``(B, D, H, W, C)`` -> ``(B, D, H, W, C)``."""
        b, d, h, w, c = x.shape
        n = d * h * w
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, heads, N, C_head)
        bias = None
        if self.use_rel_pos:
            bias = decomposed_rel_pos_bias(
                q, self.rel_pos_z, self.rel_pos_y, self.rel_pos_x, (d, h, w)
            )
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.proj(out.transpose(1, 2).reshape(b, d, h, w, c))


class ResBottleneckBlock3D(nn.Module):
    """ViTDet's conv residual block in 3-D: ``x + norm3(conv3(act(norm2(conv2(act(norm1(conv1(x))))))))``.

    1^3 -> 3^3 (padding 1) -> 1^3 convolutions without bias, each followed by a channels-first
    LayerNorm; ``norm3`` starts at zero so the block starts as the identity. Convolutions are
    initialised as detectron2's ``c2_msra_fill``. Maps ``(B, C, D, H, W)`` to the same shape.

    Args:
        in_channels: channels of the input (and output when ``out_channels`` equals it).
        out_channels: channels of the output; must equal ``in_channels`` (identity shortcut).
        bottleneck_channels: channels of the inner convolutions.
        act_layer: activation class.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        bottleneck_channels: int,
        act_layer: type[nn.Module] = nn.GELU,
    ) -> None:
        super().__init__()
        if in_channels != out_channels:
            raise ValueError(
                f"ResBottleneckBlock3D has an identity shortcut: in_channels={in_channels} "
                f"must equal out_channels={out_channels}"
            )
        self.conv1 = nn.Conv3d(in_channels, bottleneck_channels, 1, bias=False)
        self.norm1 = LayerNorm3d(bottleneck_channels)
        self.act1 = act_layer()
        self.conv2 = nn.Conv3d(bottleneck_channels, bottleneck_channels, 3, padding=1, bias=False)
        self.norm2 = LayerNorm3d(bottleneck_channels)
        self.act2 = act_layer()
        self.conv3 = nn.Conv3d(bottleneck_channels, out_channels, 1, bias=False)
        self.norm3 = LayerNorm3d(out_channels)
        for conv in (self.conv1, self.conv2, self.conv3):
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(self.norm3.weight)
        nn.init.zeros_(self.norm3.bias)

    def forward(self, x: Tensor) -> Tensor:
        out = self.act1(self.norm1(self.conv1(x)))
        out = self.act2(self.norm2(self.conv2(out)))
        out = self.norm3(self.conv3(out))
        return x + out


class Block3D(nn.Module):
    """ViTDet transformer block on a 3-D token grid ``(B, D, H, W, C)`` -> same shape.

    ``x = x + drop_path(attn(norm1(x)))`` with attention global or within windows (the grid
    zero-padded to a multiple of the window and cropped after), then
    ``x = x + drop_path(mlp(norm2(x)))``, then the optional conv ``residual`` block.

    Args:
        dim: token channels.
        num_heads: attention heads.
        mlp_ratio: hidden width of the MLP relative to ``dim``.
        qkv_bias: bias of the ``qkv`` projection.
        drop_path: stochastic depth probability of the two residual branches.
        use_rel_pos: decomposed relative position bias in the attention.
        rel_pos_zero_init: start the rel-pos tables at zero.
        window_size: ``(wz, wy, wx)`` for windowed attention, None for global attention.
        use_residual_block: append a :class:`ResBottleneckBlock3D` (bottleneck ``dim // 2``).
        input_size: token grid of global attention, sizing its rel-pos tables.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path: float = 0.0,
        use_rel_pos: bool = False,
        rel_pos_zero_init: bool = True,
        window_size: Triple | None = None,
        use_residual_block: bool = False,
        input_size: Triple | None = None,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention3D(
            dim,
            num_heads=num_heads,
            qkv_bias=qkv_bias,
            use_rel_pos=use_rel_pos,
            rel_pos_zero_init=rel_pos_zero_init,
            input_size=input_size if window_size is None else window_size,
        )
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.window_size = window_size
        self.residual: ResBottleneckBlock3D | None = None
        if use_residual_block:
            self.residual = ResBottleneckBlock3D(dim, dim, dim // 2)

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x
        x = self.norm1(x)
        if self.window_size is not None:
            size = (x.shape[1], x.shape[2], x.shape[3])
            x, padded = window_partition3d(x, self.window_size)
            x = self.attn(x)
            x = window_unpartition3d(x, self.window_size, padded, size)
        else:
            x = self.attn(x)
        x = shortcut + self.drop_path(x)
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        if self.residual is not None:
            x = self.residual(x.permute(0, 4, 1, 2, 3)).permute(0, 2, 3, 4, 1)
        return x

    def extra_repr(self) -> str:
        return f"window_size={self.window_size}"
