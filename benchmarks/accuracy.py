"""Accuracy on data the project did not make: train on one synthetic style, evaluate on every style.

``ls-data synth`` draws volumes in several *styles* (``ellipsoids``, the quickstart's data;
``blobs``: irregular unions of spheres, a PSF with a wide tail; ``dense``: hundreds of small
touching nuclei over a 33x brightness range). This script measures how the quickstart recipe
generalises across them, next to a classical baseline computed in the same run:

1. For each style, one dataset of the quickstart's ``data.synthesize`` settings (12 volumes of
   24x96x96 at 2.0 x 0.5 x 0.5 um, 1 channel, 1 class, ``val_fraction`` 0.34, seed 0) with the
   style's own object count (ellipsoids 40, blobs 30, dense 600) in ``<out>/data/<style>/``,
   written by ``ls_data.synth.synthesize_dataset`` from the composed quickstart config.
2. For each training style, ``ls-train --config-name=quickstart`` on that folder, as a user runs
   it (a subprocess; its wall time is the "train min" column). The model evaluated is the run's
   *last* checkpoint (ls-train's "latest checkpoint:", the furthest ``checkpoint_epoch*`` folder),
   not its "best" one: that is chosen on the training style's own held-out volumes, which would
   favour the diagonal of the table.
3. For each (training style, evaluation style), ``ls-evaluate checkpoint=<last> ...`` on the
   *test* volumes of the evaluation style, whole 24x96x96 volumes as one crop each; the numbers
   are its ``metrics.json``. The test volumes are a separate dataset of each style
   (``<out>/data/<style>-test/``: 10 volumes, seed 1000, the ``val`` split of that dataset): the
   training run's own ``val`` volumes (4 per style, 160 ellipsoids) choose its checkpoints and are
   too few to tell recipes apart. ``--eval-set selection`` evaluates on another such set (seed
   2000, ``<style>-selection/``, tables ``accuracy_selection.*``): choose recipes there, report on
   the test set. Evaluation runs in float32 (``evaluation.amp=none``), so the figures do not depend
   on the CPU's bf16 support.
4. The baseline on the same test crops: Gaussian smoothing (sigma 0.5 um), an Otsu threshold,
   an anisotropic Euclidean distance transform (``sampling`` = the voxel spacing; smoothed, sigma
   1 um), seeds at its local maxima within a 3 um ball and at least 1.5 um inside, a seeded
   watershed of the inverted distance inside the foreground (a foreground component no seed
   reaches is one object), objects under 20 um^3 dropped. One parameter set for every style,
   chosen on the styles' training volumes, never on the held-out ones. scikit-image is not in the
   workspace environment, so the watershed is scipy's ``ndimage.watershed_ift`` (image foresting
   transform) and Otsu's threshold is computed here from a 256-bin histogram. It is scored by the
   very ``matching`` metric object the evaluator builds from the config
   (``ls_train.factory.build_metrics``), against the evaluator's ground truth
   (``ls_train.evaluation.gt_label_volume`` of the same ``evaluation.database`` crops, read raw,
   without the model's intensity normalisation). COCO mask AP ranks instances by score and the
   baseline has none: n/a.

Prints one markdown table and writes it to ``<out>/accuracy.md``, all numbers (every metric of
every evaluation, the commands, the checkpoints) to ``<out>/accuracy.json``. A re-run reuses the
data and resumes the runs (a finished run trains no more: its "train min" is then that re-run's).

The full table (about 10 minutes of training per style on 2 CPU cores, 3 styles):

    hatch run bench-accuracy                               # = python benchmarks/accuracy.py
    hatch run bench-accuracy --train-styles ellipsoids     # one model, evaluated on every style
    hatch run bench-accuracy -- trainer.lr=1e-3            # Hydra overrides of the training recipe
    hatch run bench-accuracy --train-styles ellipsoids --seeds 0 1 2   # 3 trainings and their mean
    hatch run bench-accuracy --quick                       # smoke: 1 epoch, tiny volumes and model

``--quick`` checks the script end to end in a few minutes (2 volumes of 8x32x32 per style, the
tiny model of ``packages/ls-train/tests/conftest.py``, in-process training without Ray, 1 epoch);
its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from ls_data.synth import STYLES, synthesize_dataset
from ls_train.config import evaluation_config, load_config

CONFIG = "quickstart"
STYLE_OBJECTS = {"ellipsoids": 40, "blobs": 30, "dense": 600}  # per 24x96x96 volume
TEST_VOLUMES = 10  # per style, a dataset of its own (2 with --quick)
# The held-out sets, by seed (never the training data's seed 0): "test" reports, "selection" chooses
# between recipes, so that a choice is never made on the volumes that report it.
EVAL_SETS = {"test": 1000, "selection": 2000}
QUICK_SHAPE = (8, 32, 32)
COLUMNS = (
    ("ap@50", "ap@50"),
    ("ap@75", "ap@75"),
    ("ap@90", "ap@90"),
    ("f1@50", "f1@50"),
    ("mean matched IoU@50", "mean_iou@50"),
    ("COCO mask AP", "coco_mask_ap"),
)
# The baseline's parameters, one set for every style, chosen on the *training* volumes of the three
# styles (never on the held-out ones): over-splitting at object necks was the main loss.
SMOOTH_UM = 0.5  # Gaussian sigma of the image before the threshold, micrometres on every axis
DIST_SMOOTH_UM = 1.0  # Gaussian sigma of the distance transform before the seeds are found
SEED_RADIUS_UM = 3.0  # seeds: maxima of the (smoothed) distance within this ball ...
SEED_MIN_DIST_UM = 1.5  # ... at least this far inside the foreground
MIN_OBJECT_UM3 = 20.0  # smaller predicted objects are dropped


# -- the recipe ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setup:
    """What the command line chose: where, which mode, and the extra training overrides."""

    out: Path
    quick: bool
    epochs: int | None
    extra: tuple[str, ...]
    eval_set: str = "test"
    seeds: tuple[int | None, ...] = (None,)

    def data_dir(self, style: str) -> Path:
        return self.out / "data" / style

    def test_dir(self, style: str) -> Path:
        return self.out / "data" / f"{style}-{self.eval_set}"

    def eval_tag(self) -> str:
        """Suffix of the evaluation folders and tables: none for the test set."""
        return "" if self.eval_set == "test" else f"_{self.eval_set}"

    def test_overrides(self, style: str) -> list[str]:
        """``evaluation.database`` on ``style``'s test volumes (its crop index built on first use)."""
        root = self.test_dir(style)
        return [
            f"evaluation.database.catalog=sqlite:///{root / 'catalog.sqlite'}",
            f"evaluation.database.index_path={root / 'index_test.sqlite'}",
        ]

    def num_objects(self, style: str) -> int:
        if not self.quick:
            return STYLE_OBJECTS[style]
        return max(4, round(STYLE_OBJECTS[style] * math.prod(QUICK_SHAPE) / (24 * 96 * 96)))

    def overrides(self, style: str) -> list[str]:
        """The quickstart overrides of a run on ``style`` (data, mode, epochs, then the user's)."""
        out = [
            f"data.root={self.data_dir(style)}",
            f"data.synthesize.style={style}",
            f"data.synthesize.num_objects={self.num_objects(style)}",
        ]
        if self.quick:
            out += _quick_overrides()
        if self.epochs is not None:
            out.append(f"trainer.epochs={self.epochs}")
        return out + list(self.extra)


