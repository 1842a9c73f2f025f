"""``ls-predict`` in a process of its own, for the segment widget.

The prediction never runs in napari's process: a crash there (a segfault in a native library)
would take the viewer down, and it does happen: with Mesa's software OpenGL (``llvmpipe``:
virtual machines, remote desktops, Xvfb) napari's canvas loads Mesa's LLVM, and torch's first
import of ``triton`` (its own LLVM) after that crashes the process. A child process also stops
at once when the run is cancelled.

Both sides live here. :func:`run_request` (napari's side) writes a request, starts
``python -m ls_napari.predict_process REQUEST`` and reads its lines; :func:`main` (the child)
builds the config (:func:`ls_napari.model.model_config`), runs
:func:`ls_train.predict.predict_array` on the array (``.npy``) or
:func:`ls_train.predict.predict_file` on the file, and leaves the labels (``labels.npy``) and
the per-object table (``table.json``) in the request's folder. The child reports on stdout,
one JSON object per line after :data:`MARK`: ``progress`` ``[stage, done, total]``, then ``done``
or ``error``.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["MARK", "PredictionProcessError", "main", "run_request"]

MARK = "ls-napari-predict:"
"""Prefix of the child's report lines (other output is ignored)."""


class PredictionProcessError(RuntimeError):
    """The prediction failed (the message is the child's error, or how the child ended)."""


def _emit(kind: str, value: Any) -> None:
    print(MARK + json.dumps({kind: value}), flush=True)


def _predict(request: dict[str, Any]) -> Any:
    from ls_napari.model import model_config
    from ls_train.predict import predict_array, predict_file

    cfg = model_config(
        request["checkpoint"], config_name=request.get("config_name"), overrides=request["overrides"]
    )
    kwargs = {
        "checkpoint": request["checkpoint"],
        "progress": lambda stage, done, total: _emit("progress", [stage, done, total]),
        "work_dir": request["folder"],
        "print_fn": lambda _line: None,
    }
    if request.get("array"):
        image = np.load(request["array"], mmap_mode="r")
        return predict_array(cfg, image, spacing=request["spacing"], **kwargs)
    return predict_file(cfg, request["file"], **kwargs)


def main(argv: Sequence[str] | None = None) -> int:
    """The child: ``python -m ls_napari.predict_process REQUEST.json``."""
    args = list(sys.argv[1:] if argv is None else argv)
    request = json.loads(Path(args[0]).read_text())
    try:
        prediction = _predict(request)
    except Exception as exc:
        _emit("error", str(exc) or type(exc).__name__)
        return 2
    folder = Path(request["folder"])
    np.save(folder / "labels.npy", prediction.labels)
    table = {k: v.tolist() for k, v in prediction.table.items()}
    (folder / "table.json").write_text(json.dumps(table))
    _emit("done", {"spacing": list(prediction.spacing), "objects": int(prediction.result.objects)})
    return 0


def _read_lines(stream: Any, lines: queue.Queue) -> None:
    for line in stream:
        if line.startswith(MARK):
            lines.put(json.loads(line[len(MARK) :]))
    lines.put(None)


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _follow(
    proc: subprocess.Popen,
    progress: Callable[[str, int, int], None] | None,
    cancel: Callable[[], bool] | None,
) -> dict[str, Any] | None:
    """The child's final report, passing on progress; None when ``cancel()`` stopped it."""
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_read_lines, args=(proc.stdout, lines), daemon=True).start()
    final: dict[str, Any] | None = {}
    while True:
        if cancel is not None and cancel():
            _stop(proc)
            return None
        try:
            report = lines.get(timeout=0.1)
        except queue.Empty:
            continue
        if report is None:
            return final
        if "progress" in report and progress is not None:
            progress(*report["progress"])
        elif "progress" not in report:
            final = report


def run_request(
    request: dict[str, Any],
    *,
    progress: Callable[[str, int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray], tuple[float, float, float]] | None:
    """Run one prediction in a child process (napari's side).

    Args:
        request: ``folder`` (an empty folder for the request, its work and its results),
            ``checkpoint``, ``config_name`` (or None), ``overrides``, and either ``array`` (a
            ``.npy`` volume) with ``spacing``, or ``file`` (a TIFF or OME-Zarr).
        progress: Called with ``(stage, done, total)`` as tiles and blocks are done.
        cancel: Asked ten times a second; True stops the child.

    Returns:
        ``(labels, table by column, spacing)``, or None when cancelled.

    Raises:
        PredictionProcessError: the child's error message (a bad checkpoint, setting or input),
            or how it ended when it died without one.
    """
    folder = Path(request["folder"])
    (folder / "request.json").write_text(json.dumps(request))
    final: dict[str, Any] | None = {}
    with (folder / "stderr.log").open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ls_napari.predict_process", str(folder / "request.json")],
            stdout=subprocess.PIPE, stderr=err, text=True,
        )  # fmt: skip
        try:
            final = _follow(proc, progress, cancel)
        finally:
            if proc.poll() is None and final is not None:
                proc.wait()
    if final is None:
        return None
    if "error" in final:
        raise PredictionProcessError(final["error"])
    if "done" not in final:
        tail = (folder / "stderr.log").read_text(errors="replace")[-2000:]
        raise PredictionProcessError(f"the prediction process ended with status {proc.returncode}: {tail}")
    labels = np.load(folder / "labels.npy")
    table = {k: np.asarray(v) for k, v in json.loads((folder / "table.json").read_text()).items()}
    return labels, table, tuple(final["done"]["spacing"])  # type: ignore[return-value]


if __name__ == "__main__":
    sys.exit(main())
