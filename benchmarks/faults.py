"""Fault-injection matrix: ``ls-train``, ``ls-predict`` and ``ls-data index build`` stopped at their
fault points, by SIGTERM and SIGKILL, to the driver and (Ray) to a worker, then re-run with the
same command.

Prints one table: fault x point -> outcome. Every row should read "resumed identically" (or
"clear error, nothing lost"). The reference of each command is an unstopped run of it, made first:

- ``train`` (the tiny quickstart recipe, in-process and with Ray): the resumed run must end at the
  unstopped run's (epoch, iteration) with the same weights;
- ``predict`` (``ls-predict`` with the threshold segmenter, the cheapest real one: the resume path
  is the same for the detector; a 12x72x88 TIFF in 24 tiles, in-process and with one Ray worker):
  stopped at its 3rd tile, the re-run must reuse the finished tiles ("N already done") and write
  the unstopped run's labels voxel for voxel;
- ``index`` (``ls-data index build`` of 3 synthetic volumes, first build and ``--rebuild`` over an
  existing index): stopped after its 2nd volume, the index of before (or none) must be left as it
  was, and the re-run must remove the stopped build's temporary file and write the unstopped
  build's rows. ``--mode`` does not apply (one process).

``tests/test_fault_injection.py`` runs a short selection of these cases.

    hatch run bench-faults                      # the whole matrix (Ray training alone: 19 cases, 47 min)
    hatch run bench-faults --mode local --commands train   # the in-process training rows (a few minutes)
    hatch run bench-faults --mode local         # in-process training and ls-predict, the index build
    hatch run bench-faults --mode ray --commands predict   # ls-predict with Ray
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from ls_train.fault_injection import (
    Fault,
    IndexCheck,
    Outcome,
    format_table,
    ls_data_argv,
    ls_predict_argv,
    ls_train_argv,
    prediction_judge,
    run_command_case,
    run_fault_case,
)
from ls_train.testing import TINY_DATA, TINY_MODEL, TINY_TEST_PROPOSALS

EPOCHS = 3
POINTS = (
    "train.prepare", "train.step", "train.validation", "train.checkpoint_write", "train.checkpoint",
    "train.evaluation",
)
COMMANDS = ("train", "predict", "index")
PREDICT_ARGS = (
    "predict.segmenter=threshold", "predict.threshold_segmenter.threshold=500",
    "predict.tile_shape=[8,32,32]", "predict.overlap=[4,12,12]", "predict.chunks=[8,16,16]",
    "predict.progress=false",
)
PREDICT_RAY = ("predict.executor=ray", "predict.num_workers=1", "predict.threads_per_worker=1")
INDEX_ARGS = ("--crop-shape", "8", "16", "16")


def recipe(root: Path, mode: str) -> list[str]:
    cluster = (
        ["cluster=local", "trainer.max_steps_per_epoch=2"]
        if mode == "local"
        else ["cluster=cpu", "cluster.num_workers=2", "cluster.num_cpus=2"]
    )
    return [
        f"data.root={root / 'data'}",
        *TINY_DATA, *TINY_MODEL, *TINY_TEST_PROPOSALS,
        f"trainer.runs_root={root / 'runs'}",
        f"trainer.epochs={EPOCHS}",
        "trainer.val_every_epochs=2",
        "trainer.warmup_iters=2",
        "evaluation.run_after_training=true",
        "trainer.run_name=f",
        *cluster,
    ]


def faults(mode: str) -> list[Fault]:
    targets = [(signal.SIGTERM, "driver"), (signal.SIGKILL, "driver")]
    if mode == "ray":
        targets.append((signal.SIGKILL, "paused"))  # a worker killed (out of memory, a lost node)
    cases = []
    for point in POINTS:
        ats = {"train.step": (1, 3), "train.prepare": (2,)}.get(point, (1,))  # prepare 2: the eval index
        for at in ats:
            for sig, target in targets:
                if point in ("train.prepare", "train.evaluation") and target == "paused":
                    continue  # these run in the driver
                cases.append(Fault(point, at=at, signal=sig, target=target))
    return cases


def _checked(argv: list[str], what: str) -> None:
    """Run an unstopped reference command; exit with its output when it fails."""
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"the unstopped {what} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")


def train_cases(mode: str, point: str | None) -> Iterator[Outcome]:
    steps = EPOCHS * (2 if mode == "local" else 1)
    reference_root = Path(tempfile.mkdtemp(prefix="ls-faults-reference-"))
    _checked(ls_train_argv(*recipe(reference_root, mode)), f"{mode} training run")
    for i, fault in enumerate(f for f in faults(mode) if point in (None, f.point)):
        with tempfile.TemporaryDirectory(prefix="ls-faults-") as tmp:
            root = Path(tmp)
            yield run_fault_case(
                ls_train_argv(*recipe(root, mode)), root / "runs" / "f", fault, mode=mode,
                expected=(EPOCHS, steps), folder=root / f"fault{i}", reference=reference_root / "runs" / "f",
            )
    shutil.rmtree(reference_root, ignore_errors=True)


def write_volume(path: Path) -> Path:
    """A 12x72x88 TIFF: bright boxes on a dim noisy background (24 tiles of 8x32x32)."""
    import tifffile

    rng = np.random.default_rng(0)
    image = rng.integers(100, 150, size=(12, 72, 88)).astype(np.uint16)
    for _ in range(25):
        z, y, x = rng.integers(0, 9), rng.integers(0, 64), rng.integers(0, 80)
        image[z : z + 3, y : y + 6, x : x + 7] += 1000
    tifffile.imwrite(path, image)
    return path


def predict_cases(mode: str) -> Iterator[Outcome]:
    """``ls-predict`` stopped at its 3rd tile (1 s after it, so the writer finished the tiles
    handed to it), then re-run."""
    targets = [(signal.SIGTERM, "driver"), (signal.SIGKILL, "driver")]
    targets += [(signal.SIGKILL, "paused")] if mode == "ray" else []
    with tempfile.TemporaryDirectory(prefix="ls-faults-predict-") as tmp:
        root = Path(tmp)
        volume = write_volume(root / "volume.tif")
        extra = (*PREDICT_ARGS, *(PREDICT_RAY if mode == "ray" else ()))

        def argv(output: Path) -> list[str]:
            overrides = (f"data.root={root / 'data'}", *extra, f"input={volume}", f"output={output}")
            return ls_predict_argv(*overrides)

        reference = root / "reference.ome.zarr"
        _checked(argv(reference), f"{mode} prediction")
        for i, (sig, target) in enumerate(targets):
            fault = Fault("predict.tile", at=3, signal=sig, target=target, delay=1.0)
            output = root / f"out{i}.ome.zarr"
            yield run_command_case(
                argv(output), fault, mode=f"predict {mode}", folder=root / f"fault{i}",
                judge=prediction_judge(output, reference),
            )


def index_cases() -> Iterator[Outcome]:
    """``ls-data index build`` of 3 volumes stopped after its 2nd volume, as a first build and as a
    ``--rebuild`` over the index of an unstopped build, then re-run."""
    with tempfile.TemporaryDirectory(prefix="ls-faults-index-") as tmp:
        root = Path(tmp)
        data = root / "data"
        _checked(ls_data_argv("synth", "--out", str(data), "--num-volumes", "3", "--shape", "8", "32", "32",
                              "--num-objects", "6", "--formats", "tiff"), "synth")
        db = f"sqlite:///{data / 'catalog.sqlite'}"

        def argv(index: Path, *extra: str) -> list[str]:
            flags = ("--catalog", db, "--index-path", str(index), *INDEX_ARGS, *extra)
            return ls_data_argv("index", "build", *flags)

        reference = root / "reference.sqlite"
        _checked(argv(reference), "index build")
        i = 0
        for rebuild in (False, True):
            for sig in (signal.SIGTERM, signal.SIGKILL):
                i += 1
                index = root / f"i{i}" / "index.sqlite"
                index.parent.mkdir()
                if rebuild:
                    shutil.copyfile(reference, index)
                check = IndexCheck(index, reference, index.read_bytes() if rebuild else None)
                yield run_command_case(
                    argv(index, *(["--rebuild"] if rebuild else [])), Fault("index.build", at=2, signal=sig),
                    mode="index rebuild" if rebuild else "index build", folder=root / f"fault{i}",
                    judge=check.judge, after_stop=check.after_stop,
                )


def cases(commands: list[str], modes: tuple[str, ...], point: str | None) -> Iterator[Outcome]:
    steps: list[Callable[[], Iterator[Outcome]]] = []
    for mode in modes:
        if "train" in commands:
            steps.append(lambda mode=mode: train_cases(mode, point))
        if "predict" in commands:
            steps.append(lambda mode=mode: predict_cases(mode))
    if "index" in commands:
        steps.append(index_cases)
    for step in steps:
        yield from step()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mode", choices=("local", "ray", "both"), default="both")
    parser.add_argument("--commands", nargs="+", choices=COMMANDS, default=list(COMMANDS))
    parser.add_argument("--point", choices=POINTS, help="only this fault point (training)")
    args = parser.parse_args()
    modes = ("local", "ray") if args.mode == "both" else (args.mode,)
    outcomes: list[Outcome] = []
    for outcome in cases(args.commands, modes, args.point):
        outcomes.append(outcome)
        print(format_table([outcome]).splitlines()[-1], flush=True)
    print()
    print(format_table(outcomes))
    bad = [o for o in outcomes if o.verdict not in ("resumed identically", "clear error, nothing lost")]
    for o in bad:
        print(f"\n{o.mode} {o.fault}: {o.verdict}")
        print(f"--- stopped run ---\n{o.first_tail}\n--- re-run ---\n{o.resumed_tail}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
