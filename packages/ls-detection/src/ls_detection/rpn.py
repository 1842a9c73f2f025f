"""Region proposal network for 3-D feature pyramids (torchvision's RPN with one more axis)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torchvision.ops.misc import Conv3dNormActivation

import ls_ops
from ls_detection.anchors import AnchorGenerator3D
from ls_detection.box_coder import BoxCoder3D
from ls_detection.boxes import clip_boxes_to_volume, remove_small_boxes3d
from ls_detection.caps import check_caps_shape, scale_cap
from ls_detection.image_list import ImageList3D
from ls_detection.matcher import Matcher
from ls_detection.sampler import BalancedPositiveNegativeSampler


class RPNHead3D(nn.Module):
    """Objectness logits and 6 box deltas per anchor, shared over all feature levels.

    Args:
        in_channels: channels of every feature level.
        num_anchors: anchors per location (the same on every level).
        conv_depth: number of 3x3x3 ``Conv3dNormActivation`` layers (no norm, ReLU) before the
            two 1x1x1 prediction convolutions.
    """

    def __init__(self, *, in_channels: int, num_anchors: int, conv_depth: int = 1) -> None:
        super().__init__()
        for name, value, minimum in (("in_channels", in_channels, 1), ("num_anchors", num_anchors, 1),
                                     ("conv_depth", conv_depth, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"RPNHead3D {name} must be an int >= {minimum}, got {value!r}")
        self.conv = nn.Sequential(*[
            Conv3dNormActivation(in_channels, in_channels, kernel_size=3, norm_layer=None)
            for _ in range(conv_depth)
        ])
        self.cls_logits = nn.Conv3d(in_channels, num_anchors, kernel_size=1)
        self.bbox_pred = nn.Conv3d(in_channels, num_anchors * 6, kernel_size=1)
        for module in self.modules():
            if isinstance(module, nn.Conv3d):
                nn.init.normal_(module.weight, std=0.01)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """Per level ``(B, C, D, H, W)`` features -> per level ``(B, A, D, H, W)`` logits and
        ``(B, 6 * A, D, H, W)`` deltas."""
        logits = []
        deltas = []
        for feature in x:
            t = self.conv(feature)
            logits.append(self.cls_logits(t))
            deltas.append(self.bbox_pred(t))
        return logits, deltas


def _flatten_level(layer: Tensor, channels: int) -> Tensor:
    """``(B, A * channels, D, H, W)`` -> ``(B, D * H * W * A, channels)``, location-major."""
    b, _, d, h, w = layer.shape
    layer = layer.view(b, -1, channels, d, h, w).permute(0, 3, 4, 5, 1, 2)
    return layer.reshape(b, -1, channels)


def concat_box_prediction_layers(
    box_cls: list[Tensor], box_regression: list[Tensor]
) -> tuple[Tensor, Tensor]:
    """Flatten per-level predictions into the anchor order of ``AnchorGenerator3D``.

    Args:
        box_cls: per level, ``(B, A * C, D, H, W)`` class logits.
        box_regression: per level, ``(B, A * 6, D, H, W)`` deltas.

    Returns:
        ``(B * sum_l(D_l H_l W_l A), C)`` logits and ``(B * sum_l(D_l H_l W_l A), 6)`` deltas, image-major.
    """
    cls_flat = []
    reg_flat = []
    for cls_level, reg_level in zip(box_cls, box_regression, strict=True):
        num_anchors = reg_level.shape[1] // 6
        num_classes = cls_level.shape[1] // num_anchors
        cls_flat.append(_flatten_level(cls_level, num_classes))
        reg_flat.append(_flatten_level(reg_level, 6))
    return torch.cat(cls_flat, dim=1).flatten(0, -2), torch.cat(reg_flat, dim=1).reshape(-1, 6)


def _train_test_counts(name: str, value: Mapping[str, int]) -> dict[str, int]:
    if not isinstance(value, Mapping) or set(value.keys()) != {"training", "testing"}:
        raise ValueError(f"RegionProposalNetwork3D {name} must be a mapping with exactly the keys 'training' "
                         f"and 'testing', got {value!r}")
    counts = {}
    for key, n in value.items():
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"RegionProposalNetwork3D {name}[{key!r}] must be an int >= 1, got {n!r}")
        counts[str(key)] = int(n)
    return counts


class RegionProposalNetwork3D(nn.Module):
    """Region proposal network: anchors, head, proposal filtering and (in training) the losses.

    Proposals are decoded and filtered in float32 whatever the head's dtype: per level the
    ``pre_nms_top_n`` highest-scoring anchors, clipped to each image's volume, boxes with an
    extent below ``min_size`` on any axis and scores (sigmoid of the logit) below
    ``score_thresh`` removed, NMS3D per level, the best ``post_nms_top_n`` kept.

    Args:
        anchor_generator: makes the anchors of every level.
        head: predicts objectness logits and deltas per anchor (e.g. ``RPNHead3D``).
        fg_iou_thresh: anchors with IoU >= this with a ground-truth box are positives.
        bg_iou_thresh: anchors whose best IoU is < this are negatives (between: ignored).
        batch_size_per_image: anchors sampled per image for the losses.
        positive_fraction: at most this fraction of the sampled anchors is positive.
        pre_nms_top_n: ``{"training": n, "testing": n}`` anchors kept per level before NMS.
        post_nms_top_n: ``{"training": n, "testing": n}`` proposals kept per image after NMS.
        nms_thresh: IoU threshold of the NMS.
        score_thresh: minimum objectness probability of a proposal.
        min_size: minimum extent (voxels) of a proposal on every axis.
        test_caps_shape: ``(Z, Y, X)`` of the image the testing ``pre_nms_top_n`` and
            ``post_nms_top_n`` are given for; other images get them scaled by their voxel count
            (:mod:`ls_detection.caps`). None: the same counts for every image.
    """

    def __init__(
        self,
        *,
        anchor_generator: AnchorGenerator3D,
        head: nn.Module,
        fg_iou_thresh: float,
        bg_iou_thresh: float,
        batch_size_per_image: int,
        positive_fraction: float,
        pre_nms_top_n: Mapping[str, int],
        post_nms_top_n: Mapping[str, int],
        nms_thresh: float,
        score_thresh: float = 0.0,
        min_size: float = 1e-3,
        test_caps_shape: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if not 0.0 <= bg_iou_thresh <= fg_iou_thresh <= 1.0:
            raise ValueError(f"RegionProposalNetwork3D needs 0 <= bg_iou_thresh <= fg_iou_thresh <= 1, got "
                             f"bg_iou_thresh={bg_iou_thresh}, fg_iou_thresh={fg_iou_thresh}")
        if isinstance(batch_size_per_image, bool) or not isinstance(batch_size_per_image, int) \
                or batch_size_per_image < 1:
            raise ValueError(f"RegionProposalNetwork3D batch_size_per_image must be an int >= 1, got "
                             f"{batch_size_per_image!r}")
        if not 0.0 < positive_fraction <= 1.0:
            raise ValueError(f"RegionProposalNetwork3D positive_fraction must be in (0, 1], got "
                             f"{positive_fraction!r}")
        if not 0.0 <= nms_thresh <= 1.0:
            raise ValueError(f"RegionProposalNetwork3D nms_thresh must be in [0, 1], got {nms_thresh!r}")
        if not min_size >= 0.0:
            raise ValueError(f"RegionProposalNetwork3D min_size must be >= 0, got {min_size!r}")
        self.anchor_generator = anchor_generator
        self.head = head
        self.box_coder = BoxCoder3D(weights=(1.0,) * 6)
        self.proposal_matcher = Matcher(float(fg_iou_thresh), float(bg_iou_thresh),
                                        allow_low_quality_matches=True)
        self.fg_bg_sampler = BalancedPositiveNegativeSampler(batch_size_per_image, float(positive_fraction))
        self._pre_nms_top_n = _train_test_counts("pre_nms_top_n", pre_nms_top_n)
        self._post_nms_top_n = _train_test_counts("post_nms_top_n", post_nms_top_n)
        self.nms_thresh = float(nms_thresh)
        self.score_thresh = float(score_thresh)
        self.min_size = float(min_size)
        self.test_caps_shape = check_caps_shape(test_caps_shape, "RegionProposalNetwork3D")

    def pre_nms_top_n(self, shape: Sequence[int] | None = None) -> int:
        """Anchors kept per level before NMS in the current mode (for an image of ``shape``)."""
        if self.training or shape is None:
            return self._pre_nms_top_n["training" if self.training else "testing"]
        return scale_cap(self._pre_nms_top_n["testing"], shape, self.test_caps_shape)

    def post_nms_top_n(self, shape: Sequence[int] | None = None) -> int:
        """Proposals kept per image after NMS in the current mode (for an image of ``shape``)."""
        if self.training or shape is None:
            return self._post_nms_top_n["training" if self.training else "testing"]
        return scale_cap(self._post_nms_top_n["testing"], shape, self.test_caps_shape)

    def assign_targets_to_anchors(
        self, anchors: list[Tensor], targets: list[dict[str, Tensor]]
    ) -> tuple[list[Tensor], list[Tensor]]:
        """Per image, anchor labels (1 positive, 0 negative, -1 ignored, float32) and matched GT boxes."""
        labels = []
        matched_boxes = []
        for anchors_i, target in zip(anchors, targets, strict=True):
            gt_boxes = target["boxes"]
            if gt_boxes.numel() == 0:
                # an image without objects: every anchor is a negative
                zeros = torch.zeros(anchors_i.shape, dtype=torch.float32, device=anchors_i.device)
                labels.append(zeros[:, 0].clone())
                matched_boxes.append(zeros)
                continue
            quality = ls_ops.box_iou3d(gt_boxes.float(), anchors_i.float())
            matched_idxs = self.proposal_matcher(quality)
            matched_boxes.append(gt_boxes.float()[matched_idxs.clamp(min=0)])
            labels_i = (matched_idxs >= 0).to(torch.float32)
            labels_i[matched_idxs == self.proposal_matcher.BELOW_LOW_THRESHOLD] = 0.0
            labels_i[matched_idxs == self.proposal_matcher.BETWEEN_THRESHOLDS] = -1.0
            labels.append(labels_i)
        return labels, matched_boxes

    def _top_n_per_level(self, objectness: Tensor, num_anchors_per_level: list[int],
                         largest: Sequence[int] | None) -> Tensor:
        indices = []
        offset = 0
        for scores in objectness.split(num_anchors_per_level, dim=1):
            k = min(self.pre_nms_top_n(largest), scores.shape[1])
            indices.append(scores.topk(k, dim=1).indices + offset)
            offset += scores.shape[1]
        return torch.cat(indices, dim=1)

    def filter_proposals(
        self,
        proposals: Tensor,
        objectness: Tensor,
        image_shapes: list[tuple[int, int, int]],
        num_anchors_per_level: list[int],
    ) -> tuple[list[Tensor], list[Tensor]]:
        """Select proposals per image.

        Args:
            proposals: ``(B, A_total, 6)`` decoded anchors.
            objectness: ``(B * A_total, 1)`` logits.
            image_shapes: per image, its ``(Z, Y, X)`` size before padding.
            num_anchors_per_level: anchors of each level (per image).

        Returns:
            Per image, ``(K_i, 6)`` boxes and ``(K_i,)`` objectness probabilities, by decreasing score.
        """
        num_images = proposals.shape[0]
        device = proposals.device
        objectness = objectness.detach().float().reshape(num_images, -1)
        levels = torch.cat([torch.full((n,), i, dtype=torch.int64, device=device)
                            for i, n in enumerate(num_anchors_per_level)])
        levels = levels.reshape(1, -1).expand_as(objectness)
        largest = max(image_shapes, key=lambda shape: math.prod(shape)) if image_shapes else None
        top = self._top_n_per_level(objectness, num_anchors_per_level, largest)
        batch = torch.arange(num_images, device=device)[:, None]
        scores_all = torch.sigmoid(objectness[batch, top])
        levels = levels[batch, top]
        proposals = proposals[batch, top]
        final_boxes = []
        final_scores = []
        for boxes, scores, lvl, shape in zip(proposals, scores_all, levels, image_shapes, strict=True):
            boxes = clip_boxes_to_volume(boxes, shape)
            keep = remove_small_boxes3d(boxes, self.min_size)
            boxes, scores, lvl = boxes[keep], scores[keep], lvl[keep]
            keep = torch.where(scores >= self.score_thresh)[0]
            boxes, scores, lvl = boxes[keep], scores[keep], lvl[keep]
            keep = ls_ops.batched_nms3d(boxes, scores, lvl, self.nms_thresh)[: self.post_nms_top_n(shape)]
            final_boxes.append(boxes[keep])
            final_scores.append(scores[keep])
        return final_boxes, final_scores

    def compute_loss(
        self,
        objectness: Tensor,
        pred_bbox_deltas: Tensor,
        labels: list[Tensor],
        regression_targets: list[Tensor],
    ) -> tuple[Tensor, Tensor]:
        """Objectness loss (BCE with logits over the sampled anchors) and box loss (smooth-L1 with
        beta 1/9 over the sampled positives, summed and divided by the number of sampled anchors)."""
        pos_masks, neg_masks = self.fg_bg_sampler(labels)
        pos = torch.where(torch.cat(pos_masks, dim=0))[0]
        neg = torch.where(torch.cat(neg_masks, dim=0))[0]
        sampled = torch.cat([pos, neg], dim=0)
        labels_all = torch.cat(labels, dim=0)
        targets_all = torch.cat(regression_targets, dim=0)
        box_loss = F.smooth_l1_loss(pred_bbox_deltas[pos].float(), targets_all[pos], beta=1 / 9,
                                    reduction="sum") / max(sampled.numel(), 1)
        objectness_loss = F.binary_cross_entropy_with_logits(objectness.flatten()[sampled].float(),
                                                             labels_all[sampled])
        return objectness_loss, box_loss

    def forward(
        self,
        images: ImageList3D,
        features: Mapping[str, Tensor],
        targets: list[dict[str, Tensor]] | None = None,
    ) -> tuple[list[Tensor], dict[str, Tensor]]:
        """Propose boxes for each image (and compute the losses in training mode).

        Args:
            images: the padded batch.
            features: named ``(B, C, D, H, W)`` feature levels; all of them are used, in order.
            targets: per image, a dict with ``"boxes"`` ``(N_i, 6)`` (may be empty); required in
                training mode.

        Returns:
            Per image ``(K_i, 6)`` float32 proposals (``K_i <= post_nms_top_n``), and the losses
            ``{"loss_objectness", "loss_rpn_box_reg"}`` in training mode (an empty dict in eval).
        """
        feature_list = list(features.values())
        num_images = images.tensors.shape[0]
        for name, fmap in features.items():
            if fmap.dim() != 5 or fmap.shape[0] != num_images:
                raise ValueError(f"features[{name!r}] must be (B={num_images}, C, D, H, W), "
                                 f"got {tuple(fmap.shape)}")
        if self.training:
            if targets is None:
                raise ValueError("RegionProposalNetwork3D needs targets in training mode")
            if len(targets) != num_images:
                raise ValueError(f"RegionProposalNetwork3D got {len(targets)} targets for "
                                 f"{num_images} images")
            for i, target in enumerate(targets):
                boxes = target.get("boxes") if isinstance(target, Mapping) else None
                if not isinstance(boxes, Tensor) or boxes.dim() != 2 or boxes.shape[1] != 6:
                    shape = tuple(boxes.shape) if isinstance(boxes, Tensor) else boxes
                    raise ValueError(f"targets[{i}]['boxes'] must be an (N, 6) tensor, got {shape!r}")
        objectness, deltas = self.head(feature_list)
        anchors = self.anchor_generator(images, feature_list)
        num_anchors_per_level = [o.shape[1] * o.shape[2] * o.shape[3] * o.shape[4] for o in objectness]
        objectness, deltas = concat_box_prediction_layers(objectness, deltas)
        # proposals are not differentiated through (Faster R-CNN); decode them in float32
        proposals = self.box_coder.decode(deltas.detach().float(), [a.float() for a in anchors])
        proposals = proposals.view(num_images, -1, 6)
        boxes, _ = self.filter_proposals(proposals, objectness, images.image_sizes, num_anchors_per_level)

        losses: dict[str, Tensor] = {}
        if self.training and targets is not None:
            labels, matched_boxes = self.assign_targets_to_anchors(anchors, targets)
            regression_targets = self.box_coder.encode(matched_boxes, [a.float() for a in anchors])
            loss_objectness, loss_box = self.compute_loss(objectness, deltas, labels,
                                                          list(regression_targets))
            losses = {"loss_objectness": loss_objectness, "loss_rpn_box_reg": loss_box}
        return boxes, losses