def _quick_overrides() -> list[str]:
    """Tiny data and model (``ls_train.testing``'s TINY_MODEL / TINY_TEST_PROPOSALS), 1 epoch, no Ray."""
    from ls_train.testing import TINY_MODEL, TINY_TEST_PROPOSALS

    crop = "[" + ",".join(map(str, QUICK_SHAPE)) + "]"
    return [
        "data.synthesize.num_volumes=2",
        f"data.synthesize.shape={crop}",
        f"datasets.database.crop_shape={crop}",
        f"datasets.database.stride={crop}",
        f"evaluation.database.crop_shape={crop}",
        "datasets.batch_size=1",
        *TINY_MODEL,
        *TINY_TEST_PROPOSALS,
        "cluster=local",
        "trainer.epochs=1",
        "trainer.warmup_iters=2",
    ]


def make_data(setup: Setup, style: str) -> dict[str, Any]:
    """Write ``style``'s dataset from the composed recipe's ``data.synthesize`` (once)."""
    cfg = load_config(CONFIG, setup.overrides(style))
    root = setup.data_dir(style)
    params = dict(cfg["data"]["synthesize"])
    test = {**params, "num_volumes": 2 if setup.quick else TEST_VOLUMES, "seed": EVAL_SETS[setup.eval_set]}
    test["val_fraction"] = 0.99  # every volume held out (the synthesizer needs a fraction < 1)
    for folder, kwargs, what in ((root, params, "training"), (setup.test_dir(style), test, setup.eval_set)):
        if (folder / "catalog.sqlite").is_file():
            print(f"[data] {style}: reusing the {what} volumes in {folder}")
        else:
            report = synthesize_dataset(folder, **kwargs)
            took = f"{report.seconds:.1f} s"
            print(f"[data] {style}: {len(report.volumes)} {what} volumes in {folder} ({took})")
    return params


