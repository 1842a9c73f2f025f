"""A quiet console for Ray runs: the run's own lines on the terminal, Ray's logs in the run folder.

With Ray forwarding every worker's and actor's output to the driver, the console of a short CPU
run held hundreds of lines of Ray internals (placement-group monitor tracebacks, whole training
reports, token-authentication notices) around the few lines that matter. So, unless
``trainer.verbose`` is set:

- Ray does not forward worker output (``log_to_driver=False``) and logs only warnings;
- the rank-0 worker writes its progress, validation and resume lines to
  ``<run folder>/console.log``, and :class:`ConsoleRelay` on the driver prints each new line of
  that file as it is written;
- at the end, :func:`keep_ray_logs` copies the logs of the local Ray instance (every worker's and
  actor's stdout and stderr) into ``<run folder>/logs/ray-<time>/``, where a failure can be read
  in full.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from ls_train.trainer.logging import PARTIAL

__all__ = ["CONSOLE_FILE", "ConsoleRelay", "keep_ray_logs", "quiet_ray_logging"]

CONSOLE_FILE = "console.log"


class ConsoleRelay:
    """Print the lines appended to ``path`` while the ``with`` block runs (from the end of the file
    as it was on entry), and the rest of them on exit.

    Args:
        path: The file the rank-0 worker writes (created if missing).
        print_fn: Where the lines go.
        interval: Seconds between looks at the file.
        stream: A terminal to draw on instead of ``print_fn``: a progress line that a later one
            of the same epoch replaces (it starts with :data:`~ls_train.trainer.logging.PARTIAL`)
            is redrawn in place, so each epoch leaves one line. Elsewhere (``print_fn``) every
            line is printed, without the mark.
    """

    def __init__(
        self,
        path: Path,
        *,
        print_fn: Callable[[str], None] = print,
        interval: float = 0.2,
        stream: TextIO | None = None,
    ) -> None:
        self.path = Path(path)
        self.print_fn = print_fn
        self.interval = interval
        self.stream = stream
        self._drawn = False  # a partial progress line stands on the terminal
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.touch()
        self._offset = self.path.stat().st_size
        self._pending = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ls-train-console", daemon=True)

    def __enter__(self) -> ConsoleRelay:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._relay(final=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._relay(final=False)

    def _relay(self, *, final: bool) -> None:
        try:
            with self.path.open("r", errors="replace", newline="") as f:  # newline="": keep PARTIAL
                f.seek(self._offset)
                text = f.read()
                self._offset = f.tell()
        except OSError:
            return
        lines = (self._pending + text).split("\n")
        self._pending = lines.pop()  # a line still being written waits for its end
        if final and self._pending:
            lines.append(self._pending)
            self._pending = ""
        for line in lines:
            self._show(line)
        if final and self._drawn and self.stream is not None:
            self.stream.write("\n")
            self._drawn = False

    def _show(self, line: str) -> None:
        partial = line.startswith(PARTIAL)
        text = line.removeprefix(PARTIAL)
        if self.stream is None:
            self.print_fn(text)
            return
        self.stream.write(("\r\x1b[K" if self._drawn else "") + text + ("" if partial else "\n"))
        self.stream.flush()
        self._drawn = partial


class _DropNotices(logging.Filter):
    """Drop Ray's token-authentication notice, printed at every ``ray.init`` on a machine where any
    Ray instance once ran (it says nothing the user must act on for a local instance)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Token authentication is enabled" not in record.getMessage()


def quiet_ray_logging() -> None:
    """Drop Ray's token-authentication notice from the driver's console (after ``import ray``,
    which installs the handler of the ``ray`` logger, and before ``ray.init``)."""
    for handler in logging.getLogger("ray").handlers:
        if not any(isinstance(f, _DropNotices) for f in handler.filters):
            handler.addFilter(_DropNotices())


def keep_ray_logs(run_dir: Path) -> Path | None:
    """Copy the log files of the running local Ray instance into ``run_dir/logs/ray-<time>/``.

    Returns the folder, or None when there is no local Ray session to copy from or the copy
    fails (a full disk): the logs are a courtesy, and a partial copy is removed.
    """
    try:
        import ray._private.worker as ray_worker

        node = ray_worker.global_worker.node
        source = Path(node.get_logs_dir_path()) if node is not None else None
    except Exception:  # not connected, or Ray's private layout changed: nothing to copy
        return None
    if source is None or not source.is_dir():
        return None
    target = run_dir / "logs" / time.strftime("ray-%Y%m%d-%H%M%S")
    try:
        target.mkdir(parents=True, exist_ok=True)
        for file in source.iterdir():
            if file.is_file() and file.suffix in (".out", ".err", ".log"):
                shutil.copy2(file, target / file.name)
    except OSError:
        shutil.rmtree(target, ignore_errors=True)
        return None
    return target
