"""``maskrcnn3d``: build a 3-D Mask R-CNN over any ``ls.backbones`` backbone.

Every scalar argument is one config key, and its default in the signature of :func:`maskrcnn3d`
is the only one (``ls-train``'s ``models/maskrcnn_fpn.yaml`` repeats them so that command lines can
override them; a test keeps the two equal). Defaults follow torchvision's Mask R-CNN where that
suits 3-D crops; the anchor sizes default to 8..128 voxels (one size per pyramid level), which
suits nuclei and cells in typical light-sheet crops. As torchvision's ``MaskRCNN`` does, the
builder also takes modules (anchor generator, RPN head, RoI poolers, heads and predictors) in
place of the parts it would build from the scalars.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from ls_backbones import BackboneWithFPN3D, Triple, create_backbone
from ls_detection.anchors import AnchorGenerator3D
from ls_detection.backbone_levels import BackboneLevels, backbone_label, backbone_levels
from ls_detection.box_head import FastRCNNPredictor3D, TwoMLPHead3D
from ls_detection.mask_head import ImageGuidedMaskPredictor3D, MaskRCNNHeads3D, MaskRCNNPredictor3D
from ls_detection.maskrcnn import MaskRCNN3D
from ls_detection.poolers import MultiScaleRoIAlign3D
from ls_detection.roi_heads import RoIHeads3D
from ls_detection.rpn import RegionProposalNetwork3D, RPNHead3D
from ls_detection.transform import DetectionTransform3D

__all__ = ["ANCHOR_DEFAULTS", "build_backbone", "maskrcnn3d"]

_DEFAULT_ANCHOR_SIZES = (8.0, 16.0, 32.0, 64.0, 128.0)

ANCHOR_DEFAULTS: dict[str, Any] = {"sizes": None, "aspect_ratios": (0.5, 1.0, 2.0), "aspect_ratios_z": (1.0,)}
"""The keys of ``rpn_anchor_generator`` and their defaults (``sizes`` None: one size per pyramid
level, 8..128 voxels, doubling beyond the fifth level)."""

_BUILT_FROM: dict[tuple[str, ...], tuple[str, ...]] = {
    ("rpn_head",): ("rpn_conv_depth",),
    ("box_roi_pool",): ("box_roi_output_size", "box_roi_sampling_ratio"),
    ("box_roi_pool", "mask_roi_pool"): ("roi_featmap_names",),
    ("box_head", "box_predictor"): ("box_representation_size",),
    ("mask_roi_pool",): ("mask_roi_output_size", "mask_roi_sampling_ratio"),
    ("mask_head",): ("mask_layers", "mask_dilation"),
    ("mask_predictor",): (
        "mask_dim_reduced", "mask_image_layers", "mask_image_standardize", "mask_image_margin"
    ),
}
"""The scalar arguments that only build a part, by the module arguments that replace it."""
_MODULES = (
    "rpn_head", "box_roi_pool", "box_head", "box_predictor", "mask_roi_pool", "mask_head", "mask_predictor"
)


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
    rpn_anchor_generator: Mapping[str, Any] | AnchorGenerator3D | None = None,
    rpn_head: nn.Module | None = None,
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
    box_roi_pool: nn.Module | None = None,
    box_head: nn.Module | None = None,
    box_predictor: nn.Module | None = None,
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
    mask_roi_pool: nn.Module | None = None,
    mask_head: nn.Module | None = None,
    mask_predictor: nn.Module | None = None,
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
            or one flat list for every level (:data:`ANCHOR_DEFAULTS`); or the generator itself
            (one level of anchors per feature level, as many per location on each).
        rpn_head: per-level features -> objectness logits and box deltas (:class:`RPNHead3D`'s
            interface); None: an :class:`RPNHead3D` with ``rpn_conv_depth`` convolutions.
        rpn_*: region proposal network settings (torchvision's meanings).
        test_caps_shape: ``(Z, Y, X)`` of the image (as the detector sees it, after any resize)
            for which ``rpn_pre_nms_top_n_test``, ``rpn_post_nms_top_n_test`` and
            ``box_detections_per_img`` are given; at test time every image gets them scaled by
            its voxel count (:mod:`ls_detection.caps`), so larger tiles keep as many objects per
            voxel. None: the same counts for every image.
        roi_featmap_names: pyramid levels the RoI heads pool from (default: the first four).
        box_roi_pool, mask_roi_pool: the RoI poolers (:class:`MultiScaleRoIAlign3D`'s interface);
            None: built from ``roi_featmap_names`` and the ``*_roi_output_size`` and
            ``*_roi_sampling_ratio`` of their branch. A box pooler without ``output_size`` needs
            ``box_head``.
        box_head: pooled features -> ``(K, box_representation_size)`` (:class:`TwoMLPHead3D`'s
            interface); None: a :class:`TwoMLPHead3D`.
        box_predictor: ``(K, box_representation_size)`` -> class logits ``(K, num_classes)`` and
            deltas ``(K, 6 * num_classes)``; None: a :class:`FastRCNNPredictor3D`.
        box_*, bbox_reg_weights: box head settings (torchvision's meanings).
        mask_head: pooled mask features -> features of ``mask_head.out_channels`` channels
            (needed unless ``mask_predictor`` is given); None: a :class:`MaskRCNNHeads3D`.
        mask_predictor: mask features -> mask logits (:class:`MaskRCNNPredictor3D`'s or
            :class:`ImageGuidedMaskPredictor3D`'s interface); None: built from ``mask_dim_reduced``
            and ``mask_image_*``.
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

    A module given is used as is; the scalar arguments that would only build it must keep their
    defaults (ValueError naming both otherwise). The widths and class counts of this package's
    heads and predictors are checked against the backbone, ``num_classes`` and each other.

    The backbone's outputs must all have the same number of channels (an FPN or a feature
    pyramid); a plain multi-stage body needs ``fpn``.
    """
    args = dict(locals())
    _check_modules(args)
    body = build_backbone(backbone, backbone_kwargs, fpn)
    label = backbone if isinstance(backbone, str) else backbone_label(body)
    levels = backbone_levels(body, name=label, out_channels=backbone_out_channels)
    in_channels = int((backbone_kwargs or {}).get("in_channels", getattr(body, "in_channels", 1)))
    transform = _transform(args, levels, in_channels)
    anchors = _anchor_generator(rpn_anchor_generator, len(levels.names))
    rpn = _rpn(args, anchors, levels.channels)
    roi_heads = _roi_heads(args, levels, label, in_channels)
    return MaskRCNN3D(
        backbone=body, transform=transform, rpn=rpn, roi_heads=roi_heads, num_classes=num_classes
    )


