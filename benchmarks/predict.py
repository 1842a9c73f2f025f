"""ls-predict on large synthetic OME-Zarr volumes: voxels/s, peak memory, overhead over the model.

Measures, in one run and on this machine:

- a synthetic ``Z x Y x X`` light-sheet OME-Zarr volume (default 128x1024x1024, one channel, the
  quickstart's spacing and object density), assembled from independently synthesised blocks of
  ``Z x 256 x 256`` and streamed to disk, and a volume ``--larger`` times larger in y*x (default
  4: 2x2 of the same blocks, mirrored) unless ``--no-larger``;
- ``ls-predict`` with the given checkpoint (the quickstart model) on each, local executor, in a
  fresh process per volume: total wall time, voxels/s, peak RSS of that process, and the sum of
  the detector's forward time (``model.predict``) over the same tiles. Goals: total / forward
  <= 1.3; peak RSS of the larger volume within 10 % of the smaller one;
- consistency: a synthetic volume of one tile's depth and twice its height and width, predicted
  as one tile and tiled: the share of one-tile instances that the tiled result matches at IoU
  0.5 and 0.9, and each one's ap@50 against the synthetic truth;
- with ``--reference``, the first volume again with the reference model settings
  (``models.channels_last=false predict.amp=none``: PyTorch's default memory layout, float32) and
  with the default settings in float32 (``predict.amp=none``; the default ``auto`` is bf16
  autocast on CPUs with bf16 kernels, see ``ls_train.precision``), in the same run, and the
  speed ratios.

    python benchmarks/predict.py --checkpoint runs/quickstart/checkpoint_epoch0020_iter00000160
    python benchmarks/predict.py --checkpoint CKPT --shape 32 256 256 --no-larger   # quick check
    python benchmarks/predict.py --checkpoint CKPT --shape 32 1024 1024 --no-larger --reference
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BLOCK_YX = 256


def make_volume(
    path: Path, shape: tuple[int, int, int], *, seed: int, mirror_of: Path | None = None
) -> float:
    """Write a synthetic one-channel OME-Zarr volume block by block; returns seconds."""
    from ls_data.io import ImageWriter, open_image, pyramid_factors
    from ls_data.synth import synthesize_volume

    start = time.monotonic()
    spacing = (2.0, 0.5, 0.5)
    z, y, x = shape
    factors = pyramid_factors(shape, spacing, max_levels=3)
    writer = ImageWriter.create(
        path, (1, z, y, x), np.uint16, spacing, chunks=(32, 128, 128), factors=factors, overwrite=True
    )
    source = open_image(mirror_of) if mirror_of is not None else None
    block = (z, min(BLOCK_YX, y), min(BLOCK_YX, x))
    # quickstart density: 40 objects per 24x96x96 voxels
    per_block = round(40 * np.prod(block) / (24 * 96 * 96))
    k = 0
    for y0 in range(0, y, block[1]):
        for x0 in range(0, x, block[2]):
            if source is not None:
                sy, sx = source.shape[2], source.shape[3]
                yy, xx = y0 % sy, x0 % sx
                data = source.read((slice(0, z), slice(yy, yy + block[1]), slice(xx, xx + block[2])))
                if (y0 // sy + x0 // sx) % 2:
                    data = data[..., ::-1, ::-1]
            else:
                vol = synthesize_volume(
                    shape=block,
                    spacing=spacing,
                    channels=1,
                    num_objects=per_block,
                    num_classes=1,
                    seed=seed * 1000 + k,
                )
                data = vol.image
            writer.write((0, y0, x0), np.ascontiguousarray(data))
            k += 1
    writer.build_pyramid()
    writer.finalize()
    return time.monotonic() - start


CHILD = r"""
import json, resource, sys, time
from ls_train.config import load_config
from ls_train.predict import run_prediction
args = json.loads(sys.argv[1])
import torch
torch.set_num_threads(args["threads"])
cfg = load_config(args["config"], args["overrides"])
start = time.monotonic()
r = run_prediction(cfg, input=args["input"], output=args["output"], checkpoint=args["checkpoint"],
                   overwrite=True, print_fn=lambda s: print(s, file=sys.stderr))
