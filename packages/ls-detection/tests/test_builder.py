"""The ``ls.detectors`` registry and the ``maskrcnn3d`` builder."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ls_backbones import list_backbones
from ls_detection import DetectorRegistryError, create_detector, list_detectors


def test_maskrcnn3d_is_registered_and_listing_imports_no_model_module():
    assert "maskrcnn3d" in list_detectors()
    code = (
        "import sys, ls_detection; ls_detection.list_detectors(); "
        "print([m for m in sys.modules if m.startswith(('ls_detection.', 'ls_backbones.resnet'))])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['ls_detection.registry']"


def test_unknown_detector_lists_known_names_and_suggests():
    match = r"Did you mean 'maskrcnn3d'.*Known detectors: .*maskrcnn3d"
    with pytest.raises(DetectorRegistryError, match=match):
        create_detector("maskrcnn_3d", backbone="resnet3d_18_fpn", num_classes=2)


def test_unknown_keyword_names_the_detector():
    with pytest.raises(TypeError, match=r"create_detector\('maskrcnn3d'.*rpn_nms"):
        create_detector("maskrcnn3d", backbone="resnet3d_18_fpn", num_classes=2, rpn_nms=0.5)


def test_a_plain_body_needs_fpn_and_builds_with_it():
    with pytest.raises(ValueError, match=r"different channel counts.*fpn="):
        create_detector("maskrcnn3d", backbone="resnet3d_18", num_classes=2)
    model = create_detector(
        "maskrcnn3d", backbone="resnet3d_18", num_classes=3, fpn={"out_channels": 32},
        backbone_kwargs={"in_channels": 2}, mask_layers=(16,), mask_dim_reduced=16,
        box_representation_size=64,
    )  # fmt: skip
    assert model.num_classes == 3
    assert set(model.backbone.output_shape()) == {"p2", "p3", "p4", "p5", "p6"}


def test_anchor_settings_are_checked():
    with pytest.raises(ValueError, match=r"rpn_anchor_generator: unknown keys \['ratios'\]"):
        create_detector(
            "maskrcnn3d", backbone="resnet3d_18_fpn", num_classes=2, rpn_anchor_generator={"ratios": [1]}
        )
    with pytest.raises(ValueError, match=r"sizes: 2 entries for 5 feature levels"):
        create_detector(
            "maskrcnn3d",
            backbone="resnet3d_18_fpn",
            num_classes=2,
            rpn_anchor_generator={"sizes": [[8], [16]]},
        )


def test_roi_featmap_names_must_exist():
    with pytest.raises(ValueError, match=r"roi_featmap_names: \['p9'\]"):
        create_detector(
            "maskrcnn3d", backbone="resnet3d_18_fpn", num_classes=2, roi_featmap_names=["p2", "p9"]
        )


def test_the_test_caps_shape_reaches_the_rpn_and_the_roi_heads() -> None:
    model = create_detector(
        "maskrcnn3d", backbone="resnet3d_18_fpn", num_classes=2, test_caps_shape=[8, 32, 32]
    )
    assert model.rpn.test_caps_shape == (8, 32, 32) and model.roi_heads.test_caps_shape == (8, 32, 32)
    with pytest.raises(ValueError, match=r"test_caps_shape must be 3 positive ints .* got \[8, 32\]"):
        create_detector("maskrcnn3d", backbone="resnet3d_18_fpn", num_classes=2, test_caps_shape=[8, 32])


# every registered detector over every registered backbone (plugins included), built on the meta
# device (no memory, no weights): a backbone whose levels differ in width gets the FPN it asks for
WRAPPER_BACKBONES = {"fpn3d": {"body": "resnet3d_18"}}  # a backbone built over another one


def _detector_over(detector: str, backbone: str):
    import torch

    kwargs = {"backbone_kwargs": WRAPPER_BACKBONES[backbone]} if backbone in WRAPPER_BACKBONES else {}
    with torch.device("meta"):
        try:
            return create_detector(detector, backbone=backbone, num_classes=2, **kwargs)
        except ValueError as exc:
            if "different channel counts" not in str(exc):
                raise
            return create_detector(detector, backbone=backbone, num_classes=2, fpn={}, **kwargs)


@pytest.mark.parametrize("detector", list_detectors())
@pytest.mark.parametrize("backbone", list_backbones())
def test_every_detector_builds_over_every_backbone(detector: str, backbone: str) -> None:
    model = _detector_over(detector, backbone)
    levels = model.backbone.output_shape()
    assert levels and len({spec.channels for spec in levels.values()}) == 1, levels
    assert all(p.device.type == "meta" for p in model.parameters())
