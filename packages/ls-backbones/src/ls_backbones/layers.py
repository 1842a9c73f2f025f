"""Small building blocks shared by the backbones: norms chosen by name, drop path, MLP."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

__all__ = [
    "DropPath",
    "FrozenBatchNorm3d",
    "LayerNorm3d",
    "Mlp",
    "NormSpec",
    "make_norm3d",
]


class FrozenBatchNorm3d(nn.Module):
    """BatchNorm3d whose statistics and affine parameters are fixed buffers.

    Same buffers as ``nn.BatchNorm3d`` (``weight``, ``bias``, ``running_mean``,
    ``running_var``), so a BatchNorm3d state dict loads into it. The usual choice when
    fine-tuning a detector with small per-GPU batches.
    """

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing, unexpected, errors):
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing, unexpected, errors)

    def forward(self, x: Tensor) -> Tensor:
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        shift = self.bias - self.running_mean * scale
        return x * scale.reshape(1, -1, 1, 1, 1) + shift.reshape(1, -1, 1, 1, 1)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"


class LayerNorm3d(nn.Module):
    """LayerNorm over the channel axis of a channels-first ``(B, C, D, H, W)`` tensor."""

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        x = x.permute(0, 2, 3, 4, 1)
        x = nn.functional.layer_norm(x, self.weight.shape, self.weight, self.bias, self.eps)
        return x.permute(0, 4, 1, 2, 3)


NormSpec = str | Callable[[int], nn.Module] | None

_NORM_NAMES = ("batchnorm", "bn", "frozenbn", "frozen_bn", "groupnorm", "gn", "layernorm", "ln", "none")


def make_norm3d(norm: NormSpec, channels: int, num_groups: int = 32) -> nn.Module:
    """Build a 3-D normalisation layer for ``channels`` channels.

    Args:
        norm: a name (``"batchnorm"``/``"bn"``, ``"frozenbn"``, ``"groupnorm"``/``"gn"``,
            ``"layernorm"``/``"ln"`` (channels-first), ``"none"``), a callable taking the
            channel count, or None (identity).
        channels: number of channels to normalise.
        num_groups: groups of GroupNorm (reduced to the largest divisor of ``channels``
            not above it, so narrow layers still build).
    """
    if norm is None:
        return nn.Identity()
    if callable(norm):
        return norm(channels)
    key = norm.lower()
    if key in ("batchnorm", "bn"):
        return nn.BatchNorm3d(channels)
    if key in ("frozenbn", "frozen_bn"):
        return FrozenBatchNorm3d(channels)
    if key in ("groupnorm", "gn"):
        groups = min(num_groups, channels)
        while channels % groups:
            groups -= 1
        return nn.GroupNorm(groups, channels)
    if key in ("layernorm", "ln"):
        return LayerNorm3d(channels)
    if key == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {norm!r}; choose one of {', '.join(_NORM_NAMES)} or pass a callable")


class DropPath(nn.Module):
    """Stochastic depth per sample: drops the whole residual branch with probability ``p``."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"drop path probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Mlp(nn.Module):
    """Two-layer MLP (``fc1``, activation, ``fc2``), parameter names as in timm and Hiera."""

    def __init__(self, dim: int, hidden_dim: int, out_dim: int | None = None,
                 act_layer: type[nn.Module] = nn.GELU) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden_dim, out_dim or dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))
