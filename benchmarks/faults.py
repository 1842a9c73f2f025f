"""Fault-injection matrix: the tiny quickstart recipe stopped at every fault point, by SIGTERM and
SIGKILL, to the driver and (Ray) to a worker, then re-run with the same command.

Prints one table: fault x point -> outcome. Every row should read "resumed identically" (or
"clear error, nothing lost"). The reference is an unstopped run of the same recipe, made first
in each mode: the resumed run must end at its (epoch, iteration) with the same weights.
``tests/test_fault_injection.py`` runs a short selection of these cases.

    hatch run bench-faults                 # the whole matrix (Ray alone: 19 cases, 47 min on 2 busy cores)
    hatch run bench-faults --mode local    # in-process runs only (a few minutes)
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from ls_train.fault_injection import Fault, Outcome, format_table, ls_train_argv, run_fault_case

EPOCHS = 3
POINTS = (
    "train.prepare", "train.step", "train.validation", "train.checkpoint_write", "train.checkpoint",
    "train.evaluation",
)


def _tiny_overrides():
    conftest = Path(__file__).resolve().parents[1] / "packages" / "ls-train" / "tests" / "conftest.py"
    spec = importlib.util.spec_from_file_location("ls_train_test_conftest", conftest)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.TINY_DATA + module.TINY_MODEL + module.TINY_TEST_PROPOSALS


def recipe(root: Path, mode: str) -> list[str]:
    cluster = (
        ["cluster=local", "trainer.max_steps_per_epoch=2"]
        if mode == "local"
        else ["cluster=cpu", "cluster.num_workers=2", "cluster.num_cpus=2"]
    )
    return [
        f"data.root={root / 'data'}",
        *_tiny_overrides(),
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


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mode", choices=("local", "ray", "both"), default="both")
    parser.add_argument("--point", choices=POINTS, help="only this fault point")
    args = parser.parse_args()
    modes = ("local", "ray") if args.mode == "both" else (args.mode,)
    outcomes: list[Outcome] = []
    for mode in modes:
        steps = EPOCHS * (2 if mode == "local" else 1)
        reference_root = Path(tempfile.mkdtemp(prefix="ls-faults-reference-"))
        argv = ls_train_argv(*recipe(reference_root, mode))
        reference = subprocess.run(argv, capture_output=True, text=True)
        if reference.returncode != 0:
            print(f"the unstopped {mode} run failed:\n{reference.stdout[-3000:]}{reference.stderr[-3000:]}")
            return 1
        for i, fault in enumerate(f for f in faults(mode) if args.point in (None, f.point)):
            with tempfile.TemporaryDirectory(prefix="ls-faults-") as tmp:
                root = Path(tmp)
                outcome = run_fault_case(
                    ls_train_argv(*recipe(root, mode)),
                    root / "runs" / "f",
                    fault,
                    mode=mode,
                    expected=(EPOCHS, steps),
                    folder=root / f"fault{i}",
                    reference=reference_root / "runs" / "f",
                )
            outcomes.append(outcome)
            print(format_table([outcome]).splitlines()[-1], flush=True)
        shutil.rmtree(reference_root, ignore_errors=True)
    print()
    print(format_table(outcomes))
    bad = [o for o in outcomes if o.verdict not in ("resumed identically", "clear error, nothing lost")]
    for o in bad:
        print(f"\n{o.mode} {o.fault}: {o.verdict}")
        print(f"--- stopped run ---\n{o.first_tail}\n--- re-run ---\n{o.resumed_tail}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
