"""Intensity transforms: normalisation, gamma, noise, and light-sheet variation (blur, stripes, scale).

They change the image values only: the image keeps its shape and dtype, ``target`` and
``meta`` are returned unchanged. The image must have a floating dtype.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from ls_data.errors import DataError
from ls_data.transforms.base import RandomTransform, Transform
from ls_data.transforms.targets import Sample, range_pair

__all__ = [
    "GaussianNoise",
    "NormalizeIntensity",
    "RandomBlur",
    "RandomGamma",
    "RandomIntensityScale",
    "RandomStripes",
    "apply_statistics",
    "gaussian_smooth",
    "percentile",
]


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
        self.gamma_range = range_pair(gamma_range, name="RandomGamma gamma_range", positive=True)
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


def gaussian_smooth(values: Tensor, dim: int, sigma: float, truncate: float = 3.0) -> Tensor:
    """Smooth ``values`` with a 1-D Gaussian along ``dim`` (float32 result, same shape).

    The kernel has radius ``int(truncate * sigma + 0.5)`` and sums to 1; edges are replicated.
    This is :func:`scipy.ndimage.gaussian_filter1d` with ``mode="nearest"``; ``sigma`` 0 (or a
    radius of 0) returns the values unchanged.

    Args:
        values: Any shape.
        dim: The axis to smooth along.
        sigma: Standard deviation in voxels (>= 0).
        truncate: Kernel radius in units of ``sigma``.
    """
    radius = int(truncate * sigma + 0.5)
    if sigma <= 0 or radius == 0:
        return values.to(torch.float32)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = (kernel / kernel.sum()).to(device=values.device, dtype=torch.float32)
    moved = values.to(torch.float32).movedim(dim, -1)
    rows = F.pad(moved.reshape(-1, 1, moved.shape[-1]), (radius, radius), mode="replicate")
    return F.conv1d(rows, kernel.view(1, 1, -1)).reshape(moved.shape).movedim(-1, dim)


class RandomBlur(RandomTransform):
    """With probability ``p``, blur with a Gaussian of random width (imitates another PSF).

    The sigma of each axis is drawn uniformly, in voxels: z from ``sigma_z``, y and x each
    (independently) from ``sigma_yx``. The blur is separable, one :func:`gaussian_smooth` per axis
    (kernel truncated at 3 sigma, edges replicated); an axis whose sigma is 0 is not blurred.
    Every channel gets the same blur.

    Effect on each key: image values only (same shape and dtype); target and meta unchanged.

    Args:
        sigma_yx: ``(low, high)`` range of the y and x sigmas in voxels, ``0 <= low <= high``.
        sigma_z: ``(low, high)`` range of the z sigma in voxels, ``0 <= low <= high``.
        p: Probability of applying.
    """

    def __init__(
        self, *, sigma_yx: Sequence[float] = (0.5, 1.5), sigma_z: Sequence[float] = (0.0, 1.0), p: float = 0.5
    ) -> None:
        super().__init__(p=p)
        self.sigma_yx = range_pair(sigma_yx, name="RandomBlur sigma_yx", minimum=0.0)
        self.sigma_z = range_pair(sigma_z, name="RandomBlur sigma_z", minimum=0.0)

    def apply(self, image: Tensor, target: dict[str, Any], meta: dict[str, Any]) -> Sample:
        _require_float(image, "RandomBlur")
        if not self._coin() or image.numel() == 0:
            return image, dict(target), dict(meta)
        sigmas = (self._uniform(*self.sigma_z), self._uniform(*self.sigma_yx), self._uniform(*self.sigma_yx))
        out = image
        for dim, sigma in enumerate(sigmas, start=1):
            out = gaussian_smooth(out, dim, sigma)
        return out.to(image.dtype), dict(target), dict(meta)


class RandomStripes(RandomTransform):
    """With probability ``p``, multiply the image by a stripe pattern (light-sheet shadowing).

    What absorbs or scatters the light sheet casts a shadow along the direction the sheet
    travels: darker streaks that run across the whole field. ``direction`` is that direction in
    the yx plane; the gain is one value per line across it (``direction="x"``: one gain per row
    y, constant along x), ``gain = 1 - a * |n| / max|n|``, where ``n`` is white Gaussian noise
    along the lines smoothed by :func:`gaussian_smooth` with sigma ``smoothness`` (the stripes'
    width scale) and ``a`` is drawn uniformly from ``strength``. The gains lie in ``[1 - a, 1]``,
    the darkest line at exactly ``1 - a``; the same pattern darkens every z plane and every
    channel. Values are multiplied, so apply it where 0 means no light (background-subtracted
    raw data, or after percentile normalisation).

    Effect on each key: image values only (same shape and dtype); target and meta unchanged.

    Args:
        strength: ``(low, high)`` range of the largest attenuation ``a``, ``0 <= low <= high <= 1``.
        direction: ``"x"``, ``"y"``, or ``"random"`` (one of the two drawn each time).
        smoothness: Sigma in voxels of the smoothing across the lines (>= 0; 0 = independent lines).
        p: Probability of applying.
    """

    def __init__(
        self,
        *,
        strength: Sequence[float] = (0.1, 0.5),
        direction: Literal["x", "y", "random"] = "random",
        smoothness: float = 2.0,
        p: float = 0.5,
    ) -> None:
        super().__init__(p=p)
        self.strength = range_pair(strength, name="RandomStripes strength", minimum=0.0, maximum=1.0)
        if direction not in ("x", "y", "random"):
            raise DataError(f"RandomStripes: direction must be 'x', 'y' or 'random', got {direction!r}")
        bad = isinstance(smoothness, bool) or not isinstance(smoothness, int | float)
        if bad or not 0.0 <= float(smoothness) < math.inf:
            raise DataError(f"RandomStripes: smoothness must be a number >= 0, got {smoothness!r}")
        self.direction = direction
        self.smoothness = float(smoothness)

    def apply(self, image: Tensor, target: dict[str, Any], meta: dict[str, Any]) -> Sample:
        _require_float(image, "RandomStripes")
        if not self._coin() or image.numel() == 0:
            return image, dict(target), dict(meta)
        a = self._uniform(*self.strength)
        direction = self.direction if self.direction != "random" else ("y", "x")[self._randint(2)]
        dim = 2 if direction == "x" else 3  # the axis the gain varies along: across the stripes
        noise = torch.randn(image.shape[dim], generator=self.generator, dtype=torch.float32)
        shade = gaussian_smooth(noise, 0, self.smoothness).abs()
        gain = 1.0 - a * shade / shade.max().clamp_min(torch.finfo(torch.float32).tiny)
        shape = [1, 1, 1, 1]
        shape[dim] = -1
        gain = gain.view(shape).to(device=image.device, dtype=image.dtype)
        return image * gain, dict(target), dict(meta)


class RandomIntensityScale(RandomTransform):
    """With probability ``p``, ``x -> x * s + o``: another laser power, detector gain or background.

    ``s`` is drawn log-uniformly from ``scale`` (so 0.5 and 2 are equally likely with the
    default range), ``o`` uniformly from ``offset``, in image units. A per-crop normalisation
    undoes any such change of the whole crop, so place this after ``normalize_intensity``; there
    (percentile mode: background near 0, bright objects near 1) the defaults make the crop half
    to twice as bright and move the background by up to 0.1 of the normalised range.

    Effect on each key: image values only (same shape and dtype); target and meta unchanged.

    Args:
        scale: ``(low, high)`` range of the factor, ``0 < low <= high``.
        offset: ``(low, high)`` range of the added offset, ``low <= high`` (either sign).
        p: Probability of applying.
        per_channel: Draw a separate factor and offset for every channel.
    """

    def __init__(
        self,
        *,
        scale: Sequence[float] = (0.5, 2.0),
        offset: Sequence[float] = (-0.1, 0.1),
        p: float = 0.5,
        per_channel: bool = False,
    ) -> None:
        super().__init__(p=p)
        self.scale = range_pair(scale, name="RandomIntensityScale scale", positive=True)
        self.offset = range_pair(offset, name="RandomIntensityScale offset")
        self.per_channel = bool(per_channel)

    def apply(self, image: Tensor, target: dict[str, Any], meta: dict[str, Any]) -> Sample:
        _require_float(image, "RandomIntensityScale")
        if not self._coin() or image.numel() == 0:
            return image, dict(target), dict(meta)
        log_low, log_high = math.log(self.scale[0]), math.log(self.scale[1])
        draws = [
            (math.exp(self._uniform(log_low, log_high)), self._uniform(*self.offset))
            for _ in range(image.shape[0] if self.per_channel else 1)
        ]
        factors = torch.tensor(draws, dtype=image.dtype).to(image.device)  # (C or 1, 2)
        scale, offset = factors[:, 0].view(-1, 1, 1, 1), factors[:, 1].view(-1, 1, 1, 1)
        return image * scale + offset, dict(target), dict(meta)
