"""Fault injection: ``ls-train`` runs stopped at chosen points (SIGTERM or SIGKILL, to the driver or
to a Ray worker) and started again with the same command end where an unstopped run ends; the same
for ``ls-predict`` (the re-run reuses the finished tiles) and ``ls-data index build`` (no half
index, the temporary file removed by the re-run).

A short selection for every test run; ``benchmarks/faults.py`` runs the whole matrix and prints
the table."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

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

EPOCHS = 3

CASES = [
    # in-process: 2 iterations per epoch, validation every 2nd epoch (and after the last)
    ("local", Fault("train.step", at=3, signal=signal.SIGTERM)),
    ("local", Fault("train.validation", at=1, signal=signal.SIGKILL)),
    # killed while its 2nd checkpoint file is written, before it is moved into place: the re-run
    # removes the temporary file (and the new checkpoint's folder), saying so in one line
    ("local", Fault("train.checkpoint_write", at=2, signal=signal.SIGKILL)),
    # Ray, 2 workers, 1 iteration per epoch: the driver stopped between two validations (the
    # matrix of benchmarks/faults.py has the other points and signals)
    ("ray", Fault("train.step", at=3, signal=signal.SIGTERM)),
]


def recipe(root: Path, tiny_overrides: Callable[..., list[str]], mode: str, name: str) -> list[str]:
    """The tiny quickstart of the tests, as ``ls-train`` overrides."""
    cluster = (
        ["cluster=local", "trainer.max_steps_per_epoch=2"]
        if mode == "local"
        else ["cluster=cpu", "cluster.num_workers=2", "cluster.num_cpus=2"]
    )
    return tiny_overrides(
        root,
        f"trainer.epochs={EPOCHS}",
        "trainer.val_every_epochs=2",
        "trainer.warmup_iters=2",
        "evaluation.run_after_training=false",
        f"trainer.run_name={name}",
        *cluster,
    )


@pytest.fixture(scope="module")
def unstopped_local(
    tmp_path_factory: pytest.TempPathFactory, tiny_overrides: Callable[..., list[str]]
) -> Path:
    """The run folder of the in-process recipe run without a fault: the weights to end with."""
    root = tmp_path_factory.mktemp("unstopped")
    done = subprocess.run(ls_train_argv(*recipe(root, tiny_overrides, "local", "f")), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return root / "runs" / "f"


@pytest.mark.parametrize(("mode", "fault"), CASES, ids=[f"{m}-{f.signal.name}-{f.point}" for m, f in CASES])
@pytest.mark.slow(seconds=194)
def test_a_stopped_run_resumes_to_where_an_unstopped_one_ends(
    mode: str, fault: Fault, tmp_path: Path, tiny_overrides: Callable[..., list[str]], capsys,
    request: pytest.FixtureRequest,
) -> None:
    """In-process runs must also end with the unstopped run's weights (benchmarks/faults.py checks
    the Ray runs' weights too: one more Ray run is too long for every test run)."""
    steps = EPOCHS * (2 if mode == "local" else 1)
    argv = ls_train_argv(*recipe(tmp_path, tiny_overrides, mode, "f"))
    reference = request.getfixturevalue("unstopped_local") if mode == "local" else None
    outcome = run_fault_case(
        argv, tmp_path / "runs" / "f", fault, mode=mode, expected=(EPOCHS, steps), folder=tmp_path / "fault",
        reference=reference,
    )
    with capsys.disabled():
        print("\n" + format_table([outcome]))
    logs = f"--- stopped run ---\n{outcome.first_tail}\n--- re-run ---\n{outcome.resumed_tail}"
    assert outcome.verdict == "resumed identically", f"{outcome.verdict}\n{logs}"
    if fault.signal == signal.SIGTERM:
        assert outcome.first_rc == 0 and "stopped on request" in outcome.first_tail
    if fault.point == "train.checkpoint_write":
        left = "checkpoints/checkpoint_epoch0002_iter00000004/.state.pt.tmp-"
        lines = outcome.resumed_tail.splitlines()
        removed = [line for line in lines if "removed what a killed write left" in line]
        assert len(removed) == 1 and left in removed[0] and removed[0].endswith(
            ".tmp, checkpoints/checkpoint_epoch0002_iter00000004/"
        ), logs
        assert not list((tmp_path / "runs" / "f").rglob("*.tmp"))


