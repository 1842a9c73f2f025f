"""MaskRCNN3D: transform, backbone, region proposal network and RoI heads in one module.

The API is torchvision's ``GeneralizedRCNN``: in train mode ``model(images, targets)`` returns a
dict of the five losses; in eval mode ``model(images)`` returns one prediction dict per image
(``boxes`` (N, 6), ``labels`` (N,), ``scores`` (N,), ``masks`` (N, 1, Z, Y, X) probabilities) in
the coordinates of the images as given.

Dense masks take ``N * Z * Y * X`` floats (100 detections on a 64 x 256 x 256 tile: 1.6 GB). With
``model(images, paste_masks=False)`` (or ``model.predict(images, paste_masks=False)``) the masks
stay ``(N, 1, m, m, m)`` probabilities in the coordinates of their boxes (boxes, labels and scores
are unchanged); ``ls_detection.paste_masks_into_label_volume`` paints them into one instance label
volume using memory for one int32 volume plus the largest box, and
``ls_detection.paste_masks_in_volume`` pastes them into the dense masks.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ls_detection.backbone_levels import SINGLE_LEVEL, backbone_label, feature_levels
from ls_detection.roi_heads import RoIHeads3D
from ls_detection.rpn import RegionProposalNetwork3D
from ls_detection.transform import DetectionTransform3D

__all__ = ["MaskRCNN3D"]


class MaskRCNN3D(nn.Module):
    """3-D Mask R-CNN.

    Args:
        backbone: a backbone honouring the ls-backbones contract (``forward(x) ->
            OrderedDict`` of feature maps, ``output_shape()``, ``size_divisibility``), or any
            module returning one ``(B, C, D, H, W)`` tensor: one feature level named ``"0"``
            (see :mod:`ls_detection.backbone_levels`).
        transform: normalises, resizes, pads and batches the inputs, and maps predictions back.
        rpn: the region proposal network over all backbone outputs.
        roi_heads: box and mask heads.
        num_classes: number of classes including the background (class 0).
    """

    def __init__(
        self,
        *,
        backbone: nn.Module,
        transform: DetectionTransform3D,
        rpn: RegionProposalNetwork3D,
        roi_heads: RoIHeads3D,
        num_classes: int,
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes counts the background and must be >= 2, got {num_classes}")
        self.backbone = backbone
        self.feature_names = (
            tuple(backbone.output_shape()) if hasattr(backbone, "output_shape") else (SINGLE_LEVEL,)
        )
        self.transform = transform
        self.rpn = rpn
        self.roi_heads = roi_heads
        self.num_classes = num_classes

    def _check_labels(self, targets: Sequence[dict[str, Tensor]]) -> None:
        for i, target in enumerate(targets):
            labels = target.get("labels") if isinstance(target, dict) else None
            if not isinstance(labels, Tensor) or labels.numel() == 0:
                continue  # the transform names what is wrong with the target
            high = int(labels.max())
            if high >= self.num_classes:
                raise ValueError(
                    f"targets[{i}]['labels'] holds class {high}, but the model has num_classes="
                    f"{self.num_classes} (background included): labels must be in 1..{self.num_classes - 1}"
                )

    def forward(
        self,
        images: Sequence[Tensor] | Tensor,
        targets: Sequence[dict[str, Tensor]] | None = None,
        spacings: Sequence[Sequence[float]] | None = None,
        *,
        paste_masks: bool = True,
        min_score: float | None = None,
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        """Losses (train mode) or predictions (eval mode).

        Args:
            images: a list of ``(C, Z, Y, X)`` floating-point volumes (sizes may differ), or a
                ``(B, C, Z, Y, X)`` batch; converted to the model's dtype.
            targets: per image ``{"boxes", "labels", "masks"}``; required in train mode.
            spacings: per image voxel spacing ``(sz, sy, sx)``; used when the transform resizes
                to a target spacing.
            paste_masks: eval mode only (ignored in train mode). ``True``: ``masks`` are
                ``(N, 1, Z, Y, X)`` probabilities pasted into each image; ``False``: they stay
                ``(N, 1, m, m, m)`` probabilities in the coordinates of their boxes (see
                ``paste_masks_in_volume`` and ``paste_masks_into_label_volume``).
            min_score: eval mode only: detections scored below it are dropped before their masks
                are computed (the detections at or above it are exactly those of a run without it;
                the mask branch is the dearest part of inference). ``None``: every detection above
                the box head's ``score_thresh`` (what COCO AP needs).
        """
        if isinstance(images, Tensor):
            if images.dim() != 5:
                raise ValueError(
                    f"images: expected a list of (C, Z, Y, X) volumes or a (B, C, Z, Y, X) batch, "
                    f"got a tensor of shape {tuple(images.shape)}"
                )
            images = list(images.unbind(0))
        images = list(images)
        if self.training:
            if targets is None:
                raise ValueError("targets: required in train mode (call model.eval() to predict)")
            if len(targets) != len(images):
                raise ValueError(f"targets: {len(targets)} dicts for {len(images)} images")
            self._check_labels(targets)
        original_sizes = []
        for i, image in enumerate(images):
            if not isinstance(image, Tensor) or image.dim() != 4:
                shape = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
                raise ValueError(f"images[{i}]: expected a (C, Z, Y, X) tensor, got {shape}")
            original_sizes.append(tuple(int(s) for s in image.shape[-3:]))
        # float images in the model's dtype (e.g. float64 volumes from numpy into a float32 model)
        dtype = next(self.parameters()).dtype
        images = [im.to(dtype) if im.is_floating_point() and im.dtype != dtype else im for im in images]

        image_list, targets = self.transform(images, targets, spacings)
        features = self.backbone_features(image_list.tensors)
        proposals, rpn_losses = self.rpn(image_list, features, targets)
        detections, roi_losses = self.roi_heads(
            features, proposals, image_list.image_sizes, targets, images=image_list.tensors,
            min_score=None if self.training else min_score,
        )
        if self.training:
            return {**rpn_losses, **roi_losses}
        return self.transform.postprocess(
            detections, image_list.image_sizes, original_sizes, paste_masks=paste_masks
        )

    def backbone_features(self, batch: Tensor) -> OrderedDict[str, Tensor]:
        """The backbone's feature levels of a padded ``(B, C, Z, Y, X)`` batch, by name (a bare
        tensor from a backbone of one level becomes that level)."""
        return feature_levels(self.backbone(batch), self.feature_names, backbone_label(self.backbone))

    @torch.no_grad()
    def predict(
        self,
        images: Sequence[Tensor] | Tensor,
        spacings: Sequence[Sequence[float]] | None = None,
        *,
        paste_masks: bool = True,
        min_score: float | None = None,
    ) -> list[dict[str, Tensor]]:
        """Predictions in eval mode, restoring the previous mode afterwards.

        ``paste_masks=False`` keeps the masks ``(N, 1, m, m, m)`` in the coordinates of their boxes
        instead of pasting them into ``(N, 1, Z, Y, X)`` volumes; ``min_score`` drops detections
        below it before the mask branch (see ``forward``).
        """
        was_training = self.training
        self.eval()
        try:
            return self(images, spacings=spacings, paste_masks=paste_masks, min_score=min_score)
        finally:
            self.train(was_training)
