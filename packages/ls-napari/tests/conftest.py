"""Fixtures of the napari plugin's tests: a headless Qt, a tiny trained checkpoint.

napari draws its canvas with OpenGL in a QOpenGLWidget. Qt 6's ``offscreen`` platform does not
support QOpenGLWidget: without an X display napari cannot add an image layer there (no OpenGL
context), and with one the canvas renders black. So the tests run Qt's ``xcb`` platform on a
private Xvfb server (a virtual X display in memory, Mesa's software OpenGL) that this conftest
starts for the session and stops after it: headless, nothing to set up by hand, and the
screenshot shows what a user sees.

When Qt or Xvfb cannot start, the tests fail with what is missing; ``LS_REQUIRE_QT=0`` makes them
skip instead (``.ci/run`` installs the system libraries and sets ``LS_REQUIRE_QT=1``).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

# torchvision first, before any OpenGL context: it imports triton, whose LLVM crashes the process
# when Mesa's software OpenGL (llvmpipe, with its own LLVM) was loaded before it. The plugin keeps
# the model out of napari's process (ls_napari.predict_process; test_process_isolation.py checks
# it), but the tests of other packages that run after these in the same pytest worker load it.
import torchvision  # noqa: F401  (the import is the point)

from ls_train.testing import TINY_DATA, TINY_MODEL, TINY_TEST_PROPOSALS

QT_PACKAGES = (
    "Debian: apt-get install xvfb libgl1 libglx-mesa0 libgl1-mesa-dri libegl1 libxkbcommon0 "
    "libxkbcommon-x11-0 libfontconfig1 libdbus-1-3 libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 ... "
    "(the list in .ci/run)"
)

# the tiny model of ls_train.testing, trained for 2 iterations on 3 synthetic 8x32x32 volumes; with
# no score threshold the barely trained detector still labels objects, so comparisons are not empty
TINY_TRAINING = (
    *TINY_DATA,
    *TINY_MODEL,
    *TINY_TEST_PROPOSALS,
    "models.box_score_thresh=0.0",
    "predict.score_threshold=0.0",
    "predict.mask_threshold=0.45",
    "predict.progress=false",
    "trainer.epochs=1",
    "trainer.warmup_iters=1",
    "cluster=local",
)


def _unavailable(what: str) -> None:
    """Fail (or, with ``LS_REQUIRE_QT=0``, skip) naming what is missing."""
    message = f"{what}; {QT_PACKAGES}. Set LS_REQUIRE_QT=0 to skip these tests instead."
    if os.environ.get("LS_REQUIRE_QT", "1") == "0":
        pytest.skip(message)
    pytest.fail(message, pytrace=False)


@pytest.fixture(scope="session")
def qt_works(virtual_display: str) -> None:
    """Qt starts (checked in a subprocess first: a Qt that misses a library aborts the process)."""
    probe = "from qtpy.QtWidgets import QApplication; app = QApplication([])"
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    if run.returncode != 0:
        _unavailable(f"Qt cannot start on {virtual_display}: {run.stderr.strip()[-1500:]}")


@pytest.fixture
def viewer(qt_works, make_napari_viewer):
    """A napari viewer (napari's own fixture, Qt offscreen)."""
    return make_napari_viewer()


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where tests leave files to look at (the screenshot): ``$LS_TEST_ARTIFACTS``, else
    ``artifacts/`` in this run's pytest folder."""
    folder = os.environ.get("LS_TEST_ARTIFACTS")
    path = Path(folder) if folder else _shared_root(tmp_path_factory) / "artifacts"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _shared_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder shared by the pytest-xdist workers of this run (the run's own folder without them)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint folder of a really trained (2 iterations) tiny Mask R-CNN, carrying its config;
    trained once per test run, whichever worker asks first."""
    from filelock import FileLock

    root = _shared_root(tmp_path_factory) / "ls-napari-tiny"
    root.mkdir(exist_ok=True)
    with FileLock(str(root / "lock")):
        found = sorted((root / "runs" / "quickstart" / "checkpoints").glob("checkpoint_*"))
        if found:
            return found[-1]
        args = [f"data.root={root / 'data'}", f"trainer.runs_root={root / 'runs'}", *TINY_TRAINING]
        run = subprocess.run(
            [sys.executable, "-m", "ls_train.cli", "train", "--config-name=quickstart", *args],
            capture_output=True, text=True, timeout=600, cwd=root,
        )  # fmt: skip
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        return sorted((root / "runs" / "quickstart" / "checkpoints").glob("checkpoint_*"))[-1]


@pytest.fixture(scope="session", autouse=True)
def virtual_display() -> Iterator[str]:
    """A private Xvfb server for this session's Qt (DISPLAY and QT_QPA_PLATFORM=xcb set before any
    Qt application exists). It lives as long as this process: Qt exits the process when its X
    server goes away, so it is not stopped at the end of the session but gets SIGTERM when this
    process ends (Linux's parent-death signal)."""
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        _unavailable("Xvfb is not installed (napari's OpenGL canvas needs an X display)")
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        [xvfb, "-displayfd", str(write_fd), "-screen", "0", "1400x1000x24", "-nolisten", "tcp"],
        pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=_die_with_parent,
    )  # fmt: skip
    os.close(write_fd)
    display = f":{_read_display(read_fd, proc)}"
    saved = {k: os.environ.get(k) for k in ("DISPLAY", "QT_QPA_PLATFORM")}
    os.environ.update(DISPLAY=display, QT_QPA_PLATFORM="xcb")
    yield display
    for key, value in saved.items():
        os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the parent exits (prctl PR_SET_PDEATHSIG)."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


def _read_display(fd: int, proc: subprocess.Popen) -> str:
    deadline = time.monotonic() + 30
    text = b""
    with os.fdopen(fd, "rb") as pipe:
        while not text.endswith(b"\n") and time.monotonic() < deadline:
            chunk = pipe.read(1)
            if not chunk:
                break
            text += chunk
    if not text.strip():
        err = proc.stderr.read().decode(errors="replace") if proc.poll() is not None else "no display number"
        proc.kill()
        _unavailable(f"Xvfb did not start: {err[-1000:]}")
    return text.decode().strip()
