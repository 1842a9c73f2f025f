"""ls-detection: 3-D Mask R-CNN for light-sheet volumes over any registered backbone.

Build a detector by name (the ``ls.detectors`` entry-point group) over any ``ls.backbones``
backbone::

    import ls_detection
    model = ls_detection.create_detector(
        "maskrcnn3d", backbone="resnet3d_18_fpn", num_classes=2, backbone_kwargs={"in_channels": 1}
    )
    losses = model(images, targets)          # train mode: dict of the five losses
    model.eval(); predictions = model(images)  # eval mode: boxes, labels, scores, masks
    # masks in box coordinates, painted into one label volume without dense (N, Z, Y, X) masks
    (pred,) = model.predict(images, paste_masks=False)
    labels, order = ls_detection.paste_masks_into_label_volume(
        pred["masks"], pred["boxes"], pred["scores"], images[0].shape[-3:]
    )

Model modules are imported on first use, so ``import ls_detection`` stays cheap.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from ls_core import lazy_exports
from ls_detection.registry import (
    DetectorRegistryError,
    create_detector,
    get_detector_builder,
    list_detectors,
)

try:
    __version__ = version("ls-detection")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

# public name -> module that defines it (imported lazily by __getattr__)
_LAZY = {
    "MaskRCNN3D": "maskrcnn",
    "maskrcnn3d": "builder",
    "build_backbone": "builder",
    "BackboneLevels": "backbone_levels",
    "backbone_levels": "backbone_levels",
    "feature_levels": "backbone_levels",
    "DetectionTransform3D": "transform",
    "ImageList3D": "image_list",
    "AnchorGenerator3D": "anchors",
    "BoxCoder3D": "box_coder",
    "RPNHead3D": "rpn",
    "RegionProposalNetwork3D": "rpn",
    "MultiScaleRoIAlign3D": "poolers",
    "TwoMLPHead3D": "box_head",
    "FastRCNNPredictor3D": "box_head",
    "MaskRCNNHeads3D": "mask_head",
    "MaskRCNNPredictor3D": "mask_head",
    "ImageGuidedMaskPredictor3D": "mask_head",
    "RoIHeads3D": "roi_heads",
    "paste_masks_in_volume": "postprocess",
    "paint_instances": "postprocess",
    "paste_masks_into_label_volume": "postprocess",
    "predictions_to_label_volume": "postprocess",
    "visible_ranking": "postprocess",
    "clip_boxes_to_volume": "boxes",
    "remove_small_boxes3d": "boxes",
}

__all__ = [
    "AnchorGenerator3D",
    "BackboneLevels",
    "BoxCoder3D",
    "DetectionTransform3D",
    "DetectorRegistryError",
    "FastRCNNPredictor3D",
    "ImageGuidedMaskPredictor3D",
    "ImageList3D",
    "MaskRCNN3D",
    "MaskRCNNHeads3D",
    "MaskRCNNPredictor3D",
    "MultiScaleRoIAlign3D",
    "RPNHead3D",
    "RegionProposalNetwork3D",
    "RoIHeads3D",
    "TwoMLPHead3D",
    "__version__",
    "backbone_levels",
    "build_backbone",
    "clip_boxes_to_volume",
    "create_detector",
    "feature_levels",
    "get_detector_builder",
    "list_detectors",
    "maskrcnn3d",
    "paint_instances",
    "paste_masks_in_volume",
    "paste_masks_into_label_volume",
    "predictions_to_label_volume",
    "remove_small_boxes3d",
    "visible_ranking",
]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
