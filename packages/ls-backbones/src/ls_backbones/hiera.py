"""Hiera3D: the hierarchical vision transformer Hiera on 3-D volumes, as a multi-scale backbone.

Hiera (Ryali et al. 2023, https://arxiv.org/abs/2306.00989) is a plain ViT made
hierarchical by *query pooling*: tokens are kept as one flat sequence, *unrolled* so that
each pooling window and each mask unit is contiguous, and the first block of each of the
first ``q_pool`` stages max-pools its queries (and its residual) over a ``q_stride``
window. The early stages attend within mask units, the later ones globally.

This module is written from the paper and the official implementation
(facebookresearch/hiera, PyPI ``hiera-transformer``), N-D by construction like it, with the
same parameter names so official state dicts load (see
:meth:`Hiera3D.load_official_state_dict`). Differences from the official model:

- The output is the stage outputs rerolled to ``(B, C, D, H, W)`` feature maps named
  ``p2 .. p{len(stages)+1}``; there is no classification head, no final norm and no MAE
  masking (the official intermediates are taken before head and norm, so they match).
- The token grid, the unroll/reroll layout and the number of mask units are computed from
  each input, and the position embedding is interpolated when the token grid differs from
  the one ``input_size`` gives (trilinear for a joint embedding; bilinear over (y, x) and
  linear over z for a separable one). The official model is built for ``input_size`` only
  and fails on any other input size.
- Tokens are unrolled only as many levels as query pooling and mask units need, not
  ``len(stages) - 1`` levels; the extra official levels only permute tokens that are
  treated alike, so the outputs are the same, and the size divisibility can be smaller.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ls_backbones.base import Backbone3D, FeatureSpec, Triple, to_triple
from ls_backbones.hiera_utils import do_pool, mask_unit_levels, reroll, unroll
from ls_backbones.layers import DropPath, Mlp

__all__ = [
    "Hiera3D", "HieraBlock", "LoadResult", "MaskUnitAttention", "PatchEmbed",
    "hiera3d_b", "hiera3d_s", "hiera3d_t",
]


class MaskUnitAttention(nn.Module):
    """Multi-head attention within mask units (or globally) on unrolled tokens, with optional
    query pooling.

    Args:
        dim: input channels.
        dim_out: output channels (``heads * head_dim``).
        heads: number of attention heads.
        q_stride: flattened query-pooling window (e.g. 8 for a 2x2x2 window); 1 for none.
        window_size: flattened number of tokens of one mask unit *after* this block's pooling.
        use_mask_unit_attn: attend within mask units (True) or over all tokens (False).
    """

    def __init__(self, dim: int, dim_out: int, heads: int, q_stride: int = 1, window_size: int = 0,
                 use_mask_unit_attn: bool = False) -> None:
        super().__init__()
        self.dim = dim
        self.dim_out = dim_out
        self.heads = heads
        self.q_stride = q_stride
        self.head_dim = dim_out // heads
        self.window_size = window_size
        self.use_mask_unit_attn = use_mask_unit_attn
        self.qkv = nn.Linear(dim, 3 * dim_out)
        self.proj = nn.Linear(dim_out, dim_out)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, N, dim)`` unrolled tokens -> ``(B, N // q_stride, dim_out)``."""
        b, n, _ = x.shape
        num_windows = n // (self.q_stride * self.window_size) if self.use_mask_unit_attn else 1
        # token index = t * num_windows + w: a mask unit is the outermost unroll digits
        qkv = self.qkv(x).reshape(b, -1, num_windows, 3, self.heads, self.head_dim)
        q, k, v = qkv.permute(3, 0, 4, 2, 1, 5).unbind(0)  # each (B, heads, windows, t, head_dim)
        if self.q_stride > 1:
            # max-pool-Nd over the outermost digits of each window (see hiera_utils.unroll)
            q = q.view(b, self.heads, num_windows, self.q_stride, -1, self.head_dim).max(dim=3).values
        x = F.scaled_dot_product_attention(q, k, v)
        x = x.transpose(1, 3).reshape(b, -1, self.dim_out)
        return self.proj(x)

    def extra_repr(self) -> str:
        return (f"heads={self.heads}, q_stride={self.q_stride}, window_size={self.window_size}, "
                f"use_mask_unit_attn={self.use_mask_unit_attn}")


