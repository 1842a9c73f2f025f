"""Turning per-box mask predictions into full-volume masks and into one instance label volume."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "paint_instances",
    "paste_masks_in_volume",
    "paste_masks_into_label_volume",
    "predictions_to_label_volume",
]


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


_Region = tuple[slice, slice, slice]


def _paste_one_mask(mask: Tensor, box: Sequence[float], volume_size: Sequence[int],
                    padding: int) -> tuple[_Region, Tensor] | None:
    """Resample one ``(1, a, b, c)`` floating-point mask into its box (see ``paste_masks_in_volume``).

    Returns the ``(z, y, x)`` slices of the volume that the enlarged box covers and the mask sampled
    at the centres of those voxels, a ``(z, y, x)`` tensor of the mask's dtype and device; ``None``
    when the enlarged box does not meet the volume (the pasted mask is all zeros).
    """
    mask_size = mask.shape[-3:]
    padded = F.pad(mask[None], (padding,) * 6)
    padded_size = padded.shape[-3:]
    low, high = box[:3], box[3:]
    coords = []
    region = []
    for axis in range(3):
        scale = (mask_size[axis] + 2 * padding) / mask_size[axis]
        centre, half = (low[axis] + high[axis]) / 2, (high[axis] - low[axis]) / 2 * scale
        start = max(math.floor(centre - half), 0)
        stop = min(math.ceil(centre + half), volume_size[axis])
        if stop <= start:
            return None  # the enlarged box does not meet the volume on this axis
        region.append(slice(start, stop))
        coords.append(_axis_coords(low[axis], high[axis], start, stop, mask_size[axis],
                                   padded_size[axis], padding).to(mask))
    gz, gy, gx = torch.meshgrid(*coords, indexing="ij")
    grid = torch.stack((gx, gy, gz), dim=-1)[None]  # grid_sample wants (x, y, z) order
    sampled = F.grid_sample(padded, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return (region[0], region[1], region[2]), sampled[0, 0]


def _check_box_masks(fn: str, masks: object, boxes: object, volume_size: Sequence[int],
                     padding: int) -> tuple[int, int, int]:
    """Validate box-coordinate masks, their boxes, the volume size and the padding; return the size."""
    if not isinstance(masks, Tensor) or masks.dim() != 5 or masks.shape[1] != 1:
        shape = tuple(masks.shape) if isinstance(masks, Tensor) else type(masks).__name__
        raise ValueError(f"{fn}: masks must be (N, 1, a, b, c), got {shape}")
    if not isinstance(boxes, Tensor) or boxes.dim() != 2 or boxes.shape[1] != 6:
        shape = tuple(boxes.shape) if isinstance(boxes, Tensor) else type(boxes).__name__
        raise ValueError(f"{fn}: boxes must be (N, 6), got {shape}")
    if boxes.shape[0] != masks.shape[0]:
        raise ValueError(f"{fn}: {masks.shape[0]} masks {tuple(masks.shape)} but "
                         f"{boxes.shape[0]} boxes {tuple(boxes.shape)}")
    size = tuple(int(s) for s in volume_size)
    if len(size) != 3 or min(size) < 1:
        raise ValueError(f"{fn}: volume_size must be (Z, Y, X) of positive sizes, got {tuple(volume_size)}")
    if padding < 0:
        raise ValueError(f"{fn}: padding must be >= 0, got {padding}")
    if masks.shape[0] > 0 and not bool(torch.isfinite(boxes).all()):
        raise ValueError(f"{fn}: boxes {tuple(boxes.shape)} contain NaN or infinite coordinates")
    return size[0], size[1], size[2]


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
    size = _check_box_masks("paste_masks_in_volume", masks, boxes, volume_size, padding)
    if not masks.is_floating_point():
        masks = masks.float()
    out = masks.new_zeros((masks.shape[0], 1, *size))
    for i, box in enumerate(boxes.detach().to("cpu", torch.float64).tolist()):
        pasted = _paste_one_mask(masks[i], box, size, padding)
        if pasted is not None:
            region, sampled = pasted
            out[i, 0][region] = sampled
    return out


def predictions_to_label_volume(prediction: Mapping[str, Tensor], *, mask_threshold: float = 0.5,
                                score_threshold: float = 0.0, min_visible_fraction: float = 0.0) -> Tensor:
    """One instance label volume from a prediction dict; higher-scored instances win overlaps.

    Instances with ``score >= score_threshold`` are numbered 1..N by decreasing score (ties in
    input order); a voxel gets the number of the best-scored instance whose mask is
    ``> mask_threshold`` there, 0 if none. Instances left with no voxel are dropped and the
    remaining ones renumbered consecutively, keeping their order.

    With ``min_visible_fraction`` > 0 an instance is painted only when at least that fraction of
    its mask's voxels is not already taken by the instances painted before it (the rule by which
    Panoptic FPN fuses instance masks): a second detection of an object, which would keep only a
    sliver beside the first, is dropped instead of becoming a spurious object.

    Args:
        prediction: ``{"masks": (N, 1, Z, Y, X) probabilities, "scores": (N,)}`` (other keys ignored).
        mask_threshold: probability above which a voxel belongs to an instance.
        score_threshold: minimum score of an instance to be painted.
        min_visible_fraction: in ``[0, 1]``; 0 paints every instance where no better one is.

    Returns:
        ``(Z, Y, X)`` int32 labels, 0 = background.
    """
    return paint_instances(prediction, mask_threshold=mask_threshold, score_threshold=score_threshold,
                           min_visible_fraction=min_visible_fraction)[0]  # fmt: skip


def paint_instances(prediction: Mapping[str, Tensor], *, mask_threshold: float = 0.5,
                    score_threshold: float = 0.0, min_visible_fraction: float = 0.0) -> tuple[Tensor, Tensor]:
    """:func:`predictions_to_label_volume`, and which detection each label was painted from.

    Returns:
        ``(Z, Y, X)`` int32 labels (as :func:`predictions_to_label_volume`) and ``(N,)`` int64
        indices into ``prediction``: label ``k`` (1..N) is detection ``indices[k - 1]``, so its
        score and class are read there without a second pass over the masks.
    """
    order, inside, _ = _ranked_inside("predictions_to_label_volume", prediction, mask_threshold,
                                      score_threshold, min_visible_fraction)  # fmt: skip
    if order.numel() == 0:
        masks = prediction["masks"]
        return torch.zeros(masks.shape[-3:], dtype=torch.int32, device=masks.device), order
    covered = inside.any(dim=0)
    first = inside.to(torch.uint8).argmax(dim=0)  # index of the first (best) instance covering a voxel
    labels = torch.where(covered, first + 1, torch.zeros_like(first))
    present = torch.bincount(labels.flatten(), minlength=order.numel() + 1) > 0
    present[0] = False
    lookup = torch.zeros(order.numel() + 1, dtype=torch.int64, device=labels.device)
    lookup[1:] = torch.cumsum(present[1:].to(torch.int64), dim=0)
    return lookup[labels].to(torch.int32), order[present[1:]]


def visible_ranking(prediction: Mapping[str, Tensor], *, mask_threshold: float = 0.5,
                    score_threshold: float = 0.0, min_visible_fraction: float = 0.0) -> Tensor:
    """The detections that :func:`predictions_to_label_volume` paints, best first: indices into
    ``prediction`` with ``score >= score_threshold``, by decreasing score (ties in input order),
    without those that ``min_visible_fraction`` drops. A voxel's label comes from the first of them
    whose mask is ``> mask_threshold`` there, so this tells each label's score and class."""
    order, _, dropped = _ranked_inside("visible_ranking", prediction, mask_threshold, score_threshold,
                                       min_visible_fraction)  # fmt: skip
    return order[~dropped]