@functools.cache
def _defaults() -> dict[str, Any]:
    return {k: p.default for k, p in inspect.signature(maskrcnn3d).parameters.items()}


def _same(value: Any, default: Any) -> bool:
    """Whether an argument equals its default (a list equals the tuple of the same items)."""
    if isinstance(value, Sequence) and isinstance(default, Sequence) and not isinstance(value, str):
        return len(value) == len(default) and all(map(_same, value, default))
    return value == default


def _check_modules(args: Mapping[str, Any]) -> None:
    """Modules are modules, and no scalar argument is set that only builds a part given as a module."""
    for key in _MODULES:
        if args[key] is not None and not isinstance(args[key], nn.Module):
            raise ValueError(f"maskrcnn3d: {key} must be a torch.nn.Module, got {type(args[key]).__name__}")
    for modules, scalars in _BUILT_FROM.items():
        if any(args[m] is None for m in modules):
            continue
        for key in scalars:
            if not _same(args[key], _defaults()[key]):
                given = " and ".join(modules) + (" are" if len(modules) > 1 else " is")
                raise ValueError(f"maskrcnn3d: {given} given, so {key} is unused; leave it at its "
                                 f"default {_defaults()[key]!r} (got {args[key]!r})")


def _transform(args: Mapping[str, Any], levels: BackboneLevels, in_channels: int) -> DetectionTransform3D:
    mean, std, spacing = args["image_mean"], args["image_std"], args["target_spacing"]
    return DetectionTransform3D(
        image_mean=list(mean) if mean is not None else [0.0] * in_channels,
        image_std=list(std) if std is not None else [1.0] * in_channels,
        size_divisibility=levels.size_divisibility,
        min_size=args["min_size"],
        max_size=args["max_size"],
        target_spacing=tuple(spacing) if spacing is not None else None,
    )


