"""Tile segmenters: one image tile in, one instance label tile out.

A segmenter is any picklable callable ``segmenter(images) -> list[TileLabels]`` over a batch of
``(C, Z, Y, X)`` float32 tiles; the predictor never looks inside it. Two are provided:

- :class:`DetectorSegmenter`: a trained detector (``MaskRCNN3D``), its masks painted into a label
  tile box by box (higher scores win overlaps), with a fixed intensity normalisation;
- :class:`ThresholdSegmenter`: the classical baseline (threshold, connected components), with no
  training; useful as a reference and to check the tiling and stitching, whose result it makes
  exactly predictable.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ls_train.precision import autocast, autocast_dtype

__all__ = ["DetectorSegmenter", "Normalization", "ThresholdSegmenter", "TileLabels", "empty_target"]


def empty_target(shape: Sequence[int]) -> dict[str, torch.Tensor]:
    """A target without instances for a tile of spatial ``shape`` (what the transforms expect)."""
    return {
        "boxes": torch.zeros((0, 6)),
        "labels": torch.zeros(0, dtype=torch.int64),
        "masks": torch.zeros((0, *shape), dtype=torch.uint8),
    }


@dataclass
class TileLabels:
    """The instances of one tile.

    Attributes:
        labels: ``(Z, Y, X)`` uint32, 0 = background, instances numbered ``1..n``.
        scores: ``(n,)`` float32, the score of instance ``k`` at ``k - 1``.
        classes: ``(n,)`` int32 classes (>= 1).
        capped: the detector's detection cap dropped detections in this tile (objects may be
            missing).
    """

    labels: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    capped: bool = False

    def __post_init__(self) -> None:
        self.labels = np.ascontiguousarray(self.labels, dtype=np.uint32)
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        self.classes = np.asarray(self.classes, dtype=np.int32).reshape(-1)
        if self.labels.ndim != 3:
            raise ValueError(f"TileLabels.labels must be (Z, Y, X), got shape {self.labels.shape}")
        if self.scores.shape != self.classes.shape:
            raise ValueError(f"TileLabels: {self.scores.shape[0]} scores but {self.classes.shape[0]} classes")
        high = int(self.labels.max(initial=0))
        if high > self.scores.shape[0]:
            raise ValueError(f"TileLabels: label {high} present but only {self.scores.shape[0]} scores")


@dataclass(frozen=True)
class Normalization:
    """``(x - shift) / scale`` per channel, optionally clipped to ``[low, high]`` first.

    ``ls_data``'s ``normalize_intensity`` transform (its ``apply_statistics``), with statistics
    fixed once for the whole volume instead of recomputed per tile. A zero ``scale`` maps the
    channel to zeros, as the transform does for a constant channel.
    """

    shift: tuple[float, ...]
    scale: tuple[float, ...]
    clip_low: tuple[float, ...] | None = None
    clip_high: tuple[float, ...] | None = None

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        c = image.shape[0]
        if len(self.shift) not in (1, c):
            raise ValueError(
                f"Normalization has {len(self.shift)} channel(s) of statistics for an image "
                f"with {c} channel(s)"
            )
        from ls_data.transforms.intensity import apply_statistics

        def per_channel(values: tuple[float, ...] | None) -> torch.Tensor | None:
            return None if values is None else torch.tensor(values, dtype=torch.float32).expand(c)

        rows = image.float().reshape(c, -1)
        out = apply_statistics(
            rows,
            per_channel(self.shift),
            per_channel(self.scale),
            per_channel(self.clip_low),
            per_channel(self.clip_high),
        )
        return out.reshape(image.shape)


def _capped_images(model: nn.Module, count: int) -> list[bool]:
    """Per image of the model's last call, whether its RoI heads dropped detections at or above the
    score threshold at their cap (``capped`` of ls-detection's ``RoIHeads3D``; other models: never).
    The RPN's proposal cap is reached in nearly every image (most proposals are background), so it
    says nothing here."""
    reported = list(getattr(getattr(model, "roi_heads", None), "capped", []) or [])
    return [bool(c) for c in reported] if len(reported) == count else [False] * count


class DetectorSegmenter:
    """A detector's predictions on a tile as an instance label tile.

    Args:
        model: An eval-mode detector whose ``predict(images, paste_masks=False, min_score=t)``
            returns per image ``boxes`` ``(N, 6)``, ``scores``, ``labels`` and box-coordinate
            ``masks`` ``(N, 1, a, b, c)`` of the detections scored at least ``t`` (ls-detection's
            ``MaskRCNN3D``). The score threshold is passed as ``min_score``, so no mask is computed
            for a detection that would not be painted.
        normalization: Applied to every tile before the model (None: tiles as read, as float32).
        tile_transform: A per-tile callable ``(image, target, meta) -> (image, target, meta)``
            applied instead of ``normalization`` (the evaluation transforms, when statistics are
            meant to be per tile).
        mask_threshold: Mask probability above which a voxel belongs to an instance.
        score_threshold: Detections below this score are dropped.
        min_visible_fraction: Detections that keep less than this fraction of their mask beside
            better-scored ones are not painted (``ls_detection.paste_masks_into_label_volume``).
        device: Where the model runs.
        spacing: Voxel spacing ``(sz, sy, sx)`` of the tiles, for a detector that resizes to a
            target spacing (None: not given).
        amp: ``auto``, ``bf16`` or ``none`` (float32); see :mod:`ls_train.precision`.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        normalization: Normalization | None = None,
        tile_transform=None,
        mask_threshold: float = 0.5,
        score_threshold: float = 0.5,
        min_visible_fraction: float = 0.0,
        device: str | torch.device = "cpu",
        spacing: tuple[float, float, float] | None = None,
        amp: str = "auto",
    ) -> None:
        self.model = model.eval().to(device)
        self.spacing = None if spacing is None else tuple(float(s) for s in spacing)
        self.normalization = normalization
        self.tile_transform = tile_transform
        self.mask_threshold = float(mask_threshold)
        self.score_threshold = float(score_threshold)
        self.min_visible_fraction = float(min_visible_fraction)
        self.device = torch.device(device)
        self.autocast_dtype = autocast_dtype(amp, self.device, key="DetectorSegmenter: amp")
        """The autocast dtype of the model's forward pass (None: float32; see :mod:`ls_train.precision`)."""
        self.last_forward_seconds = 0.0
        """Seconds of the model's forward pass in the last call (the rest is normalising and painting)."""

    def _prepare(self, image: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
        if self.tile_transform is not None:
            tensor, _, _ = self.tile_transform(tensor, empty_target(tensor.shape[1:]), {})
            if tuple(tensor.shape[1:]) != tuple(image.shape[1:]):
                raise ValueError(
                    f"the evaluation transforms changed a tile's shape from {tuple(image.shape[1:])} to "
                    f"{tuple(tensor.shape[1:])}; ls-predict needs transforms that keep it"
                )
        elif self.normalization is not None:
            tensor = self.normalization(tensor)
        return tensor.to(self.device)

    @torch.no_grad()
    def __call__(self, images: Sequence[np.ndarray]) -> list[TileLabels]:
        from ls_detection import paste_masks_into_label_volume
        from ls_train.evaluation.evaluator import spacing_kwargs

        batch = [self._prepare(image) for image in images]
        start = time.perf_counter()
        spacings = None if self.spacing is None else [self.spacing] * len(batch)
        with autocast(self.autocast_dtype, self.device):
            predictions = self.model.predict(
                batch,
                paste_masks=False,
                min_score=self.score_threshold,
                **spacing_kwargs(self.model, spacings),
            )
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.last_forward_seconds = time.perf_counter() - start
        capped = _capped_images(self.model, len(images))
        out = []
        for image, pred, cap in zip(images, predictions, capped, strict=True):
            labels, order = paste_masks_into_label_volume(
                pred["masks"].float(),
                pred["boxes"].float(),
                pred["scores"].float(),
                tuple(image.shape[1:]),
                mask_threshold=self.mask_threshold,
                score_threshold=self.score_threshold,
                min_visible_fraction=self.min_visible_fraction,
            )
            order = order.cpu()
            out.append(
                TileLabels(
                    labels=labels.cpu().numpy().astype(np.uint32),
                    scores=pred["scores"].float().cpu()[order].numpy(),
                    classes=pred["labels"].cpu()[order].numpy(),
                    capped=cap,
                )
            )
        return out


class ThresholdSegmenter:
    """Threshold, then connected components: the classical baseline segmenter.

    Voxels whose channel-``channel`` intensity is ``> threshold`` are foreground; each connected
    component (faces only: 6-connectivity) of at least ``min_voxels`` voxels is an instance of
    class 1 with score 1. Components are numbered in raster order of their first voxel.

    Args:
        threshold: Intensity threshold, in the units of the input volume.
        channel: The channel (index into the selected channels) that is thresholded.
        min_voxels: Smaller components are dropped.
    """

    def __init__(self, *, threshold: float, channel: int = 0, min_voxels: int = 1) -> None:
        self.threshold = float(threshold)
        self.channel = int(channel)
        self.min_voxels = int(min_voxels)

    def __call__(self, images: Sequence[np.ndarray]) -> list[TileLabels]:
        from scipy import ndimage

        out = []
        for image in images:
            if not 0 <= self.channel < image.shape[0]:
                raise ValueError(
                    f"ThresholdSegmenter: channel {self.channel} not in a tile with "
                    f"{image.shape[0]} channel(s)"
                )
            labels, n = ndimage.label(image[self.channel] > self.threshold)
            if n and self.min_voxels > 1:
                sizes = np.bincount(labels.ravel(), minlength=n + 1)
                keep = sizes >= self.min_voxels
                keep[0] = False
                lookup = np.zeros(n + 1, dtype=np.int64)
                lookup[keep] = np.arange(1, int(keep.sum()) + 1)
                labels, n = lookup[labels], int(keep.sum())
            out.append(TileLabels(labels=labels, scores=np.ones(n), classes=np.ones(n)))
        return out
