"""clip_boxes_to_volume, remove_small_boxes3d and check_boxes."""

from __future__ import annotations

import pytest
import torch

from ls_detection.boxes import check_boxes, clip_boxes_to_volume, remove_small_boxes3d


def test_clip_per_axis() -> None:
    boxes = torch.tensor([[-1.0, -2.0, -3.0, 5.0, 50.0, 70.0], [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]])
    clipped = clip_boxes_to_volume(boxes, (4, 40, 60))
    expected = torch.tensor([[0.0, 0.0, 0.0, 4.0, 40.0, 60.0], [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]])
    torch.testing.assert_close(clipped, expected)
    batched = clip_boxes_to_volume(boxes[None].expand(2, -1, -1), (4, 40, 60))
    torch.testing.assert_close(batched, expected[None].expand(2, -1, -1))


def test_remove_small_boxes_checks_every_axis() -> None:
    boxes = torch.tensor([
        [0.0, 0.0, 0.0, 2.0, 2.0, 2.0],
        [0.0, 0.0, 0.0, 0.5, 2.0, 2.0],  # thin in z
        [0.0, 0.0, 0.0, 2.0, 0.5, 2.0],  # thin in y
        [0.0, 0.0, 0.0, 2.0, 2.0, 0.5],  # thin in x
        [1.0, 1.0, 1.0, 2.0, 2.0, 2.0],  # exactly min_size
    ])
    assert remove_small_boxes3d(boxes, 1.0).tolist() == [0, 4]
    assert remove_small_boxes3d(boxes, 0.1).tolist() == [0, 1, 2, 3, 4]
    assert remove_small_boxes3d(torch.zeros(0, 6), 1.0).numel() == 0


def test_check_boxes_accepts_valid_and_empty() -> None:
    check_boxes(torch.tensor([[0.0, 0.0, 0.0, 4.0, 5.0, 6.0]]), name="b", volume_size=(4, 5, 6))
    check_boxes(torch.zeros(0, 6), name="b", volume_size=(4, 5, 6))


@pytest.mark.parametrize(
    ("boxes", "message"),
    [
        (torch.zeros(3, 4), r"t\['boxes'\] must have shape \(N, 6\).*got \(3, 4\)"),
        (torch.zeros(6), r"t\['boxes'\] must have shape \(N, 6\).*got \(6,\)"),
        ([[0, 0, 0, 1, 1, 1]], r"t\['boxes'\] must be a Tensor"),
        (torch.tensor([[0, 0, 0, 1, 1, 1]]), r"t\['boxes'\] must be floating point, got torch.int64"),
        (torch.tensor([[0.0, 0, 0, 1, 1, 1], [1.0, 0, 0, 1, 1, 1]]), r"degenerate box at row 1"),
        (torch.tensor([[0.0, 2, 0, 1, 1, 1]]), r"degenerate box at row 0"),
        (torch.tensor([[0.0, 0, 3, 1, 1, 2]]), r"degenerate box at row 0"),
        (torch.tensor([[0.0, 0, 0, float("nan"), 1, 1]]), r"non-finite box at row 0"),
        (torch.tensor([[0.0, 0, -1, 1, 1, 1]]), r"outside the volume \(4, 5, 6\) at row 0"),
        (torch.tensor([[0.0, 0, 0, 1, 1, 1], [0.0, 0, 0, 1, 5.5, 1]]),
         r"outside the volume \(4, 5, 6\) at row 1"),
    ],
)
def test_check_boxes_errors(boxes: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_boxes(boxes, name="t['boxes']", volume_size=(4, 5, 6))


def test_check_boxes_without_volume_allows_any_position() -> None:
    check_boxes(torch.tensor([[-5.0, -5.0, -5.0, 100.0, 100.0, 100.0]]), name="b")