def _ranked_inside(fn: str, prediction: Mapping[str, Tensor], mask_threshold: float, score_threshold: float,
                   min_visible_fraction: float) -> tuple[Tensor, Tensor, Tensor]:
    """Checked inputs; the detections at or above the score threshold by decreasing score, their
    masks ``> mask_threshold`` in that order (those that ``min_visible_fraction`` drops cleared),
    and which of them it drops."""
    for key in ("masks", "scores"):
        if key not in prediction:
            raise KeyError(f"{fn}: prediction has no {key!r} key (keys: {sorted(prediction)})")
    masks, scores = prediction["masks"], prediction["scores"]
    if masks.dim() != 5 or masks.shape[1] != 1:
        raise ValueError(f"{fn}: prediction['masks'] must be (N, 1, Z, Y, X), got {tuple(masks.shape)}")
    if scores.dim() != 1 or scores.shape[0] != masks.shape[0]:
        raise ValueError(f"{fn}: prediction['scores'] has shape {tuple(scores.shape)} "
                         f"for {masks.shape[0]} masks {tuple(masks.shape)}")
    if not math.isfinite(mask_threshold):
        raise ValueError(f"{fn}: mask_threshold must be finite, got {mask_threshold}")
    _check_fraction(fn, min_visible_fraction, mask_threshold)
    keep = torch.where(scores >= score_threshold)[0]
    order = keep[torch.argsort(scores[keep], descending=True, stable=True)]
    inside = masks[order, 0] > mask_threshold  # (N, Z, Y, X), best score first
    dropped = torch.zeros(order.numel(), dtype=torch.bool, device=order.device)
    if min_visible_fraction > 0:
        dropped = _suppress_hidden(inside, min_visible_fraction)
    return order, inside, dropped


