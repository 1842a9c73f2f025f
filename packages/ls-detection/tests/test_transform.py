"""DetectionTransform3D: validation, normalisation, resizing, padding, batching, postprocess."""

from __future__ import annotations

import pytest
import torch

from ls_detection.image_list import ImageList3D
from ls_detection.transform import DetectionTransform3D


def make_target(size: tuple[int, int, int], boxes: list[list[float]]) -> dict[str, torch.Tensor]:
    masks = torch.zeros((len(boxes), *size), dtype=torch.uint8)
    for i, (z1, y1, x1, z2, y2, x2) in enumerate(boxes):
        masks[i, int(z1):int(z2), int(y1):int(y2), int(x1):int(x2)] = 1
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 6),
            "labels": torch.ones(len(boxes), dtype=torch.int64), "masks": masks}


def plain(**kwargs: object) -> DetectionTransform3D:
    args: dict = {"image_mean": [0.0], "image_std": [1.0], "size_divisibility": 1, **kwargs}
    return DetectionTransform3D(**args)


def test_normalisation_per_channel() -> None:
    t = DetectionTransform3D(image_mean=[1.0, -2.0], image_std=[2.0, 0.5], size_divisibility=1)
    image = torch.stack([torch.full((2, 3, 4), 5.0), torch.full((2, 3, 4), -1.0)])
    images, targets = t([image])
    assert targets is None and isinstance(images, ImageList3D)
    assert images.tensors.shape == (1, 2, 2, 3, 4) and images.image_sizes == [(2, 3, 4)]
    assert torch.all(images.tensors[0, 0] == 2.0) and torch.all(images.tensors[0, 1] == 2.0)


def test_padding_to_anisotropic_divisibility() -> None:
    t = plain(size_divisibility=(4, 32, 32))
    image = torch.rand(1, 5, 33, 40) + 1
    images, _ = t([image])
    assert images.tensors.shape == (1, 1, 8, 64, 64) and images.image_sizes == [(5, 33, 40)]
    torch.testing.assert_close(images.tensors[0, :, :5, :33, :40], image)
    assert images.tensors[0, :, 5:].abs().sum() == 0 and images.tensors[0, :, :, 33:].abs().sum() == 0
    assert images.tensors[0, :, :, :, 40:].abs().sum() == 0


def test_batching_images_of_different_sizes() -> None:
    t = plain(size_divisibility=(2, 8, 8))
    a, b = torch.rand(1, 3, 8, 10), torch.rand(1, 5, 7, 4)
    ta, tb = make_target((3, 8, 10), [[0, 1, 2, 3, 5, 9]]), make_target((5, 7, 4), [])
    images, targets = t([a, b], [ta, tb])
    assert images.tensors.shape == (2, 1, 6, 8, 16) and images.image_sizes == [(3, 8, 10), (5, 7, 4)]
    torch.testing.assert_close(images.tensors[1, :, :5, :7, :4], b)
    assert images.tensors[1, :, :, :, 4:].abs().sum() == 0
    assert targets is not None and targets[1]["boxes"].shape == (0, 6)
    assert targets[1]["masks"].shape == (0, 5, 7, 4)
    torch.testing.assert_close(targets[0]["boxes"], ta["boxes"])


def test_targets_are_copied_and_converted() -> None:
    target = make_target((4, 6, 6), [[0, 0, 0, 2, 3, 4]])
    target["labels"] = target["labels"].to(torch.int32)
    target["masks"] = target["masks"].bool()
    target["boxes"] = target["boxes"].double()
    target["image_id"] = torch.tensor(7)
    _, (out,) = plain(min_size=8, max_size=20)([torch.rand(1, 4, 6, 6)], [target])
    assert out["boxes"].dtype == torch.float32 and out["labels"].dtype == torch.int64
    assert out["masks"].dtype == torch.uint8 and out["image_id"].item() == 7
    assert target["masks"].shape == (1, 4, 6, 6) and target["boxes"].dtype == torch.float64


