"""Intensity transforms: normalisation, gamma, additive Gaussian noise.

They change the image values only: the image keeps its shape and dtype, ``target`` and
``meta`` are returned unchanged. The image must have a floating dtype.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from ls_data.errors import DataError
from ls_data.transforms.base import RandomTransform, Transform
from ls_data.transforms.targets import Sample

__all__ = ["GaussianNoise", "NormalizeIntensity", "RandomGamma", "apply_statistics", "percentile"]


def _require_float(image: Tensor, where: str) -> None:
    if not image.is_floating_point():
        raise DataError(f"{where}: image must be a floating-point tensor, got dtype {image.dtype}")


def _groups(image: Tensor, per_channel: bool) -> Tensor:
    """View the image as ``(G, M)`` float32 rows: one row per channel, or one row in all."""
    flat = image.reshape(image.shape[0], -1) if per_channel else image.reshape(1, -1)
    return flat.to(torch.float32)


def percentile(values: Tensor, q: float) -> Tensor:
    """Row-wise percentile with linear interpolation (numpy's default method).

    Uses :meth:`torch.Tensor.kthvalue`, so it has no size limit (unlike :func:`torch.quantile`).

    Args:
        values: ``(G, M)`` with ``M >= 1``.
        q: Percentile in [0, 100].

    Returns:
        ``(G,)``.
    """
    m = values.shape[1]
    pos = q / 100.0 * (m - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    v_lo = values.kthvalue(lo + 1, dim=1).values
    if hi == lo:
        return v_lo
    v_hi = values.kthvalue(hi + 1, dim=1).values
    return v_lo + (v_hi - v_lo) * (pos - lo)


class NormalizeIntensity(Transform):
    """Normalise intensities per channel (or over all channels).

    - ``mode="percentile"``: ``(x - P_low) / (P_high - P_low)``, so the ``low`` percentile maps to
      0 and the ``high`` percentile to 1 (robust to hot pixels; the usual choice for microscopy).
    - ``mode="meanstd"``: ``(x - mean) / std``.

    A constant channel (zero range or zero std) becomes all zeros.

    Effect on each key: image values only (same shape and dtype); target and meta unchanged.

    Args:
        mode: ``"percentile"`` or ``"meanstd"``.
        low: Lower percentile in [0, 100).
        high: Upper percentile in (low, 100].
        per_channel: Statistics per channel (True) or over the whole image (False).
        clip: Clip intensities to ``[P_low, P_high]`` before normalising (in percentile mode
            the result then lies in [0, 1]).
    """

    def __init__(
        self,
        *,
        mode: Literal["percentile", "meanstd"] = "percentile",
        low: float = 1.0,
        high: float = 99.8,
        per_channel: bool = True,
        clip: bool = False,
    ) -> None:
        if mode not in ("percentile", "meanstd"):
            raise DataError(f"NormalizeIntensity: mode must be 'percentile' or 'meanstd', got {mode!r}")
        numbers = isinstance(low, int | float) and isinstance(high, int | float)
        if not (numbers and 0.0 <= low < high <= 100.0):
            raise DataError(
                f"NormalizeIntensity: need 0 <= low < high <= 100, got low={low!r}, high={high!r}"
            )
        self.mode = mode
        self.low = float(low)
        self.high = float(high)
        self.per_channel = bool(per_channel)
        self.clip = bool(clip)

    def statistics(self, values: Tensor) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        """The statistics of ``(G, M)`` float32 rows: ``(shift, scale, clip_low, clip_high)``, each
        ``(G,)``; the clip bounds are None without ``clip``.

        Whole-volume prediction computes them once on a sample of a volume and applies them to
        every tile with :func:`apply_statistics`.
        """
        low = high = None
        if self.mode == "percentile" or self.clip:
            low, high = percentile(values, self.low), percentile(values, self.high)
        if self.clip:
            values = torch.minimum(torch.maximum(values, low[:, None]), high[:, None])
        if self.mode == "percentile":
            shift, scale = low, high - low
        else:
            shift, scale = values.mean(dim=1), values.std(dim=1, correction=0)
        return shift, scale, (low if self.clip else None), (high if self.clip else None)

    def apply(self, image: Tensor, target: dict[str, Any], meta: dict[str, Any]) -> Sample:
        _require_float(image, "NormalizeIntensity")
        if image.numel() == 0:
            return image, dict(target), dict(meta)
        values = _groups(image, self.per_channel)
        out = apply_statistics(values, *self.statistics(values))
        return out.reshape(image.shape).to(image.dtype), dict(target), dict(meta)


def apply_statistics(
    values: Tensor,
    shift: Tensor,
    scale: Tensor,
    clip_low: Tensor | None = None,
    clip_high: Tensor | None = None,
) -> Tensor:
    """``(values - shift) / scale`` per row of ``(G, M)`` values, clipped to ``[clip_low, clip_high]``
    first when given; a row whose ``scale`` is 0 becomes zeros. Statistics are ``(G,)``."""
    if clip_low is not None and clip_high is not None:
        values = torch.minimum(torch.maximum(values, clip_low[:, None]), clip_high[:, None])
    inv = torch.where(scale > 0, 1.0 / scale.clamp_min(torch.finfo(torch.float32).tiny), 0.0)
    return (values - shift[:, None]) * inv[:, None]


def _range_pair(value: Any, name: str) -> tuple[float, float]:
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 2:
        raise DataError(f"{name} must be a (low, high) pair, got {value!r}")
    low, high = (float(v) for v in value)
    if not 0.0 < low <= high:
        raise DataError(f"{name} must satisfy 0 < low <= high, got {value!r}")
    return low, high


class RandomGamma(RandomTransform):
    """With probability ``p``, apply a gamma curve ``x -> x ** gamma`` within each channel's range.

    Each channel is mapped to [0, 1] by its min and max, raised to ``gamma`` (drawn uniformly
    from ``gamma_range``) and mapped back, so the range is kept and only the contrast changes.
    A constant channel is left as is.

    Effect on each key: image values only (same shape and dtype); target and meta unchanged.

    Args:
        gamma_range: ``(low, high)`` with ``0 < low <= high``.
        p: Probability of applying.
        per_channel: Draw a separate gamma for every channel.
    """

    def __init__(
        self, *, gamma_range: Sequence[float] = (0.7, 1.5), p: float = 0.5, per_channel: bool = False
    ) -> None:
        super().__init__(p=p)
        self.gamma_range = _range_pair(gamma_range, "RandomGamma gamma_range")
        self.per_channel = bool(per_channel)

    def apply(self, image: Tensor, target: dict[str, Any], meta: dict[str, Any]) -> Sample:
        _require_float(image, "RandomGamma")
        if not self._coin() or image.numel() == 0:
            return image, dict(target), dict(meta)
        channels = image.shape[0]
        draws = [self._uniform(*self.gamma_range) for _ in range(channels if self.per_channel else 1)]
        gamma = torch.tensor(draws * (1 if self.per_channel else channels), dtype=torch.float32)
        gamma = gamma.to(image.device)
        values = _groups(image, per_channel=True)
        low, high = values.amin(dim=1), values.amax(dim=1)
        span = high - low
        safe = torch.where(span > 0, span, torch.ones_like(span))
        unit = (values - low[:, None]) / safe[:, None]
        out = unit.pow(gamma[:, None]) * span[:, None] + low[:, None]
        return out.reshape(image.shape).to(image.dtype), dict(target), dict(meta)


class GaussianNoise(RandomTransform):
    """With probability ``p``, add zero-mean Gaussian noise.

    Effect on each key: image values only (same shape and dtype); target and meta unchanged.

    Args:
        std: Standard deviation of the noise (> 0); in image units, or a fraction of each
            channel's own standard deviation when ``relative``.
        p: Probability of applying.
        relative: Scale ``std`` by each channel's standard deviation.
    """

    def __init__(self, *, std: float = 0.1, p: float = 0.5, relative: bool = False) -> None:
        super().__init__(p=p)
        if isinstance(std, bool) or not isinstance(std, int | float) or std <= 0:
            raise DataError(f"GaussianNoise: std must be a positive number, got {std!r}")
        self.std = float(std)
        self.relative = bool(relative)

    def apply(self, image: Tensor, target: dict[str, Any], meta: dict[str, Any]) -> Sample:
        _require_float(image, "GaussianNoise")
        if not self._coin() or image.numel() == 0:
            return image, dict(target), dict(meta)
        noise = torch.randn(image.shape, generator=self.generator, dtype=torch.float32)
        if self.relative:
            sigma = _groups(image, per_channel=True).std(dim=1, correction=0) * self.std
            noise = noise * sigma.reshape(-1, 1, 1, 1)
        else:
            noise = noise * self.std
        return image + noise.to(device=image.device, dtype=image.dtype), dict(target), dict(meta)
