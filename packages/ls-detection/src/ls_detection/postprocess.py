"""Turning per-box mask predictions into full-volume masks and into one instance label volume."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["paste_masks_in_volume", "predictions_to_label_volume"]


def _axis_coords(low: float, high: float, start: int, stop: int, mask_size: int, padded_size: int,
                 padding: int) -> Tensor:
    """Normalised ``grid_sample`` coordinates (align_corners=False) of voxels ``start..stop-1``.

    Voxel ``i`` has its centre at ``i + 0.5``; the box ``[low, high)`` spans the ``mask_size``
    pixels of the mask, which sit at indices ``padding .. padding + mask_size - 1`` of the padded
    mask of ``padded_size`` pixels.
    """
    extent = max(high - low, 1e-6)
    centres = torch.arange(start, stop, dtype=torch.float64) + 0.5
    index = (centres - low) / extent * mask_size - 0.5 + padding
    return (2.0 * index + 1.0) / padded_size - 1.0


def paste_masks_in_volume(masks: Tensor, boxes: Tensor, volume_size: Sequence[int],
                          padding: int = 1) -> Tensor:
    """Resize each box's mask into its box and place it in a volume of zeros.

    As torchvision's ``paste_masks_in_image`` in 3-D: each mask is padded with ``padding`` zero
    voxels on every side and its box enlarged to match, so that the resized mask falls off to zero
    across the box border instead of being cut (``padding=0``: the mask's border values are
    repeated up to the voxels the box touches, and nothing is written beyond). The padded mask is
    then resampled trilinearly (``align_corners=False`` convention) at the centre of every voxel
    of the enlarged box that lies in the volume. Unlike torchvision, which resizes into the
    enlarged box rounded to whole voxels, the sampling positions follow the box's exact
    coordinates, so pasting never shifts a mask by a fraction of a voxel.

    An all-ones mask pasted into a box with integer corners is ``> 0.5`` on exactly the box's
    voxels when ``padding=0``, and also with ``padding >= 1`` while every box extent is at most
    1.5 times the mask size on its axis (beyond that, trilinear weights of the zero border make
    the box's corner voxels fall below 0.5).

    Args:
        masks: ``(N, 1, a, b, c)`` mask probabilities in box coordinates.
        boxes: ``(N, 6)`` boxes ``(z1, y1, x1, z2, y2, x2)`` in volume voxel coordinates.
        volume_size: ``(Z, Y, X)`` of the output volume.
        padding: zero voxels added around each mask before resampling.

    Returns:
        ``(N, 1, Z, Y, X)`` masks in the volume, in the masks' floating dtype.
    """
    if not isinstance(masks, Tensor) or masks.dim() != 5 or masks.shape[1] != 1:
        shape = tuple(masks.shape) if isinstance(masks, Tensor) else type(masks).__name__
        raise ValueError(f"paste_masks_in_volume: masks must be (N, 1, a, b, c), got {shape}")
    if not isinstance(boxes, Tensor) or boxes.dim() != 2 or boxes.shape[1] != 6:
        shape = tuple(boxes.shape) if isinstance(boxes, Tensor) else type(boxes).__name__
        raise ValueError(f"paste_masks_in_volume: boxes must be (N, 6), got {shape}")
    if boxes.shape[0] != masks.shape[0]:
        raise ValueError(f"paste_masks_in_volume: {masks.shape[0]} masks {tuple(masks.shape)} but "
                         f"{boxes.shape[0]} boxes {tuple(boxes.shape)}")
    size = tuple(int(s) for s in volume_size)
    if len(size) != 3 or min(size) < 1:
        raise ValueError(f"paste_masks_in_volume: volume_size must be (Z, Y, X) of positive sizes, "
                         f"got {tuple(volume_size)}")
    if padding < 0:
        raise ValueError(f"paste_masks_in_volume: padding must be >= 0, got {padding}")
    if not masks.is_floating_point():
        masks = masks.float()
    out = masks.new_zeros((masks.shape[0], 1, *size))
    if masks.shape[0] == 0:
        return out
    if not bool(torch.isfinite(boxes).all()):
        raise ValueError("paste_masks_in_volume: boxes contain NaN or infinite coordinates")

    mask_size = masks.shape[-3:]
    padded = F.pad(masks, (padding,) * 6)
    padded_size = padded.shape[-3:]
    scale = [(m + 2 * padding) / m for m in mask_size]
    for i, box in enumerate(boxes.detach().to("cpu", torch.float64).tolist()):
        low, high = box[:3], box[3:]
        coords = []
        region = []
        for axis in range(3):
            centre, half = (low[axis] + high[axis]) / 2, (high[axis] - low[axis]) / 2 * scale[axis]
            start = max(math.floor(centre - half), 0)
            stop = min(math.ceil(centre + half), size[axis])
            if stop <= start:
                break  # the enlarged box does not meet the volume on this axis
            region.append(slice(start, stop))
            coords.append(_axis_coords(low[axis], high[axis], start, stop, mask_size[axis],
                                       padded_size[axis], padding).to(masks))
        else:
            gz, gy, gx = torch.meshgrid(*coords, indexing="ij")
            grid = torch.stack((gx, gy, gz), dim=-1)[None]  # grid_sample wants (x, y, z) order
            sampled = F.grid_sample(padded[i : i + 1], grid, mode="bilinear", padding_mode="border",
                                    align_corners=False)
            out[i, 0, region[0], region[1], region[2]] = sampled[0, 0]
    return out


def predictions_to_label_volume(prediction: Mapping[str, Tensor], *, mask_threshold: float = 0.5,
                                score_threshold: float = 0.0) -> Tensor:
    """One instance label volume from a prediction dict; higher-scored instances win overlaps.

    Instances with ``score >= score_threshold`` are numbered 1..N by decreasing score (ties in
    input order); a voxel gets the number of the best-scored instance whose mask is
    ``> mask_threshold`` there, 0 if none. Instances left with no voxel are dropped and the
    remaining ones renumbered consecutively, keeping their order.

    Args:
        prediction: ``{"masks": (N, 1, Z, Y, X) probabilities, "scores": (N,)}`` (other keys ignored).
        mask_threshold: probability above which a voxel belongs to an instance.
        score_threshold: minimum score of an instance to be painted.

    Returns:
        ``(Z, Y, X)`` int32 labels, 0 = background.
    """
    for key in ("masks", "scores"):
        if key not in prediction:
            raise KeyError(f"predictions_to_label_volume: prediction has no {key!r} key "
                           f"(keys: {sorted(prediction)})")
    masks, scores = prediction["masks"], prediction["scores"]
    if masks.dim() != 5 or masks.shape[1] != 1:
        raise ValueError(f"predictions_to_label_volume: prediction['masks'] must be (N, 1, Z, Y, X), "
                         f"got {tuple(masks.shape)}")
    if scores.dim() != 1 or scores.shape[0] != masks.shape[0]:
        raise ValueError(f"predictions_to_label_volume: prediction['scores'] has shape {tuple(scores.shape)} "
                         f"for {masks.shape[0]} masks {tuple(masks.shape)}")
    if not math.isfinite(mask_threshold):
        raise ValueError(f"predictions_to_label_volume: mask_threshold must be finite, got {mask_threshold}")
    size = masks.shape[-3:]
    keep = torch.where(scores >= score_threshold)[0]
    if keep.numel() == 0:
        return torch.zeros(size, dtype=torch.int32, device=masks.device)
    order = keep[torch.argsort(scores[keep], descending=True, stable=True)]
    inside = masks[order, 0] > mask_threshold  # (N, Z, Y, X), best score first
    covered = inside.any(dim=0)
    first = inside.to(torch.uint8).argmax(dim=0)  # index of the first (best) instance covering a voxel
    labels = torch.where(covered, first + 1, torch.zeros_like(first))
    present = torch.bincount(labels.flatten(), minlength=order.numel() + 1) > 0
    present[0] = False
    lookup = torch.zeros(order.numel() + 1, dtype=torch.int64, device=masks.device)
    lookup[1:] = torch.cumsum(present[1:].to(torch.int64), dim=0)
    return lookup[labels].to(torch.int32)