def test_min_max_size_resize() -> None:
    image = torch.rand(1, 4, 8, 12)
    target = make_target((4, 8, 12), [[1, 2, 3, 3, 6, 9]])
    # scale = 8 / 4 = 2 would make X = 24 > max_size = 18: capped at 18 / 12 = 1.5
    t = plain(min_size=8, max_size=18)
    images, (out,) = t([image], [target])
    assert images.image_sizes == [(6, 12, 18)]
    torch.testing.assert_close(out["boxes"], torch.tensor([[1.5, 3.0, 4.5, 4.5, 9.0, 13.5]]))
    assert out["masks"].shape == (1, 6, 12, 18) and out["masks"].dtype == torch.uint8
    assert set(out["masks"].unique().tolist()) == {0, 1}
    # uncapped: every axis doubles
    images, (out,) = plain(min_size=8)([image], [target])
    assert images.image_sizes == [(8, 16, 24)]
    assert out["masks"].sum() == 2 * 4 * 6 * 8
    torch.testing.assert_close(out["boxes"], 2 * target["boxes"])


def test_spacing_resize_per_axis() -> None:
    t = plain(target_spacing=(1.0, 1.0, 1.0))
    image = torch.rand(1, 4, 8, 8)
    target = make_target((4, 8, 8), [[1, 2, 2, 3, 6, 8]])
    images, (out,) = t([image], [target], spacings=[(2.0, 1.0, 0.5)])
    assert images.image_sizes == [(8, 8, 4)]
    torch.testing.assert_close(out["boxes"], torch.tensor([[2.0, 2.0, 1.0, 6.0, 6.0, 4.0]]))
    assert out["masks"].sum() == 4 * 4 * 3
    with pytest.raises(ValueError, match="needs spacings"):
        t([image])
    with pytest.raises(ValueError, match=r"spacings\[0\] must hold 3 values"):
        t([image], spacings=[(1.0, 1.0)])


def test_spacing_resize_rounds_to_the_nearest_voxel_count() -> None:
    """The spacing resize sizes an axis as ls-data's rescale_to_spacing does (ls_core.resampled_size):
    the nearest count, halves up (the floor of before gave 7 and 7, and 35 only by its epsilon)."""
    t = plain(target_spacing=(2.0, 0.65, 0.1))
    images, _ = t([torch.rand(1, 5, 10, 10)], spacings=[(3.0, 0.5, 0.35)])
    assert images.image_sizes == [(8, 8, 35)]  # 7.5, 7.69, 34.99999999999999 in floats
    assert t.resized_shape((5, 10, 10), (3.0, 0.5, 0.35)) == (8, 8, 35)
    # the min/max-size mode keeps torchvision's floor, which holds the largest axis within max_size
    assert plain(min_size=10, max_size=15).resized_shape((7, 9, 11)) == (9, 12, 15)  # 9.55 floored


def test_resize_round_trip_of_boxes_through_postprocess() -> None:
    t = plain(target_spacing=(1.0, 0.5, 0.5))
    image = torch.rand(1, 3, 8, 8)
    target = make_target((3, 8, 8), [[0, 1, 2, 3, 7, 6], [1, 0, 0, 2, 8, 8]])
    images, (out,) = t([image], [target], spacings=[(2.0, 1.0, 1.0)])
    assert images.image_sizes == [(6, 16, 16)]
    (back,) = t.postprocess([{"boxes": out["boxes"], "scores": torch.tensor([0.9, 0.8])}], images.image_sizes,
                            [(3, 8, 8)])
    torch.testing.assert_close(back["boxes"], target["boxes"])
    assert back["scores"].tolist() == pytest.approx([0.9, 0.8])


def test_postprocess_pastes_masks_into_the_original_volume() -> None:
    t = plain(min_size=8)
    image = torch.rand(1, 4, 6, 6)
    images, _ = t([image])
    assert images.image_sizes == [(8, 12, 12)]
    boxes = torch.tensor([[2.0, 2.0, 4.0, 6.0, 8.0, 10.0]])  # in resized coordinates
    pred = {"boxes": boxes, "labels": torch.tensor([1]), "scores": torch.tensor([0.5]),
            "masks": torch.ones(1, 1, 4, 6, 6)}
    (back,) = t.postprocess([pred], images.image_sizes, [(4, 6, 6)])
    torch.testing.assert_close(back["boxes"], torch.tensor([[1.0, 1.0, 2.0, 3.0, 4.0, 5.0]]))
    assert back["masks"].shape == (1, 1, 4, 6, 6)
    expected = torch.zeros(4, 6, 6, dtype=torch.bool)
    expected[1:3, 1:4, 2:5] = True
    assert torch.equal(back["masks"][0, 0] > 0.5, expected)
    assert torch.equal(pred["boxes"], boxes)  # the input dicts are not modified


