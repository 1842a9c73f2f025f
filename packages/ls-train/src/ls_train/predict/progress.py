"""A progress line for long runs: done/total, voxels per second and the estimated time left."""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Progress", "format_seconds"]


def format_seconds(seconds: float) -> str:
    """``1h02m``, ``3m05s`` or ``12s``."""
    s = round(max(seconds, 0.0))
    if s >= 3600:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


class Progress:
    """Prints ``label [#####.....] done/total  rate voxels/s  ETA``.

    On a terminal the line is redrawn in place; otherwise (logs, SLURM output) a line is printed
    at most every ``interval`` seconds and at the end.

    Args:
        label: What is counted (``"tiles"``).
        total: Number of items.
        voxels_per_item: Voxels one item stands for (for the rate).
        done: Items already done before this run (resumed work; excluded from the rate).
        stream: Where to print (default stderr); None prints nothing.
        interval: Seconds between lines when not on a terminal.
    """

    def __init__(
        self,
        label: str,
        total: int,
        *,
        voxels_per_item: float,
        done: int = 0,
        stream: TextIO | None = sys.stderr,
        interval: float = 10.0,
    ) -> None:
        self.label = label
        self.total = int(total)
        self.voxels_per_item = float(voxels_per_item)
        self.done = int(done)
        self._start_done = int(done)
        self.stream = stream
        self.interval = float(interval)
        self._start = time.monotonic()
        self._last = -float("inf")
        self._tty = bool(stream is not None and getattr(stream, "isatty", lambda: False)())

    def line(self) -> str:
        elapsed = max(time.monotonic() - self._start, 1e-9)
        new = self.done - self._start_done
        rate = new / elapsed
        width = 24
        filled = int(width * self.done / max(self.total, 1))
        bar = "#" * filled + "." * (width - filled)
        voxels = rate * self.voxels_per_item
        eta = (self.total - self.done) / rate if rate > 0 else float("nan")
        eta_text = format_seconds(eta) if eta == eta else "?"
        return (
            f"{self.label} [{bar}] {self.done}/{self.total}  {voxels / 1e6:.2f} Mvoxel/s  "
            f"elapsed {format_seconds(elapsed)}  ETA {eta_text}"
        )

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.stream is None:
            return
        now = time.monotonic()
        finished = self.done >= self.total
        if self._tty:
            self.stream.write("\r" + self.line() + ("\n" if finished else ""))
            self.stream.flush()
        elif finished or now - self._last >= self.interval:
            self.stream.write(self.line() + "\n")
            self.stream.flush()
            self._last = now