def _check_fraction(fn: str, min_visible_fraction: float, mask_threshold: float) -> None:
    if not 0.0 <= min_visible_fraction <= 1.0:
        raise ValueError(f"{fn}: min_visible_fraction must be in [0, 1], got {min_visible_fraction}")
    if min_visible_fraction > 0 and mask_threshold < 0:
        # the zeros around every pasted mask would count as its own voxels: no share is defined
        raise ValueError(f"{fn}: min_visible_fraction > 0 needs mask_threshold >= 0, got {mask_threshold}")


def _visible_enough(own: Tensor, free: Tensor, min_visible_fraction: float) -> bool:
    """Whether an instance keeps enough of its mask (``own`` voxels, ``free`` of them untaken)."""
    return int(free.sum()) >= min_visible_fraction * int(own.sum())


def _suppress_hidden(inside: Tensor, min_visible_fraction: float) -> Tensor:
    """Clear, in place, the masks of ``inside`` (best first) that too much of is taken by earlier
    ones; returns which were cleared."""
    taken = torch.zeros(inside.shape[1:], dtype=torch.bool, device=inside.device)
    dropped = torch.zeros(inside.shape[0], dtype=torch.bool, device=inside.device)
    for rank in range(inside.shape[0]):
        if _visible_enough(inside[rank], inside[rank] & ~taken, min_visible_fraction):
            taken |= inside[rank]
        else:
            inside[rank] = False
            dropped[rank] = True
    return dropped


