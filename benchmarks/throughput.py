"""Training and inference throughput of the quickstart model: each fast-path setting against the
reference (PyTorch's default memory layout, float32), measured in the same run, interleaved.

- training step: forward, backward and AdamW step of a batch of 2 synthetic 16x64x64 crops (the
  quickstart's crop; ellipsoids style, 14 objects each), with ``--threads`` threads (1: what each
  of the quickstart's two Ray workers gets on 2 cores);
- inference: one eval-mode forward (masks pasted) of a 32x128x128 tile (``predict.tile_shape``).

Medians over ``--repeats`` after a warm-up; the ratio is reference time / setting time.
``--device cuda`` measures on the GPU (``scripts/check-gpu.sh`` runs it).

    hatch run python benchmarks/throughput.py
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
from ls_train.config import load_config
from ls_train.factory import build_model

SETTINGS = {"reference (default layout)": ["models.channels_last=false"], "channels_last": []}


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


def _models(root: str) -> dict[str, torch.nn.Module]:
    models = {}
    for name, overrides in SETTINGS.items():
        cfg = load_config("quickstart", [f"data.root={root}", *overrides])
        torch.manual_seed(0)
        models[name] = build_model(cfg)
    return models


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: list,
                device: torch.device) -> float:
    images = [b[0].to(device) for b in batch]
    targets = [{k: v.to(device) for k, v in b[1].items()} for b in batch]
    _sync(device)
    start = time.perf_counter()
    losses = model.train()(images, targets)
    optimizer.zero_grad(set_to_none=True)
    sum(losses.values()).backward()
    optimizer.step()
    _sync(device)
    return time.perf_counter() - start


@torch.no_grad()
def _infer(model: torch.nn.Module, tile: torch.Tensor, device: torch.device) -> float:
    tile = tile.to(device)
    _sync(device)
    start = time.perf_counter()
    model.eval()([tile])
    _sync(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    crops = [_sample((16, 64, 64), seed) for seed in range(4)]
    tile = _sample((32, 128, 128), 99)[0]
    with tempfile.TemporaryDirectory() as root:
        models = {name: model.to(device) for name, model in _models(root).items()}
    optimizers = {n: torch.optim.AdamW(m.parameters(), lr=1e-4, fused=True) for n, m in models.items()}
    times: dict[str, dict[str, list[float]]] = {n: {"train": [], "infer": []} for n in models}
    for r in range(args.repeats + 1):  # the first round warms up (oneDNN primitives, allocator)
        for name, model in models.items():
            torch.manual_seed(r)
            batch = [crops[(2 * r) % 4], crops[(2 * r + 1) % 4]]
            train = _train_step(model, optimizers[name], batch, device)
            infer = _infer(model, tile, device)
            if r:
                times[name]["train"].append(train)
                times[name]["infer"].append(infer)
    ref = next(iter(times.values()))
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {args.threads} thread(s)"
    print(f"\n{where}, medians of {args.repeats}\n")
    print("| setting | training step (s) | ratio | 32x128x128 tile inference (s) | ratio |")
    print("| --- | --- | --- | --- | --- |")
    for name, t in times.items():
        train, infer = statistics.median(t["train"]), statistics.median(t["infer"])
        r_train, r_infer = statistics.median(ref["train"]) / train, statistics.median(ref["infer"]) / infer
        print(f"| {name} | {train:.3f} | {r_train:.2f}x | {infer:.3f} | {r_infer:.2f}x |")


if __name__ == "__main__":
    main()
