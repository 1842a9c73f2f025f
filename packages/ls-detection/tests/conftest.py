"""Fixtures of the detector tests: a small CPU-sized Mask R-CNN and synthetic ellipsoid scenes.

Test modules are imported in importlib mode and cannot import each other, so the helpers reach
them as fixtures (``small_detector``, ``scene``, ``ellipsoid_scene``, ``mask_iou``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
import torch
from torch import Tensor

# A ResNet3D-18-FPN small enough for CPU tests, anisotropic like light-sheet data: the stem
# subsamples y and x only, so z keeps twice the resolution (in voxels) of y and x; stages p2..p4
# (layer4 and its 512-channel convolutions are not built) and the extra max-pooled level.
SMALL_BACKBONE: dict[str, Any] = {
    "in_channels": 1,
    "stem_out_channels": 16,
    "stem_stride": (1, 2, 2),
    "pool_stride": (2, 2, 2),
    "out_features": ("p2", "p3", "p4"),
    "norm": "gn",
    "fpn_out_channels": 32,
}

SMALL_HEADS: dict[str, Any] = {
    "rpn_anchor_generator": {"sizes": [(8,), (16,), (32,), (64,)], "aspect_ratios_z": (0.5,)},
    "rpn_pre_nms_top_n_train": 300,
    "rpn_post_nms_top_n_train": 150,
    "rpn_pre_nms_top_n_test": 200,
    "rpn_post_nms_top_n_test": 60,
    "rpn_batch_size_per_image": 64,
    "box_batch_size_per_image": 64,
    "box_representation_size": 128,
    "mask_roi_output_size": 7,
    "mask_layers": (32, 32),
    "mask_dim_reduced": 32,
}


def _small_detector(num_classes: int = 2, **overrides: Any):
    from ls_detection import create_detector

    kwargs: dict[str, Any] = {
        "backbone": "resnet3d_18_fpn",
        "num_classes": num_classes,
        "backbone_kwargs": dict(SMALL_BACKBONE),
        **SMALL_HEADS,
    }
    kwargs.update(overrides)
    return create_detector("maskrcnn3d", **kwargs)


def ellipsoid_scene(
    shape: Sequence[int],
    centres: Sequence[Sequence[float]],
    radii: Sequence[Sequence[float]],
    labels: Sequence[int] | None = None,
    *,
    noise: float = 0.05,
    seed: int = 0,
) -> tuple[Tensor, dict[str, Tensor]]:
    """A (1, Z, Y, X) image with one bright ellipsoid per centre, and its target dict."""
    gen = torch.Generator().manual_seed(seed)
    z, y, x = torch.meshgrid(*(torch.arange(s, dtype=torch.float32) + 0.5 for s in shape), indexing="ij")
    masks = []
    for (cz, cy, cx), (rz, ry, rx) in zip(centres, radii, strict=True):
        masks.append(((z - cz) / rz) ** 2 + ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1.0)
    mask_t = torch.stack(masks).to(torch.uint8)
    image = mask_t.amax(0, keepdim=True).float() + noise * torch.randn((1, *shape), generator=gen)
    boxes = []
    for m in mask_t.bool():
        idx = [torch.nonzero(m.any(dim=tuple(d for d in range(3) if d != a))).flatten() for a in range(3)]
        boxes.append([float(i[0]) for i in idx] + [float(i[-1] + 1) for i in idx])
    target = {
        "boxes": torch.tensor(boxes, dtype=torch.float32),
        "labels": torch.tensor(labels if labels is not None else [1] * len(masks), dtype=torch.int64),
        "masks": mask_t,
    }
    return image, target


def default_scene(seed: int = 0) -> tuple[Tensor, dict[str, Tensor]]:
    """Four separated ellipsoids in a 16 x 64 x 64 volume (flatter in z, as in light-sheet data)."""
    return ellipsoid_scene(
        (16, 64, 64),
        centres=[(5, 16, 16), (10, 16, 46), (7, 46, 18), (9, 44, 44)],
        radii=[(3, 7, 7), (3, 6, 8), (4, 8, 6), (3, 7, 7)],
        seed=seed,
    )


def mask_iou(a: Tensor, b: Tensor) -> float:
    a, b = a.bool(), b.bool()
    union = (a | b).sum().item()
    return (a & b).sum().item() / union if union else 0.0


@pytest.fixture
def small_detector():
    """Factory: ``small_detector(num_classes=2, **overrides)``."""
    return _small_detector


@pytest.fixture
def scene():
    """Factory: ``scene(seed=0)`` -> the default four-object scene."""
    return default_scene


@pytest.fixture(name="ellipsoid_scene")
def ellipsoid_scene_fixture():
    return ellipsoid_scene


@pytest.fixture(name="mask_iou")
def mask_iou_fixture():
    return mask_iou
