"""Reference RoIAlign3D: torchvision's ``roi_align`` with one more axis, written as the specification.

For each roi and axis (z, y, x), with ``scale`` the axis' spatial scale and
``offset = 0.5 if aligned else 0``:

- ``start = c1 * scale - offset``, ``end = c2 * scale - offset``, ``extent = end - start``;
  without ``aligned`` the extent is raised to at least 1 (torchvision's legacy behaviour).
- The extent is split into ``pooled`` bins of size ``bin = extent / pooled``; each bin is
  sampled at ``grid`` points ``start + p * bin + (i + 0.5) * bin / grid`` where ``grid`` is the
  axis' sampling ratio, or ``ceil(extent / pooled)`` when that is <= 0 (adaptive).
- A sample coordinate ``< -1`` or ``> size`` lies outside and interpolates to 0. Otherwise it
  is clamped to ``[0, size - 1]`` and linearly interpolated between ``floor`` and ``floor + 1``.
- An output voxel is the mean of its ``grid_z * grid_y * grid_x`` trilinear samples (the
  trilinear weight is the product of the three axis weights); outside samples count as 0.

Coordinates are computed in the input's dtype, in the same order as the kernels, so both
agree on which side of a border a sample falls. Interpolation along each axis is a matrix
(samples × voxels) applied to the roi's crop of the volume, which makes the result
differentiable through autograd.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from ls_ops._args import check_roi_align_args


def axis_interpolation(
    c1: Tensor, c2: Tensor, scale: float, pooled: int, sampling_ratio: int, aligned: bool, size: int
) -> tuple[Tensor, int]:
    """Interpolation matrix of one roi along one axis, and the number of samples per bin.

    Args:
        c1, c2: 0-d tensors, the roi's low and high coordinate on this axis (input dtype).
        scale: spatial scale of this axis; pooled: output bins; size: the input's extent.

    Returns:
        ``(pooled * grid, size)`` weights, row ``p * grid + i`` holding sample ``i`` of bin
        ``p`` (zero for samples outside the volume), and ``grid``.
    """
    dtype, device = c1.dtype, c1.device
    offset = 0.5 if aligned else 0.0
    start = c1 * torch.tensor(scale, dtype=dtype) - offset
    end = c2 * torch.tensor(scale, dtype=dtype) - offset
    extent = end - start
    if not aligned:
        extent = extent.clamp(min=1.0)
    bin_size = extent / pooled
    grid = sampling_ratio if sampling_ratio > 0 else int(torch.ceil(extent / pooled))
    grid = max(grid, 0)  # a negative extent (aligned) has no samples
    p = torch.arange(pooled, dtype=dtype, device=device)[:, None]
    i = torch.arange(grid, dtype=dtype, device=device)[None, :]
    coord = (start + p * bin_size + (i + 0.5) * bin_size / grid).reshape(-1)

    inside = (coord >= -1.0) & (coord <= size)
    coord = coord.clamp(min=0.0)
    low = coord.floor().long()
    at_end = low >= size - 1
    low = torch.where(at_end, size - 1, low)
    high = torch.where(at_end, size - 1, low + 1)
    coord = torch.where(at_end, low.to(dtype), coord)
    w_high = coord - low.to(dtype)
    w_low = 1.0 - w_high
    weights = torch.zeros(coord.shape[0], size, dtype=dtype, device=device)
    rows = torch.arange(coord.shape[0], device=device)
    weights.index_put_((rows, low), torch.where(inside, w_low, 0.0), accumulate=True)
    weights.index_put_((rows, high), torch.where(inside, w_high, 0.0), accumulate=True)
    return weights, grid


def roi_align3d(
    input: Tensor,
    rois: Tensor | Sequence[Tensor],
    output_size: int | Sequence[int],
    spatial_scale: float | Sequence[float] = 1.0,
    sampling_ratio: int | Sequence[int] = -1,
    aligned: bool = False,
) -> Tensor:
    """Reference RoIAlign3D (see the module docstring for the exact sampling rules).

    Args:
        input: ``(B, C, D, H, W)`` feature volume.
        rois: ``(K, 7)`` rois ``(batch_index, z1, y1, x1, z2, y2, x2)`` or a list of ``(K_i, 6)``
            boxes, one per batch element, in input coordinates before ``spatial_scale``.
        output_size: bins per axis, an int or ``(od, oh, ow)``.
        spatial_scale: factor from roi to input coordinates, a float or per axis.
        sampling_ratio: samples per bin and axis, <= 0 for adaptive ``ceil(extent / pooled)``.
        aligned: shift the rois by half a voxel (pixel model of torchvision's ``aligned=True``).

    Returns:
        ``(K, C, od, oh, ow)`` pooled features, in the input's dtype.
    """
    rois, size, scale, ratio = check_roi_align_args(input, rois, output_size, spatial_scale, sampling_ratio)
    rois = rois.to(input.dtype)
    channels = input.shape[1]
    pooled = [_pool_one(input, roi, size, scale, ratio, aligned) for roi in rois]
    if not pooled:
        return input.new_zeros((0, channels, *size))
    return torch.stack(pooled)


def _pool_one(input: Tensor, roi: Tensor, size: tuple[int, int, int], scale: tuple[float, float, float],
              ratio: tuple[int, int, int], aligned: bool) -> Tensor:
    """``(C, od, oh, ow)`` output of one ``(7,)`` roi."""
    channels, extents = input.shape[1], input.shape[2:]
    mats, grids = [], []
    for axis in range(3):
        m, g = axis_interpolation(roi[1 + axis], roi[4 + axis], scale[axis], size[axis], ratio[axis], aligned,
                                  extents[axis])
        mats.append(m)
        grids.append(g)
    # Only the voxels that some sample touches matter: crop the volume to them.
    spans = []
    for m in mats:
        used = m.abs().sum(0).nonzero().flatten()
        spans.append((int(used.min()), int(used.max()) + 1) if used.numel() else (0, 0))
    if 0 in grids or any(lo == hi for lo, hi in spans):
        return input.new_zeros((channels, *size))  # no sample, or every sample outside the volume
    (z0, z1), (y0, y1), (x0, x1) = spans
    crop = input[int(roi[0]), :, z0:z1, y0:y1, x0:x1]
    mz, my, mx = mats[0][:, z0:z1], mats[1][:, y0:y1], mats[2][:, x0:x1]
    samples = torch.einsum("zd,yh,xw,cdhw->czyx", mz, my, mx, crop)
    samples = samples.reshape(channels, size[0], grids[0], size[1], grids[1], size[2], grids[2])
    return samples.sum(dim=(2, 4, 6)) / max(math.prod(grids), 1)
