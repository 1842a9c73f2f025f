"""Anchor boxes for 3-D feature pyramids, with per-axis (anisotropic) strides."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ls_detection.boxes import coordinate_dtype
from ls_detection.image_list import ImageList3D


def _positive_levels(name: str, values: Sequence[Sequence[float]]) -> tuple[tuple[float, ...], ...]:
    if isinstance(values, str) or not isinstance(values, Sequence) or len(values) == 0:
        raise ValueError(f"AnchorGenerator3D {name} must be a non-empty list (one entry per feature level) "
                         f"of lists of floats, got {values!r}")
    levels = []
    for i, level in enumerate(values):
        if isinstance(level, str) or not isinstance(level, Sequence) or len(level) == 0:
            raise ValueError(f"AnchorGenerator3D {name}[{i}] must be a non-empty list of floats, "
                             f"got {level!r}")
        floats = tuple(float(v) for v in level)
        if any(not v > 0 for v in floats):
            raise ValueError(f"AnchorGenerator3D {name}[{i}] must hold values > 0, got {floats}")
        levels.append(floats)
    return tuple(levels)


class AnchorGenerator3D(nn.Module):
    """Anchors for every location of every feature level, for each image of a batch.

    For a base size ``s``, a yx aspect ratio ``r`` (height / width) and a z aspect ratio ``rz``
    the anchor extents are::

        h = s * sqrt(r)    (y)
        w = s / sqrt(r)    (x)
        d = s * rz         (z)

    so ``r = 1, rz = 1`` gives a cube of side ``s`` and ``rz`` can express anisotropic objects
    (e.g. ``rz = 0.5`` on a volume whose z spacing is twice the xy spacing). The zero-centred
    base anchor ``(-d, -h, -w, d, h, w) / 2`` is rounded to integers as torchvision does.

    The base anchors of one level are ordered yx ratio (slowest), then z ratio, then size
    (fastest); there are ``len(sizes[l]) * len(aspect_ratios[l]) * len(aspect_ratios_z[l])`` of
    them per location. A level's feature map of shape ``(D, H, W)`` on a padded batch of shape
    ``(Z, Y, X)`` has the per-axis stride ``(Z // D, Y // H, X // W)``; the base anchors are
    shifted to ``(k * stride_z, j * stride_y, i * stride_x)`` for every location ``(k, j, i)``.
    Anchors are ordered location-major (z, y, x, as a row-major flatten of the feature map)
    and base anchor minor, levels concatenated.

    Args:
        sizes: per feature level, the base sizes ``s`` (voxels).
        aspect_ratios: per feature level, the yx aspect ratios ``r = h / w``.
        aspect_ratios_z: per feature level, the z aspect ratios ``rz = d / s``.
    """

    def __init__(
        self,
        *,
        sizes: Sequence[Sequence[float]],
        aspect_ratios: Sequence[Sequence[float]],
        aspect_ratios_z: Sequence[Sequence[float]],
    ) -> None:
        super().__init__()
        self.sizes = _positive_levels("sizes", sizes)
        self.aspect_ratios = _positive_levels("aspect_ratios", aspect_ratios)
        self.aspect_ratios_z = _positive_levels("aspect_ratios_z", aspect_ratios_z)
        if not len(self.sizes) == len(self.aspect_ratios) == len(self.aspect_ratios_z):
            raise ValueError(f"AnchorGenerator3D needs one entry per feature level in sizes, aspect_ratios "
                             f"and aspect_ratios_z, got {len(self.sizes)}, {len(self.aspect_ratios)} and "
                             f"{len(self.aspect_ratios_z)} levels")
        levels = zip(self.sizes, self.aspect_ratios, self.aspect_ratios_z, strict=True)
        self.cell_anchors = [self.base_anchors(s, r, rz) for s, r, rz in levels]

    @staticmethod
    def base_anchors(
        sizes: Sequence[float], aspect_ratios: Sequence[float], aspect_ratios_z: Sequence[float]
    ) -> Tensor:
        """Zero-centred, rounded ``(A, 6)`` float32 anchors of one level (order in the class docstring)."""
        s = torch.as_tensor(sizes, dtype=torch.float32)
        r = torch.as_tensor(aspect_ratios, dtype=torch.float32)
        rz = torch.as_tensor(aspect_ratios_z, dtype=torch.float32)
        h_ratio = torch.sqrt(r)
        shape = (len(r), len(rz), len(s))
        d = (rz[None, :, None] * s[None, None, :]).expand(shape)
        h = (h_ratio[:, None, None] * s[None, None, :]).expand(shape)
        w = ((1 / h_ratio)[:, None, None] * s[None, None, :]).expand(shape)
        extent = torch.stack((d, h, w), dim=-1).reshape(-1, 3)
        return (torch.cat((-extent, extent), dim=1) / 2).round()

    def num_anchors_per_location(self) -> list[int]:
        """Number of anchors at each location, per feature level."""
        return [len(a) for a in self.cell_anchors]

    def grid_anchors(self, grid_sizes: Sequence[Sequence[int]], strides: Sequence[Sequence[int]],
                     *, dtype: torch.dtype, device: torch.device) -> list[Tensor]:
        """Anchors of every level, ``(D * H * W * A, 6)`` each, for grids ``(D, H, W)`` and strides."""
        anchors = []
        for grid, stride, base in zip(grid_sizes, strides, self.cell_anchors, strict=True):
            axes = [torch.arange(g, dtype=torch.float32, device=device) * st for g, st in zip(grid, stride,
                                                                                             strict=True)]
            centres = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)
            shifts = torch.cat((centres, centres), dim=1)
            level = shifts[:, None, :] + base.to(device)[None, :, :]
            anchors.append(level.reshape(-1, 6).to(dtype))
        return anchors

    def forward(self, image_list: ImageList3D, feature_maps: list[Tensor]) -> list[Tensor]:
        """Anchors for each image of the batch.

        Args:
            image_list: the padded batch; strides are taken from its padded shape.
            feature_maps: per level, a ``(B, C, D, H, W)`` feature map.

        Returns:
            Per image, ``(A_total, 6)`` anchors over all levels (the same tensor for every image).
        """
        if len(feature_maps) != len(self.cell_anchors):
            raise ValueError(f"AnchorGenerator3D was built for {len(self.cell_anchors)} feature levels "
                             f"but got {len(feature_maps)} feature maps")
        image_size = tuple(image_list.tensors.shape[-3:])
        grid_sizes = []
        strides = []
        for i, fmap in enumerate(feature_maps):
            if fmap.dim() != 5:
                raise ValueError(f"feature_maps[{i}] must be (B, C, D, H, W), got {tuple(fmap.shape)}")
            grid = tuple(int(g) for g in fmap.shape[-3:])
            if any(g == 0 or g > s for g, s in zip(grid, image_size, strict=True)):
                raise ValueError(f"feature_maps[{i}] spatial shape {grid} does not fit the image batch "
                                 f"{image_size}")
            grid_sizes.append(grid)
            strides.append(tuple(s // g for s, g in zip(image_size, grid, strict=True)))
        fmap = feature_maps[0]
        # coordinates: float32 (float64 for a float64 model), not the bf16 of autocast feature maps
        dtype = coordinate_dtype(fmap.dtype)
        anchors = torch.cat(self.grid_anchors(grid_sizes, strides, dtype=dtype, device=fmap.device))
        return [anchors for _ in image_list.image_sizes]
