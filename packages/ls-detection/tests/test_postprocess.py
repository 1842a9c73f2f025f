"""Tests of mask pasting and of the instance label volume."""

from __future__ import annotations

import pytest
import torch

from ls_detection.postprocess import paste_masks_in_volume, predictions_to_label_volume


def _box_volume(box: tuple[int, ...], size: tuple[int, int, int]) -> torch.Tensor:
    ref = torch.zeros(size, dtype=torch.bool)
    z1, y1, x1, z2, y2, x2 = box
    ref[max(z1, 0) : z2, max(y1, 0) : y2, max(x1, 0) : x2] = True
    return ref


BOXES = [
    (2, 3, 4, 9, 11, 13),  # generic
    (0, 0, 0, 4, 4, 4),  # touches the low border on every axis
    (5, 10, 12, 10, 20, 20),  # touches the high border on every axis (volume 10 x 20 x 20)
    (3, 2, 1, 4, 18, 19),  # anisotropic: one voxel thick in z
    (1, 5, 5, 9, 7, 6),  # thin in y and x
    (0, 0, 0, 10, 20, 20),  # the whole volume
    (4, 4, 4, 6, 18, 6),  # 2 x 14 x 2
    (2, 3, 3, 8, 15, 15),  # 6 x 12 x 12: smaller than the mask, larger than half of it
]


@pytest.mark.parametrize(("mask_size", "padding"), [
    ((28, 28, 28), 1), ((14, 14, 14), 1), ((7, 14, 14), 1), ((28, 28, 28), 2), ((3, 3, 3), 0), ((1, 2, 1), 0),
])
def test_box_filling_mask_reproduces_box(mask_size: tuple[int, int, int], padding: int) -> None:
    # padding >= 1 is exact while box extents are <= 1.5 x the mask size (here <= 20 voxels for a
    # 14-voxel mask, <= 10 for a 7-voxel one); padding 0 is exact for every size
    size = (10, 20, 20)
    boxes = torch.tensor(BOXES, dtype=torch.float32)
    masks = torch.ones((len(BOXES), 1, *mask_size))
    pasted = paste_masks_in_volume(masks, boxes, size, padding=padding)
    assert pasted.shape == (len(BOXES), 1, *size)
    assert pasted.dtype == torch.float32
    for i, box in enumerate(BOXES):
        expected = _box_volume(box, size)
        got = pasted[i, 0] > 0.5
        assert torch.equal(got, expected), f"box {box}: {int((got ^ expected).sum())} voxels differ"


def test_box_partly_outside_is_clipped() -> None:
    size = (6, 8, 8)
    box = (-3, 5, -2, 3, 12, 4)
    boxes = torch.tensor([box], dtype=torch.float32)
    pasted = paste_masks_in_volume(torch.ones(1, 1, 14, 14, 14), boxes, size)
    assert torch.equal(pasted[0, 0] > 0.5, _box_volume(box, size))


def test_non_integer_box_follows_exact_coordinates() -> None:
    # a box from 2.25 to 6.75 along x: voxel centres 2.5 .. 6.5 are inside, 1.5 and 7.5 outside
    box = torch.tensor([[0.0, 0.0, 2.25, 2.0, 2.0, 6.75]])
    pasted = paste_masks_in_volume(torch.ones(1, 1, 14, 14, 14), box, (2, 2, 10))[0, 0, 0, 0] > 0.5
    assert pasted.tolist() == [False, False, True, True, True, True, True, False, False, False]


def test_mask_content_is_resized_into_box() -> None:
    # left half of the mask on, right half off -> left half of the box (along x) on
    mask = torch.zeros(1, 1, 4, 4, 4)
    mask[..., :2] = 1.0
    box = torch.tensor([[1.0, 2.0, 4.0, 5.0, 6.0, 12.0]])
    pasted = paste_masks_in_volume(mask, box, (8, 8, 16))[0, 0] > 0.5
    expected = _box_volume((1, 2, 4, 5, 6, 8), (8, 8, 16))
    assert torch.equal(pasted, expected)


def test_empty_inputs() -> None:
    out = paste_masks_in_volume(torch.zeros(0, 1, 7, 7, 7), torch.zeros(0, 6), (5, 6, 7))
    assert out.shape == (0, 1, 5, 6, 7)


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="masks must be"):
        paste_masks_in_volume(torch.zeros(2, 7, 7, 7), torch.zeros(2, 6), (5, 6, 7))
    with pytest.raises(ValueError, match="2 masks"):
        paste_masks_in_volume(torch.zeros(2, 1, 7, 7, 7), torch.zeros(3, 6), (5, 6, 7))
    with pytest.raises(ValueError, match="volume_size"):
        paste_masks_in_volume(torch.zeros(1, 1, 7, 7, 7), torch.zeros(1, 6), (5, 6))


def _prediction(masks: list[torch.Tensor], scores: list[float]) -> dict[str, torch.Tensor]:
    return {"masks": torch.stack(masks)[:, None].float(), "scores": torch.tensor(scores)}


def test_label_volume_higher_score_wins_overlap() -> None:
    size = (4, 6, 6)
    low = _box_volume((0, 0, 0, 4, 4, 4), size)
    high = _box_volume((0, 2, 2, 4, 6, 6), size)
    labels = predictions_to_label_volume(_prediction([low, high], [0.6, 0.9]))
    assert labels.dtype == torch.int32 and labels.shape == size
    # instance ids by decreasing score: the 0.9 instance is 1 and owns the overlap
    assert torch.equal(labels == 1, high)
    assert torch.equal(labels == 2, low & ~high)
    assert int((labels == 0).sum()) == int((~(low | high)).sum())


def test_label_volume_thresholds_and_dropping() -> None:
    size = (2, 4, 4)
    a = _box_volume((0, 0, 0, 2, 2, 2), size)
    b = _box_volume((0, 0, 0, 1, 1, 1), size)  # fully covered by the better instance a -> dropped
    c = _box_volume((0, 2, 2, 2, 4, 4), size)
    pred = _prediction([b, a, c], [0.5, 0.8, 0.7])
    labels = predictions_to_label_volume(pred)
    assert torch.equal(labels == 1, a) and torch.equal(labels == 2, c)
    assert int(labels.max()) == 2
    # score threshold removes c
    labels = predictions_to_label_volume(pred, score_threshold=0.75)
    assert torch.equal(labels == 1, a) and int(labels.max()) == 1
    # mask threshold: probabilities 0.4 are background at 0.5, foreground at 0.3
    soft = {"masks": pred["masks"] * 0.4, "scores": pred["scores"]}
    assert int(predictions_to_label_volume(soft).max()) == 0
    assert int(predictions_to_label_volume(soft, mask_threshold=0.3).max()) == 2


def test_label_volume_empty_prediction() -> None:
    pred = {"masks": torch.zeros(0, 1, 3, 4, 5), "scores": torch.zeros(0), "boxes": torch.zeros(0, 6)}
    labels = predictions_to_label_volume(pred)
    assert labels.shape == (3, 4, 5) and labels.dtype == torch.int32 and int(labels.abs().sum()) == 0


def test_label_volume_bad_inputs() -> None:
    with pytest.raises(KeyError, match="scores"):
        predictions_to_label_volume({"masks": torch.zeros(1, 1, 2, 2, 2)})
    with pytest.raises(ValueError, match=r"prediction\['scores'\]"):
        predictions_to_label_volume({"masks": torch.zeros(2, 1, 2, 2, 2), "scores": torch.zeros(3)})
