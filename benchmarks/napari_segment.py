"""ls-napari's segment widget: button-to-labels time for a volume, against plain ``ls-predict``.

Measures, in one run and on this machine, on one synthetic light-sheet volume (default
32x512x512, one channel, the quickstart's spacing and object density):

- **ls-predict** (the reference): the command ``ls-predict checkpoint=... input=VOL.tif
  output=...`` in a fresh process, until it exits;
- **widget**: what the Segment button runs for an Image layer holding the same volume
  (:func:`ls_napari.segment.segment_layer`: the layer's array handed to a prediction process,
  ``ls-predict`` there, the labels and table back) and the Labels layer made from the result,
  from the click to the layer;
- **in-process**: :func:`ls_train.predict.predict_array` on the array in this process (no process
  start, no model import: the floor of the widget's path).

The widget's and ls-predict's labels are compared (they must be equal). Tile settings are the
checkpoint config's unless given.

    python benchmarks/napari_segment.py --checkpoint runs/quickstart/checkpoint_epoch0020_iter00000160
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _volume(shape: tuple[int, int, int], seed: int) -> tuple[np.ndarray, tuple[float, ...], float]:
    from ls_napari.sample_data import synthetic_sample

    start = time.monotonic()
    (image, meta, _), _truth = synthetic_sample(shape, seed=seed)
    return image, tuple(meta["scale"]), time.monotonic() - start


def _ls_predict(args: argparse.Namespace, tif: Path, out: Path) -> tuple[float, np.ndarray]:
    from ls_data.io import open_labels

    cmd = [sys.executable, "-m", "ls_train.cli", "predict", f"checkpoint={args.checkpoint}"]
    cmd += [f"input={tif}", f"output={out}", "predict.progress=false", *args.overrides]
    start = time.monotonic()
    run = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.monotonic() - start
    if run.returncode != 0:
        raise SystemExit(f"ls-predict failed:\n{run.stderr[-3000:]}")
    return seconds, open_labels(out / "labels" / "instances").read()


def _widget(
    args: argparse.Namespace, image: np.ndarray, spacing: tuple[float, ...]
) -> tuple[float, np.ndarray]:
    from napari.layers import Image, Labels

    from ls_napari.segment import SegmentSettings, segment_layer

    layer = Image(image, scale=spacing, name="volume")
    settings = SegmentSettings(checkpoint=str(args.checkpoint), overrides=tuple(args.overrides))
    start = time.monotonic()
    result = segment_layer(layer, settings)
    data, meta, _ = result.layer_data()
    labels = Labels(data, **meta)
    return time.monotonic() - start, np.asarray(labels.data)


def _in_process(args: argparse.Namespace, image: np.ndarray, spacing: tuple[float, ...]) -> float:
    from ls_napari.model import model_config
    from ls_train.predict import predict_array

    cfg = model_config(str(args.checkpoint), overrides=args.overrides)
    start = time.monotonic()
    predict_array(cfg, image, spacing=spacing, checkpoint=str(args.checkpoint), print_fn=lambda _: None)
    return time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--checkpoint", type=Path, required=True, help="a checkpoint folder (the quickstart model)"
    )
    parser.add_argument("--shape", type=int, nargs=3, default=[32, 512, 512])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "overrides", nargs="*", help="ls-predict overrides for every path (predict.tile_shape=...)"
    )
    args = parser.parse_args()
    from ls_data.io import write_tiff_pair

    image, spacing, made = _volume(tuple(args.shape), args.seed)
    print(f"synthesised {image.shape} in {made:.1f} s", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-napari-") as tmp:
        tif, _ = write_tiff_pair(Path(tmp), "vol", image[None], np.zeros(image.shape, np.uint16), spacing)
        reference, expected = _ls_predict(args, tif, Path(tmp) / "out.ome.zarr")
        print(f"ls-predict: {reference:.1f} s", flush=True)
        widget, labels = _widget(args, image, spacing)
        print(f"widget: {widget:.1f} s", flush=True)
    in_process = _in_process(args, image, spacing)
    same = np.array_equal(labels, expected)
    voxels = image.size
    print()
    print(f"{'path':<34}{'seconds':>9}{'Mvoxel/s':>10}{'vs ls-predict':>15}")
    for name, seconds in (
        ("ls-predict command (reference)", reference),
        ("widget: button to Labels layer", widget),
        ("predict_array in this process", in_process),
    ):
        print(f"{name:<34}{seconds:>9.1f}{voxels / seconds / 1e6:>10.3f}{seconds / reference:>14.2f}x")
    print(f"\nvolume {tuple(image.shape)}, {labels.max()} objects; widget labels equal ls-predict's: {same}")
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