def _anchor_generator(spec: Mapping[str, Any] | AnchorGenerator3D | None, num_levels: int) -> nn.Module:
    """The generator given, or one built from its keyword arguments; one level per feature level."""
    if isinstance(spec, nn.Module):
        generator = spec
        if isinstance(spec, AnchorGenerator3D) and len(spec.sizes) != num_levels:
            raise ValueError(f"rpn_anchor_generator: anchors for {len(spec.sizes)} levels, but the "
                             f"backbone has {num_levels} feature levels")
    else:
        generator = _built_anchor_generator(dict(spec or {}), num_levels)
    num_anchors = generator.num_anchors_per_location()
    if len(set(num_anchors)) != 1:
        raise ValueError(
            f"rpn_anchor_generator: every level needs the same number of anchors per location "
            f"(one RPN head is shared), got {num_anchors}"
        )
    return generator


def _built_anchor_generator(spec: dict[str, Any], num_levels: int) -> AnchorGenerator3D:
    unknown = set(spec) - set(ANCHOR_DEFAULTS)
    if unknown:
        raise ValueError(
            f"rpn_anchor_generator: unknown keys {sorted(unknown)}; valid: {', '.join(ANCHOR_DEFAULTS)}"
        )
    sizes = spec.get("sizes")
    if sizes is None:
        sizes = [(s,) for s in _DEFAULT_ANCHOR_SIZES[:num_levels]]
        sizes += [(_DEFAULT_ANCHOR_SIZES[-1] * 2 ** (i + 1),) for i in range(num_levels - len(sizes))]
    per_level = {
        key: _per_level(spec.get(key), num_levels, ANCHOR_DEFAULTS[key], f"rpn_anchor_generator.{key}")
        for key in ("aspect_ratios", "aspect_ratios_z")
    }
    return AnchorGenerator3D(
        sizes=_per_level(sizes, num_levels, (), "rpn_anchor_generator.sizes"), **per_level
    )


def _rpn(args: Mapping[str, Any], anchors: nn.Module, channels: int) -> RegionProposalNetwork3D:
    num_anchors = anchors.num_anchors_per_location()[0]
    head = args["rpn_head"]
    if head is None:
        head = RPNHead3D(in_channels=channels, num_anchors=num_anchors, conv_depth=args["rpn_conv_depth"])
    _check_width(head, "rpn_head", channels, "the backbone's channels")
    if isinstance(head, RPNHead3D) and head.cls_logits.out_channels != num_anchors:
        raise ValueError(f"maskrcnn3d: rpn_head predicts {head.cls_logits.out_channels} anchors per "
                         f"location, but rpn_anchor_generator gives {num_anchors}")
    return RegionProposalNetwork3D(
        anchor_generator=anchors,
        head=head,
        pre_nms_top_n=_train_test(args, "rpn_pre_nms_top_n"),
        post_nms_top_n=_train_test(args, "rpn_post_nms_top_n"),
        test_caps_shape=args["test_caps_shape"],
        **_prefixed(args, "rpn_", ("fg_iou_thresh", "bg_iou_thresh", "batch_size_per_image",
                                   "positive_fraction", "nms_thresh", "score_thresh")),
    )


def _train_test(args: Mapping[str, Any], key: str) -> dict[str, Any]:
    return {"training": args[f"{key}_train"], "testing": args[f"{key}_test"]}


def _prefixed(args: Mapping[str, Any], prefix: str, keys: Sequence[str]) -> dict[str, Any]:
    """``{key: args[prefix + key]}``: the settings a part takes under its own names."""
    return {key: args[prefix + key] for key in keys}


