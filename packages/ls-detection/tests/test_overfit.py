"""A small ResNet3D-FPN Mask R-CNN learns one synthetic volume: every object found at mask IoU >= 0.8."""

from __future__ import annotations

import pytest
import torch

MAX_ITERATIONS = 400
CHECK_EVERY = 25


def _worst_object_iou(model, image, target, mask_iou) -> float:
    (pred,) = model.predict([image])
    masks = pred["masks"][:, 0] > 0.5
    worst = 1.0
    for gt in target["masks"].bool():
        worst = min(worst, max((mask_iou(gt, m) for m in masks), default=0.0))
    return worst


@pytest.mark.slow(seconds=85)
def test_overfits_one_volume_to_mask_iou_08_for_every_object(small_detector, scene, mask_iou):
    torch.manual_seed(0)
    model = small_detector()
    image, target = scene()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    worst, history = 0.0, []
    for it in range(1, MAX_ITERATIONS + 1):
        model.train()
        losses = model([image], [target])
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
        if it % CHECK_EVERY == 0:
            worst = _worst_object_iou(model, image, target, mask_iou)
            history.append((it, round(worst, 3), round(sum(v.item() for v in losses.values()), 3)))
            if worst >= 0.8:
                break
    assert worst >= 0.8, f"(iteration, worst object mask IoU, total loss): {history}"
