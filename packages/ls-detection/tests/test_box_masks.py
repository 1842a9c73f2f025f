"""Masks kept in box coordinates, and painting them into a label volume without dense masks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ls_detection import paste_masks_into_label_volume
from ls_detection.postprocess import paste_masks_in_volume, predictions_to_label_volume, visible_ranking
from ls_detection.transform import DetectionTransform3D

SIZE = (6, 10, 12)


def _dense(masks, boxes, scores, size, *, mask_threshold=0.5, score_threshold=0.0, padding=1,
           min_visible_fraction=0.0):
    pasted = paste_masks_in_volume(masks, boxes, size, padding)
    prediction = {"masks": pasted, "scores": scores}
    labels = predictions_to_label_volume(
        prediction, mask_threshold=mask_threshold, score_threshold=score_threshold,
        min_visible_fraction=min_visible_fraction,
    )  # fmt: skip
    return labels, pasted


def _random_detections(seed: int, n: int, mask_size=(5, 7, 6), size=SIZE):
    """Random masks and boxes (overlapping, some partly or wholly outside), scores with ties."""
    g = torch.Generator().manual_seed(seed)
    # blocky masks (coarse random blocks, nearest-upsampled) with noise: large inside regions
    blocks = (torch.rand((n, 1, 2, 3, 2), generator=g) > 0.3).float()
    masks = F.interpolate(blocks, size=mask_size, mode="nearest")
    masks = (0.8 * masks + 0.2 * torch.rand((n, 1, *mask_size), generator=g)).clamp(0, 1)
    extent = torch.tensor(size, dtype=torch.float32)
    low = torch.rand((n, 3), generator=g) * (extent + 6) - 4  # from 4 voxels before to 2 after
    length = 0.5 + torch.rand((n, 3), generator=g) * extent
    boxes = torch.cat([low, low + length], dim=1)
    scores = torch.randint(1, 6, (n,), generator=g).float() / 5  # few distinct values: ties
    return masks, boxes, scores


def _check_order(labels, order, pasted, scores, mask_threshold, score_threshold):
    """Label k is exactly where detection order[k-1] is inside and no better-ranked one is."""
    kept = torch.where(scores >= score_threshold)[0]
    ranked = kept[torch.argsort(scores[kept], descending=True, stable=True)].tolist()
    assert order.dtype == torch.int64 and order.shape == (int(labels.max()),)
    positions = [ranked.index(i) for i in order.tolist()]
    assert positions == sorted(positions)  # labels follow the ranking
    inside = pasted[:, 0] > mask_threshold
    for k, index in enumerate(order.tolist(), start=1):
        better = ranked[: ranked.index(index)]
        covered = inside[better].any(dim=0) if better else torch.zeros_like(inside[0])
        assert torch.equal(labels == k, inside[index] & ~covered), f"label {k} (detection {index})"


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(
    ("mask_threshold", "score_threshold", "padding"),
    [(0.5, 0.0, 1), (0.3, 0.5, 1), (0.7, 0.0, 0), (0.5, 0.7, 2), (-0.1, 0.0, 1)],
)
def test_equals_the_dense_path_on_random_detections(seed, mask_threshold, score_threshold, padding):
    masks, boxes, scores = _random_detections(seed, n=8)
    options = {"mask_threshold": mask_threshold, "score_threshold": score_threshold, "padding": padding}
    labels, order = paste_masks_into_label_volume(masks, boxes, scores, SIZE, **options)
    expected, pasted = _dense(masks, boxes, scores, SIZE, **options)
    assert labels.dtype == torch.int32 and labels.shape == SIZE
    assert torch.equal(labels, expected)
    _check_order(labels, order, pasted, scores, mask_threshold, score_threshold)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(
    ("fraction", "mask_threshold", "padding"), [(0.5, 0.5, 1), (0.3, 0.3, 0), (1.0, 0.5, 1)]
)
def test_min_visible_fraction_equals_the_dense_path_and_a_reference(seed, fraction, mask_threshold, padding):
    """Both paths drop the same instances, and exactly those that a direct reading of the rule
    drops: in rank order, an instance keeps its mask when at least ``fraction`` of its voxels are
    not taken by the instances kept before it."""
    masks, boxes, scores = _random_detections(seed, n=10)
    options = {"mask_threshold": mask_threshold, "padding": padding, "min_visible_fraction": fraction}
    labels, order = paste_masks_into_label_volume(masks, boxes, scores, SIZE, **options)
    expected, pasted = _dense(masks, boxes, scores, SIZE, **options)
    assert torch.equal(labels, expected)
    ranked = torch.argsort(scores, descending=True, stable=True).tolist()
    taken = torch.zeros(SIZE, dtype=torch.bool)
    kept = []
    for index in ranked:
        own = pasted[index, 0] > mask_threshold
        if (own & ~taken).sum() >= fraction * own.sum() and (own & ~taken).any():
            kept.append(index)
            taken |= own
    assert order.tolist() == kept
    plain, _ = paste_masks_into_label_volume(masks, boxes, scores, SIZE, mask_threshold=mask_threshold,
                                             padding=padding)  # fmt: skip
    assert int(labels.max()) <= int(plain.max())


def test_min_visible_fraction_drops_a_duplicate_and_keeps_a_neighbour():
    """A second, lower-scored detection of the same object keeps a sliver without the rule and is
    dropped with it; a touching neighbour that keeps most of its mask stays."""
    ones = torch.ones(3, 1, 4, 4, 4)
    boxes = torch.tensor([[0.0, 0.0, 0.0, 4.0, 4.0, 4.0],   # the object
                          [0.0, 0.0, 1.0, 4.0, 4.0, 5.0],   # its duplicate, one voxel off in x
                          [0.0, 0.0, 4.0, 4.0, 4.0, 8.0]])  # the neighbour, touching  # fmt: skip
    scores = torch.tensor([0.9, 0.8, 0.7])
    size = (4, 4, 10)
    plain, plain_order = paste_masks_into_label_volume(ones, boxes, scores, size, padding=0)
    fused, fused_order = paste_masks_into_label_volume(ones, boxes, scores, size, padding=0,
                                                       min_visible_fraction=0.5)  # fmt: skip
    assert plain_order.tolist() == [0, 1, 2] and int((plain == 2).sum()) == 16  # a 16-voxel sliver
    assert fused_order.tolist() == [0, 2]
    assert int((fused == 1).sum()) == 64 and int((fused == 2).sum()) == 64
    dense = {"masks": paste_masks_in_volume(ones, boxes, size, 0), "scores": scores}
    assert visible_ranking(dense).tolist() == [0, 1, 2]
    assert visible_ranking(dense, min_visible_fraction=0.5).tolist() == [0, 2]


def test_min_visible_fraction_out_of_range_is_an_error():
    masks, boxes, scores = _random_detections(0, n=2)
    for fraction in (-0.1, 1.5):
        with pytest.raises(ValueError, match="min_visible_fraction must be in"):
            paste_masks_into_label_volume(masks, boxes, scores, SIZE, min_visible_fraction=fraction)
        with pytest.raises(ValueError, match="min_visible_fraction must be in"):
            predictions_to_label_volume({"masks": torch.zeros(1, 1, 2, 2, 2), "scores": torch.ones(1)},
                                        min_visible_fraction=fraction)  # fmt: skip
    with pytest.raises(ValueError, match="needs mask_threshold >= 0"):
        paste_masks_into_label_volume(masks, boxes, scores, SIZE, mask_threshold=-0.1,
                                      min_visible_fraction=0.5)  # fmt: skip


def test_boxes_outside_hidden_instances_ties_and_threshold():
    ones = torch.ones(1, 1, 4, 4, 4)
    boxes = torch.tensor(
        [
            [1.0, 2.0, 2.0, 4.0, 6.0, 6.0],  # 0: inside 1, lower score -> hidden, dropped
            [0.0, 0.0, 0.0, 6.0, 8.0, 8.0],  # 1: best
            [2.0, 5.0, 5.0, 5.0, 10.0, 12.0],  # 2: ties with 3, overlaps 1
            [0.0, 6.0, 9.0, 3.0, 10.0, 12.0],  # 3: ties with 2, overlaps 2
            [-5.0, -5.0, -5.0, -3.0, -3.0, -3.0],  # 4: outside the volume
            [3.0, 0.0, 9.0, 9.0, 3.0, 15.0],  # 5: partly outside
            [0.0, 0.0, 10.0, 2.0, 2.0, 12.0],  # 6: below the score threshold
        ]
    )
    masks = ones.expand(len(boxes), -1, -1, -1, -1).clone()
    scores = torch.tensor([0.5, 0.9, 0.7, 0.7, 0.95, 0.6, 0.1])
    labels, order = paste_masks_into_label_volume(masks, boxes, scores, SIZE, score_threshold=0.2, padding=0)
    expected, pasted = _dense(masks, boxes, scores, SIZE, score_threshold=0.2, padding=0)
    assert torch.equal(labels, expected)
    assert order.tolist() == [1, 2, 3, 5]  # 4 and 0 paint nothing, 6 is below the threshold
    assert torch.equal(labels == 1, pasted[1, 0] > 0.5)
    assert torch.equal(labels == 2, (pasted[2, 0] > 0.5) & (labels != 1))  # the tie goes to the first
    _check_order(labels, order, pasted, scores, 0.5, 0.2)


def test_empty_input_and_nothing_kept():
    labels, order = paste_masks_into_label_volume(
        torch.zeros(0, 1, 3, 3, 3), torch.zeros(0, 6), torch.zeros(0), (3, 4, 5)
    )
    assert labels.shape == (3, 4, 5) and labels.dtype == torch.int32 and not labels.any()
    assert order.shape == (0,) and order.dtype == torch.int64
    masks, boxes, scores = _random_detections(0, n=3)
    labels, order = paste_masks_into_label_volume(masks, boxes, scores, SIZE, score_threshold=2.0)
    assert not labels.any() and order.numel() == 0


def test_float64_and_uint8_masks_match_the_dense_path():
    masks, boxes, scores = _random_detections(3, n=5)
    for m in (masks.double(), (masks > 0.5).to(torch.uint8)):
        labels, _ = paste_masks_into_label_volume(m, boxes, scores, SIZE)
        assert torch.equal(labels, _dense(m, boxes, scores, SIZE)[0])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_equals_cpu():
    masks, boxes, scores = _random_detections(1, n=8)
    labels, _ = paste_masks_into_label_volume(masks, boxes, scores, SIZE)
    labels_cuda, order_cuda = paste_masks_into_label_volume(masks.cuda(), boxes.cuda(), scores.cuda(), SIZE)
    assert labels_cuda.device.type == "cuda" and order_cuda.device.type == "cuda"
    dense, pasted = _dense(masks.cuda(), boxes.cuda(), scores.cuda(), SIZE)
    assert torch.equal(labels_cuda, dense)
    _check_order(labels_cuda, order_cuda, pasted, scores.cuda(), 0.5, 0.0)
    # CPU and CUDA trilinear sampling may differ in the last bits: the labels nearly always agree
    assert (labels_cuda.cpu() != labels).float().mean() < 0.01


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"masks": torch.zeros(2, 4, 4, 4)}, r"masks must be \(N, 1, a, b, c\), got \(2, 4, 4, 4\)"),
        ({"boxes": torch.zeros(2, 4)}, r"boxes must be \(N, 6\), got \(2, 4\)"),
        ({"boxes": torch.zeros(3, 6)}, r"2 masks \(2, 1, 4, 4, 4\) but 3 boxes \(3, 6\)"),
        ({"scores": torch.zeros(3)}, r"scores must be \(2,\).*got \(3,\)"),
        ({"scores": torch.zeros(2, 1)}, r"scores must be \(2,\).*got \(2, 1\)"),
        ({"volume_size": (4, 4)}, r"volume_size must be \(Z, Y, X\).*got \(4, 4\)"),
        ({"padding": -1}, "padding must be >= 0, got -1"),
        ({"mask_threshold": float("nan")}, "mask_threshold must be finite"),
        (
            {"boxes": torch.tensor([[0.0] * 6, [0, 0, 0, 1, 1, float("nan")]])},
            r"boxes \(2, 6\) contain NaN or infinite",
        ),
    ],
)
def test_bad_inputs(kwargs, message):
    args = {
        "masks": torch.zeros(2, 1, 4, 4, 4),
        "boxes": torch.tensor([[0.0, 0, 0, 2, 2, 2], [1, 1, 1, 3, 3, 3]]),
        "scores": torch.tensor([0.5, 0.6]),
        "volume_size": (4, 4, 4),
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=f"paste_masks_into_label_volume: {message}"):
        paste_masks_into_label_volume(
            args.pop("masks"), args.pop("boxes"), args.pop("scores"), args.pop("volume_size"), **args
        )


def test_transform_postprocess_keeps_box_masks():
    t = DetectionTransform3D(image_mean=[0.0], image_std=[1.0], size_divisibility=1, min_size=8)
    images, _ = t([torch.rand(1, 4, 6, 6)])
    boxes = torch.tensor([[2.0, 2.0, 4.0, 6.0, 8.0, 10.0]])  # in resized coordinates
    masks = torch.rand(1, 1, 4, 6, 6)
    pred = {"boxes": boxes, "scores": torch.tensor([0.5]), "masks": masks}
    (back,) = t.postprocess([pred], images.image_sizes, [(4, 6, 6)], paste_masks=False)
    torch.testing.assert_close(back["boxes"], torch.tensor([[1.0, 1.0, 2.0, 3.0, 4.0, 5.0]]))
    assert back["masks"] is masks
    (dense,) = t.postprocess([pred], images.image_sizes, [(4, 6, 6)])
    assert torch.equal(dense["masks"], paste_masks_in_volume(masks, back["boxes"], (4, 6, 6)))


def test_maskrcnn_box_masks_match_the_pasted_masks(small_detector, scene):
    torch.manual_seed(0)
    model = small_detector(box_score_thresh=0.0).eval()
    image, _ = scene()
    size = tuple(image.shape[1:])
    with torch.no_grad():
        (dense,) = model([image])
    (boxed,) = model.predict([image], paste_masks=False)
    n = dense["boxes"].shape[0]
    assert n > 0
    assert boxed["masks"].shape == (n, 1, 14, 14, 14)  # mask_roi_output_size 7, upsampled twice
    for key in ("boxes", "scores", "labels"):
        assert torch.equal(boxed[key], dense[key]), key
    assert dense["masks"].shape == (n, 1, *size)
    assert torch.equal(paste_masks_in_volume(boxed["masks"], boxed["boxes"], size), dense["masks"])
    labels, order = paste_masks_into_label_volume(boxed["masks"], boxed["boxes"], boxed["scores"], size)
    assert torch.equal(labels, predictions_to_label_volume(dense))
    assert order.shape == (int(labels.max()),)


def test_paint_instances_names_the_detection_of_each_label():
    """Label k of ``paint_instances`` is painted from detection ``which[k - 1]``: its voxels lie
    inside that detection's mask, and the detections are those ``visible_ranking`` keeps, in order,
    less any left with no voxel."""
    from ls_detection import paint_instances, predictions_to_label_volume, visible_ranking

    masks = torch.zeros(4, 1, 2, 8, 8)
    masks[0, 0, :, :4, :4] = 0.9
    masks[1, 0, :, :4, 1:5] = 0.8  # better-scored duplicate of 0: 0 keeps only a sliver
    masks[2, 0, :, 4:, 4:] = 0.7
    masks[3, 0, :, 5:, 5:] = 0.9  # inside 2 and scored lower
    pred = {"masks": masks, "scores": torch.tensor([0.5, 0.9, 0.8, 0.6])}
    plain, which_plain = paint_instances(pred)
    assert visible_ranking(pred).tolist() == [1, 2, 3, 0]
    assert which_plain.tolist() == [1, 2, 0]  # 3 is left with no voxel under 2; 0 keeps a sliver
    labels, which = paint_instances(pred, min_visible_fraction=0.5)
    assert visible_ranking(pred, min_visible_fraction=0.5).tolist() == [1, 2]  # 0 and 3 dropped
    assert which.tolist() == [1, 2]
    assert torch.equal(labels, predictions_to_label_volume(pred, min_visible_fraction=0.5))
    assert torch.equal(plain, predictions_to_label_volume(pred))
    for k, det in enumerate(which_plain.tolist(), start=1):
        assert bool((masks[det, 0][plain == k] > 0.5).all())
    for k, det in enumerate(which.tolist(), start=1):
        assert bool((masks[det, 0][labels == k] > 0.5).all())
    empty, none = paint_instances(pred, score_threshold=1.0)
    assert int(empty.max()) == 0 and none.numel() == 0
