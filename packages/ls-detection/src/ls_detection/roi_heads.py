"""RoI heads of 3-D Mask R-CNN: box classification and regression, and the mask branch.

torchvision's ``RoIHeads`` (box and mask parts) with 6-coordinate boxes: training samples come
from the proposals plus the ground-truth boxes, matched by 3-D IoU and sampled with torchvision's
``Matcher`` and ``BalancedPositiveNegativeSampler`` (:mod:`ls_detection.matcher`,
:mod:`ls_detection.sampler`); inference decodes per-class boxes, applies a
score threshold and per-class NMS3D and predicts one mask per detection.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ls_detection.box_coder import BoxCoder3D
from ls_detection.boxes import clip_boxes_to_volume, coordinate_dtype, remove_small_boxes3d
from ls_detection.caps import check_caps_shape, scale_cap
from ls_detection.matcher import Matcher
from ls_detection.sampler import BalancedPositiveNegativeSampler
from ls_ops import batched_nms3d, box_iou3d, roi_align3d

__all__ = ["RoIHeads3D", "fastrcnn_loss", "maskrcnn_loss", "project_masks_on_boxes", "soft_dice_loss"]

DEFAULT_BBOX_REG_WEIGHTS = (10.0, 10.0, 10.0, 5.0, 5.0, 5.0)
MIN_DETECTION_SIZE = 1e-2  # detections thinner than this on any axis are dropped (torchvision's value)


def fastrcnn_loss(class_logits: Tensor, box_regression: Tensor, labels: Sequence[Tensor],
                  regression_targets: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """Classification and box regression losses of the box head.

    Cross-entropy over all sampled RoIs, and smooth L1 (``beta = 1/9``) of the deltas predicted
    for the ground-truth class of the positive RoIs, summed and divided by the number of sampled
    RoIs.

    Args:
        class_logits: ``(K, num_classes)``.
        box_regression: ``(K, 6 * num_classes)``.
        labels: per image ``(K_i,)`` int64 class of each sampled RoI (0 = background).
        regression_targets: per image ``(K_i, 6)`` encoded ground-truth deltas.

    Returns:
        ``(loss_classifier, loss_box_reg)`` scalars.
    """
    labels_all = torch.cat(list(labels), dim=0)
    targets = torch.cat(list(regression_targets), dim=0)
    if labels_all.numel() == 0:  # no RoI at all: zero losses that keep the graph connected
        return class_logits.sum() * 0, box_regression.sum() * 0
    classification_loss = F.cross_entropy(class_logits, labels_all)
    positive = torch.where(labels_all > 0)[0]
    per_class = box_regression.reshape(box_regression.shape[0], -1, 6)
    box_loss = F.smooth_l1_loss(per_class[positive, labels_all[positive]], targets[positive], beta=1 / 9,
                                reduction="sum")
    return classification_loss, box_loss / labels_all.numel()


def project_masks_on_boxes(gt_masks: Tensor, boxes: Tensor, matched_idxs: Tensor,
                           output_size: Sequence[int]) -> Tensor:
    """Cut and resize the matched ground-truth mask of every box to ``output_size`` (mask targets).

    RoIAlign3D (``aligned=True``, adaptive sampling) of the float masks: the value of a target
    voxel is the fraction of the ground-truth mask around it.

    Args:
        gt_masks: ``(G, Z, Y, X)`` ground-truth masks of one image.
        boxes: ``(K, 6)`` boxes in the image's voxel coordinates.
        matched_idxs: ``(K,)`` index into ``gt_masks`` of each box's ground truth.
        output_size: ``(m_z, m_y, m_x)``.

    Returns:
        ``(K, m_z, m_y, m_x)`` float targets in ``[0, 1]``.
    """
    # convert only the masks that are used (a volume of float masks per object is large)
    used, inverse = torch.unique(matched_idxs, return_inverse=True)
    masks = gt_masks[used][:, None].to(boxes.dtype)
    rois = torch.cat([inverse.to(boxes.dtype)[:, None], boxes], dim=1)
    return roi_align3d(masks, rois, tuple(output_size), 1.0, -1, aligned=True)[:, 0]


def maskrcnn_loss(mask_logits: Tensor, proposals: Sequence[Tensor], gt_masks: Sequence[Tensor],
                  gt_labels: Sequence[Tensor], mask_matched_idxs: Sequence[Tensor],
                  dice_weight: float = 0.0) -> Tensor:
    """Mean binary cross-entropy of the ground-truth class's mask logits against projected GT masks,
    plus ``dice_weight`` times the mean soft Dice loss of each RoI's mask.

    The Dice term (``1 - 2 |p t| / (|p| + |t|)`` per RoI, on the sigmoid probabilities ``p`` and
    the projected masks ``t``) weighs every object's overlap equally whatever its size, where the
    cross-entropy is a mean over voxels dominated by each mask's interior and background.

    Args:
        mask_logits: ``(K, num_classes, m_z, m_y, m_x)`` for the positive proposals of all images.
        proposals: per image ``(K_i, 6)`` positive proposals.
        gt_masks: per image ``(G_i, Z, Y, X)`` ground-truth masks.
        gt_labels: per image ``(G_i,)`` ground-truth labels.
        mask_matched_idxs: per image ``(K_i,)`` matched ground truth of each proposal.
        dice_weight: weight of the soft Dice term (0: torchvision's loss).

    Returns:
        Scalar loss; ``mask_logits.sum() * 0`` when there is no positive proposal.
    """
    if mask_logits.shape[0] == 0:
        return mask_logits.sum() * 0
    output_size = mask_logits.shape[-3:]
    labels = torch.cat([lab[idx] for lab, idx in zip(gt_labels, mask_matched_idxs, strict=True)])
    targets = torch.cat([
        project_masks_on_boxes(m, p, i, output_size)
        for m, p, i in zip(gt_masks, proposals, mask_matched_idxs, strict=True) if p.shape[0] > 0
    ])
    logits = mask_logits[torch.arange(labels.shape[0], device=labels.device), labels]
    targets = targets.to(logits.dtype)
    loss = F.binary_cross_entropy_with_logits(logits, targets)
    if dice_weight:
        loss = loss + dice_weight * soft_dice_loss(logits, targets)
    return loss


def soft_dice_loss(logits: Tensor, targets: Tensor, eps: float = 1.0) -> Tensor:
    """Mean over the first axis of ``1 - (2 |p t| + eps) / (|p| + |t| + eps)``, ``p`` the sigmoid
    of ``logits``; ``eps`` keeps an empty target with an empty prediction at loss 0."""
    probs = torch.sigmoid(logits.float()).flatten(1)
    flat = targets.float().flatten(1)
    dice = (2 * (probs * flat).sum(1) + eps) / (probs.sum(1) + flat.sum(1) + eps)
    return (1 - dice).mean().to(logits.dtype)


class RoIHeads3D(nn.Module):
    """Box and (optional) mask heads over pooled RoI features.

    Args:
        box_roi_pool: pools ``(K, C, od, oh, ow)`` features of boxes (``MultiScaleRoIAlign3D``).
        box_head: maps pooled features to ``(K, R)`` representations (``TwoMLPHead3D``).
        box_predictor: maps representations to class logits ``(K, num_classes)`` and deltas
            ``(K, 6 * num_classes)`` (``FastRCNNPredictor3D``); defines ``num_classes``.
        fg_iou_thresh: minimum IoU of a proposal with a ground-truth box to be foreground.
        bg_iou_thresh: IoU below which a proposal is background (in between: ignored).
        batch_size_per_image: RoIs sampled per image for the box losses.
        positive_fraction: target fraction of positives among them.
        bbox_reg_weights: weights ``(wz, wy, wx, wd, wh, ww)`` of the box coder; ``None`` means
            ``(10, 10, 10, 5, 5, 5)``.
        score_thresh: minimum class score of a detection.
        nms_thresh: IoU threshold of the per-class NMS3D.
        detections_per_img: maximum number of detections per image.
        test_caps_shape: ``(Z, Y, X)`` of the image ``detections_per_img`` is given for; other
            images get it scaled by their voxel count (:mod:`ls_detection.caps`). None: the
            same count for every image.
        mask_roi_pool: pools mask features (``MultiScaleRoIAlign3D``, output 14), or ``None``.
        mask_head: mask feature convolutions (``MaskRCNNHeads3D``), or ``None``.
        mask_predictor: mask logits ``(K, num_classes, 2m, 2m, 2m)`` (``MaskRCNNPredictor3D``), or
            ``None``. The mask branch runs when all three mask modules are given.
        mask_dice_weight: weight of the soft Dice term added to the mask loss (see
            :func:`maskrcnn_loss`; 0: binary cross-entropy alone).
    """

    def __init__(
        self,
        *,
        box_roi_pool: nn.Module,
        box_head: nn.Module,
        box_predictor: nn.Module,
        fg_iou_thresh: float,
        bg_iou_thresh: float,
        batch_size_per_image: int,
        positive_fraction: float,
        bbox_reg_weights: Sequence[float] | None,
        score_thresh: float,
        nms_thresh: float,
        detections_per_img: int,
        mask_roi_pool: nn.Module | None = None,
        mask_head: nn.Module | None = None,
        mask_predictor: nn.Module | None = None,
        mask_dice_weight: float = 0.0,
        test_caps_shape: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if mask_dice_weight < 0:
            raise ValueError(f"RoIHeads3D: mask_dice_weight must be >= 0, got {mask_dice_weight}")
        if not 0.0 <= bg_iou_thresh <= fg_iou_thresh <= 1.0:
            raise ValueError(f"RoIHeads3D: need 0 <= bg_iou_thresh ({bg_iou_thresh}) <= fg_iou_thresh "
                             f"({fg_iou_thresh}) <= 1")
        if batch_size_per_image < 1:
            raise ValueError(f"RoIHeads3D: batch_size_per_image must be >= 1, got {batch_size_per_image}")
        if not 0.0 < positive_fraction <= 1.0:
            raise ValueError(f"RoIHeads3D: positive_fraction must be in (0, 1], got {positive_fraction}")
        if detections_per_img < 1:
            raise ValueError(f"RoIHeads3D: detections_per_img must be >= 1, got {detections_per_img}")
        mask_parts = {"mask_roi_pool": mask_roi_pool, "mask_head": mask_head,
                      "mask_predictor": mask_predictor}
        given = [name for name, part in mask_parts.items() if part is not None]
        if given and len(given) != 3:
            missing = sorted(set(mask_parts) - set(given))
            raise ValueError(f"RoIHeads3D: the mask branch needs mask_roi_pool, mask_head and "
                             f"mask_predictor; got {given} without {missing}")
        self.proposal_matcher = Matcher(fg_iou_thresh, bg_iou_thresh, allow_low_quality_matches=False)
        self.fg_bg_sampler = BalancedPositiveNegativeSampler(batch_size_per_image, positive_fraction)
        self.box_coder = BoxCoder3D(DEFAULT_BBOX_REG_WEIGHTS if bbox_reg_weights is None
                                    else tuple(bbox_reg_weights))
        self.box_roi_pool = box_roi_pool
        self.box_head = box_head
        self.box_predictor = box_predictor
        self.score_thresh = float(score_thresh)
        self.nms_thresh = float(nms_thresh)
        self.detections_per_img = int(detections_per_img)
        self.test_caps_shape = check_caps_shape(test_caps_shape, "RoIHeads3D")
        self.capped: list[bool] = []
        """Per image of the last inference call: whether the detection cap dropped detections."""
        self.mask_roi_pool = mask_roi_pool
        self.mask_head = mask_head
        self.mask_predictor = mask_predictor
        self.mask_dice_weight = float(mask_dice_weight)

    @property
    def has_mask(self) -> bool:
        """Whether the mask branch is configured."""
        parts = (self.mask_roi_pool, self.mask_head, self.mask_predictor)
        return all(part is not None for part in parts)

    # ------------------------------------------------------------------ training samples

    def _check_targets(self, targets: Sequence[Mapping[str, Tensor]] | None, num_images: int) -> None:
        if targets is None:
            raise ValueError("RoIHeads3D: targets are required in training mode")
        if len(targets) != num_images:
            raise ValueError(f"RoIHeads3D: {len(targets)} targets for {num_images} images")
        keys = ("boxes", "labels", "masks") if self.has_mask else ("boxes", "labels")
        for i, t in enumerate(targets):
            for key in keys:
                if key not in t:
                    raise ValueError(f"RoIHeads3D: targets[{i}] has no {key!r} key (keys: {sorted(t)})")
            boxes, labels = t["boxes"], t["labels"]
            if boxes.dim() != 2 or boxes.shape[1] != 6 or not boxes.is_floating_point():
                raise ValueError(f"RoIHeads3D: targets[{i}]['boxes'] must be (N, 6) floating point, got "
                                 f"shape {tuple(boxes.shape)} dtype {boxes.dtype}")
            if labels.dtype != torch.int64 or labels.shape != (boxes.shape[0],):
                raise ValueError(f"RoIHeads3D: targets[{i}]['labels'] must be ({boxes.shape[0]},) int64, got "
                                 f"shape {tuple(labels.shape)} dtype {labels.dtype}")
            if self.has_mask:
                masks = t["masks"]
                if masks.dim() != 4 or masks.shape[0] != boxes.shape[0]:
                    raise ValueError(f"RoIHeads3D: targets[{i}]['masks'] must be ({boxes.shape[0]}, Z, Y, "
                                     f"X), got shape {tuple(masks.shape)}")

    @staticmethod
    def _check_labels(targets: Sequence[Mapping[str, Tensor]], num_classes: int) -> None:
        for i, t in enumerate(targets):
            labels = t["labels"]
            if labels.numel() == 0:
                continue
            high, low = int(labels.max()), int(labels.min())
            if high >= num_classes:
                raise ValueError(f"RoIHeads3D: targets[{i}]['labels'] holds class {high}, but the box "
                                 f"predictor has num_classes={num_classes} (background included): labels "
                                 f"must be in 1..{num_classes - 1}")
            if low < 1:
                raise ValueError(f"RoIHeads3D: targets[{i}]['labels'] holds class {low}; labels must be >= 1 "
                                 "(0 is the background)")

    def _assign_targets(self, proposals: Sequence[Tensor], gt_boxes: Sequence[Tensor],
                        gt_labels: Sequence[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """Matched ground-truth index (clamped to >= 0) and label (0 bg, -1 ignored) of each proposal."""
        matched_idxs, labels = [], []
        for props, boxes, classes in zip(proposals, gt_boxes, gt_labels, strict=True):
            if boxes.shape[0] == 0:  # an image without objects: every proposal is background
                matched = torch.zeros(props.shape[0], dtype=torch.int64, device=props.device)
                image_labels = torch.zeros(props.shape[0], dtype=torch.int64, device=props.device)
            else:
                match = self.proposal_matcher(box_iou3d(boxes, props))
                matched = match.clamp(min=0)
                image_labels = classes[matched].to(torch.int64)
                image_labels[match == Matcher.BELOW_LOW_THRESHOLD] = 0
                image_labels[match == Matcher.BETWEEN_THRESHOLDS] = -1
            matched_idxs.append(matched)
            labels.append(image_labels)
        return matched_idxs, labels

    def select_training_samples(
        self, proposals: Sequence[Tensor], targets: Sequence[Mapping[str, Tensor]]
    ) -> tuple[list[Tensor], list[Tensor], list[Tensor], list[Tensor]]:
        """Sampled RoIs per image with their matched GT index, label and regression target.

        The ground-truth boxes are appended to the proposals first (torchvision), so every object
        has a positive candidate even when no proposal overlaps it enough.

        Returns:
            ``(proposals, matched_idxs, labels, regression_targets)``, each a list over images.
        """
        dtype = proposals[0].dtype if len(proposals) else torch.float32
        gt_boxes = [t["boxes"].to(dtype) for t in targets]
        gt_labels = [t["labels"] for t in targets]
        proposals = [torch.cat((p, g)) for p, g in zip(proposals, gt_boxes, strict=True)]
        matched_idxs, labels = self._assign_targets(proposals, gt_boxes, gt_labels)
        positive, negative = self.fg_bg_sampler(labels)
        sampled_props, sampled_idxs, sampled_labels, matched_boxes = [], [], [], []
        for i, (props, pos, neg) in enumerate(zip(proposals, positive, negative, strict=True)):
            keep = torch.where(pos | neg)[0]
            props = props[keep]
            sampled_props.append(props)
            sampled_idxs.append(matched_idxs[i][keep])
            sampled_labels.append(labels[i][keep])
            # background images: encode against the proposals themselves (targets unused, finite)
            matched_boxes.append(gt_boxes[i][sampled_idxs[-1]] if gt_boxes[i].shape[0] else props)
        regression_targets = list(self.box_coder.encode(matched_boxes, sampled_props))
        return sampled_props, sampled_idxs, sampled_labels, regression_targets

    # ------------------------------------------------------------------ inference

    def detections_for(self, shape: Sequence[int]) -> int:
        """The detections kept for an image of ``shape`` (``detections_per_img`` scaled by its
        voxel count at test time when ``test_caps_shape`` is set)."""
        if self.training:
            return self.detections_per_img
        return scale_cap(self.detections_per_img, shape, self.test_caps_shape)

    def postprocess_detections(
        self, class_logits: Tensor, box_regression: Tensor, proposals: Sequence[Tensor],
        image_shapes: Sequence[Sequence[int]], min_score: float | None = None,
    ) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        """Per-image detections: boxes ``(N, 6)``, scores ``(N,)`` and labels ``(N,)`` int64.

        Softmax scores, per-class decoded boxes clipped to the image, background dropped, then
        score threshold (``> score_thresh``, and ``>= min_score`` when given), removal of boxes
        thinner than 0.01 voxel, per-class NMS3D and the :meth:`detections_for` best.

        ``min_score`` drops detections a caller would drop afterwards anyway, before NMS and the cap:
        NMS removes a box only for a higher-scored one and the cap keeps the best, so the detections
        at or above ``min_score`` are exactly those of a run without it (and ``capped`` then says
        whether the cap dropped one of *them*).
        """
        num_classes = class_logits.shape[-1]
        counts = [p.shape[0] for p in proposals]
        # boxes and scores in float32 (or float64) even when the head ran under half/bf16 autocast
        pred_boxes = self.box_coder.decode(box_regression, list(proposals)).split(counts, dim=0)
        logits = class_logits.to(coordinate_dtype(class_logits.dtype))
        pred_scores = F.softmax(logits, dim=-1).split(counts, dim=0)
        all_boxes, all_scores, all_labels = [], [], []
        self.capped = []
        for boxes, scores, shape in zip(pred_boxes, pred_scores, image_shapes, strict=True):
            boxes = clip_boxes_to_volume(boxes, tuple(shape))
            labels = torch.arange(num_classes, device=scores.device).expand_as(scores)
            boxes = boxes[:, 1:].reshape(-1, 6)
            scores = scores[:, 1:].reshape(-1)
            labels = labels[:, 1:].reshape(-1)
            passed = scores > self.score_thresh
            if min_score is not None:
                passed &= scores >= min_score
            keep = torch.where(passed)[0]
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            keep = remove_small_boxes3d(boxes, MIN_DETECTION_SIZE)
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            keep = batched_nms3d(boxes, scores, labels, self.nms_thresh)
            cap = self.detections_for(shape)
            self.capped.append(keep.numel() > cap)
            keep = keep[:cap]
            all_boxes.append(boxes[keep])
            all_scores.append(scores[keep])
            all_labels.append(labels[keep])
        return all_boxes, all_scores, all_labels

    # ------------------------------------------------------------------ forward

    def mask_logits(self, features: Mapping[str, Tensor], boxes: Sequence[Tensor],
                    image_shapes: Sequence[Sequence[int]], images: Tensor | None = None) -> Tensor:
        """Mask logits ``(K, num_classes, ...)`` of the mask branch for ``boxes`` (per image ``(K_i, 6)``).

        ``images`` (the padded batch) is required by a predictor that uses the image (``uses_image``).
        """
        assert self.mask_roi_pool is not None and self.mask_head is not None
        assert self.mask_predictor is not None
        mask_features = self.mask_head(self.mask_roi_pool(features, list(boxes), image_shapes))
        if not getattr(self.mask_predictor, "uses_image", False):
            return self.mask_predictor(mask_features)
        if images is None:
            raise ValueError("RoIHeads3D: the mask predictor refines with the image; pass images=")
        return self.mask_predictor(mask_features, images, boxes)

    def forward(
        self,
        features: Mapping[str, Tensor],
        proposals: Sequence[Tensor],
        image_shapes: Sequence[Sequence[int]],
        targets: Sequence[Mapping[str, Tensor]] | None = None,
        images: Tensor | None = None,
        min_score: float | None = None,
    ) -> tuple[list[dict[str, Tensor]], dict[str, Tensor]]:
        """Losses (training) or detections (eval).

        Args:
            features: feature maps ``(B, C, D, H, W)`` by name.
            proposals: per image ``(K_i, 6)`` proposals in padded-image voxel coordinates.
            image_shapes: per image ``(Z, Y, X)`` before padding (boxes are clipped to it).
            targets: per image ``{"boxes" (N, 6), "labels" (N,) int64, "masks" (N, Z, Y, X)}``;
                required in training.
            images: the padded batch ``(B, C, Z, Y, X)`` the features were computed from; required
                by a mask predictor that uses the image (``uses_image``).
            min_score: eval only: detections scored below it are dropped before the mask branch
                (see :meth:`postprocess_detections`); the others are unchanged.

        Returns:
            ``(detections, losses)``. Training: ``([], {"loss_classifier", "loss_box_reg",
            "loss_mask"})`` (no mask loss without a mask branch). Eval: one dict per image with
            ``boxes (N, 6)``, ``labels (N,)``, ``scores (N,)`` and ``masks (N, 1, m, m, m)`` (the
            predicted class's mask probabilities in box coordinates), and ``{}``.
        """
        if min_score is not None and not 0.0 <= float(min_score) <= 1.0:
            raise ValueError(f"RoIHeads3D: min_score must be a score threshold in [0, 1], got {min_score!r}")
        if len(proposals) != len(image_shapes):
            raise ValueError(f"RoIHeads3D: {len(proposals)} proposal tensors for {len(image_shapes)} "
                             "image shapes")
        for i, p in enumerate(proposals):
            if p.dim() != 2 or p.shape[1] != 6:
                raise ValueError(f"RoIHeads3D: proposals[{i}] must be (K, 6), got {tuple(p.shape)}")
        if self.training:
            self._check_targets(targets, len(proposals))
            assert targets is not None
            samples = self.select_training_samples(proposals, targets)
            proposals, matched_idxs, labels, regression_targets = samples

        box_features = self.box_head(self.box_roi_pool(features, list(proposals), image_shapes))
        class_logits, box_regression = self.box_predictor(box_features)
        num_classes = class_logits.shape[-1]
        if box_regression.shape[-1] != 6 * num_classes:
            raise ValueError(f"RoIHeads3D: box_predictor returned {box_regression.shape[-1]} deltas per RoI "
                             f"for {num_classes} classes; expected 6 * num_classes = {6 * num_classes}")

        result: list[dict[str, Tensor]] = []
        losses: dict[str, Tensor] = {}
        if self.training:
            assert targets is not None
            self._check_labels(targets, num_classes)
            loss_classifier, loss_box_reg = fastrcnn_loss(class_logits, box_regression, labels,
                                                          regression_targets)
            losses = {"loss_classifier": loss_classifier, "loss_box_reg": loss_box_reg}
        else:
            boxes, scores, det_labels = self.postprocess_detections(class_logits, box_regression, proposals,
                                                                    image_shapes, min_score)
            result = [{"boxes": b, "labels": lab, "scores": s}
                      for b, lab, s in zip(boxes, det_labels, scores, strict=True)]

        if self.has_mask:
            assert self.mask_roi_pool is not None and self.mask_head is not None
            assert self.mask_predictor is not None
            if self.training:
                positive = [torch.where(lab > 0)[0] for lab in labels]
                mask_proposals = [p[pos] for p, pos in zip(proposals, positive, strict=True)]
                pos_matched_idxs = [m[pos] for m, pos in zip(matched_idxs, positive, strict=True)]
            else:
                mask_proposals = [r["boxes"] for r in result]
            mask_logits = self.mask_logits(features, mask_proposals, image_shapes, images)
            if mask_logits.shape[1] != num_classes:
                raise ValueError(f"RoIHeads3D: mask_predictor returned {mask_logits.shape[1]} channels, but "
                                 f"the box predictor has num_classes={num_classes}")
            if self.training:
                assert targets is not None
                gt_masks = [t["masks"] for t in targets]
                gt_labels = [t["labels"] for t in targets]
                losses["loss_mask"] = maskrcnn_loss(mask_logits, mask_proposals, gt_masks, gt_labels,
                                                    pos_matched_idxs, self.mask_dice_weight)
            else:
                det_labels = torch.cat([r["labels"] for r in result])
                probs = mask_logits[torch.arange(det_labels.shape[0], device=det_labels.device), det_labels]
                probs = probs.sigmoid()[:, None]
                for r, p in zip(result, probs.split([r["labels"].shape[0] for r in result]), strict=True):
                    r["masks"] = p
        return result, losses