def test_constructor_errors() -> None:
    with pytest.raises(ValueError, match="image_std must hold 2 values"):
        DetectionTransform3D(image_mean=[0.0, 0.0], image_std=[1.0], size_divisibility=1)
    with pytest.raises(ValueError, match="image_std must hold finite values > 0"):
        DetectionTransform3D(image_mean=[0.0], image_std=[0.0], size_divisibility=1)
    with pytest.raises(ValueError, match="size_divisibility"):
        plain(size_divisibility=(1, 2))
    with pytest.raises(ValueError, match="max_size=10 needs min_size"):
        plain(max_size=10)
    with pytest.raises(ValueError, match="either min_size/max_size or target_spacing"):
        plain(min_size=8, target_spacing=(1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="target_spacing must hold 3 values"):
        plain(target_spacing=(1.0, 1.0))


GOOD = (4, 6, 6)


def bad_targets() -> list[tuple[dict, str]]:
    def target(**change: object) -> dict:
        t: dict = make_target(GOOD, [[0, 0, 0, 2, 3, 4], [1, 1, 1, 3, 3, 3]])
        t.update(change)
        return t

    masks = target()["masks"]
    return [
        ({"boxes": target()["boxes"], "labels": target()["labels"]},
         r"targets\[1\] lacks the key\(s\) \['masks'\]"),
        (target(boxes=torch.zeros(2, 4)), r"targets\[1\]\['boxes'\] must have shape \(N, 6\).*got \(2, 4\)"),
        (target(boxes=torch.tensor([[0.0, 0, 0, 2, 3, 4], [1, 1, 1, 1, 3, 3]])),
         r"targets\[1\]\['boxes'\] \(shape \(2, 6\)\) has a degenerate box at row 1"),
        (target(boxes=torch.tensor([[0.0, 0, 0, 2, 3, 7], [1, 1, 1, 3, 3, 3]])),
         r"targets\[1\]\['boxes'\] \(shape \(2, 6\)\) has a box outside the volume \(4, 6, 6\) at row 0"),
        (target(boxes=torch.tensor([[0, 0, 0, 2, 3, 4], [1, 1, 1, 3, 3, 3]])),
         r"targets\[1\]\['boxes'\] must be floating point"),
        (target(labels=torch.tensor([1, 0])), r"targets\[1\]\['labels'\] \(shape \(2,\)\) must be >= 1"),
        (target(labels=torch.tensor([1])),
         r"targets\[1\]\['labels'\] must be an integer tensor of shape \(2,\)"),
        (target(labels=torch.tensor([1.0, 2.0])),
         r"targets\[1\]\['labels'\] must be an integer tensor.*float32"),
        (target(masks=masks[:, :, :5]),
         r"targets\[1\]\['masks'\] must have shape \(2, 4, 6, 6\).*got \(2, 4, 5, 6\)"),
        (target(masks=masks[:1]),
         r"targets\[1\]\['masks'\] must have shape \(2, 4, 6, 6\).*got \(1, 4, 6, 6\)"),
        (target(masks=masks.float()), r"targets\[1\]\['masks'\] must be uint8 or bool, got torch.float32"),
        ([1, 2], r"targets\[1\] must be a dict"),
    ]


@pytest.mark.parametrize(("target", "message"), bad_targets())
def test_target_errors(target: object, message: str) -> None:
    good = make_target(GOOD, [])
    with pytest.raises(ValueError, match=message):
        plain()([torch.rand(1, *GOOD), torch.rand(1, *GOOD)], [good, target])


@pytest.mark.parametrize(
    ("images", "message"),
    [
        ([torch.rand(4, 6, 6)], r"images\[0\] must be a \(C, Z, Y, X\) tensor, got \(4, 6, 6\)"),
        ([torch.rand(1, 4, 6, 6), torch.rand(1, 1, 4, 6, 6)],
         r"images\[1\] must be a \(C, Z, Y, X\) tensor, got \(1, 1, 4, 6, 6\)"),
        ([torch.rand(2, 4, 6, 6)], r"images\[0\] has 2 channels \(shape \(2, 4, 6, 6\)\) but image_mean"),
        ([torch.zeros(1, 4, 6, 6, dtype=torch.uint8)],
         r"images\[0\] must be floating point, got torch.uint8"),
        ([torch.zeros(1, 0, 6, 6)], r"images\[0\] is empty"),
        ([], r"images must be a non-empty list"),
    ],
)
def test_image_errors(images: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        plain()(images)


def test_targets_count_mismatch() -> None:
    with pytest.raises(ValueError, match="targets has 2 entries for 1 images"):
        plain()([torch.rand(1, *GOOD)], [make_target(GOOD, [])] * 2)