def paste_masks_into_label_volume(masks: Tensor, boxes: Tensor, scores: Tensor, volume_size: Sequence[int], *,
                                  mask_threshold: float = 0.5, score_threshold: float = 0.0,
                                  padding: int = 1,
                                  min_visible_fraction: float = 0.0) -> tuple[Tensor, Tensor]:
    """One instance label volume from masks in box coordinates, without dense per-instance masks.

    The result equals ``predictions_to_label_volume({"masks": paste_masks_in_volume(masks, boxes,
    volume_size, padding), "scores": scores}, mask_threshold=..., score_threshold=...)``: instances
    with ``score >= score_threshold`` are ranked by decreasing score (ties in input order), a voxel
    gets the best-ranked instance whose pasted mask is ``> mask_threshold`` there, and instances
    left with no voxel are dropped, the others numbered 1, 2, ... in rank order. But the masks are
    pasted one at a time into a running volume of ranks, so memory is one int32 ``(Z, Y, X)``
    volume plus the largest box, not ``N`` volumes.

    Args:
        masks: ``(N, 1, a, b, c)`` mask probabilities in box coordinates (as
            ``MaskRCNN3D.predict(..., paste_masks=False)`` returns them).
        boxes: ``(N, 6)`` boxes ``(z1, y1, x1, z2, y2, x2)`` in volume voxel coordinates.
        scores: ``(N,)`` detection scores.
        volume_size: ``(Z, Y, X)`` of the label volume.
        mask_threshold: probability above which a voxel belongs to an instance.
        score_threshold: minimum score of an instance to be painted.
        padding: zero voxels added around each mask before resampling (see ``paste_masks_in_volume``).
        min_visible_fraction: drop an instance when less than this fraction of its mask is left
            to it by the better-ranked ones (see ``predictions_to_label_volume``).

    Returns:
        ``labels``, the ``(Z, Y, X)`` int32 label volume (0 = background), and ``order``, ``(L,)``
        int64 with ``L = labels.max()``: ``order[k - 1]`` is the index into ``masks`` / ``boxes`` /
        ``scores`` of the detection that label ``k`` comes from. Both on the masks' device.
    """
    fn = "paste_masks_into_label_volume"
    size = _check_box_masks(fn, masks, boxes, volume_size, padding)
    n = masks.shape[0]
    if not isinstance(scores, Tensor) or scores.dim() != 1 or scores.shape[0] != n:
        shape = tuple(scores.shape) if isinstance(scores, Tensor) else type(scores).__name__
        raise ValueError(f"{fn}: scores must be ({n},), one per mask of masks {tuple(masks.shape)}, "
                         f"got {shape}")
    if not math.isfinite(mask_threshold):
        raise ValueError(f"{fn}: mask_threshold must be finite, got {mask_threshold}")
    _check_fraction(fn, min_visible_fraction, mask_threshold)
    if not masks.is_floating_point():
        masks = masks.float()
    device = masks.device
    keep = torch.where(scores >= score_threshold)[0]
    ranked = keep[torch.argsort(scores[keep], descending=True, stable=True)].to(device)
    count = ranked.numel()
    # best[v]: rank of the best instance covering voxel v so far, ``count`` where none does
    best = torch.full(size, count, dtype=torch.int32, device=device)
    # with a negative threshold the zeros around a pasted mask count as inside, as in the dense path
    zero_inside = bool(masks.new_zeros(()) > mask_threshold)
    box_list = boxes.detach().to("cpu", torch.float64).tolist()
    for rank, index in enumerate(ranked.tolist()):
        pasted = _paste_one_mask(masks[index], box_list[index], size, padding)
        if pasted is None:
            if zero_inside:
                best.masked_fill_(best == count, rank)
            continue
        region, sampled = pasted
        view = best[region]
        inside = sampled > mask_threshold
        if min_visible_fraction > 0 and not _visible_enough(inside, inside & (view == count),
                                                            min_visible_fraction):  # fmt: skip
            continue  # mostly behind better-ranked instances: a duplicate, not an object
        if zero_inside:
            before = view.clone()
            best.masked_fill_(best == count, rank)
            view.copy_(before)
        view.masked_fill_(inside & (view == count), rank)

    present = torch.bincount(best.flatten(), minlength=count + 1)[:count] > 0
    lookup = torch.zeros(count + 1, dtype=torch.int32, device=device)
    lookup[:count] = torch.cumsum(present, dim=0, dtype=torch.int32) * present
    return lookup[best], ranked[present]