def _passed(outcome: Outcome, capsys: pytest.CaptureFixture[str]) -> None:
    with capsys.disabled():
        print("\n" + format_table([outcome]))
    logs = f"--- stopped run ---\n{outcome.first_tail}\n--- re-run ---\n{outcome.resumed_tail}"
    assert outcome.verdict == "resumed identically", f"{outcome.verdict}\n{logs}"


def _checked(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@pytest.mark.slow(seconds=35)
def test_a_stopped_prediction_resumes_with_the_tiles_done(tmp_path: Path, capsys) -> None:
    """ls-predict (threshold segmenter) stopped by SIGTERM after its 3rd tile: "stopped on request",
    then the same command reuses the finished tiles and writes an unstopped run's labels."""
    import tifffile

    image = np.full((8, 48, 48), 100, np.uint16)
    image[2:5, 4:10, 4:40] = image[3:7, 20:30, 10:16] = image[1:4, 36:44, 30:44] = 1000
    tifffile.imwrite(tmp_path / "v.tif", image)
    args = (f"data.root={tmp_path / 'data'}", f"input={tmp_path / 'v.tif'}", "predict.segmenter=threshold",
            "predict.threshold_segmenter.threshold=500", "predict.tile_shape=[8,24,24]",
            "predict.overlap=[0,8,8]", "predict.progress=false")  # fmt: skip
    from ls_train.config import load_config
    from ls_train.predict import run_prediction

    clean = load_config("quickstart", [a for a in args if not a.startswith("input=")])
    run_prediction(clean, input=tmp_path / "v.tif", output=tmp_path / "clean.ome.zarr", print_fn=print)
    out = tmp_path / "out.ome.zarr"
    fault = Fault("predict.tile", at=3, signal=signal.SIGTERM, delay=1.0)
    outcome = run_command_case(
        ls_predict_argv(*args, f"output={out}"), fault, mode="predict local", folder=tmp_path / "fault",
        judge=prediction_judge(out, tmp_path / "clean.ome.zarr"),
    )
    _passed(outcome, capsys)
    assert outcome.first_rc == 0 and "stopped on request" in outcome.first_tail


@pytest.mark.slow(seconds=12)
def test_a_killed_index_rebuild_leaves_the_index_and_the_rerun_removes_its_temp_file(
    tmp_path: Path, capsys
) -> None:
    """ls-data index build --rebuild killed after its 2nd of 3 volumes: the index of before is left
    byte for byte, the same command removes the temporary file and writes the unstopped build's rows."""
    data = tmp_path / "data"
    _checked(ls_data_argv("synth", "--out", str(data), "--num-volumes", "3", "--shape", "8", "32", "32",
                          "--num-objects", "6", "--formats", "tiff"))  # fmt: skip
    db = f"sqlite:///{data / 'catalog.sqlite'}"
    build = ls_data_argv("index", "build", "--catalog", db, "--crop-shape", "8", "16", "16")
    reference = tmp_path / "reference.sqlite"
    _checked([*build, "--index-path", str(reference)])
    index = tmp_path / "index.sqlite"
    index.write_bytes(reference.read_bytes())
    check = IndexCheck(index, reference, before=index.read_bytes())
    outcome = run_command_case(
        [*build, "--index-path", str(index), "--rebuild"], Fault("index.build", at=2, signal=signal.SIGKILL),
        mode="index rebuild", folder=tmp_path / "fault", judge=check.judge, after_stop=check.after_stop,
    )
    _passed(outcome, capsys)
    assert outcome.first_rc == -signal.SIGKILL and len(check.left) == 1
