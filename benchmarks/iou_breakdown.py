"""Where the mask IoU of a trained Mask R-CNN is lost: box placement vs mask shape, per axis.

For every held-out crop of an experiment, the detections above ``evaluation.score_threshold`` are
matched one-to-one to the ground-truth objects (Hungarian on mask IoU, pairs with IoU >= 0.1).
For each matched pair it measures:

- ``actual``: IoU of the predicted mask (pasted, > ``evaluation.mask_threshold``) with the truth;
- ``box only``: IoU with the truth of the *true* mask carried through the predicted box (the true
  mask resampled to the mask head's grid inside the predicted box, then pasted back): the loss a
  perfect mask head would still have, from the box alone;
- ``mask only``: IoU of the mask head's prediction on the *true* box: the loss a perfect box would
  still have, from the mask head alone;
- ``ceiling``: the true mask through the mask grid in the true box (the representation's limit);
- the box error per face, in voxels (z1, y1, x1, z2, y2, x2), and IoU at other mask thresholds;
- why each true object without a detection of mask IoU >= 0.5 above the score threshold was missed:
  a detection below the score threshold had the mask, a detection's box fits (box IoU >= 0.5) but
  its mask does not, a box overlaps it only partly (0.1 <= box IoU < 0.5: merged or split), or no
  detection is near it at any score (the RPN or NMS lost it); with its size and whether it touches
  the crop border.

    hatch run python benchmarks/iou_breakdown.py \\
        --checkpoint runs/quickstart/checkpoint_epoch0020_iter00000160 [--config-name NAME] [overrides]
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from ls_detection.postprocess import paste_masks_in_volume
from ls_detection.roi_heads import project_masks_on_boxes
from ls_ops import box_iou3d
from ls_train.checkpoint_config import config_from_checkpoint
from ls_train.config import evaluation_config, load_config
from ls_train.factory import build_eval_dataset, build_model, prepare_dataset
from ls_train.trainer.checkpoint import load_model_weights, load_state

THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)


def iou_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of every pair of ``(N, Z, Y, X)`` and ``(M, Z, Y, X)`` boolean masks."""
    fa, fb = a.flatten(1).float(), b.flatten(1).float()
    inter = fa @ fb.T
    union = fa.sum(1)[:, None] + fb.sum(1)[None] - inter
    return inter / union.clamp(min=1)


def paired_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    inter = (a & b).flatten(1).sum(1).float()
    return inter / (a | b).flatten(1).sum(1).clamp(min=1).float()


@torch.no_grad()
def mask_head_on(model: torch.nn.Module, image: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor):
    """The mask head's probabilities (in box coordinates) for ``boxes`` of ``image``."""
    image_list, _ = model.transform([image])
    if tuple(image_list.image_sizes[0]) != tuple(image.shape[-3:]):
        raise SystemExit("the model resizes its input (target_spacing): not supported by this script")
    features = model.backbone_features(image_list.tensors)
    logits = model.roi_heads.mask_logits(features, [boxes], image_list.image_sizes, image_list.tensors)
    return logits[torch.arange(len(labels)), labels].sigmoid()[:, None]


def crop_breakdown(model, image, target, score_threshold: float, mask_threshold: float) -> dict[str, list]:
    out: dict[str, list] = defaultdict(list)
    shape = tuple(image.shape[-3:])
    gt_masks = target["masks"].bool()
    gt_boxes = target["boxes"].float()
    pred = model.predict([image], paste_masks=False)[0]
    keep = pred["scores"] >= score_threshold
    boxes, masks, labels = pred["boxes"][keep], pred["masks"][keep], pred["labels"][keep]
    out["n_gt"].append(len(gt_masks))
    out["n_pred"].append(len(boxes))
    if len(boxes) == 0 or len(gt_masks) == 0:
        return out
    probs = paste_masks_in_volume(masks, boxes, shape)[:, 0]
    ious = iou_matrix(probs > mask_threshold, gt_masks)
    rows, cols = linear_sum_assignment(-ious.numpy())
    pairs = [(r, c) for r, c in zip(rows, cols, strict=True) if ious[r, c] >= 0.1]
    if not pairs:
        return out
    p_idx = torch.tensor([r for r, _ in pairs])
    g_idx = torch.tensor([c for _, c in pairs])
    truth = gt_masks[g_idx]
    size = tuple(masks.shape[-3:])
    for t in THRESHOLDS:
        out[f"actual@{t}"] += paired_iou(probs[p_idx] > t, truth).tolist()
    true_in_pred_box = project_masks_on_boxes(gt_masks, boxes[p_idx], g_idx, size)
    box_only = paste_masks_in_volume(true_in_pred_box[:, None], boxes[p_idx], shape)[:, 0] > 0.5
    out["box only"] += paired_iou(box_only, truth).tolist()
    head = mask_head_on(model, image, gt_boxes[g_idx], labels[p_idx])
    mask_only = paste_masks_in_volume(head, gt_boxes[g_idx], shape)[:, 0] > mask_threshold
    out["mask only"] += paired_iou(mask_only, truth).tolist()
    true_in_true_box = project_masks_on_boxes(gt_masks, gt_boxes[g_idx], g_idx, size)
    ceiling = paste_masks_in_volume(true_in_true_box[:, None], gt_boxes[g_idx], shape)[:, 0] > 0.5
    out["ceiling"] += paired_iou(ceiling, truth).tolist()
    out["box error"] += (boxes[p_idx] - gt_boxes[g_idx]).tolist()
    out["gt extent"] += (gt_boxes[g_idx, 3:] - gt_boxes[g_idx, :3]).tolist()
    return out