print(json.dumps({"total": time.monotonic() - start, "forward": r.forward_seconds, "voxels": r.voxels,
                  "objects": r.objects, "tiles": r.tiles, "passes": r.seconds,
                  "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))
"""


REFERENCE = ["models.channels_last=false", "predict.amp=none"]
FLOAT32 = ["predict.amp=none"]  # the default settings but float32: what bf16 autocast adds


def predict(args: argparse.Namespace, volume: Path, out: Path, extra: list[str] | None = None) -> dict:
    overrides = [
        f"predict.tile_shape=[{','.join(map(str, args.tile))}]",
        f"predict.overlap=[{','.join(map(str, args.overlap))}]",
        f"predict.threads_per_worker={args.threads}",
        f"predict.work_dir={out}.work",
        # room for every object of a dense tile (the quickstart trains on crops with ~40 objects)
        f"models.rpn_pre_nms_top_n_test={4 * args.max_detections}",
        f"models.rpn_post_nms_top_n_test={2 * args.max_detections}",
        f"models.box_detections_per_img={args.max_detections}",
        *(extra or []),
    ]
    payload = {
        "config": args.config_name,
        "overrides": overrides,
        "input": str(volume),
        "output": str(out),
        "checkpoint": args.checkpoint,
        "threads": args.threads,
    }
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(payload)],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": str(args.threads)},
    )
    if proc.returncode:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"prediction of {volume} failed")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def consistency(args: argparse.Namespace, root: Path) -> dict:
    """Tiled vs one-tile prediction of a volume that fits in one tile, and both vs the truth."""
    from ls_data.io import open_labels, write_ome_zarr
    from ls_data.synth import synthesize_volume
    from ls_train.metrics.matching import match

    shape = (args.tile[0], 2 * args.tile[1], 2 * args.tile[2])
    per_volume = round(40 * np.prod(shape) / (24 * 96 * 96))
    vol = synthesize_volume(shape=shape, channels=1, num_objects=per_volume, num_classes=1, seed=7)
    path = write_ome_zarr(root / "consistency.ome.zarr", vol.image, vol.spacing, overwrite=True)
    labels = {}
    for name, tile, overlap in (("one tile", list(shape), [0, 0, 0]), ("tiled", args.tile, args.overlap)):
        run = argparse.Namespace(**{**vars(args), "tile": tile, "overlap": overlap})
        out = root / f"consistency_{name.replace(' ', '_')}.ome.zarr"
        predict(run, path, out)
        labels[name] = open_labels(out / "labels" / "instances").read()
    one, tiled = labels["one tile"], labels["tiled"]
    at = {t: r for t, r in zip((0.5, 0.9), match(one, tiled, thresholds=(0.5, 0.9)), strict=True)}
    truth = {name: match(vol.labels, lab, thresholds=(0.5,))[0] for name, lab in labels.items()}
    return {
        "shape": shape,
        "instances one tile": int(at[0.5].n_true),
        "instances tiled": int(at[0.5].n_pred),
        "one-tile instances matched by tiled at IoU 0.5": at[0.5].recall,
        "one-tile instances matched by tiled at IoU 0.9": at[0.9].recall,
        "tiled instances matched at IoU 0.9": at[0.9].precision,
        "ap@50 vs truth, one tile": truth["one tile"].accuracy,
        "ap@50 vs truth, tiled": truth["tiled"].accuracy,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", required=True, help="the quickstart model (checkpoint folder)")
    parser.add_argument("--config-name", default="quickstart")
    parser.add_argument("--shape", type=int, nargs=3, default=[128, 1024, 1024])
    parser.add_argument("--larger", type=int, default=4, help="y*x factor of the second volume (4: 2x2)")
    parser.add_argument("--no-larger", action="store_true")
    parser.add_argument("--tile", type=int, nargs=3, default=[32, 128, 128])
    parser.add_argument("--overlap", type=int, nargs=3, default=[8, 32, 32])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-detections", type=int, default=1000, help="detections per tile at most")
    parser.add_argument("--dir", type=Path, default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--reference", action="store_true",
                        help="also predict the first volume with " + " ".join(REFERENCE))
    args = parser.parse_args()

    root = args.dir or Path(tempfile.mkdtemp(prefix="ls-bench-predict-"))
    root.mkdir(parents=True, exist_ok=True)
    shape = tuple(args.shape)
    base = root / "base.ome.zarr"
    made = make_volume(base, shape, seed=0)
    print(f"synthesised {shape} in {made:.1f} s -> {base}", flush=True)
    volumes = [("base", base, shape)]
    if not args.no_larger:
        side = round(args.larger**0.5)
        big_shape = (shape[0], shape[1] * side, shape[2] * side)
        big = root / "larger.ome.zarr"
        made = make_volume(big, big_shape, seed=1, mirror_of=base)
        print(f"assembled {big_shape} in {made:.1f} s -> {big}", flush=True)
        volumes.append(("larger", big, big_shape))

    same = consistency(args, root)
    print(f"consistency: {json.dumps(same)}", flush=True)
    results = {}
    runs = [(name, path, vshape, []) for name, path, vshape in volumes]
    if args.reference:
        runs[1:1] = [("reference", base, shape, REFERENCE), ("float32", base, shape, FLOAT32)]
    for name, path, vshape, extra in runs:
        r = predict(args, path, root / f"{name}_labels.ome.zarr", extra)
        results[name] = {**r, "shape": vshape}
        print(f"{name}: {json.dumps(results[name])}", flush=True)

    print()
    print(
        f"ls-predict, {args.config_name} model, tiles {args.tile} overlap {args.overlap}, "
        f"{args.threads} threads, local executor"
    )
    header = (
        "volume",
        "voxels",
        "tiles",
        "objects",
        "total s",
        "forward s",
        "total/forward",
        "Mvoxel/s",
        "peak RSS GB",
    )
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    for name, r in results.items():
        print(
            " | ".join(
                str(v)
                for v in (
                    f"{name} " + "x".join(map(str, r["shape"])),
                    r["voxels"],
                    r["tiles"],
                    r["objects"],
                    f"{r['total']:.1f}",
                    f"{r['forward']:.1f}",
                    f"{r['total'] / r['forward']:.3f}",
                    f"{r['voxels'] / r['total'] / 1e6:.3f}",
                    f"{r['peak_rss_gb']:.2f}",
                )
            )
        )
    if "reference" in results:
        for name in ("base", "float32"):
            speed = results["reference"]["total"] / results[name]["total"]
            print(f"{name} / reference ({' '.join(REFERENCE)}) speed: {speed:.2f}x, same volume, same run")
    if "larger" in results:
        ratio = results["larger"]["peak_rss_gb"] / results["base"]["peak_rss_gb"]
        print(f"peak RSS larger / base: {ratio:.3f} (goal <= 1.10)")
    for name, r in results.items():
        print(f"{name} passes (s): " + ", ".join(f"{k} {v:.1f}" for k, v in r["passes"].items()))
    print()
    print(f"tiled ({args.tile}, overlap {args.overlap}) vs one tile on a {same['shape']} volume:")
    for key, value in same.items():
        if key != "shape":
            print(f"  {key}: {value:.3f}" if isinstance(value, float) else f"  {key}: {value}")
    if args.json:
        args.json.write_text(json.dumps({**results, "consistency": same}, indent=1))


if __name__ == "__main__":
    main()
