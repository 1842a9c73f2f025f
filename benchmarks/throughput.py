"""Training and inference throughput of the quickstart model: each fast-path setting against the
reference (PyTorch's default memory layout, float32), measured in the same run, interleaved.

- training step: forward, backward and AdamW step of a batch of 2 synthetic 16x64x64 crops (the
  quickstart's crop; ellipsoids style, 14 objects each), with ``--threads`` threads (1: what each
  of the quickstart's two Ray workers gets on 2 cores);
- inference: ``ls-predict``'s call of the model on a 32x128x128 tile (``predict.tile_shape``):
  ``predict(paste_masks=False)``, with masks for every detection (``min_score`` unset, what
  ``ls-evaluate`` needs for COCO AP) or only for those at or above ``predict.score_threshold``
  (0.5; ``ls-predict`` since it passes ``min_score``: the same painted objects).

The bf16 rows run the forward pass under ``torch.autocast(dtype=torch.bfloat16)`` (the backward
follows it), what ``trainer.amp`` and ``predict.amp`` choose: fast only where oneDNN has bf16
kernels (CPUs with AVX-512 BF16 or AMX; GPUs), on other CPUs many times slower.

``--checkpoint`` loads trained weights (e.g. the quickstart's) into every setting; without it the
models are untrained and seeded, their detections are noise and the score-threshold row means
little. Medians over ``--repeats`` after a warm-up; the ratio is reference time / setting time.
``--device cuda`` measures on the GPU (``scripts/check-gpu.sh`` runs it).

    hatch run python benchmarks/throughput.py --checkpoint runs/quickstart/<checkpoint folder>
    hatch run python benchmarks/throughput.py --threads 2 --repeats 9
    hatch run python benchmarks/throughput.py --device cuda
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np
import torch

from ls_data.synth import synthesize_volume
from ls_data.transforms import boxes_from_masks
from ls_detection import mask_head
from ls_train.checkpoint_config import config_from_checkpoint
from ls_train.config import load_config
from ls_train.factory import build_model
from ls_train.precision import autocast
from ls_train.trainer.checkpoint import load_model_weights, load_state

LAYOUTS = {"default layout": ["models.channels_last=false"], "channels_last": []}
SCORE_THRESHOLD = 0.5  # predict.score_threshold's default
# (row, layout, min_score, concat, amp); the first row is the reference. concat: how the
# image-guided mask predictor joins its features and image patches
# (ls_detection.mask_head.padded_concat, or its reference, pad + cat); amp: the autocast dtype of
# the forward pass (None: float32; bf16 is fast on CPUs with AVX-512 BF16 or AMX, and on GPUs)
SETTINGS = (
    ("reference (default layout, masks of every detection, pad + cat)", "default layout", None, "reference",
     None),
    ("channels_last", "channels_last", None, "reference", None),
    ("channels_last + padded_concat", "channels_last", None, "fast", None),
    ("channels_last + padded_concat + masks only at or above the score threshold", "channels_last",
     SCORE_THRESHOLD, "fast", None),
    ("channels_last + padded_concat + bf16 autocast", "channels_last", None, "fast", torch.bfloat16),
    ("channels_last + padded_concat + masks only at or above the score threshold + bf16 autocast",
     "channels_last", SCORE_THRESHOLD, "fast", torch.bfloat16),
)
CONCAT = {"reference": mask_head.padded_concat_reference, "fast": mask_head.padded_concat}


def _sample(shape: tuple[int, int, int], seed: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    objects = 14 * max(1, int(np.prod(shape)) // 65536)
    vol = synthesize_volume(style="ellipsoids", shape=shape, channels=1, num_classes=1, num_objects=objects,
                            seed=seed)
    image = torch.from_numpy(vol.image.astype(np.float32))
    image = (image - image.mean()) / image.std()
    ids = [i for i in np.unique(vol.labels) if i]
    masks = torch.from_numpy(np.stack([vol.labels == i for i in ids])).to(torch.uint8)
    labels = torch.ones(len(ids), dtype=torch.long)
    return image, {"boxes": boxes_from_masks(masks), "labels": labels, "masks": masks}


def _models(root: str, checkpoint: str | None) -> dict[str, torch.nn.Module]:
    models = {}
    for name, overrides in LAYOUTS.items():
        if checkpoint is None:
            cfg = load_config("quickstart", [f"data.root={root}", *overrides])
            torch.manual_seed(0)
            models[name] = build_model(cfg)
        else:
            cfg = config_from_checkpoint(checkpoint, overrides)
            models[name] = build_model(cfg)
            load_model_weights(models[name], load_state(checkpoint), source=checkpoint)
    return models


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: list,
                device: torch.device, amp: torch.dtype | None) -> float:
    images = [b[0].to(device) for b in batch]
    targets = [{k: v.to(device) for k, v in b[1].items()} for b in batch]
    _sync(device)
    start = time.perf_counter()
    with autocast(amp, device):
        losses = model.train()(images, targets)
    optimizer.zero_grad(set_to_none=True)
    sum(losses.values()).backward()
    optimizer.step()
    _sync(device)
    return time.perf_counter() - start


@torch.no_grad()
def _infer(
    model: torch.nn.Module, tile: torch.Tensor, device: torch.device, min_score: float | None,
    amp: torch.dtype | None,
) -> float:
    tile = tile.to(device)
    _sync(device)
    start = time.perf_counter()
    with autocast(amp, device):
        model.predict([tile], paste_masks=False, min_score=min_score)
    _sync(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--checkpoint", help="a checkpoint folder whose weights every setting loads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    crops = [_sample((16, 64, 64), seed) for seed in range(4)]
    tile = _sample((32, 128, 128), 99)[0]
    with tempfile.TemporaryDirectory() as root:
        models = {name: model.to(device) for name, model in _models(root, args.checkpoint).items()}
    # inference first (training steps change the weights), then training; each round interleaved.
    # The concat setting swaps the function the mask predictor calls (restored afterwards).
    infer: dict[str, list[float]] = {row: [] for row, *_ in SETTINGS}
    trained = [setting for setting in SETTINGS if setting[2] is None]  # min_score: inference only
    train: dict[str, list[float]] = {row: [] for row, *_ in trained}
    optimizers = {n: torch.optim.AdamW(m.parameters(), lr=1e-4, fused=True) for n, m in models.items()}
    try:
        for r in range(args.repeats + 1):  # the first round warms up (oneDNN primitives, allocator)
            for row, layout, min_score, concat, amp in SETTINGS:
                mask_head.padded_concat = CONCAT[concat]
                seconds = _infer(models[layout], tile, device, min_score, amp)
                if r:
                    infer[row].append(seconds)
        for r in range(args.repeats + 1):
            for row, layout, _, concat, amp in trained:
                mask_head.padded_concat = CONCAT[concat]
                torch.manual_seed(r)
                batch = [crops[(2 * r) % 4], crops[(2 * r + 1) % 4]]
                seconds = _train_step(models[layout], optimizers[layout], batch, device, amp)
                if r:
                    train[row].append(seconds)
    finally:
        mask_head.padded_concat = CONCAT["fast"]
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {args.threads} thread(s)"
    weights = args.checkpoint or "untrained, seeded"
    print(f"\n{where}, medians of {args.repeats}; weights: {weights}\n")
    print("| setting | training step (s) | ratio | 32x128x128 tile inference (s) | ratio |")
    print("| --- | --- | --- | --- | --- |")
    ref_train = statistics.median(train[SETTINGS[0][0]])
    ref_infer = statistics.median(infer[SETTINGS[0][0]])
    for row, *_ in SETTINGS:
        tile_s = statistics.median(infer[row])
        step_cells = "(as above) | "
        if row in train:
            step = statistics.median(train[row])
            step_cells = f"{step:.3f} | {ref_train / step:.2f}x"
        print(f"| {row} | {step_cells} | {tile_s:.3f} | {ref_infer / tile_s:.2f}x |")


if __name__ == "__main__":
    main()