def _roi_heads(
    args: Mapping[str, Any], levels: BackboneLevels, label: str, in_channels: int
) -> RoIHeads3D:
    names, strides = _roi_levels(args, levels, label)
    box_parts = _box_branch(args, levels.channels, names, strides)
    weights = args["bbox_reg_weights"]
    return RoIHeads3D(
        **box_parts,
        bbox_reg_weights=tuple(weights) if weights is not None else None,
        test_caps_shape=args["test_caps_shape"],
        **_prefixed(args, "box_", ("fg_iou_thresh", "bg_iou_thresh", "batch_size_per_image",
                                   "positive_fraction", "score_thresh", "nms_thresh", "detections_per_img")),
        **_mask_branch(args, levels.channels, names, strides, in_channels),
        mask_dice_weight=args["mask_dice_weight"],
    )


def _roi_levels(
    args: Mapping[str, Any], levels: BackboneLevels, label: str
) -> tuple[list[str], list[Triple] | None]:
    """The levels the RoI poolers read, and their strides when the backbone declares them."""
    names = list(levels.names)
    given = args["roi_featmap_names"]
    roi_names = list(given) if given is not None else names[:4]
    missing = [n for n in roi_names if n not in names]
    if missing:
        raise ValueError(f"roi_featmap_names: {missing} are not outputs of backbone {label!r} ({names})")
    # a backbone that declares its strides gives exact scales even where padding makes shapes
    # ambiguous; without them (one undeclared level) the poolers infer them from the shapes
    strides = None if levels.strides is None else [levels.strides[names.index(n)] for n in roi_names]
    return roi_names, strides


def _pooler(
    args: Mapping[str, Any], branch: str, names: list[str], strides: list[Triple] | None
) -> nn.Module:
    """The ``{branch}_roi_pool`` given, or a :class:`MultiScaleRoIAlign3D` from its settings."""
    if args[f"{branch}_roi_pool"] is not None:
        return args[f"{branch}_roi_pool"]
    return MultiScaleRoIAlign3D(
        featmap_names=names,
        output_size=args[f"{branch}_roi_output_size"],
        sampling_ratio=args[f"{branch}_roi_sampling_ratio"],
        feature_strides=strides,
    )


def _box_branch(
    args: Mapping[str, Any], channels: int, names: list[str], strides: list[Triple] | None
) -> dict[str, nn.Module]:
    """The box pooler, head and predictor (created in this order: a seed gives the same weights)."""
    pool = _pooler(args, "box", names, strides)
    size = getattr(pool, "output_size", None)
    pooled = None if size is None else channels * size[0] * size[1] * size[2]
    head = args["box_head"]
    if head is None:
        if pooled is None:
            raise ValueError("maskrcnn3d: box_roi_pool has no output_size to size the box head; "
                             "give box_head")
        head = TwoMLPHead3D(in_channels=pooled, representation_size=args["box_representation_size"])
    elif pooled is not None:
        _check_width(head, "box_head", pooled, "the backbone's channels x the box pooler's output_size")
    return {"box_roi_pool": pool, "box_head": head, "box_predictor": _box_predictor(args, head)}


def _box_predictor(args: Mapping[str, Any], head: nn.Module) -> nn.Module:
    """The predictor given or built, over the representation that ``head`` gives."""
    width, source = args["box_representation_size"], "box_representation_size"
    if args["box_head"] is not None and isinstance(head, TwoMLPHead3D):
        if args["box_predictor"] is None and head.fc7.out_features != width:
            raise ValueError(f"maskrcnn3d: box_head gives {head.fc7.out_features} features per RoI, but "
                             f"box_representation_size is {width} (the input of the box predictor)")
        width, source = head.fc7.out_features, "box_head's output"
    predictor = args["box_predictor"]
    if predictor is None:
        predictor = FastRCNNPredictor3D(in_channels=width, num_classes=args["num_classes"])
    elif args["box_head"] is None or isinstance(head, TwoMLPHead3D):
        _check_width(predictor, "box_predictor", width, source)
    _check_classes(predictor, "box_predictor", args["num_classes"])
    return predictor