# -- subprocesses ---------------------------------------------------------------------------------


def run_logged(argv: Sequence[str], log: Path) -> tuple[float, list[str]]:
    """Run ``argv``, echoing and saving its output; returns (wall seconds, output lines)."""
    print("$ " + shlex.join(argv), flush=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    start = time.monotonic()
    with (
        log.open("w") as f,
        subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        ) as proc,
    ):
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            f.write(line)
            lines.append(line)
    seconds = time.monotonic() - start
    if proc.returncode != 0:
        raise SystemExit(f"exit status {proc.returncode}: {shlex.join(argv)}\n(output in {log})")
    return seconds, lines


def run_key(style: str, seed: int | None) -> str:
    """The name of a training run: the style, and the seed when ``--seeds`` gave one."""
    return style if seed is None else f"{style}-seed{seed}"


def train(setup: Setup, style: str, seed: int | None = None) -> dict[str, Any]:
    """Train the recipe on ``style`` (with ``trainer.seed=seed`` unless None); returns its command,
    wall time and last checkpoint."""
    from ls_train.trainer.checkpoint import checkpoint_folders

    key = run_key(style, seed)
    run_dir = setup.out / "runs" / key
    resumed = run_dir.is_dir()
    argv = [
        sys.executable, "-m", "ls_train.cli", "train", f"--config-name={CONFIG}",
        *setup.overrides(style),
        *([] if seed is None else [f"trainer.seed={seed}"]),
        f"trainer.runs_root={setup.out / 'runs'}",
        f"trainer.run_name={key}",
        "evaluation.run_after_training=false",
    ]  # fmt: skip
    seconds, lines = run_logged(argv, setup.out / "logs" / f"train_{key}.log")
    # ls-train names the run's latest checkpoint; Ray runs keep them in the run folder, in-process
    # runs (cluster=local) in its checkpoints/ subfolder
    folders = checkpoint_folders(run_dir) + checkpoint_folders(run_dir / "checkpoints")
    latest = _printed(lines, "latest checkpoint:") or (str(folders[0]) if folders else None)
    if latest is None:
        raise SystemExit(f"ls-train on {style} named no checkpoint and left none in {run_dir}")
    return {
        "command": shlex.join(argv),
        "seconds": seconds,
        "resumed": resumed,
        "checkpoint": latest,
        "best_checkpoint": _printed(lines, "best checkpoint:"),
    }


