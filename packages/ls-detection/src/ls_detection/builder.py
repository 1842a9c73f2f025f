"""``maskrcnn3d``: build a 3-D Mask R-CNN over any ``ls.backbones`` backbone.

Every argument is one config key. Defaults follow torchvision's Mask R-CNN where that suits 3-D
crops; the anchor sizes default to 8..128 voxels (one size per pyramid level), which suits nuclei
and cells in typical light-sheet crops.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from ls_backbones import BackboneWithFPN3D, create_backbone
from ls_detection.anchors import AnchorGenerator3D
from ls_detection.backbone_levels import backbone_label, backbone_levels
from ls_detection.box_head import FastRCNNPredictor3D, TwoMLPHead3D
from ls_detection.mask_head import ImageGuidedMaskPredictor3D, MaskRCNNHeads3D, MaskRCNNPredictor3D
from ls_detection.maskrcnn import MaskRCNN3D
from ls_detection.poolers import MultiScaleRoIAlign3D
from ls_detection.roi_heads import RoIHeads3D
from ls_detection.rpn import RegionProposalNetwork3D, RPNHead3D
from ls_detection.transform import DetectionTransform3D

__all__ = ["build_backbone", "maskrcnn3d"]

_DEFAULT_ANCHOR_SIZES = (8.0, 16.0, 32.0, 64.0, 128.0)


def build_backbone(
    backbone: str | nn.Module,
    backbone_kwargs: Mapping[str, Any] | None = None,
    fpn: Mapping[str, Any] | None = None,
) -> nn.Module:
    """The backbone ``backbone``, wrapped in FPN3D when ``fpn`` is given.

    Args:
        backbone: an ``ls.backbones`` name, built-in or from a plugin, or a module already built
            (for example by a config's ``_target_``).
        backbone_kwargs: keyword arguments of the named backbone (none for a module).
        fpn: keyword arguments of ``ls_backbones.presets.fpn3d`` other than ``body``/``body_kwargs``
            (``out_channels``, ``in_features``, ``extra_pool``, ...); None builds no FPN. A module
            is wrapped by :class:`ls_backbones.BackboneWithFPN3D` with them, which needs the
            backbone contract (``output_shape()``, ``size_divisibility``, ``in_channels``).
    """
    kwargs = dict(backbone_kwargs or {})
    if isinstance(backbone, nn.Module):
        return _module_backbone(backbone, kwargs, fpn)
    if fpn is None:
        return create_backbone(backbone, **kwargs)
    return create_backbone("fpn3d", body=backbone, body_kwargs=kwargs, **dict(fpn))


def _module_backbone(
    backbone: nn.Module, kwargs: Mapping[str, Any], fpn: Mapping[str, Any] | None
) -> nn.Module:
    if kwargs:
        raise ValueError(
            f"backbone_kwargs {sorted(kwargs)} are for a backbone given by name; "
            f"{backbone_label(backbone)} is built already"
        )
    if fpn is None:
        return backbone
    if not hasattr(backbone, "output_shape"):
        raise ValueError(
            f"fpn: {backbone_label(backbone)} declares no output_shape() (the backbone contract), "
            f"so FPN3D cannot be built over it; give fpn=None for a backbone that returns its "
            f"final features"
        )
    return BackboneWithFPN3D(backbone, **dict(fpn))


def _per_level(value: Sequence[Any] | None, levels: int, default: Sequence[Any], key: str) -> list[tuple]:
    """One tuple per level: a flat sequence is used on every level, a nested one is taken per level."""
    if value is None:
        value = default
    value = list(value)
    if value and all(isinstance(v, (int, float)) for v in value):
        return [tuple(float(v) for v in value)] * levels
    if len(value) != levels:
        raise ValueError(
            f"{key}: {len(value)} entries for {levels} feature levels; give one list per level or "
            f"one flat list used on every level"
        )
    return [tuple(float(x) for x in v) for v in value]


def _mask_predictor(in_channels: int, dim_reduced: int, num_classes: int, image_channels: int,
                    image_layers: Sequence[int] | None, image_standardize: bool,
                    image_margin: int) -> nn.Module:
    if image_layers is None:
        for key, value in (("mask_image_standardize", image_standardize),
                           ("mask_image_margin", image_margin)):
            if value:
                raise ValueError(f"maskrcnn3d: {key} needs mask_image_layers (the image-guided mask "
                                 "predictor)")
        return MaskRCNNPredictor3D(in_channels=in_channels, dim_reduced=dim_reduced, num_classes=num_classes)
    return ImageGuidedMaskPredictor3D(in_channels=in_channels, dim_reduced=dim_reduced,
                                      image_channels=image_channels, layers=list(image_layers),
                                      num_classes=num_classes, standardize=image_standardize,
                                      margin=image_margin)


def maskrcnn3d(
    *,
    backbone: str | nn.Module,
    num_classes: int,
    backbone_kwargs: Mapping[str, Any] | None = None,
    fpn: Mapping[str, Any] | None = None,
    backbone_out_channels: int | None = None,
    # transform
    image_mean: Sequence[float] | None = None,
    image_std: Sequence[float] | None = None,
    min_size: int | None = None,
    max_size: int | None = None,
    target_spacing: Sequence[float] | None = None,
    # anchors and RPN
    rpn_anchor_generator: Mapping[str, Any] | None = None,
    rpn_conv_depth: int = 1,
    rpn_pre_nms_top_n_train: int = 2000,
    rpn_pre_nms_top_n_test: int = 1000,
    rpn_post_nms_top_n_train: int = 2000,
    rpn_post_nms_top_n_test: int = 1000,
    rpn_nms_thresh: float = 0.7,
    rpn_fg_iou_thresh: float = 0.7,
    rpn_bg_iou_thresh: float = 0.3,
    rpn_batch_size_per_image: int = 256,
    rpn_positive_fraction: float = 0.5,
    rpn_score_thresh: float = 0.0,
    test_caps_shape: Sequence[int] | None = None,
    # RoI heads
    roi_featmap_names: Sequence[str] | None = None,
    box_roi_output_size: int | Sequence[int] = 7,
    box_roi_sampling_ratio: int = 2,
    box_representation_size: int = 1024,
    box_score_thresh: float = 0.05,
    box_nms_thresh: float = 0.5,
    box_detections_per_img: int = 100,
    box_fg_iou_thresh: float = 0.5,
    box_bg_iou_thresh: float = 0.5,
    box_batch_size_per_image: int = 512,
    box_positive_fraction: float = 0.25,
    bbox_reg_weights: Sequence[float] | None = None,
    mask_roi_output_size: int | Sequence[int] = 14,
    mask_roi_sampling_ratio: int = 2,
    mask_layers: Sequence[int] = (256, 256, 256, 256),
    mask_dilation: int = 1,
    mask_dim_reduced: int = 256,
    mask_image_layers: Sequence[int] | None = None,
    mask_image_standardize: bool = False,
    mask_image_margin: int = 0,
    mask_dice_weight: float = 0.0,
) -> MaskRCNN3D:
    """3-D Mask R-CNN over the backbone ``backbone``.

    Args:
        backbone: ``ls.backbones`` name, e.g. ``"resnet3d_18_fpn"``, ``"vitdet3d_s_sfp"``,
            ``"hiera3d_t_fpn"``, or a body such as ``"resnet3d_50"`` together with ``fpn``; or a
            backbone module (see :mod:`ls_detection.backbone_levels` for what it must provide).
        num_classes: classes including the background.
        backbone_kwargs: keyword arguments of the backbone (``in_channels``, ...).
        fpn: wrap the backbone in FPN3D with these keyword arguments (see :func:`build_backbone`).
        backbone_out_channels: channels of a backbone module that declares none (no
            ``output_shape()`` and no ``out_channels`` attribute); checked against declared ones.
        image_mean, image_std: per-channel normalisation (default 0 and 1: data already
            normalised by the dataset's transforms).
        min_size, max_size: torchvision-style resize of every axis by one factor (None: no resize).
        target_spacing: resize each image to this voxel spacing (needs ``spacings`` at call time).
        rpn_anchor_generator: keyword arguments of :class:`AnchorGenerator3D`: ``sizes``,
            ``aspect_ratios`` (y/x) and ``aspect_ratios_z``; each either one list per pyramid level
            or one flat list for every level (sizes: one size per level, 8..128 by default).
        rpn_*: region proposal network settings (torchvision's meanings).
        test_caps_shape: ``(Z, Y, X)`` of the image (as the detector sees it, after any resize)
            for which ``rpn_pre_nms_top_n_test``, ``rpn_post_nms_top_n_test`` and
            ``box_detections_per_img`` are given; at test time every image gets them scaled by
            its voxel count (:mod:`ls_detection.caps`), so larger tiles keep as many objects per
            voxel. None: the same counts for every image.
        roi_featmap_names: pyramid levels the RoI heads pool from (default: the first four).
        box_*, bbox_reg_weights: box head settings (torchvision's meanings).
        mask_*: mask branch settings: pooler output size and sampling ratio, the channels of each
            3x3x3 conv layer, their dilation, and the channels of the upsampling layer.
        mask_image_layers: refine the mask logits with the image sampled on the mask grid of each
            box, through 3x3x3 convolutions of these widths (:class:`ImageGuidedMaskPredictor3D`);
            None: torchvision's predictor.
        mask_image_standardize: also give those convolutions each box's image patch standardised
            (per box and channel), which does not depend on the volume's brightness and contrast.
        mask_image_margin: sample the image for those convolutions this many mask-grid cells beyond
            each face of the box (context outside the box; the logits stay on the box's grid).
        mask_dice_weight: add this times a soft Dice loss to the mask loss (0: cross-entropy alone).

    The backbone's outputs must all have the same number of channels (an FPN or a feature
    pyramid); a plain multi-stage body needs ``fpn``.
    """
    body = build_backbone(backbone, backbone_kwargs, fpn)
    label = backbone if isinstance(backbone, str) else backbone_label(body)
    levels = backbone_levels(body, name=label, out_channels=backbone_out_channels)
    names = list(levels.names)
    out_channels = levels.channels
    num_levels = len(names)

    in_channels = int((backbone_kwargs or {}).get("in_channels", getattr(body, "in_channels", 1)))
    image_mean = list(image_mean) if image_mean is not None else [0.0] * in_channels
    image_std = list(image_std) if image_std is not None else [1.0] * in_channels
    transform = DetectionTransform3D(
        image_mean=image_mean,
        image_std=image_std,
        size_divisibility=levels.size_divisibility,
        min_size=min_size,
        max_size=max_size,
        target_spacing=tuple(target_spacing) if target_spacing is not None else None,
    )

    anchor_cfg = dict(rpn_anchor_generator or {})
    unknown = set(anchor_cfg) - {"sizes", "aspect_ratios", "aspect_ratios_z"}
    if unknown:
        raise ValueError(
            f"rpn_anchor_generator: unknown keys {sorted(unknown)}; "
            f"valid: sizes, aspect_ratios, aspect_ratios_z"
        )
    sizes = anchor_cfg.get("sizes")
    if sizes is None:
        sizes = [(s,) for s in _DEFAULT_ANCHOR_SIZES[:num_levels]]
        sizes += [(_DEFAULT_ANCHOR_SIZES[-1] * 2 ** (i + 1),) for i in range(num_levels - len(sizes))]
    anchor_generator = AnchorGenerator3D(
        sizes=_per_level(sizes, num_levels, (), "rpn_anchor_generator.sizes"),
        aspect_ratios=_per_level(
            anchor_cfg.get("aspect_ratios"), num_levels, (0.5, 1.0, 2.0), "rpn_anchor_generator.aspect_ratios"
        ),
        aspect_ratios_z=_per_level(
            anchor_cfg.get("aspect_ratios_z"), num_levels, (1.0,), "rpn_anchor_generator.aspect_ratios_z"
        ),
    )
    num_anchors = anchor_generator.num_anchors_per_location()
    if len(set(num_anchors)) != 1:
        raise ValueError(
            f"rpn_anchor_generator: every level needs the same number of anchors per location "
            f"(one RPN head is shared), got {num_anchors}"
        )
    rpn = RegionProposalNetwork3D(
        anchor_generator=anchor_generator,
        head=RPNHead3D(in_channels=out_channels, num_anchors=num_anchors[0], conv_depth=rpn_conv_depth),
        fg_iou_thresh=rpn_fg_iou_thresh,
        bg_iou_thresh=rpn_bg_iou_thresh,
        batch_size_per_image=rpn_batch_size_per_image,
        positive_fraction=rpn_positive_fraction,
        pre_nms_top_n={"training": rpn_pre_nms_top_n_train, "testing": rpn_pre_nms_top_n_test},
        post_nms_top_n={"training": rpn_post_nms_top_n_train, "testing": rpn_post_nms_top_n_test},
        nms_thresh=rpn_nms_thresh,
        score_thresh=rpn_score_thresh,
        test_caps_shape=test_caps_shape,
    )

    roi_names = list(roi_featmap_names) if roi_featmap_names is not None else names[:4]
    missing = [n for n in roi_names if n not in names]
    if missing:
        raise ValueError(f"roi_featmap_names: {missing} are not outputs of backbone {label!r} ({names})")
    # a backbone that declares its strides gives exact scales even where padding makes shapes
    # ambiguous; without them (one undeclared level) the poolers infer them from the shapes
    roi_strides = None if levels.strides is None else [levels.strides[names.index(n)] for n in roi_names]
    box_pool = MultiScaleRoIAlign3D(
        featmap_names=roi_names,
        output_size=box_roi_output_size,
        sampling_ratio=box_roi_sampling_ratio,
        feature_strides=roi_strides,
    )
    box_out = box_pool.output_size
    box_head = TwoMLPHead3D(
        in_channels=out_channels * box_out[0] * box_out[1] * box_out[2],
        representation_size=box_representation_size,
    )
    mask_layers = list(mask_layers)
    if not mask_layers:
        raise ValueError("mask_layers: needs at least one conv layer width")
    roi_heads = RoIHeads3D(
        box_roi_pool=box_pool,
        box_head=box_head,
        box_predictor=FastRCNNPredictor3D(in_channels=box_representation_size, num_classes=num_classes),
        fg_iou_thresh=box_fg_iou_thresh,
        bg_iou_thresh=box_bg_iou_thresh,
        batch_size_per_image=box_batch_size_per_image,
        positive_fraction=box_positive_fraction,
        bbox_reg_weights=tuple(bbox_reg_weights) if bbox_reg_weights is not None else None,
        score_thresh=box_score_thresh,
        nms_thresh=box_nms_thresh,
        detections_per_img=box_detections_per_img,
        test_caps_shape=test_caps_shape,
        mask_roi_pool=MultiScaleRoIAlign3D(
            featmap_names=roi_names,
            output_size=mask_roi_output_size,
            sampling_ratio=mask_roi_sampling_ratio,
            feature_strides=roi_strides,
        ),
        mask_head=MaskRCNNHeads3D(in_channels=out_channels, layers=mask_layers, dilation=mask_dilation),
        mask_predictor=_mask_predictor(
            mask_layers[-1], mask_dim_reduced, num_classes, in_channels, mask_image_layers,
            mask_image_standardize, mask_image_margin,
        ),
        mask_dice_weight=mask_dice_weight,
    )
    return MaskRCNN3D(
        backbone=body, transform=transform, rpn=rpn, roi_heads=roi_heads, num_classes=num_classes
    )
