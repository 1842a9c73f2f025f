"""Multi-scale RoIAlign over the levels of a 3-D feature pyramid.

torchvision's ``MultiScaleRoIAlign`` with one more axis: every box is pooled from one pyramid
level, chosen from the cube root of its volume by the FPN heuristic (Lin et al., eq. 1), with
per-axis spatial scales so that anisotropic strides (e.g. z stride 2 where y, x stride 4) work.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from ls_backbones import Triple, to_triple
from ls_ops import box_volume3d, roi_align3d

__all__ = ["LevelMapper3D", "MultiScaleRoIAlign3D", "infer_scale"]

FloatTriple = tuple[float, float, float]


class LevelMapper3D:
    """Assigns each box to a pyramid level from the cube root of its volume.

    Level ``k = floor(canonical_level + log2(cbrt(volume) / canonical_scale) + eps)``, clamped to
    ``[k_min, k_max]``; the result is the index ``k - k_min`` into the list of pooled levels.

    Args:
        k_min: pyramid level of the finest pooled feature map (log2 of its stride).
        k_max: pyramid level of the coarsest pooled feature map.
        canonical_scale: cube-root volume of a box that maps to ``canonical_level``.
        canonical_level: level of a box of ``canonical_scale``.
        eps: added before the floor so that exact powers of two land on their level.
    """

    def __init__(self, *, k_min: int, k_max: int, canonical_scale: float = 224.0, canonical_level: int = 4,
                 eps: float = 1e-6) -> None:
        if k_max < k_min:
            raise ValueError(f"LevelMapper3D: k_max ({k_max}) must be >= k_min ({k_min})")
        if not canonical_scale > 0:
            raise ValueError(f"LevelMapper3D: canonical_scale must be > 0, got {canonical_scale}")
        self.k_min = k_min
        self.k_max = k_max
        self.canonical_scale = float(canonical_scale)
        self.canonical_level = canonical_level
        self.eps = eps

    def __call__(self, boxes: Sequence[Tensor]) -> Tensor:
        """Level index (int64, ``0 .. k_max - k_min``) of every box of the concatenated ``(K_i, 6)`` boxes."""
        volume = torch.cat([box_volume3d(b) for b in boxes])
        size = volume.clamp(min=0).pow(1.0 / 3.0)
        level = torch.floor(self.canonical_level + torch.log2(size / self.canonical_scale) + self.eps)
        level = level.clamp(min=self.k_min, max=self.k_max)
        return level.to(torch.int64) - self.k_min

    def __repr__(self) -> str:
        return (f"LevelMapper3D(k_min={self.k_min}, k_max={self.k_max}, "
                f"canonical_scale={self.canonical_scale}, canonical_level={self.canonical_level})")


def infer_scale(feature_shape: Sequence[int], image_shape: Sequence[int]) -> FloatTriple:
    """Per-axis scale ``2 ** round(log2(feature / image))`` of a feature map relative to the image.

    Args:
        feature_shape: ``(D, H, W)`` of the feature map.
        image_shape: ``(Z, Y, X)`` of the (largest) image it was computed from.
    """
    scales = []
    for f, s in zip(feature_shape, image_shape, strict=True):
        if f <= 0 or s <= 0:
            raise ValueError(f"cannot infer a spatial scale from feature shape {tuple(feature_shape)} and "
                             f"image shape {tuple(image_shape)}")
        scales.append(2.0 ** round(math.log2(f / s)))
    return tuple(scales)  # type: ignore[return-value]


class MultiScaleRoIAlign3D(nn.Module):
    """RoIAlign3D of boxes over several feature levels, each box from the level its size selects.

    The per-level, per-axis spatial scales are ``1 / feature_strides``. Without ``feature_strides``
    they are inferred at every call from the feature shapes and the largest image shape (powers of
    two, as torchvision), which is right only while the batch is padded to less than sqrt(2) times
    that image on each axis. A feature map too small to hold the image at the inferred stride is
    refused, but padding to twice the image or more can go unnoticed: small crops padded to a
    large ``size_divisibility`` need ``feature_strides`` (the builder always passes them). Levels
    must be consecutive: the coarsest stride of each level is twice the previous one.

    Args:
        featmap_names: names of the feature maps to pool from, finest first.
        output_size: bins per axis ``(od, oh, ow)`` or one int for all.
        sampling_ratio: samples per bin per axis (``<= 0``: adaptive), an int or a 3-tuple.
        canonical_scale: cube-root volume of a box pooled from ``canonical_level``.
        canonical_level: FPN level of a box of ``canonical_scale`` voxels per axis.
        aligned: pass ``aligned=True`` to RoIAlign3D (half-voxel shift).
        feature_strides: optional ``(sz, sy, sx)`` stride (or an int) of each named feature map;
            when given, the scales are ``1 / stride`` instead of being inferred from shapes.
    """

    def __init__(
        self,
        *,
        featmap_names: Sequence[str],
        output_size: int | Sequence[int],
        sampling_ratio: int | Sequence[int],
        canonical_scale: float = 224.0,
        canonical_level: int = 4,
        aligned: bool = False,
        feature_strides: Sequence[int | Sequence[int]] | None = None,
    ) -> None:
        super().__init__()
        if isinstance(featmap_names, str) or len(featmap_names) == 0:
            raise ValueError(f"MultiScaleRoIAlign3D: featmap_names must be a non-empty list of names, "
                             f"got {featmap_names!r}")
        self.featmap_names = [str(n) for n in featmap_names]
        self.output_size: Triple = to_triple(output_size, "output_size")
        if min(self.output_size) < 1:
            raise ValueError(f"MultiScaleRoIAlign3D: output_size must be >= 1, got {output_size!r}")
        self.sampling_ratio: Triple = to_triple(sampling_ratio, "sampling_ratio")
        self.canonical_scale = float(canonical_scale)
        self.canonical_level = int(canonical_level)
        self.aligned = bool(aligned)
        self.scales: list[FloatTriple] | None = None
        self.map_levels: LevelMapper3D | None = None
        self.infer_scales = feature_strides is None
        if feature_strides is not None:
            if len(feature_strides) != len(self.featmap_names):
                raise ValueError(f"MultiScaleRoIAlign3D: {len(feature_strides)} feature_strides for "
                                 f"{len(self.featmap_names)} featmap_names {self.featmap_names}")
            strides = [to_triple(s, f"feature_strides[{i}]") for i, s in enumerate(feature_strides)]
            self._set_scales([tuple(1.0 / s for s in stride) for stride in strides])  # type: ignore[misc]

    def _set_scales(self, scales: list[FloatTriple]) -> None:
        levels = [round(-math.log2(min(scale))) for scale in scales]
        for i in range(1, len(levels)):
            if levels[i] != levels[i - 1] + 1:
                raise ValueError(
                    f"MultiScaleRoIAlign3D: feature maps {self.featmap_names} must be consecutive pyramid "
                    f"levels (coarsest stride doubling per level), got per-axis scales {scales}")
        self.scales = scales
        self.map_levels = LevelMapper3D(k_min=levels[0], k_max=levels[-1],
                                        canonical_scale=self.canonical_scale,
                                        canonical_level=self.canonical_level)

    def _select(self, features: Mapping[str, Tensor]) -> list[Tensor]:
        missing = [n for n in self.featmap_names if n not in features]
        if missing:
            raise KeyError(f"MultiScaleRoIAlign3D: feature maps {missing} not in features "
                           f"(available: {list(features)})")
        selected = [features[n] for n in self.featmap_names]
        for name, f in zip(self.featmap_names, selected, strict=True):
            if not isinstance(f, Tensor) or f.dim() != 5:
                shape = tuple(f.shape) if isinstance(f, Tensor) else type(f).__name__
                raise ValueError(f"MultiScaleRoIAlign3D: features[{name!r}] must be (B, C, D, H, W), "
                                 f"got {shape}")
            if f.shape[:2] != selected[0].shape[:2]:
                raise ValueError(f"MultiScaleRoIAlign3D: features[{name!r}] has shape {tuple(f.shape)}, but "
                                 f"features[{self.featmap_names[0]!r}] has {tuple(selected[0].shape)}: batch "
                                 "and channels must agree")
        return selected

    def forward(self, features: Mapping[str, Tensor], boxes: Sequence[Tensor],
                image_shapes: Sequence[Sequence[int]]) -> Tensor:
        """Pool every box from its level.

        Args:
            features: feature maps ``(B, C, D, H, W)`` by name (extra names are ignored).
            boxes: per image, ``(K_i, 6)`` boxes in image voxel coordinates.
            image_shapes: per image, ``(Z, Y, X)`` before padding (used to infer the scales).

        Returns:
            ``(sum K_i, C, od, oh, ow)`` pooled features, boxes in input order.
        """
        selected = self._select(features)
        if len(boxes) != selected[0].shape[0]:
            raise ValueError(f"MultiScaleRoIAlign3D: {len(boxes)} box tensors for a batch of "
                             f"{selected[0].shape[0]} feature maps")
        for i, b in enumerate(boxes):
            if not isinstance(b, Tensor) or b.dim() != 2 or b.shape[1] != 6:
                shape = tuple(b.shape) if isinstance(b, Tensor) else type(b).__name__
                raise ValueError(f"MultiScaleRoIAlign3D: boxes[{i}] must be (K, 6), got {shape}")
        if self.infer_scales:
            if len(image_shapes) == 0:
                raise ValueError("MultiScaleRoIAlign3D: image_shapes is empty; cannot infer the spatial "
                                 "scales")
            largest = tuple(max(int(s[a]) for s in image_shapes) for a in range(3))
            scales = [infer_scale(f.shape[-3:], largest) for f in selected]
            for name, f, scale in zip(self.featmap_names, selected, scales, strict=True):
                if any(n / sc < size for n, sc, size in zip(f.shape[-3:], scale, largest, strict=True)):
                    raise ValueError(
                        f"MultiScaleRoIAlign3D: features[{name!r}] {tuple(f.shape[-3:])} cannot hold an "
                        f"image of {largest} at the inferred stride {tuple(1 / sc for sc in scale)}: the "
                        "batch was padded too much to infer the strides; pass feature_strides")
            self._set_scales(scales)
        assert self.scales is not None and self.map_levels is not None

        if len(selected) == 1:
            return roi_align3d(selected[0], list(boxes), self.output_size, self.scales[0],
                               self.sampling_ratio, self.aligned)

        rois = _to_rois(boxes)
        levels = self.map_levels(boxes)
        first = selected[0]
        result = first.new_zeros((rois.shape[0], first.shape[1], *self.output_size))
        for level, (feature, scale) in enumerate(zip(selected, self.scales, strict=True)):
            index = torch.where(levels == level)[0]
            if index.numel() == 0:
                continue
            pooled = roi_align3d(feature, rois[index], self.output_size, scale, self.sampling_ratio,
                                 self.aligned)
            result[index] = pooled.to(result.dtype)
        return result

    def extra_repr(self) -> str:
        return (f"featmap_names={self.featmap_names}, output_size={self.output_size}, "
                f"sampling_ratio={self.sampling_ratio}, canonical_scale={self.canonical_scale}, "
                f"canonical_level={self.canonical_level}, aligned={self.aligned}, scales={self.scales}")


def _to_rois(boxes: Sequence[Tensor]) -> Tensor:
    """``(K, 7)`` rois (batch index, z1, y1, x1, z2, y2, x2) from per-image ``(K_i, 6)`` boxes."""
    parts = [torch.cat([torch.full_like(b[:, :1], float(i)), b], dim=1) for i, b in enumerate(boxes)]
    return torch.cat(parts, dim=0)