def _mask_branch(
    args: Mapping[str, Any], channels: int, names: list[str], strides: list[Triple] | None,
    in_channels: int,
) -> dict[str, nn.Module]:
    """The mask pooler, head and predictor (created in this order: a seed gives the same weights)."""
    pool = _pooler(args, "mask", names, strides)
    head = args["mask_head"]
    if head is None:
        layers = list(args["mask_layers"])
        if not layers:
            raise ValueError("mask_layers: needs at least one conv layer width")
        head = MaskRCNNHeads3D(in_channels=channels, layers=layers, dilation=args["mask_dilation"])
    _check_width(head, "mask_head", channels, "the backbone's channels")
    predictor = args["mask_predictor"]
    width = getattr(head, "out_channels", None)
    if predictor is None:
        if width is None:
            raise ValueError("maskrcnn3d: mask_head declares no out_channels to size the mask predictor; "
                             "give mask_predictor")
        predictor = _mask_predictor(args, int(width), in_channels)
    elif width is not None:
        _check_width(predictor, "mask_predictor", int(width), "mask_head.out_channels")
    _check_classes(predictor, "mask_predictor", args["num_classes"])
    if isinstance(predictor, ImageGuidedMaskPredictor3D) and predictor.image_channels != in_channels:
        raise ValueError(f"maskrcnn3d: mask_predictor reads {predictor.image_channels} image channels, "
                         f"but the images have {in_channels}")
    return {"mask_roi_pool": pool, "mask_head": head, "mask_predictor": predictor}


def _mask_predictor(args: Mapping[str, Any], width: int, image_channels: int) -> nn.Module:
    image_layers, standardize, margin = (args[f"mask_image_{k}"] for k in ("layers", "standardize", "margin"))
    common = {"in_channels": width, "dim_reduced": args["mask_dim_reduced"],
              "num_classes": args["num_classes"]}
    if image_layers is None:
        for key, value in (("mask_image_standardize", standardize), ("mask_image_margin", margin)):
            if value:
                raise ValueError(f"maskrcnn3d: {key} needs mask_image_layers (the image-guided mask "
                                 "predictor)")
        return MaskRCNNPredictor3D(**common)
    return ImageGuidedMaskPredictor3D(**common, image_channels=image_channels, layers=list(image_layers),
                                      standardize=standardize, margin=margin)


# the layer that reads the input of each head and predictor of this package (others are not checked)
_INPUT_LAYERS = ((RPNHead3D, "cls_logits"), (TwoMLPHead3D, "fc6"), (FastRCNNPredictor3D, "cls_score"),
                 (MaskRCNNPredictor3D, "conv5_mask"), (ImageGuidedMaskPredictor3D, "upsample"))


def _input_width(module: nn.Module) -> int | None:
    """Input channels (or features) of a head or predictor of this package; None for another module."""
    if isinstance(module, MaskRCNNHeads3D):
        return module[0][0].in_channels
    for cls, name in _INPUT_LAYERS:
        if isinstance(module, cls):
            layer = getattr(module, name)
            return getattr(layer, "in_channels", getattr(layer, "in_features", None))
    return None


def _check_width(module: nn.Module, key: str, expected: int, source: str) -> None:
    width = _input_width(module)
    if width is not None and width != expected:
        raise ValueError(f"maskrcnn3d: {key} takes {width} input channels, but gets {expected} ({source})")


def _check_classes(predictor: nn.Module, key: str, num_classes: int) -> None:
    """A predictor's class count (its ``cls_score`` or ``mask_fcn_logits`` layer) is ``num_classes``."""
    for name in ("cls_score", "mask_fcn_logits"):
        layer = getattr(predictor, name, None)
        count = getattr(layer, "out_features", getattr(layer, "out_channels", None))
        if isinstance(count, int) and count != num_classes:
            raise ValueError(f"maskrcnn3d: {key} predicts {count} classes, but num_classes is {num_classes} "
                             f"(background included)")