class HieraBlock(nn.Module):
    """Pre-norm transformer block with query pooling and a projected residual when the width changes.

    Args:
        dim: input channels.
        dim_out: output channels; when different, the residual is ``proj(norm1(x))`` pooled (as in
            the official Hiera); when equal and the queries are pooled, ``x`` pooled.
        heads: attention heads.
        mlp_ratio: MLP hidden width over ``dim_out``.
        drop_path: stochastic-depth probability of both residual branches.
        q_stride: flattened query-pooling window (1 for none).
        window_size: flattened mask-unit size after pooling.
        use_mask_unit_attn: mask-unit (True) or global (False) attention.
    """

    def __init__(self, dim: int, dim_out: int, heads: int, mlp_ratio: float = 4.0, drop_path: float = 0.0,
                 q_stride: int = 1, window_size: int = 0, use_mask_unit_attn: bool = False) -> None:
        super().__init__()
        self.dim = dim
        self.dim_out = dim_out
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = MaskUnitAttention(dim, dim_out, heads, q_stride, window_size, use_mask_unit_attn)
        self.norm2 = nn.LayerNorm(dim_out, eps=1e-6)
        self.mlp = Mlp(dim_out, int(dim_out * mlp_ratio))
        self.drop_path = DropPath(drop_path)
        if dim != dim_out:
            self.proj = nn.Linear(dim, dim_out)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, N, dim)`` unrolled tokens -> ``(B, N // q_stride, dim_out)``."""
        x_norm = self.norm1(x)
        if self.dim != self.dim_out:
            x = do_pool(self.proj(x_norm), stride=self.attn.q_stride)
        elif self.attn.q_stride > 1:  # dim_mul=1 with query pooling: the shortcut follows the tokens
            x = do_pool(x, stride=self.attn.q_stride)
        x = x + self.drop_path(self.attn(x_norm))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    """Strided convolution from ``(B, C_in, D, H, W)`` to tokens ``(B, N, C)`` and their grid.

    Args:
        dim_in: input channels.
        dim_out: embedding width.
        kernel, stride, padding: of the ``Conv3d`` ``proj``, per axis (z, y, x).
    """

    def __init__(self, dim_in: int, dim_out: int, kernel: Triple, stride: Triple, padding: Triple) -> None:
        super().__init__()
        self.proj = nn.Conv3d(dim_in, dim_out, kernel_size=kernel, stride=stride, padding=padding)

    def forward(self, x: Tensor) -> tuple[Tensor, Triple]:
        """Return tokens ``(B, D'*H'*W', C)`` in raster order and the grid ``(D', H', W')``."""
        x = self.proj(x)
        grid = (x.shape[2], x.shape[3], x.shape[4])
        return x.flatten(2).transpose(1, 2), grid


class LoadResult(NamedTuple):
    """Keys not loaded by :meth:`Hiera3D.load_official_state_dict` with ``strict=False``."""

    missing_keys: list[str]
    unexpected_keys: list[str]


class Hiera3D(Backbone3D):
    """Hiera on ``(B, C, D, H, W)`` volumes, returning its stage outputs as feature maps.

    Stage ``i`` (0-based) outputs ``p{i+2}`` with ``embed_dim * dim_mul**i`` channels and
    stride ``patch_stride * q_stride**min(i, q_pool)`` per axis (z, y, x). Per-axis arguments
    take an int (the same on every axis) or a (z, y, x) 3-tuple. Parameter names are the
    official ones, so :meth:`load_official_state_dict` loads an official Hiera checkpoint
    built with the same configuration (``in_chans`` = ``in_channels``).

    Args:
        input_size: input (D, H, W) the position embedding is built for. Other input sizes
            satisfying :attr:`size_divisibility` work too: the embedding is interpolated.
        in_channels: input channels (official ``in_chans``).
        embed_dim: width of the first stage.
        num_heads: attention heads of the first stage.
        stages: number of blocks per stage.
        q_pool: number of stage transitions that pool queries (at most ``len(stages) - 1``;
            None: ``min(3, len(stages) - 1)``, the official 3 for four stages).
        q_stride: query-pooling window per axis.
        mask_unit_size: mask unit, in tokens, per axis; must be ``q_stride**k`` (more
            precisely, whole unroll levels, see :func:`ls_backbones.hiera_utils.mask_unit_levels`).
        mask_unit_attn: per stage, whether it attends within mask units (else globally). As
            in the official model, a stage's first block uses the previous stage's setting.
            None: the first two stages (the official ``(True, True, False, False)`` for four).
        dim_mul: width multiplier from one stage to the next.
        head_mul: heads multiplier from one stage to the next.
        patch_kernel, patch_stride, patch_padding: of the patch-embedding ``Conv3d``; must
            give exactly ``D // patch_stride`` tokens on an axis for ``D`` a multiple of the
            stride, i.e. ``1 <= patch_kernel - 2 * patch_padding <= patch_stride``.
        mlp_ratio: MLP hidden width over block width.
        drop_path_rate: stochastic depth, rising linearly over blocks from 0 to this value.
        sep_pos_embed: separable position embedding (``pos_embed_spatial`` over (y, x) plus
            ``pos_embed_temporal`` over z, as the official video models) instead of a joint
            ``pos_embed`` over (z, y, x).
        out_features: which stage outputs to return (``p2`` is stage 0), any non-empty
            subset (None: every stage); they are returned in stage order. Blocks after the
            last requested stage are not run (so, under DDP, their parameters get no gradient).

    Shapes:
        input ``(B, in_channels, D, H, W)``, each of D, H, W a multiple of
        :attr:`size_divisibility`; output ``OrderedDict`` name -> ``(B, C_i, D/s_z, H/s_y, W/s_x)``.
    """

    def __init__(
        self,
        *,
        input_size: int | Sequence[int] = (64, 128, 128),
        in_channels: int = 1,
        embed_dim: int = 96,
        num_heads: int = 1,
        stages: Sequence[int] = (2, 3, 16, 3),
        q_pool: int | None = None,
        q_stride: int | Sequence[int] = 2,
        mask_unit_size: int | Sequence[int] = 8,
        mask_unit_attn: Sequence[bool] | None = None,
        dim_mul: float = 2.0,
        head_mul: float = 2.0,
        patch_kernel: int | Sequence[int] = 7,
        patch_stride: int | Sequence[int] = 4,
        patch_padding: int | Sequence[int] = 3,
        mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.0,
        sep_pos_embed: bool = False,
        out_features: Sequence[str] | None = None,
    ) -> None:
        super().__init__(in_channels)
        self.input_size = to_triple(input_size, "input_size")
        self.q_stride = to_triple(q_stride, "q_stride")
        self.mask_unit_size = to_triple(mask_unit_size, "mask_unit_size")
        self.patch_kernel = to_triple(patch_kernel, "patch_kernel")
        self.patch_stride = to_triple(patch_stride, "patch_stride")
        self.patch_padding = to_triple(patch_padding, "patch_padding")
        self.stages = tuple(int(s) for s in stages)
        n = len(self.stages)
        if mask_unit_attn is None:
            mask_unit_attn = [i < 2 for i in range(n)]
        self.mask_unit_attn = tuple(bool(m) for m in mask_unit_attn)
        self.q_pool = min(3, max(n - 1, 0)) if q_pool is None else int(q_pool)
        if out_features is None:
            out_features = [f"p{i + 2}" for i in range(n)]
        self.sep_pos_embed = bool(sep_pos_embed)
        self._validate_config(drop_path_rate)

        num_stages = len(self.stages)
        self.stage_ends = [sum(self.stages[: i + 1]) - 1 for i in range(num_stages)]
        q_pool_blocks = {end + 1 for end in self.stage_ends[: self.q_pool]}
        flat_q_stride = math.prod(self.q_stride)
        flat_mu_size = math.prod(self.mask_unit_size)

        # stage widths and the number of query pools applied before each stage
        self._stage_dims: list[int] = []
        self._stage_pools = [min(i, self.q_pool) for i in range(num_stages)]
        self._out_names = self._validate_out_features(out_features)

        self.patch_embed = PatchEmbed(in_channels, embed_dim, self.patch_kernel, self.patch_stride,
                                      self.patch_padding)
        self.tokens_spatial_shape: Triple = tuple(  # type: ignore[assignment]
            i // s for i, s in zip(self.input_size, self.patch_stride, strict=True))
        t_z, t_y, t_x = self.tokens_spatial_shape
        if self.sep_pos_embed:
            self.pos_embed_spatial = nn.Parameter(torch.zeros(1, t_y * t_x, embed_dim))
            self.pos_embed_temporal = nn.Parameter(torch.zeros(1, t_z, embed_dim))
        else:
            self.pos_embed = nn.Parameter(torch.zeros(1, t_z * t_y * t_x, embed_dim))

        # a mask unit must be a block of the unrolled layout (official: at most len(stages)-1 levels)
        uses_mask_units = any(self.mask_unit_attn)
        mu_levels = (mask_unit_levels(self.mask_unit_size, self.q_stride, num_stages - 1)
                     if uses_mask_units else 0)
        # unroll only the levels that query pooling and mask units use (official: len(stages)-1)
        self._unroll_levels = max(self.q_pool, mu_levels)

        depth = sum(self.stages)
        dpr = [v.item() for v in torch.linspace(0, drop_path_rate, depth, device="cpu")]
        cur_stage, pools, heads = 0, 0, num_heads
        self.blocks = nn.ModuleList()
        for i in range(depth):
            dim_out = embed_dim
            # as in the official model, mask-unit attention lags one block: a stage's first
            # block (which pools) still uses the previous stage's setting
            use_mask_unit_attn = self.mask_unit_attn[cur_stage]
            if i - 1 in self.stage_ends:
                dim_out = int(embed_dim * dim_mul)
                heads = int(heads * head_mul)
                cur_stage += 1
                if i in q_pool_blocks:
                    pools += 1
            if i == 0 or i - 1 in self.stage_ends:
                self._check_heads(cur_stage, dim_out, heads)
            if use_mask_unit_attn and flat_mu_size % flat_q_stride**pools:
                raise ValueError(
                    f"mask_unit_attn is True for block {i} (stage {cur_stage}), which comes after "
                    f"{pools} query pool(s) of q_stride={self.q_stride}, but mask_unit_size="
                    f"{self.mask_unit_size} is smaller than the pooled window "
                    f"{tuple(q**pools for q in self.q_stride)}: use global attention there"
                )
            self.blocks.append(HieraBlock(
                dim=embed_dim,
                dim_out=dim_out,
                heads=heads,
                mlp_ratio=mlp_ratio,
                drop_path=dpr[i],
                q_stride=flat_q_stride if i in q_pool_blocks else 1,
                window_size=flat_mu_size // flat_q_stride**pools,
                use_mask_unit_attn=use_mask_unit_attn,
            ))
            embed_dim = dim_out
            if i in self.stage_ends:
                self._stage_dims.append(dim_out)

        if any(s % d for s, d in zip(self.input_size, self.size_divisibility, strict=True)):
            raise ValueError(
                f"input_size (z, y, x)={self.input_size} must be a valid input size, a multiple of "
                f"size_divisibility={self.size_divisibility} (patch_stride {self.patch_stride} times "
                f"q_stride {self.q_stride}**{self._unroll_levels}) on each axis"
            )
        self._init_weights()

    # ------------------------------------------------------------------ construction helpers
    def _validate_config(self, drop_path_rate: float) -> None:
        n = len(self.stages)
        if n < 1 or any(s < 1 for s in self.stages):
            raise ValueError(
                f"stages must be a non-empty sequence of positive block counts, got {self.stages}"
            )
        if not 0 <= self.q_pool < n:
            raise ValueError(f"q_pool must be in [0, len(stages) - 1] = [0, {n - 1}], got {self.q_pool}")
        if len(self.mask_unit_attn) != n:
            raise ValueError(
                f"mask_unit_attn needs one flag per stage ({n} for stages={self.stages}), "
                f"got {self.mask_unit_attn}"
            )
        if any(v < 1 for v in (*self.q_stride, *self.mask_unit_size, *self.patch_stride, *self.patch_kernel)):
            raise ValueError(
                f"q_stride {self.q_stride}, mask_unit_size {self.mask_unit_size}, patch_stride "
                f"{self.patch_stride} and patch_kernel {self.patch_kernel} must be positive"
            )
        for k, s, p in zip(self.patch_kernel, self.patch_stride, self.patch_padding, strict=True):
            if not 1 <= k - 2 * p <= s:
                raise ValueError(
                    f"patch_kernel {self.patch_kernel}, patch_stride {self.patch_stride} and patch_padding "
                    f"{self.patch_padding} do not give size // patch_stride tokens per axis: need "
                    f"1 <= patch_kernel - 2 * patch_padding <= patch_stride on every axis"
                )
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_path_rate}")

    def _validate_out_features(self, out_features: Sequence[str]) -> list[str]:
        names = [f"p{i + 2}" for i in range(len(self.stages))]
        if isinstance(out_features, str):
            out_features = (out_features,)
        requested = list(out_features)
        unknown = [f for f in requested if f not in names]
        if not requested or unknown or len(set(requested)) != len(requested):
            raise ValueError(
                f"out_features must be a non-empty subset, without repeats, of {names} (stage i -> "
                f"'p{{i+2}}' for stages={self.stages}), got {tuple(requested)}"
                + (f"; unknown: {unknown}" if unknown else "")
            )
        return [n for n in names if n in requested]

    @staticmethod
    def _check_heads(stage: int, dim: int, heads: int) -> None:
        if heads < 1 or dim % heads:
            raise ValueError(
                f"stage {stage} has width {dim} and {heads} heads: the width must be a positive multiple "
                f"of the heads (check embed_dim, num_heads, dim_mul, head_mul)"
            )

    def _init_weights(self) -> None:
        """Initialise as the official model: truncated normal (std 0.02) weights, biases 0.02."""
        for p in ([self.pos_embed_spatial, self.pos_embed_temporal] if self.sep_pos_embed
                  else [self.pos_embed]):
            nn.init.trunc_normal_(p, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear | nn.Conv3d):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if isinstance(m, nn.Linear) and m.bias is not None:
                    nn.init.constant_(m.bias, 0.02)
            elif isinstance(m, nn.LayerNorm):
                nn.init.constant_(m.bias, 0.02)
                nn.init.constant_(m.weight, 1.0)

    # ------------------------------------------------------------------ contract
    def output_shape(self) -> OrderedDict[str, FeatureSpec]:
        """Channels and (z, y, x) stride of each requested stage output, in stage order."""
        out: OrderedDict[str, FeatureSpec] = OrderedDict()
        for name in self._out_names:
            i = int(name[1:]) - 2
            p = self._stage_pools[i]
            stride = tuple(ps * q**p for ps, q in zip(self.patch_stride, self.q_stride, strict=True))
            out[name] = FeatureSpec(self._stage_dims[i], stride)  # type: ignore[arg-type]
        return out

    @property
    def size_divisibility(self) -> Triple:
        """``patch_stride * q_stride**L`` per axis, ``L = max(q_pool, levels of a mask unit)``.

        The token grid (input // patch_stride) must be divisible by ``q_stride**L`` so that
        every query pooling has whole windows and the grid splits into whole mask units (a
        mask unit is ``q_stride**k`` with ``k <= L`` when mask-unit attention is used).
        """
        levels = self._unroll_levels
        return tuple(ps * q**levels for ps, q in zip(self.patch_stride, self.q_stride, strict=True))  # type: ignore[return-value]

    def no_weight_decay(self) -> list[str]:
        """Names of the position-embedding parameters (exempt from weight decay)."""
        return ["pos_embed_spatial", "pos_embed_temporal"] if self.sep_pos_embed else ["pos_embed"]

    # ------------------------------------------------------------------ forward
    def get_pos_embed(self, grid: Sequence[int]) -> Tensor:
        """Position embedding ``(1, D'*H'*W', embed_dim)`` for the token grid ``(D', H', W')``.

        The learned embedding (for the grid of ``input_size``) is returned as is on that
        grid, and resampled with ``align_corners=False`` on any other: joint, trilinearly;
        separable, ``pos_embed_spatial`` bilinearly over (y, x) and ``pos_embed_temporal``
        linearly over z, before combining them as the official model does.
        """
        grid = tuple(int(g) for g in grid)
        t_z, t_y, t_x = self.tokens_spatial_shape
        if self.sep_pos_embed:
            spatial, temporal = self.pos_embed_spatial, self.pos_embed_temporal
            c = spatial.shape[-1]
            if grid[1:] != (t_y, t_x):
                spatial = spatial.transpose(1, 2).reshape(1, c, t_y, t_x)
                spatial = F.interpolate(spatial, size=grid[1:], mode="bilinear", align_corners=False)
                spatial = spatial.flatten(2).transpose(1, 2)
            if grid[0] != t_z:
                temporal = F.interpolate(temporal.transpose(1, 2), size=grid[0], mode="linear",
                                         align_corners=False).transpose(1, 2)
            # spatial repeated over z plus temporal repeated over (y, x), as in the official model
            return (spatial.unsqueeze(1) + temporal.unsqueeze(2)).reshape(1, math.prod(grid), c)
        pos = self.pos_embed
        if grid != self.tokens_spatial_shape:
            c = pos.shape[-1]
            pos = pos.transpose(1, 2).reshape(1, c, t_z, t_y, t_x)
            pos = F.interpolate(pos, size=grid, mode="trilinear", align_corners=False)
            pos = pos.flatten(2).transpose(1, 2)
        return pos

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        """Run the stages up to the last requested output.

        Args:
            x: ``(B, in_channels, D, H, W)``, each spatial size a multiple of
                :attr:`size_divisibility`.

        Returns:
            ``OrderedDict`` name -> ``(B, C_i, D // s_z, H // s_y, W // s_x)`` as declared by
            :meth:`output_shape`.
        """
        self.check_input(x)
        x, grid = self.patch_embed(x)
        x = x + self.get_pos_embed(grid)
        schedule = [self.q_stride] * self._unroll_levels
        x = unroll(x, grid, schedule)

        wanted = {self.stage_ends[int(n[1:]) - 2]: n for n in self._out_names}
        last = max(wanted)
        out: OrderedDict[str, Tensor] = OrderedDict()
        for i, blk in enumerate(self.blocks):
            x = blk(x)
            name = wanted.get(i)
            if name is not None:
                p = self._stage_pools[int(name[1:]) - 2]
                size = [g // q**p for g, q in zip(grid, self.q_stride, strict=True)]
                feat = reroll(x, size, schedule[p:])  # (B, D', H', W', C)
                out[name] = feat.permute(0, 4, 1, 2, 3).contiguous()
            if i == last:
                break
        return out

    # ------------------------------------------------------------------ checkpoints
    def load_official_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True) -> LoadResult:
        """Load an official Hiera state dict (or checkpoint with a ``model_state`` entry).

        The classification head (``head.*``) and final norm (``norm.*``) are dropped; every
        other key must match a parameter of this model by name and shape.

        Args:
            state_dict: official ``Hiera.state_dict()``, or a checkpoint dict holding it under
                ``"model_state"`` (the official download format).
            strict: raise if a model key is missing from ``state_dict`` or ``state_dict`` has
                keys this model lacks. Shape mismatches always raise.

        Returns:
            The missing and unexpected keys (both empty when ``strict``).

        Raises:
            RuntimeError: naming every missing, unexpected or mis-shaped key.
        """
        if isinstance(state_dict.get("model_state"), Mapping):
            state_dict = state_dict["model_state"]
        source = {k: v for k, v in state_dict.items() if not k.startswith(("head.", "norm."))}
        own = self.state_dict()
        missing = sorted(set(own) - set(source))
        unexpected = sorted(set(source) - set(own))
        mismatched = [
            f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
            for k, v in source.items() if k in own and tuple(v.shape) != tuple(own[k].shape)
        ]
        problems = []
        if mismatched:
            hint = ""
            if any(m.startswith("pos_embed") for m in mismatched):
                hint = (" (a position embedding is built for the token grid input_size // patch_stride: "
                        "build Hiera3D with the checkpoint's input_size; other input sizes are then "
                        "handled by interpolation)")
            problems.append(f"shape mismatch for {len(mismatched)} key(s): {'; '.join(mismatched)}{hint}")
        if strict and (missing or unexpected):
            if missing:
                problems.append(f"missing key(s): {missing}")
            if unexpected:
                problems.append(f"unexpected key(s): {unexpected}")
            if any(k.startswith("pos_embed") for k in missing + unexpected):
                problems.append("the checkpoint and the model disagree on sep_pos_embed")
            problems.append("pass strict=False to load the matching keys only")
        if problems:
            raise RuntimeError("Hiera3D.load_official_state_dict: " + "; ".join(problems))
        result = self.load_state_dict(source, strict=False)
        return LoadResult(list(result.missing_keys), list(result.unexpected_keys))


def _preset(defaults: dict[str, Any], kwargs: dict[str, Any]) -> Hiera3D:
    return Hiera3D(**{**defaults, **kwargs})


def hiera3d_t(**kwargs: Any) -> Hiera3D:
    """Hiera-Tiny in 3-D: ``embed_dim=96, num_heads=1, stages=(1, 2, 7, 2)``; any
    :class:`Hiera3D` argument may be overridden (e.g. ``q_stride=(1, 2, 2),
    mask_unit_size=(1, 8, 8), patch_stride=(2, 4, 4)`` for anisotropic volumes)."""
    return _preset({"embed_dim": 96, "num_heads": 1, "stages": (1, 2, 7, 2)}, kwargs)


def hiera3d_s(**kwargs: Any) -> Hiera3D:
    """Hiera-Small in 3-D: ``embed_dim=96, num_heads=1, stages=(1, 2, 11, 2)``; see :func:`hiera3d_t`."""
    return _preset({"embed_dim": 96, "num_heads": 1, "stages": (1, 2, 11, 2)}, kwargs)


def hiera3d_b(**kwargs: Any) -> Hiera3D:
    """Hiera-Base in 3-D: ``embed_dim=96, num_heads=1, stages=(2, 3, 16, 3)``; see :func:`hiera3d_t`."""
    return _preset({"embed_dim": 96, "num_heads": 1, "stages": (2, 3, 16, 3)}, kwargs)
