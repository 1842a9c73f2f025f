"""ls-data throughput: synthesis, crop index build, and crops per second through a DataLoader.

Measures, in one run:

- synth time of the ``ls-data synth`` default dataset (``ls-data synth --out DIR``: 8 volumes
  of 32x128x128, 3 channels, TIFF + OME-Zarr, catalog; the quickstart makes a smaller one);
- synth time of the benchmark dataset (20 volumes of 64x256x256, 3 channels, 480 objects
  each: the object density of ``synthesize_dataset``'s defaults), both formats;
- crop index build time for those 20 volumes, per format (crop 64x128x128, stride 64x64x64,
  a forced rebuild), and the time to reuse an up-to-date index (fingerprint check only);
- crops per second of ``SkittlezDataset`` through a ``DataLoader`` with 2 workers (batch 1,
  shuffled, ``collate_detection``), crop 3x64x128x128 with targets (boxes, classes, uint8 masks),
  from OME-Zarr (TensorStore) and from TIFF (memory-mapped), after a warm-up;
- the reference: crops per second that a ResNet3D-18-FPN training step consumes on the same
  machine (median forward + backward of the ``resnet3d_18_fpn`` backbone on one 3x64x128x128
  crop; a full Mask R-CNN step costs more, so this is an upper bound of what training
  consumes). Goal: loader >= 5x that.

    python benchmarks/data.py                  # full run (writes ~1 GB to a temporary folder)
    python benchmarks/data.py --quick          # small volumes and few samples: checks the script
    python benchmarks/data.py --json out.json  # also write the numbers
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from ls_data.catalog import Selection
from ls_data.cli import main as cli_main
from ls_data.dataset import SkittlezDataset
from ls_data.index import CropIndexConfig, build_crop_index
from ls_data.loader import collate_detection
from ls_data.synth import synthesize_dataset


def timed(fn):
    t0 = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - t0


def loader_rate(index_path: Path, samples: int, warmup: int) -> tuple[float, float]:
    """Crops per second (and mean instances per crop) of a 2-worker DataLoader over an index."""
    ds = SkittlezDataset(index_path=index_path)
    loader = DataLoader(
        ds,
        batch_size=1,
        shuffle=True,
        num_workers=2,
        collate_fn=collate_detection,
        generator=torch.Generator().manual_seed(0),
        persistent_workers=True,
        # TensorStore aborts in a process forked after the parent used it (the index build did):
        # workers start from a fresh fork server instead.
        multiprocessing_context="forkserver",
    )
    seen = instances = 0
    start = None
    while seen < samples + warmup:
        for images, targets, _ in loader:
            if seen == warmup:
                start = time.perf_counter()
            if seen >= warmup:
                assert images[0].shape[0] == 3 and targets[0]["masks"].dtype == torch.uint8
                instances += len(targets[0]["labels"])
            seen += 1
            if seen == samples + warmup:
                break
    elapsed = time.perf_counter() - start
    return samples / elapsed, instances / samples


def model_rate(crop: tuple[int, int, int], repeats: int) -> float:
    """Crops per second of ResNet3D-18-FPN forward + backward on one 3-channel crop."""
    import ls_backbones

    torch.manual_seed(0)
    net = ls_backbones.create_backbone("resnet3d_18_fpn", in_channels=3).train()
    x = torch.randn(1, 3, *crop)

    def step():
        net.zero_grad(set_to_none=True)
        sum(v.float().mean() for v in net(x).values()).backward()

    step()  # warm-up
    times = [timed(step)[1] for _ in range(repeats)]
    return 1.0 / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small volumes, few samples")
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    parser.add_argument("--workdir", type=Path, help="folder for the data (default: a temporary one)")
    args = parser.parse_args()

    num_volumes, shape, objects = (20, (64, 256, 256), 480) if not args.quick else (3, (64, 160, 160), 120)
    crop, stride = (64, 128, 128), (64, 64, 64)
    samples, warmup, repeats = (120, 8, 3) if not args.quick else (12, 2, 1)
    rows: list[tuple[str, float, str]] = []
    results: dict[str, float] = {}

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        root = Path(tmp)
        code, t = timed(lambda: cli_main(["synth", "--out", str(root / "quickstart")]))
        if code != 0:
            raise SystemExit(f"ls-data synth failed with status {code}")
        rows.append(("synth `ls-data synth` defaults (8 x 32x128x128, both formats)", t, "s"))
        results["synth_quickstart_s"] = t

        bench, t = timed(
            lambda: synthesize_dataset(
                root / "bench",
                num_volumes=num_volumes,
                shape=shape,
                num_objects=objects,
                val_fraction=0.0,
                seed=1,
            )
        )
        rows.append((f"synth {num_volumes} x {'x'.join(map(str, shape))} (both formats)", t, "s"))
        results["synth_bench_s"] = t

        indices = {}
        for fmt in ("ome-zarr", "tiff"):
            path = root / f"index-{fmt}.sqlite"
            kwargs = dict(
                catalog=bench.catalog,
                selection=Selection(formats=[fmt]),
                index_path=path,
                config=CropIndexConfig(crop_shape=crop, stride=stride),
                roots=[root],
            )
            index, t = timed(lambda kwargs=kwargs: build_crop_index(**kwargs, rebuild=True))
            rows.append((f"index build, {num_volumes} volumes, {fmt} ({len(index)} crops)", t, "s"))
            results[f"index_build_{fmt}_s"] = t
            _, t = timed(lambda kwargs=kwargs: build_crop_index(**kwargs))
            rows.append((f"index reuse (fingerprint check), {fmt}", t, "s"))
            results[f"index_reuse_{fmt}_s"] = t
            indices[fmt] = path

        for fmt, path in indices.items():
            rate, per_crop = loader_rate(path, samples, warmup)
            rows.append(
                (
                    f"loader {fmt}, 2 workers, 3x64x128x128 + targets ({per_crop:.0f} inst/crop)",
                    rate,
                    "crops/s",
                )
            )
            results[f"loader_{fmt}_crops_per_s"] = rate

    rate = model_rate(crop, repeats)
    rows.append(("ResNet3D-18-FPN fwd+bwd, 1 x 3x64x128x128", rate, "crops/s"))
    results["resnet3d_18_fpn_crops_per_s"] = rate
    for fmt in indices:
        ratio = results[f"loader_{fmt}_crops_per_s"] / rate
        rows.append((f"ratio loader {fmt} / training step (goal >= 5)", ratio, "x"))
        results[f"ratio_{fmt}"] = ratio

    width = max(len(r[0]) for r in rows)
    print(f"{'measurement'.ljust(width)}  {'value':>10}  unit")
    print(f"{'-' * width}  {'-' * 10}  -------")
    for name, value, unit in rows:
        print(f"{name.ljust(width)}  {value:10.3f}  {unit}")
    print(f"(torch threads: {torch.get_num_threads()}; CPU count: {torch.multiprocessing.cpu_count()})")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