def mean_row(style: str, eval_style: str, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The mean of the table's metrics over the seeds' rows of one (training, evaluation) style
    pair; the seeds' spread is in their own rows."""
    summary = {
        key: float(np.mean([r["summary"][key] for r in rows]))
        for _, key in COLUMNS
        if all(isinstance(r["summary"].get(key), int | float) for r in rows)
    }
    seconds = float(np.mean([r["train_seconds"] for r in rows]))
    return {"trained_on": f"{style} (mean of {len(rows)} seeds)", "evaluated_on": eval_style,
            "train_seconds": seconds, "summary": summary}  # fmt: skip


def _printed(lines: Sequence[str], prefix: str) -> str | None:
    """The value of the last output line ``<prefix> VALUE``, or None."""
    values = [ln[len(prefix) :].strip() for ln in lines if ln.startswith(prefix)]
    return values[-1] if values else None


def evaluate(setup: Setup, checkpoint: str, train_style: str, eval_style: str) -> dict[str, Any]:
    """``ls-evaluate`` of ``checkpoint`` on ``eval_style``'s held-out volumes; returns its summary."""
    from ls_train.evaluation import read_json

    name = f"{train_style}_on_{eval_style}{setup.eval_tag()}"
    out = setup.out / "eval" / name
    argv = [
        sys.executable, "-m", "ls_train.cli", "evaluate",
        f"checkpoint={checkpoint}",
        *setup.test_overrides(eval_style),
        f"evaluation.output_dir={out}",
        "evaluation.amp=none",  # float32: the same figures on every machine (auto is bf16 on some CPUs)
    ]  # fmt: skip
    run_logged(argv, setup.out / "logs" / f"eval_{name}.log")
    return {"command": shlex.join(argv), "summary": read_json(out / "metrics.json")["summary"]}


# -- the classical baseline ----------------------------------------------------------------------


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold (foreground: ``values > t``) from a ``bins``-bin histogram."""
    hist, edges = np.histogram(values, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist).astype(np.float64)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres)
    mu0 = m0 / np.maximum(w0, 1)
    mu1 = (m0[-1] - m0) / np.maximum(w1, 1)
    between = w0 * w1 * (mu0 - mu1) ** 2
    return float(centres[int(np.argmax(between[:-1]))])


def ball(radius_um: float, spacing: Sequence[float]) -> np.ndarray:
    """Boolean footprint of a ball of ``radius_um`` micrometres on the anisotropic voxel grid."""
    half = [int(radius_um // s) for s in spacing]
    grids = np.ogrid[tuple(slice(-h, h + 1) for h in half)]
    return sum((g * s / radius_um) ** 2 for g, s in zip(grids, spacing, strict=True)) <= 1.0


def watershed_labels(image: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """Instance labels of a ``(C, Z, Y, X)`` image: smoothing, Otsu, distance-transform watershed."""
    sp = np.asarray(spacing, dtype=np.float64)
    smooth = ndimage.gaussian_filter(image.mean(axis=0, dtype=np.float64), sigma=SMOOTH_UM / sp)
    fg = smooth > otsu_threshold(smooth)
    dist = ndimage.gaussian_filter(ndimage.distance_transform_edt(fg, sampling=sp), sigma=DIST_SMOOTH_UM / sp)
    peaks = fg & (dist >= SEED_MIN_DIST_UM)
    peaks &= dist == ndimage.maximum_filter(dist, footprint=ball(SEED_RADIUS_UM, sp))
    markers, _ = ndimage.label(peaks, structure=np.ones((3, 3, 3)))
    height = np.round(1000 * (1 - dist / max(float(dist.max()), 1e-9))).astype(np.uint16)
    markers = markers.astype(np.int32)
    markers[~fg] = -1
    labels = ndimage.watershed_ift(height, markers)
    labels[~fg | (labels < 0)] = 0
    unseeded, _ = ndimage.label(fg & (labels == 0))  # foreground no seed reached: one object each
    labels[unseeded > 0] = unseeded[unseeded > 0] + labels.max()
    sizes = np.bincount(labels.ravel())
    labels[sizes[labels] * float(np.prod(sp)) < MIN_OBJECT_UM3] = 0
    return labels


def baseline(setup: Setup, style: str) -> dict[str, Any]:
    """The baseline on ``style``'s test crops, scored by the evaluator's ``matching`` metric."""
    from ls_train.evaluation import gt_label_volume
    from ls_train.factory import build_metrics, prepare_dataset

    cfg = load_config(CONFIG, [*setup.overrides(style), *setup.test_overrides(style)])
    database = evaluation_config(cfg).database
    dataset, _ = prepare_dataset(database, "evaluation.database")  # index built if needed; raw, no transforms
    metrics = [m for m in build_metrics(cfg) if getattr(m, "name", None) == "matching"]
    if not metrics:
        raise SystemExit("the recipe's metrics.metrics_list has no 'matching' metric for the baseline")
    start = time.monotonic()
    for i in range(len(dataset)):
        image, target, meta = dataset[i]
        pred = watershed_labels(image.numpy(), meta["spacing"])
        gt, _ = gt_label_volume(target)
        crop_id = f"{meta.get('volume_name', 'crop')}@{tuple(int(v) for v in meta.get('origin', (i,)))}"
        for m in metrics:
            m.update(gt, pred, meta={"crop_id": crop_id})
    summary = {k: float(v) for m in metrics for k, v in m.compute().items()}
    print(f"[baseline] {style}: {len(dataset)} crops, ap@50 {summary.get('ap@50', math.nan):.3f}")
    return {"summary": summary, "seconds": time.monotonic() - start, "crops": len(dataset)}


# -- the table ------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """``value`` with NaN floats as None (strict JSON) and paths as strings."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return str(value) if isinstance(value, Path) else value


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Markdown table: one row per (trained on, evaluated on)."""
    head = ["trained on", "evaluated on", *(c for c, _ in COLUMNS), "train min"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        values = [r["summary"].get(key) for _, key in COLUMNS]
        minutes = None if r.get("train_seconds") is None else r["train_seconds"] / 60
        cells = [r["trained_on"], r["evaluated_on"], *map(_cell, values), _cell(minutes)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def styles(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in names if s not in STYLES or s not in STYLE_OBJECTS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown style(s) {unknown}; known: {', '.join(STYLE_OBJECTS)}")
    return names


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    every = ",".join(STYLE_OBJECTS)
    p.add_argument("--train-styles", type=styles, default=styles(every), help=f"default {every}")
    p.add_argument("--eval-styles", type=styles, default=styles(every), help=f"default {every}")
    p.add_argument("--epochs", type=int, help="trainer.epochs (default: the recipe's, 20; --quick: 1)")
    p.add_argument(
        "--out", type=Path, help="output folder (default runs/accuracy, --quick runs/accuracy_quick)"
    )
    p.add_argument("--quick", action="store_true", help="smoke mode: 1 epoch, tiny volumes and model")
    p.add_argument(
        "--seeds", type=int, nargs="+", metavar="N",
        help="train each style once per trainer.seed N and add the mean over them (the recipe's results "
        "vary between training seeds: compare recipes on a mean)",
    )  # fmt: skip
    p.add_argument(
        "--eval-set", choices=tuple(EVAL_SETS), default="test",
        help="held-out volumes to evaluate on: test (seed 1000, to report) or selection (seed 2000, to "
        "choose a recipe on)",
    )  # fmt: skip
    p.add_argument("overrides", nargs="*", help="Hydra overrides of the training recipe (after --)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out = (args.out or Path("runs/accuracy_quick" if args.quick else "runs/accuracy")).resolve()
    setup = Setup(
        out=out, quick=args.quick, epochs=args.epochs, extra=tuple(args.overrides), eval_set=args.eval_set,
        seeds=tuple(args.seeds) if args.seeds else (None,),
    )  # fmt: skip
    every = list(dict.fromkeys([*args.train_styles, *args.eval_styles]))
    data = {s: make_data(setup, s) for s in every}
    base = {s: baseline(setup, s) for s in args.eval_styles}
    runs = {run_key(s, seed): train(setup, s, seed) for s in args.train_styles for seed in setup.seeds}
    rows = []
    for e in args.eval_styles:
        for t in args.train_styles:
            seeded = []
            for seed in setup.seeds:
                key = run_key(t, seed)
                result = evaluate(setup, runs[key]["checkpoint"], key, e)
                seeded.append({"trained_on": key, "evaluated_on": e, "train_seconds": runs[key]["seconds"],
                               **result})  # fmt: skip
            rows += seeded + ([mean_row(t, e, seeded)] if len(seeded) > 1 else [])
        rows.append({"trained_on": "baseline", "evaluated_on": e, "train_seconds": None, **base[e]})
    text = table(rows)
    notes = (
        f"\nModels: the last checkpoint of each run under {out / 'runs'}. Baseline: Gaussian (sigma "
        f"{SMOOTH_UM} um) + Otsu + distance-transform watershed (scipy watershed_ift, seeds: maxima "
        f"in a {SEED_RADIUS_UM} um ball, >= {SEED_MIN_DIST_UM} um inside); no scores, so no COCO AP.\n"
    )
    print("\n" + text + notes)
    md, js = (out / f"accuracy{setup.eval_tag()}.{ext}" for ext in ("md", "json"))
    md.write_text(text + "\n" + notes)
    doc = {"argv": sys.argv, "quick": args.quick, "eval_set": args.eval_set, "data": data, "runs": runs,
           "rows": rows}  # fmt: skip
    js.write_text(json.dumps(_plain(doc), indent=1, allow_nan=False) + "\n")
    print(f"wrote {md} and {js}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