MISS_CAUSES = (
    "below score threshold",
    "box fits, mask does not",
    "partial box (merge/split)",
    "no detection",
)


def missed_breakdown(model, image, target, score_threshold: float, mask_threshold: float) -> list[tuple]:
    """``(cause, voxels, touches border)`` of each true object that no detection above
    ``score_threshold`` covers at mask IoU >= 0.5 (all detections the model returns are looked at)."""
    shape = tuple(image.shape[-3:])
    gt_masks, gt_boxes = target["masks"].bool(), target["boxes"].float()
    pred = model.predict([image], paste_masks=False)[0]
    if len(gt_masks) == 0:
        return []
    if len(pred["boxes"]):
        probs = paste_masks_in_volume(pred["masks"], pred["boxes"], shape)[:, 0]
        mask_iou = iou_matrix(probs > mask_threshold, gt_masks)
        box_iou = box_iou3d(pred["boxes"].float(), gt_boxes)
    else:
        mask_iou = box_iou = torch.zeros((0, len(gt_masks)))
    above = pred["scores"] >= score_threshold
    limits = torch.tensor(shape, dtype=torch.float32)
    missed = []
    for g in range(len(gt_masks)):
        if bool((mask_iou[above, g] >= 0.5).any()):
            continue
        if bool((mask_iou[:, g] >= 0.5).any()):
            cause = MISS_CAUSES[0]
        elif bool((box_iou[above, g] >= 0.5).any()):
            cause = MISS_CAUSES[1]
        elif bool((box_iou[:, g] >= 0.1).any()):
            cause = MISS_CAUSES[2]
        else:
            cause = MISS_CAUSES[3]
        border = bool((gt_boxes[g, :3] <= 0).any() or (gt_boxes[g, 3:] >= limits).any())
        missed.append((cause, int(gt_masks[g].sum()), border))
    return missed


def summarise(name: str, values: list[float]) -> str:
    v = np.asarray(values)
    shares = " | ".join(f"{(v >= t).mean():.2f}" for t in (0.5, 0.75, 0.9))
    return f"| {name} | {v.mean():.3f} | {np.median(v):.3f} | {shares} |"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-name", help="default: the config stored in the checkpoint")
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    if args.config_name is None:
        cfg = config_from_checkpoint(args.checkpoint, args.overrides)
    else:
        cfg = load_config(args.config_name, args.overrides)
    ev = evaluation_config(cfg)
    model = build_model(cfg)
    load_model_weights(model, load_state(args.checkpoint), source=args.checkpoint)
    model.eval()
    if ev.database is not None:
        prepare_dataset(ev.database, "evaluation.database")  # build its index when missing or stale
    dataset = build_eval_dataset(cfg)
    totals: dict[str, list] = defaultdict(list)
    for i in range(len(dataset)):
        image, target, _ = dataset[i]
        for k, v in crop_breakdown(model, image, target, ev.score_threshold, ev.mask_threshold).items():
            totals[k] += v
        totals["missed"] += missed_breakdown(model, image, target, ev.score_threshold, ev.mask_threshold)
        totals["gt voxels"] += target["masks"].flatten(1).sum(1).tolist()
    matched = len(totals["ceiling"])
    print(
        f"{len(dataset)} crops, {sum(totals['n_gt'])} true objects, {sum(totals['n_pred'])} detections "
        f">= score {ev.score_threshold}, {matched} matched pairs (IoU >= 0.1)\n"
    )
    print("| IoU of matched pairs | mean | median | >= 0.5 | >= 0.75 | >= 0.9 |")
    print("| --- | --- | --- | --- | --- | --- |")
    print(summarise(f"actual (mask > {ev.mask_threshold})", totals[f"actual@{ev.mask_threshold}"]))
    print(summarise("box only (true mask in the predicted box)", totals["box only"]))
    print(summarise("mask only (mask head on the true box)", totals["mask only"]))
    print(summarise("ceiling (true mask through the mask grid)", totals["ceiling"]))
    for t in THRESHOLDS:
        if t != ev.mask_threshold:
            print(summarise(f"actual (mask > {t})", totals[f"actual@{t}"]))
    err = np.asarray(totals["box error"])
    ext = np.asarray(totals["gt extent"])
    print("\n| box face | mean signed error (voxels) | mean abs error | abs error / true extent |")
    print("| --- | --- | --- | --- |")
    for j, face in enumerate(("z1", "y1", "x1", "z2", "y2", "x2")):
        rel = np.abs(err[:, j]) / ext[:, j % 3]
        print(f"| {face} | {err[:, j].mean():+.2f} | {np.abs(err[:, j]).mean():.2f} | {rel.mean():.3f} |")
    print(f"\nmedian true extent (z, y, x) in voxels: {np.median(ext, axis=0).tolist()}")
    print_missed(totals["missed"], totals["gt voxels"])
    return 0


def print_missed(missed: list[tuple], gt_voxels: list[int]) -> None:
    print(
        f"\n{len(missed)} of {len(gt_voxels)} true objects missed at mask IoU 0.5 "
        f"(median size of all: {np.median(gt_voxels):.0f} voxels)\n"
    )
    print("| cause | objects | median voxels | touching the crop border |")
    print("| --- | --- | --- | --- |")
    for cause in MISS_CAUSES:
        rows = [m for m in missed if m[0] == cause]
        if rows:
            size = np.median([m[1] for m in rows])
            print(f"| {cause} | {len(rows)} | {size:.0f} | {sum(m[2] for m in rows)} |")


if __name__ == "__main__":
    sys.exit(main())
