"""random_elastic: a smooth random deformation of image and masks together."""

from __future__ import annotations

import pytest
import torch

from ls_data.errors import DataError
from ls_data.transforms import RandomElastic3D, boxes_from_masks, build_transforms
from ls_data.transforms.elastic import displacement_field, warp


def make_sample(shape: tuple[int, int, int] = (8, 24, 28), seed: int = 0) -> tuple[torch.Tensor, dict, dict]:
    """A smooth two-channel image and three box instances (one of 2 voxels) with per-instance meta."""
    gen = torch.Generator().manual_seed(seed)
    image = torch.nn.functional.avg_pool3d(torch.rand((2, *shape), generator=gen)[None], 3, 1, 1)[0] * 50
    masks = torch.zeros((3, *shape), dtype=torch.uint8)
    masks[0, 2:6, 4:12, 5:15] = 1
    masks[1, 3:7, 14:22, 12:25] = 1
    masks[2, 0, 0, 0:2] = 1  # tiny: below min_voxels after any move
    target = {"boxes": boxes_from_masks(masks), "labels": torch.tensor([1, 2, 1]), "masks": masks}
    meta = {"spacing": (2.0, 0.5, 0.5), "label_ids": [5, 6, 7]}
    return image, target, meta


def seeded(transform: RandomElastic3D, seed: int = 0) -> RandomElastic3D:
    transform.generator = torch.Generator().manual_seed(seed)
    return transform


def test_warp_by_a_constant_field_shifts_along_the_right_axes() -> None:
    volume = torch.arange(4 * 5 * 6, dtype=torch.float32).reshape(1, 4, 5, 6)
    field = torch.zeros((3, 4, 5, 6))
    field[0], field[1], field[2] = 1.0, -1.0, 2.0  # a voxel takes the value 1 z on, 1 y back, 2 x on
    for mode in ("bilinear", "nearest"):
        out = warp(volume, field, mode)
        torch.testing.assert_close(out[0, :3, 1:, :4], volume[0, 1:, :4, 2:])
        torch.testing.assert_close(out[0, 3], out[0, 2])  # outside: the border repeats


def test_the_field_is_smooth_and_bounded_by_the_magnitude() -> None:
    gen = torch.Generator().manual_seed(1)
    field = displacement_field((8, 24, 28), (2, 4, 4), (0.5, 2.0, 3.0), gen)
    assert field.shape == (3, 8, 24, 28)
    for axis, bound in enumerate((0.5, 2.0, 3.0)):
        assert float(field[axis].abs().max()) <= bound + 1e-6
        assert float(field[axis].abs().max()) > bound / 4  # not all zero
    # neighbouring voxels move alike: at most magnitude * 2 / voxels per cell apart
    assert float((field[:, :, 1:] - field[:, :, :-1]).abs().max()) <= 2 * 3.0 / 6 + 1e-5


def test_no_displacement_is_the_identity() -> None:
    image, target, meta = make_sample()
    out, t, m = seeded(RandomElastic3D(magnitude=0.0, p=1.0, min_voxels=1))(image, target, meta)
    torch.testing.assert_close(out, image)
    assert torch.equal(t["masks"], target["masks"]) and torch.equal(t["boxes"], target["boxes"])
    assert m == meta


def test_image_and_masks_move_together_and_targets_follow() -> None:
    image, target, meta = make_sample()
    out, t, m = seeded(RandomElastic3D(magnitude=(0.5, 2.0, 2.0), cells=(2, 3, 3), p=1.0, min_voxels=4))(
        image, target, meta
    )
    assert out.shape == image.shape and out.dtype == image.dtype
    assert not torch.allclose(out, image)
    masks = t["masks"]
    assert masks.dtype == torch.uint8 and set(masks.unique().tolist()) <= {0, 1}
    assert masks.shape[0] == 2  # the 2-voxel instance is dropped
    assert torch.equal(t["boxes"], boxes_from_masks(masks))
    assert t["labels"].tolist() == [1, 2] and m["label_ids"] == [5, 6] and m["spacing"] == meta["spacing"]
    for moved, before in zip(masks, target["masks"][:2], strict=True):
        assert not torch.equal(moved, before)
        assert abs(int(moved.sum()) - int(before.sum())) < 0.3 * int(before.sum())  # deformed, not lost
    # the masks are moved exactly as a label image made of the same values would be
    field = displacement_field(image.shape[1:], (2, 3, 3), (0.5, 2.0, 2.0), torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, warp(image, field, "bilinear"))
    assert torch.equal(masks, warp(target["masks"][:2], field, "nearest"))


def test_same_generator_same_result_and_probability() -> None:
    image, target, meta = make_sample()
    a = seeded(RandomElastic3D(p=1.0), 3)(image, target, meta)
    b = seeded(RandomElastic3D(p=1.0), 3)(image, target, meta)
    c = seeded(RandomElastic3D(p=1.0), 4)(image, target, meta)
    assert torch.equal(a[0], b[0]) and not torch.equal(a[0], c[0])
    out, t, _ = seeded(RandomElastic3D(p=0.0))(image, target, meta)
    assert torch.equal(out, image) and torch.equal(t["masks"], target["masks"])


def test_built_by_name_and_bad_arguments_are_refused() -> None:
    entry = {"name": "random_elastic", "magnitude": [0.5, 2, 2], "p": 0.3}
    (transform,) = build_transforms([entry]).transforms
    assert isinstance(transform, RandomElastic3D) and transform.magnitude == (0.5, 2.0, 2.0)
    for kwargs, match in (
        ({"magnitude": -1.0}, "magnitude"),
        ({"magnitude": [1, 2]}, "magnitude"),
        ({"cells": 0}, "cells"),
        ({"min_voxels": 0}, "min_voxels"),
    ):
        with pytest.raises(DataError, match=match):
            RandomElastic3D(**kwargs)
    image, target, meta = make_sample()
    with pytest.raises(DataError, match="floating-point"):
        RandomElastic3D(p=1.0)(image.to(torch.int32), target, meta)
