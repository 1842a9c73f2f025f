"""Whole-volume ``ls-evaluate pred=... gt=...``: time and peak RSS against the volume's size.

Writes, on this machine, a synthetic pair of OME-Zarr label volumes per size: the truth is a
lattice of boxes (one per cell of 10 x 20 x 20 voxels, random sizes 3-8 x 6-18 x 6-18: about
the object density of ``ls-predict``'s benchmark volume, 24 486 objects in 128x1024x1024), the
prediction is the truth shifted by one voxel along x with its ids permuted (every object
matched at IoU 0.5, about a third at 0.75). Both are written block by block (uint32, chunks
32x128x128), so neither is ever in memory whole.

Each size is evaluated by the real command, ``ls-evaluate pred=... gt=...`` (``evaluate_main``
in a fresh process): wall time of the command (config composition and validation included) and
of the evaluation itself (opening, block pass, matching, tables; ``meta.seconds`` of
``metrics.json``), the process's peak RSS (VmHWM) and its RSS after the imports (the baseline:
torch, TensorStore, Hydra), objects and blocks. The first size is also matched in memory
with ``ls_train.metrics.matching.match`` on the whole arrays: "identical" compares the counts,
sums and ratios at every threshold with the block-by-block result.

Goal (issue 16): the peak RSS of the ``--larger`` (default 4x) volume within 10 % of the first's.

    python benchmarks/evaluate_volume.py                              # 64x512x512 and 4x (64x1024x1024)
    python benchmarks/evaluate_volume.py --shape 128 1024 1024        # the issue's size (and 4x)
    python benchmarks/evaluate_volume.py --shape 32 256 256 --larger 4 --block 32 256 256
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

CELL = (10, 20, 20)
SPACING = (2.0, 0.5, 0.5)
CHUNKS = (32, 128, 128)


def _vm(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


def _lattice(shape: tuple[int, int, int], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Per cell: box size ``(nz, ny, nx, 3)`` and the predicted id of each truth id (a permutation)."""
    rng = np.random.default_rng(seed)
    cells = tuple(-(-s // c) for s, c in zip(shape, CELL, strict=True))
    lo, hi = np.array([3, 6, 6]), np.minimum(np.array(CELL), np.array([9, 19, 19]))
    sizes = rng.integers(lo, hi, size=(*cells, 3))
    n = int(np.prod(cells))
    perm = np.concatenate(([0], rng.permutation(n) + 1)).astype(np.uint32)
    return sizes, perm


def _labels(window: tuple[slice, slice, slice], sizes: np.ndarray, shift: int) -> np.ndarray:
    """The truth (``shift=0``) or the prediction's lattice ids in ``window``, shifted by ``shift`` in x."""
    z = np.arange(window[0].start, window[0].stop)[:, None, None]
    y = np.arange(window[1].start, window[1].stop)[None, :, None]
    x = np.arange(window[2].start, window[2].stop)[None, None, :] - shift
    cz, cy, cx = z // CELL[0], y // CELL[1], np.maximum(x, 0) // CELL[2]
    s = sizes[cz, cy, cx]
    inside = (z % CELL[0] < s[..., 0]) & (y % CELL[1] < s[..., 1]) & (x % CELL[2] < s[..., 2]) & (x >= 0)
    ids = (cz * sizes.shape[1] + cy) * sizes.shape[2] + cx + 1
    return np.where(inside, ids, 0).astype(np.uint32)


def write_pair(root: Path, shape: tuple[int, int, int], seed: int) -> tuple[Path, Path, float]:
    """``truth.ome.zarr/labels/cells`` and ``pred.ome.zarr/labels/instances``, written block by block."""
    from ls_data.io import ImageWriter, LabelImageWriter

    start = time.monotonic()
    sizes, perm = _lattice(shape, seed)
    paths = []
    for name, label, shift in (("truth", "cells", 0), ("pred", "instances", 1)):
        group = root / f"{name}.ome.zarr"
        image = ImageWriter.create(
            group, (1, *shape), np.uint8, SPACING, chunks=CHUNKS, factors=[], overwrite=True
        )
        image.finalize(check_complete=False)  # an empty image: the labels are what is read
        writer = LabelImageWriter.create(group, label, shape, SPACING, chunks=CHUNKS, overwrite=True)
        for z0 in range(0, shape[0], CHUNKS[0]):
            for y0 in range(0, shape[1], 512):
                w = (slice(z0, min(z0 + CHUNKS[0], shape[0])), slice(y0, min(y0 + 512, shape[1])),
                     slice(0, shape[2]))  # fmt: skip
                block = _labels(w, sizes, shift)
                writer.write((z0, y0, 0), perm[block] if shift else block)
        writer.build_pyramid()
        writer.finalize()
        paths.append(group / "labels" / label)
    return paths[0], paths[1], time.monotonic() - start


def worker(pred: str, gt: str, out: str, block: list[int]) -> dict:
    import tensorstore  # noqa: F401  -- what the command imports anyway: the baseline counts it
    import torch  # noqa: F401

    import ls_train.evaluate_volume
    import ls_train.factory  # noqa: F401
    from ls_train.cli import evaluate_main

    base = _vm("VmRSS")
    start = time.monotonic()
    status = evaluate_main(
        [f"pred={pred}", f"gt={gt}", f"evaluation.output_dir={out}",
         f"evaluation.block_shape=[{','.join(map(str, block))}]", "evaluation.region_grid=[2,4,4]"]
    )  # fmt: skip
    seconds = time.monotonic() - start
    return {"status": status, "seconds": seconds, "peak_rss": _vm("VmHWM"), "base_rss": base}


def in_memory(pred: Path, gt: Path) -> dict:
    """``match`` on the whole arrays (the reference of the block-by-block result)."""
    from ls_data.io import open_labels
    from ls_train.metrics.keys import metric_key
    from ls_train.metrics.matching import match

    results = match(open_labels(gt).read(), open_labels(pred).read(), (0.5, 0.75, 0.9))
    out = {"n_gt": float(results[0].n_true), "n_pred": float(results[0].n_pred)}
    for r in results:
        names = {"tp": "tp", "fp": "fp", "fn": "fn", "ap": "accuracy", "pq": "panoptic_quality"}
        for short, attr in names.items():
            out[metric_key(short, r.threshold)] = float(getattr(r, attr))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shape", type=int, nargs=3, default=[64, 512, 512], metavar=("Z", "Y", "X"))
    parser.add_argument("--larger", type=int, default=4, help="second volume: times more in y*x")
    parser.add_argument("--block", type=int, nargs=3, default=[32, 512, 512], metavar=("Z", "Y", "X"))
    parser.add_argument("--root", type=Path, default=None, help="volumes' folder (default: temp)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker, args.block)))
        return
    z, y, x = args.shape
    f = round(args.larger**0.5)
    shapes = [(z, y, x)] + ([(z, y * f, x * f)] if args.larger > 1 else [])
    rows = []
    with tempfile.TemporaryDirectory(dir=args.root) as tmp:
        for k, shape in enumerate(shapes):
            root = Path(tmp) / f"v{k}"
            gt, pred, write_s = write_pair(root, shape, seed=k)
            env = dict(os.environ)
            env.pop("OMP_NUM_THREADS", None)
            proc = subprocess.run(
                [sys.executable, __file__, "--worker", str(pred), str(gt), str(root / "eval"),
                 "--block", *map(str, args.block)],
                capture_output=True, text=True, env=env, check=False,
            )  # fmt: skip
            if proc.returncode != 0:
                sys.exit(f"worker failed:\n{proc.stderr[-4000:]}")
            res = json.loads(proc.stdout.strip().splitlines()[-1])
            summary = json.loads((root / "eval" / "metrics.json").read_text())
            identical = "-"
            if k == 0:
                ref = in_memory(pred, gt)
                identical = "yes" if all(summary["summary"][key] == v for key, v in ref.items()) else "NO"
            rows.append(
                {
                    "shape": "x".join(map(str, shape)),
                    "voxels": int(np.prod(shape)),
                    "objects": int(summary["summary"]["n_gt"]),
                    "blocks": summary["meta"]["blocks"],
                    "write_s": round(write_s, 1),
                    "command_s": round(res["seconds"], 1),
                    "evaluate_s": summary["meta"]["seconds"],
                    "Mvoxel/s": round(np.prod(shape) / summary["meta"]["seconds"] / 1e6, 1),
                    "base_rss_gb": round(res["base_rss"] / 1e9, 3),
                    "peak_rss_gb": round(res["peak_rss"] / 1e9, 3),
                    "ap@50": round(summary["summary"]["ap@50"], 4),
                    "ap@75": round(summary["summary"]["ap@75"], 4),
                    "identical": identical,
                }
            )
    cols = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    print("  ".join(c.rjust(widths[c]) for c in cols))
    for r in rows:
        print("  ".join(str(r[c]).rjust(widths[c]) for c in cols))
    if len(rows) > 1:
        ratio = rows[1]["peak_rss_gb"] / rows[0]["peak_rss_gb"]
        print(f"peak RSS {rows[1]['shape']} / {rows[0]['shape']}: {ratio:.3f} (goal <= 1.10: "
              f"{'met' if ratio <= 1.10 else 'NOT met'})")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
