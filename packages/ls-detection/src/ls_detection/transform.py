"""Input and output transform of the 3-D detector: validate, normalise, resize, pad and batch."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ls_backbones import divisible_shape, to_triple
from ls_core import resampled_size
from ls_detection.boxes import check_boxes
from ls_detection.image_list import ImageList3D

Size3 = tuple[int, int, int]


def _positive_floats(name: str, values: Sequence[float], length: int | None = None) -> tuple[float, ...]:
    if isinstance(values, str) or not isinstance(values, Sequence) or len(values) == 0:
        raise ValueError(f"DetectionTransform3D {name} must be a non-empty list of floats, got {values!r}")
    floats = tuple(float(v) for v in values)
    if length is not None and len(floats) != length:
        raise ValueError(f"DetectionTransform3D {name} must hold {length} values, got {floats}")
    if any(not (v > 0 and math.isfinite(v)) for v in floats):
        raise ValueError(f"DetectionTransform3D {name} must hold finite values > 0, got {floats}")
    return floats


def _shape(t: object) -> object:
    return tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__


def resize_boxes3d(boxes: Tensor, original_size: Sequence[int], new_size: Sequence[int]) -> Tensor:
    """Scale ``(N, 6)`` boxes of a ``(Z, Y, X)`` volume of ``original_size`` to one of ``new_size``."""
    ratios = torch.tensor([n / o for n, o in zip(new_size, original_size, strict=True)],
                          dtype=boxes.dtype, device=boxes.device)
    return boxes * ratios.repeat(2)


class DetectionTransform3D(nn.Module):
    """Validates and prepares images and targets for the detector, and maps predictions back.

    ``forward`` checks every input, normalises each channel with ``(x - mean) / std``,
    optionally resizes, zero-pads every axis at its high end to a multiple of
    ``size_divisibility`` and batches the images. Two resize modes exist (at most one may be
    configured):

    * ``min_size`` (and optionally ``max_size``), as torchvision's ``GeneralizedRCNNTransform``:
      all axes are scaled by one factor ``min_size / min(Z, Y, X)``, lowered so that
      ``max(Z, Y, X) * factor <= max_size``.
    * ``target_spacing``: each axis is scaled by ``spacing / target_spacing`` with the image's
      voxel spacing given to ``forward``; this makes anisotropic volumes (nearly) isotropic.

    The new size of an axis is ``floor(size * factor)`` (at least 1) in the min/max-size mode, the
    rule of torchvision (``interpolate(scale_factor=)``) that keeps the largest axis within
    ``max_size``; in the spacing mode it is ``size * spacing / target_spacing`` rounded, halves up
    (:func:`ls_core.resampled_size`, the rule of ls-data's ``rescale_to_spacing``), so the new
    voxel size is the nearest to the target. Images are resized trilinearly, masks by nearest
    neighbour, boxes scaled per axis by new size / old size.

    Args:
        image_mean: per-channel mean.
        image_std: per-channel standard deviation (> 0), as many values as ``image_mean``.
        size_divisibility: ``(z, y, x)`` multiple (or one int for all axes) that the padded batch
            shape must have, usually the backbone's ``size_divisibility``.
        min_size: target size of the smallest axis (min/max-size resize mode).
        max_size: cap of the largest axis after resizing (needs ``min_size``).
        target_spacing: ``(sz, sy, sx)`` voxel spacing to resize to (spacing resize mode).
    """

    def __init__(
        self,
        *,
        image_mean: Sequence[float],
        image_std: Sequence[float],
        size_divisibility: Sequence[int] | int,
        min_size: int | None = None,
        max_size: int | None = None,
        target_spacing: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        if isinstance(image_mean, str) or not isinstance(image_mean, Sequence) or len(image_mean) == 0:
            raise ValueError(f"DetectionTransform3D image_mean must be a non-empty list of floats, "
                             f"got {image_mean!r}")
        self.image_mean = tuple(float(m) for m in image_mean)
        self.image_std = _positive_floats("image_std", image_std, len(self.image_mean))
        self.size_divisibility = to_triple(size_divisibility, "size_divisibility")
        if any(d < 1 for d in self.size_divisibility):
            raise ValueError(f"DetectionTransform3D size_divisibility must be >= 1 on every axis, "
                             f"got {self.size_divisibility}")
        for name, value in (("min_size", min_size), ("max_size", max_size)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"DetectionTransform3D {name} must be an int >= 1 or None, got {value!r}")
        if max_size is not None and min_size is None:
            raise ValueError(f"DetectionTransform3D max_size={max_size} needs min_size "
                             f"(the min/max-size resize)")
        if min_size is not None and max_size is not None and max_size < min_size:
            raise ValueError(f"DetectionTransform3D max_size={max_size} must be >= min_size={min_size}")
        if target_spacing is not None and min_size is not None:
            raise ValueError("DetectionTransform3D takes either min_size/max_size or target_spacing, "
                             "not both")
        self.min_size = min_size
        self.max_size = max_size
        self.target_spacing = (None if target_spacing is None
                               else _positive_floats("target_spacing", target_spacing, 3))

    # ----------------------------------------------------------------------------- validation

    def _check_image(self, i: int, image: object) -> Tensor:
        if not isinstance(image, Tensor) or image.dim() != 4:
            raise ValueError(f"images[{i}] must be a (C, Z, Y, X) tensor, got {_shape(image)}")
        if not image.is_floating_point():
            raise ValueError(f"images[{i}] must be floating point, got {image.dtype} with shape "
                             f"{tuple(image.shape)}")
        if image.shape[0] != len(self.image_mean):
            raise ValueError(f"images[{i}] has {image.shape[0]} channels (shape {tuple(image.shape)}) but "
                             f"image_mean / image_std have {len(self.image_mean)}")
        if any(s == 0 for s in image.shape[1:]):
            raise ValueError(f"images[{i}] is empty: shape {tuple(image.shape)}")
        if not bool(torch.isfinite(image).all()):
            raise ValueError(f"images[{i}] (shape {tuple(image.shape)}) holds NaN or infinite values")
        return image

    @staticmethod
    def _check_target(i: int, target: object, size: Size3) -> dict[str, Tensor]:
        if not isinstance(target, Mapping):
            raise ValueError(f"targets[{i}] must be a dict with 'boxes', 'labels' and 'masks', "
                             f"got {type(target).__name__}")
        missing = [k for k in ("boxes", "labels", "masks") if k not in target]
        if missing:
            raise ValueError(f"targets[{i}] lacks the key(s) {missing}; it has {sorted(target.keys())}")
        boxes, labels, masks = target["boxes"], target["labels"], target["masks"]
        check_boxes(boxes, name=f"targets[{i}]['boxes']", volume_size=size)
        n = boxes.shape[0]
        if (not isinstance(labels, Tensor) or labels.dim() != 1 or labels.shape[0] != n
                or labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool):
            desc = f"{_shape(labels)} {labels.dtype}" if isinstance(labels, Tensor) else _shape(labels)
            raise ValueError(f"targets[{i}]['labels'] must be an integer tensor of shape ({n},) "
                             f"(one label per box), got {desc}")
        if n > 0 and int(labels.min()) < 1:
            raise ValueError(f"targets[{i}]['labels'] (shape {tuple(labels.shape)}) must be >= 1 (0 is the "
                             f"background), got {int(labels.min())}")
        if not isinstance(masks, Tensor) or tuple(masks.shape) != (n, *size):
            raise ValueError(f"targets[{i}]['masks'] must have shape {(n, *size)} (one mask per box, the "
                             f"image's spatial shape), got {_shape(masks)}")
        if masks.dtype not in (torch.uint8, torch.bool):
            raise ValueError(f"targets[{i}]['masks'] must be uint8 or bool, got {masks.dtype} with shape "
                             f"{tuple(masks.shape)}")
        out = dict(target)
        out["boxes"] = boxes.to(torch.float32)
        out["labels"] = labels.to(torch.int64)
        out["masks"] = masks.to(torch.uint8)
        return out

    # ----------------------------------------------------------------------------- steps

    def normalize(self, image: Tensor) -> Tensor:
        """``(image - mean) / std`` per channel of a ``(C, Z, Y, X)`` image."""
        mean = torch.as_tensor(self.image_mean, dtype=image.dtype, device=image.device)
        std = torch.as_tensor(self.image_std, dtype=image.dtype, device=image.device)
        return (image - mean[:, None, None, None]) / std[:, None, None, None]

    def resized_shape(self, size: Sequence[int], spacing: Sequence[float] | None = None) -> Size3:
        """The ``(Z, Y, X)`` size a volume of ``size`` (and voxel ``spacing``) is resized to."""
        size = tuple(int(s) for s in size)
        if self.target_spacing is not None:
            if spacing is None:
                raise ValueError("DetectionTransform3D has target_spacing but no spacing was given")
            z, y, x = (resampled_size(n, float(s), t)
                       for n, s, t in zip(size, spacing, self.target_spacing, strict=True))
            return (z, y, x)
        if self.min_size is None:
            return (size[0], size[1], size[2])
        factor = self.min_size / min(size)
        if self.max_size is not None:
            factor = min(factor, self.max_size / max(size))
        # the small epsilon keeps exact products (e.g. 11 * (15 / 11)) from flooring one voxel short
        z, y, x = (max(1, math.floor(n * factor + 1e-6)) for n in size)
        return (z, y, x)

    @staticmethod
    def resize(image: Tensor, target: dict[str, Tensor] | None, new_size: Size3
               ) -> tuple[Tensor, dict[str, Tensor] | None]:
        """Resize a ``(C, Z, Y, X)`` image (trilinear) and its target (masks nearest, boxes scaled)."""
        old_size = tuple(image.shape[-3:])
        if old_size == tuple(new_size):
            return image, target
        image = F.interpolate(image[None], size=new_size, mode="trilinear", align_corners=False)[0]
        if target is None:
            return image, None
        target = dict(target)
        target["boxes"] = resize_boxes3d(target["boxes"], old_size, new_size)
        masks = target["masks"]
        if masks.shape[0] == 0:
            target["masks"] = masks.new_zeros((0, *new_size))
        else:
            resized = F.interpolate(masks[:, None].float(), size=new_size, mode="nearest")[:, 0]
            target["masks"] = resized.to(masks.dtype)
        return image, target

    def batch_images(self, images: list[Tensor]) -> Tensor:
        """Zero-pad ``(C, Z, Y, X)`` images to a common shape divisible by ``size_divisibility``."""
        spatial = [max(img.shape[a] for img in images) for a in (1, 2, 3)]
        padded = divisible_shape(spatial, self.size_divisibility)
        batch = images[0].new_zeros((len(images), images[0].shape[0], *padded))
        for b, img in enumerate(images):
            batch[b, :, : img.shape[1], : img.shape[2], : img.shape[3]].copy_(img)
        return batch

    # ----------------------------------------------------------------------------- API

    def forward(
        self,
        images: Sequence[Tensor],
        targets: Sequence[Mapping[str, Tensor]] | None = None,
        spacings: Sequence[Sequence[float]] | None = None,
    ) -> tuple[ImageList3D, list[dict[str, Tensor]] | None]:
        """Validate, normalise, resize, pad and batch.

        Args:
            images: ``(C, Z, Y, X)`` floating-point volumes; sizes may differ.
            targets: per image ``{"boxes" (N, 6), "labels" (N,) >= 1, "masks" (N, Z, Y, X)}``
                (other keys are passed through); boxes must lie inside the volume and be
                non-degenerate. The inputs are not modified.
            spacings: per image ``(sz, sy, sx)`` voxel spacing; required when ``target_spacing``
                is set, otherwise unused.

        Returns:
            The padded batch with the per-image sizes after resizing, and the resized targets
            (boxes float32, labels int64, masks uint8), or ``None`` without targets.

        Raises:
            ValueError: naming the offending tensor and its shape, for any invalid input.
        """
        if isinstance(images, Tensor) or not isinstance(images, Sequence) or len(images) == 0:
            raise ValueError(f"images must be a non-empty list of (C, Z, Y, X) tensors, got {_shape(images)}")
        images = [self._check_image(i, img) for i, img in enumerate(images)]
        checked: list[dict[str, Tensor] | None] = [None] * len(images)
        if targets is not None:
            if len(targets) != len(images):
                raise ValueError(f"targets has {len(targets)} entries for {len(images)} images")
            checked = [self._check_target(i, t, (img.shape[1], img.shape[2], img.shape[3]))
                       for i, (t, img) in enumerate(zip(targets, images, strict=True))]
        if self.target_spacing is not None:
            if spacings is None:
                raise ValueError(f"DetectionTransform3D resizes to target_spacing={self.target_spacing} and "
                                 f"needs spacings, one (sz, sy, sx) per image")
            if len(spacings) != len(images):
                raise ValueError(f"spacings has {len(spacings)} entries for {len(images)} images")
            for i, spacing in enumerate(spacings):
                _positive_floats(f"spacings[{i}]", spacing, 3)
        out_images = []
        out_targets: list[dict[str, Tensor]] = []
        for i, image in enumerate(images):
            spacing = spacings[i] if spacings is not None and self.target_spacing is not None else None
            new_size = self.resized_shape(image.shape[1:], spacing)
            image, target = self.resize(self.normalize(image), checked[i], new_size)
            out_images.append(image)
            if target is not None:
                out_targets.append(target)
        sizes = [tuple(int(s) for s in img.shape[1:]) for img in out_images]
        image_list = ImageList3D(self.batch_images(out_images), sizes)  # type: ignore[arg-type]
        return image_list, (out_targets if targets is not None else None)

    def postprocess(
        self,
        result: list[dict[str, Tensor]],
        image_shapes: Sequence[Sequence[int]],
        original_image_sizes: Sequence[Sequence[int]],
        *,
        paste_masks: bool = True,
    ) -> list[dict[str, Tensor]]:
        """Map predictions from the resized images back to the original images.

        Args:
            result: per image, predictions with ``"boxes"`` ``(N, 6)`` and optionally ``"masks"``
                ``(N, 1, m, m, m)`` (mask probabilities inside each box).
            image_shapes: per image, the ``(Z, Y, X)`` size after resizing (``ImageList3D.image_sizes``).
            original_image_sizes: per image, the ``(Z, Y, X)`` size given to ``forward``.
            paste_masks: paste the masks into the original volume (``True``), or leave them
                ``(N, 1, m, m, m)`` in the coordinates of their boxes (``False``), for
                ``paste_masks_in_volume`` or ``paste_masks_into_label_volume`` to paste later
                with the returned boxes.

        Returns:
            New dicts with boxes in original coordinates and masks pasted into the original volume
            ``(N, 1, Z, Y, X)`` (with ``paste_masks=False``: the masks as given); other keys unchanged.
        """
        from ls_detection.postprocess import paste_masks_in_volume

        if not len(result) == len(image_shapes) == len(original_image_sizes):
            raise ValueError(f"postprocess got {len(result)} results, {len(image_shapes)} image shapes and "
                             f"{len(original_image_sizes)} original sizes")
        out = []
        for pred, shape, original in zip(result, image_shapes, original_image_sizes, strict=True):
            original = tuple(int(s) for s in original)
            pred = dict(pred)
            pred["boxes"] = resize_boxes3d(pred["boxes"], shape, original)
            if paste_masks and "masks" in pred:
                pred["masks"] = paste_masks_in_volume(pred["masks"], pred["boxes"], original)
            out.append(pred)
        return out
