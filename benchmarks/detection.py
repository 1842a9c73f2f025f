"""3-D Mask R-CNN on CPU: where a training step's time goes, against the backbone alone.

Batch of 2 volumes 1x64x128x128 with 12 ellipsoidal objects each, ResNet3D-18-FPN, the
``maskrcnn3d`` builder's defaults unless ``--preset light`` (or overrides) say otherwise.
Measured in the same run, interleaved, medians over ``--repeats``:

- backbone+FPN forward+backward alone (the reference), on the same padded batch;
- the whole training step (forward, backward of the sum of the five losses, the fused AdamW step
  of ``ls-train``; ``--foreach-adamw`` for the multi-tensor one), and the forward time of each
  part inside it (transform, backbone+FPN, RPN, box branch, mask branch), taken with module
  hooks; backward is reported as one number;
- inference (eval mode, one call on the batch);
- peak RSS of each phase (VmHWM, reset before the phase through /proc/self/clear_refs).

Goal (issue 5): the whole training step <= 1.6x backbone+FPN forward+backward.

    python benchmarks/detection.py                    # builder defaults
    python benchmarks/detection.py --preset light     # fewer RoIs, a 128-channel mask head
    python benchmarks/detection.py --preset 3d        # 128-channel FPN, 3-D-sized box and mask heads
    python benchmarks/detection.py --preset 3d-lean   # and no shared RPN conv, 7x14x14 mask pooling
    python benchmarks/detection.py --repeats 3 --json out.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

from ls_detection import create_detector

SHAPE = (64, 128, 128)

PRESETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    # heads sized for 3-D crops with a few dozen objects: fewer sampled RoIs, a narrower mask head
    "light": {
        "rpn_post_nms_top_n_train": 1000,
        "box_batch_size_per_image": 128,
        "mask_layers": (128, 128, 128, 128),
        "mask_dim_reduced": 128,
    },
    # 3-D-sized: a 128-channel FPN, a 512-wide box head and two 64-channel mask convs (a 3x3x3
    # conv at 14^3 costs 42x its 2-D counterpart at 14^2, so the 2-D head widths do not carry over)
    "3d": {
        "fpn_out_channels": 128,
        "rpn_post_nms_top_n_train": 1000,
        "box_batch_size_per_image": 128,
        "box_representation_size": 512,
        "mask_layers": (64, 64),
        "mask_dim_reduced": 64,
    },
    # as '3d', with the quickstart's head choices: an RPN without its shared 3x3x3 conv (1x1
    # objectness and deltas on the FPN features; that conv at p2 costs as much as the FPN's own),
    # masks pooled at 7x14x14 and two 32-channel mask convs
    "3d-lean": {
        "fpn_out_channels": 128,
        "rpn_conv_depth": 0,
        "rpn_post_nms_top_n_train": 1000,
        "box_batch_size_per_image": 128,
        "box_representation_size": 512,
        "mask_roi_output_size": (7, 14, 14),
        "mask_layers": (32, 32),
        "mask_dim_reduced": 32,
    },
}


def scene(seed: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    z, y, x = torch.meshgrid(*(torch.arange(s, dtype=torch.float32) + 0.5 for s in SHAPE), indexing="ij")
    masks, boxes = [], []
    for _ in range(12):
        c = [float(torch.randint(8, s - 8, (1,), generator=g)) for s in SHAPE]
        r = [float(torch.randint(3, 7, (1,), generator=g)), *(float(v) for v in torch.randint(5, 12, (2,)))]
        m = ((z - c[0]) / r[0]) ** 2 + ((y - c[1]) / r[1]) ** 2 + ((x - c[2]) / r[2]) ** 2 <= 1
        if not m.any():
            continue
        idx = [torch.nonzero(m.any(dim=tuple(d for d in range(3) if d != a))).flatten() for a in range(3)]
        boxes.append([float(i[0]) for i in idx] + [float(i[-1] + 1) for i in idx])
        masks.append(m)
    mask_t = torch.stack(masks).to(torch.uint8)
    image = mask_t.amax(0, keepdim=True).float() + 0.1 * torch.randn((1, *SHAPE), generator=g)
    target = {
        "boxes": torch.tensor(boxes),
        "labels": torch.ones(len(boxes), dtype=torch.int64),
        "masks": mask_t,
    }
    return image, target


def peak_rss_reset() -> None:
    with contextlib.suppress(OSError):  # not Linux: peaks then cover the whole run so far
        Path("/proc/self/clear_refs").write_text("5")


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class PartTimer:
    """Forward time of named submodules (summed over calls) through pre/post forward hooks."""

    def __init__(self, parts: dict[str, list[torch.nn.Module]]) -> None:
        self.totals: dict[str, float] = defaultdict(float)
        self._start: dict[int, float] = {}
        for name, modules in parts.items():
            for m in modules:
                m.register_forward_pre_hook(self._pre)
                m.register_forward_hook(self._post(name))

    def _pre(self, module, args):
        self._start[id(module)] = time.perf_counter()

    def _post(self, name):
        def hook(module, args, out):
            self.totals[name] += time.perf_counter() - self._start.pop(id(module))

        return hook

    def take(self) -> dict[str, float]:
        out = dict(self.totals)
        self.totals.clear()
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="defaults")
    ap.add_argument("--foreach-adamw", action="store_true",
                    help="AdamW's multi-tensor loop instead of the fused kernel ls-train uses")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    preset = dict(PRESETS[args.preset])
    backbone_kwargs = {"in_channels": 1}
    if "fpn_out_channels" in preset:
        backbone_kwargs["fpn_out_channels"] = preset.pop("fpn_out_channels")
    model = create_detector(
        "maskrcnn3d",
        backbone="resnet3d_18_fpn",
        num_classes=2,
        backbone_kwargs=backbone_kwargs,
        **preset,
    )
    heads = model.roi_heads
    timer = PartTimer(
        {
            "transform": [model.transform],
            "backbone+FPN": [model.backbone],
            "RPN": [model.rpn],
            "box branch": [heads.box_roi_pool, heads.box_head, heads.box_predictor],
            "mask branch": [heads.mask_roi_pool, heads.mask_head, heads.mask_predictor],
            "RoI heads (all)": [heads],
        }
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=not args.foreach_adamw)
    images, targets = zip(*(scene(s) for s in range(2)), strict=True)
    images, targets = list(images), list(targets)
    padded, _ = model.transform(images, None)
    batch = padded.tensors

    backbone_params = list(model.backbone.parameters())

    def backbone_step():
        model.train()
        feats = model.backbone(batch)
        loss = sum(f.float().mean() for f in feats.values())
        grads = torch.autograd.grad(loss, backbone_params)
        del grads

    step_parts: list[dict[str, float]] = []
    step_split: list[dict[str, float]] = []

    def train_step():
        model.train()
        timer.take()  # drop what the reference's backbone forward added
        t0 = time.perf_counter()
        losses = model(images, targets)
        t1 = time.perf_counter()
        total = sum(losses.values())
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        t2 = time.perf_counter()
        optimizer.step()
        t3 = time.perf_counter()
        step_split.append({"forward": t1 - t0, "backward": t2 - t1, "optimizer": t3 - t2})
        step_parts.append(timer.take())

    def infer():
        model.eval()
        with torch.no_grad():
            model(images)
        timer.take()

    # warm-up (allocator, first-call scale inference of the poolers)
    backbone_step()
    train_step()
    infer()
    step_parts.clear()
    step_split.clear()

    times: dict[str, list[float]] = {"backbone": [], "train": [], "infer": []}
    peaks: dict[str, float] = {}
    for _ in range(args.repeats):
        for name, fn in (("backbone", backbone_step), ("train", train_step), ("infer", infer)):
            peak_rss_reset()
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
            peaks[name] = max(peaks.get(name, 0.0), peak_rss_mib())

    med = {k: statistics.median(v) for k, v in times.items()}
    parts = {k: statistics.median(p[k] for p in step_parts) for k in step_parts[0]}
    split = {k: statistics.median(s[k] for s in step_split) for k in step_split[0]}
    ratio = med["train"] / med["backbone"]

    print(f"# 3-D Mask R-CNN, ResNet3D-18-FPN, batch 2 x 1x{SHAPE[0]}x{SHAPE[1]}x{SHAPE[2]}, "
          f"preset '{args.preset}', {torch.get_num_threads()} threads, median of {args.repeats}")  # fmt: skip
    print(f"{'phase':<34}{'time (s)':>10}{'peak RSS (MiB)':>16}")
    print(f"{'backbone+FPN fwd+bwd (reference)':<34}{med['backbone']:>10.3f}{peaks['backbone']:>16.0f}")
    print(f"{'training step':<34}{med['train']:>10.3f}{peaks['train']:>16.0f}")
    print(f"{'inference (eval, batch of 2)':<34}{med['infer']:>10.3f}{peaks['infer']:>16.0f}")
    print()
    print("training step split")
    for name in ("forward", "backward", "optimizer"):
        print(f"  {name:<32}{split[name]:>10.3f}")
    print("forward by part")
    for name in ("transform", "backbone+FPN", "RPN", "RoI heads (all)", "box branch", "mask branch"):
        print(f"  {name:<32}{parts.get(name, 0.0):>10.3f}")
    roi_rest = parts.get("RoI heads (all)", 0.0) - parts.get("box branch", 0.0)
    roi_rest -= parts.get("mask branch", 0.0)
    print(f"  {'RoI heads: sampling+losses+post':<32}{roi_rest:>10.3f}")
    print()
    print(f"training step / backbone+FPN fwd+bwd = {ratio:.2f} (goal <= 1.6)")
    if args.json:
        record = {"preset": args.preset, "median_s": med, "peak_rss_mib": peaks}
        record.update(forward_parts_s=parts, step_split_s=split, ratio=ratio)
        args.json.write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
