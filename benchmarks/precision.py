"""bf16 autocast against float32 in ``ls-predict``: the same checkpoint, the same volumes, both
precisions in one run (interleaved, the order alternating per volume).

For each volume (a ``*_image.tif`` beside its ``*_labels.tif``, e.g. the test volumes of
``bench-accuracy``, ``<out>/data/<style>-test/tiff``), ``ls_train.predict.predict_array`` (what
``ls-predict`` runs for a file) labels it with ``predict.amp=none`` (float32, the reference) and
``predict.amp=bf16``. Printed:

- per precision: the accuracy TP / (TP + FP + FN) against the ground truth at IoU 0.5, 0.75 and
  0.9 (``ap@50`` ...; counts pooled over the volumes), and the median seconds per volume;
- bf16 against float32: the share of the float32 objects that the bf16 labels match at IoU 0.9
  (issue 17's goal: >= 0.99) and the mean IoU of those matches.

bf16 pays only where oneDNN has bf16 kernels (CPUs with AVX-512 BF16 or AMX, and GPUs); the
header says whether this CPU has them (``torch.ops.mkldnn._is_mkldnn_bf16_supported()``).

    hatch run python benchmarks/precision.py --checkpoint runs/quickstart/<checkpoint> \\
        --volumes <bench-accuracy out>/data/ellipsoids-test/tiff [more folders] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import tifffile
import torch

from ls_train.checkpoint_config import config_from_checkpoint
from ls_train.metrics.matching import match, pool_results
from ls_train.predict import predict_array

PRECISIONS = ("none", "bf16")  # predict.amp; the first is the reference
THRESHOLDS = (0.5, 0.75, 0.9)


def _pairs(folders: list[Path]) -> list[tuple[Path, Path]]:
    pairs = []
    for folder in folders:
        for image in sorted(folder.glob("*_image.tif")):
            labels = image.with_name(image.name.replace("_image.tif", "_labels.tif"))
            if not labels.exists():
                raise SystemExit(f"{image}: no {labels.name} beside it")
            pairs.append((image, labels))
    if not pairs:
        raise SystemExit(f"no *_image.tif in {', '.join(map(str, folders))}")
    return pairs


def _label(cfg: dict, checkpoint: str, image: np.ndarray, spacing: list[float]) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    out = predict_array(cfg, image, spacing=spacing, checkpoint=checkpoint, print_fn=lambda _: None)
    return out.labels, time.perf_counter() - start


def _row(name: str, results: list[list], seconds: list[float]) -> str:
    pooled = [pool_results([r[i] for r in results]) for i in range(len(THRESHOLDS))]
    cells = " | ".join(f"{p.accuracy:.4f}" for p in pooled)
    return f"| {name} | {cells} | {statistics.median(seconds):.2f} |"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--volumes", type=Path, nargs="+", required=True, help="folders of *_image.tif")
    parser.add_argument("--spacing", type=float, nargs=3, default=[2.0, 0.5, 0.5], help="um (z, y, x)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfgs = {
        amp: config_from_checkpoint(args.checkpoint, [f"predict.amp={amp}", "predict.progress=false"])
        for amp in PRECISIONS
    }
    truth: dict[str, list] = {amp: [] for amp in PRECISIONS}
    seconds: dict[str, list[float]] = {amp: [] for amp in PRECISIONS}
    against: list = []  # bf16 labels matched to the float32 labels
    for i, (image_path, labels_path) in enumerate(_pairs(args.volumes)):
        image, gt = tifffile.imread(image_path), tifffile.imread(labels_path)
        labels = {}
        for amp in PRECISIONS if i % 2 == 0 else PRECISIONS[::-1]:
            labels[amp], s = _label(cfgs[amp], args.checkpoint, image, args.spacing)
            seconds[amp].append(s)
            truth[amp].append(match(gt, labels[amp], THRESHOLDS))
        against.append(match(labels["none"], labels["bf16"], [0.9])[0])
    cpu = "bf16 kernels" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "NO bf16 kernels"
    print(f"\n{len(against)} volumes, {args.threads} thread(s), {torch.backends.cpu.get_cpu_capability()} "
          f"({cpu}); checkpoint {args.checkpoint}\n")
    print("| predict.amp | ap@50 | ap@75 | ap@90 | s per volume (median) |")
    print("| --- | --- | --- | --- | --- |")
    for amp in PRECISIONS:
        print(_row(amp, truth[amp], seconds[amp]))
    vs = pool_results(against)
    ratio = statistics.median(seconds["none"]) / statistics.median(seconds["bf16"])
    print(f"\nbf16 against float32: {vs.recall:.4f} of the {vs.n_true} float32 objects matched at IoU 0.9 "
          f"(goal >= 0.99), mean IoU of those {vs.mean_matched_iou:.4f}; {ratio:.2f}x the speed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
