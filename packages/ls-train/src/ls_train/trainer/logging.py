"""What a run shows and leaves behind: progress lines, TensorBoard events, a CSV, loss/metric curves.

:class:`RunLogger` lives on the rank-0 worker (or the in-process loop) and writes into the run
folder: ``tensorboard/`` (event files), ``metrics.csv`` (one row per epoch: losses, learning
rate, validation metrics; rows of a resumed run are appended) and, at the end,
``curves.png`` (:func:`plot_curves`). The progress line carries the epoch, iteration, loss terms,
learning rate, speed and ETA; it updates in place on a terminal and is printed every
``log_every_steps`` iterations otherwise (as when Ray forwards a worker's output).
"""

from __future__ import annotations

import csv
import io
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from ls_train.atomic import atomic_write

__all__ = [
    "CSV_FILE",
    "CURVES_FILE",
    "PARTIAL",
    "RunLogger",
    "format_duration",
    "plot_curves",
    "read_csv_rows",
]

CSV_FILE = "metrics.csv"
PARTIAL = "\r"
"""Starts a progress line that a later one of the same epoch replaces (see ``mark_partial``)."""
CURVES_FILE = "curves.png"


def format_duration(seconds: float) -> str:
    """``H:MM:SS`` (``--:--`` when unknown)."""
    if not math.isfinite(seconds) or seconds < 0:
        return "--:--"
    s = round(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def read_csv_rows(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The rows of a run's ``metrics.csv`` with numbers parsed (empty cells dropped)."""
    p = Path(path)
    if not p.is_file():
        return []
    rows = []
    with p.open(newline="") as f:
        for row in csv.DictReader(f):
            parsed = {}
            for k, v in row.items():
                if v in (None, ""):
                    continue
                try:
                    parsed[k] = float(v)
                except ValueError:
                    parsed[k] = v
            rows.append(parsed)
    return rows


class RunLogger:
    """Progress, TensorBoard and CSV output of one run (create it on rank 0 only).

    Args:
        run_dir: The run folder.
        epochs: Epochs of the run (for the ETA).
        steps_per_epoch: Iterations per epoch.
        log_every_steps: Iterations between progress lines and TensorBoard points.
        start_iter: Iterations already done (a resumed run), for the speed and ETA.
        stream: Where the progress goes (default ``sys.stdout``); on a terminal the progress line
            of an epoch is redrawn in place.
        mark_partial: On a stream that is not a terminal, start every progress line but the last
            of its epoch with :data:`PARTIAL`, so that a reader printing to a terminal
            (:class:`~ls_train.trainer.console.ConsoleRelay`) shows one line per epoch.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        *,
        epochs: int,
        steps_per_epoch: int,
        log_every_steps: int,
        start_iter: int = 0,
        stream: TextIO | None = None,
        mark_partial: bool = False,
    ) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.epochs = epochs
        self.steps_per_epoch = max(1, steps_per_epoch)
        self.log_every_steps = log_every_steps
        self.stream = stream or sys.stdout
        self.inline = bool(getattr(self.stream, "isatty", lambda: False)())
        self.mark_partial = mark_partial
        self.writer = SummaryWriter(log_dir=str(self.run_dir / "tensorboard"))
        self.csv_path = self.run_dir / CSV_FILE
        self.rows = read_csv_rows(self.csv_path)
        self._t0 = time.monotonic()
        self._done_at_start = start_iter

    def progress(
        self,
        *,
        epoch: int,
        epoch_step: int,
        global_iter: int,
        losses: Mapping[str, float],
        lr: float,
        skipped: int,
    ) -> None:
        """Report iteration ``epoch_step`` (1-based) of ``epoch`` (0-based); ``global_iter`` counts all."""
        last = epoch_step == self.steps_per_epoch
        if epoch_step % self.log_every_steps and not last:
            return
        for k, v in losses.items():
            self.writer.add_scalar(f"train/{k}", v, global_iter)
        self.writer.add_scalar("train/lr", lr, global_iter)
        done = global_iter - self._done_at_start
        elapsed = time.monotonic() - self._t0
        rate = done / elapsed if elapsed > 0 else math.nan
        remaining = self.epochs * self.steps_per_epoch - global_iter
        eta = remaining / rate if rate and math.isfinite(rate) and rate > 0 else math.nan
        width = 20
        filled = int(width * epoch_step / self.steps_per_epoch)
        bar = "=" * filled + ">" * (filled < width) + " " * (width - filled - 1)
        terms = " ".join(f"{k.removeprefix('loss_')} {v:.3f}" for k, v in losses.items() if k != "loss")
        line = (
            f"epoch {epoch + 1}/{self.epochs} [{bar}] {epoch_step}/{self.steps_per_epoch} "
            f"loss {losses.get('loss', math.nan):.4f} ({terms}) lr {lr:.2e} {rate:.2f} it/s "
            f"ETA {format_duration(eta)}" + (f" skipped {skipped}" if skipped else "")
        )
        if self.inline:
            self.stream.write("\r" + line + ("\n" if last else ""))
        elif self.mark_partial and not last:  # a console file: the relay may redraw this line
            self.stream.write(PARTIAL + line + "\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def message(self, text: str) -> None:
        """Print one line (ending any in-place progress line first)."""
        self.stream.write(text + "\n")
        self.stream.flush()

    def epoch_end(self, row: Mapping[str, Any]) -> None:
        """Record one epoch's summary (``epoch`` and ``step`` keys plus values) in TensorBoard and CSV."""
        step = int(row.get("step", 0))
        for k, v in row.items():
            if k in ("epoch", "step") or not isinstance(v, int | float) or isinstance(v, bool):
                continue
            group = "train" if k.startswith("loss") or k == "lr" else "val"
            self.writer.add_scalar(f"{group}/{k}_epoch" if group == "train" else f"val/{k}", v, step)
        self.writer.flush()
        epoch = row.get("epoch")
        self.rows = [r for r in self.rows if r.get("epoch") != epoch] + [dict(row)]
        self._write_csv()

    def _write_csv(self) -> None:
        columns: list[str] = []
        for r in self.rows:
            columns += [k for k in r if k not in columns]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns)
        writer.writeheader()
        for r in self.rows:
            writer.writerow({k: r.get(k, "") for k in columns})
        text = buf.getvalue().encode()
        atomic_write(self.csv_path, lambda f: f.write(text))

    def close(self) -> None:
        """Flush and close the TensorBoard writer."""
        self.writer.close()


def plot_curves(
    csv_path: str | os.PathLike[str],
    png_path: str | os.PathLike[str],
    *,
    metrics: Sequence[str] | None = None,
) -> Path | None:
    """Draw the loss curves (left) and validation metric curves (right) of a run's CSV as a PNG.

    Args:
        csv_path: The run's ``metrics.csv``.
        png_path: The PNG to write.
        metrics: Metric columns to draw (default: every ``ap@``/``f1@``/``pq@`` column and
            ``coco_mask_ap``).

    Returns:
        The PNG path, or None when the CSV has no rows.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    rows = read_csv_rows(csv_path)
    if not rows:
        return None
    columns: list[str] = []
    for r in rows:
        columns += [k for k in r if k not in columns]
    loss_cols = [c for c in columns if c.startswith("loss")]
    if metrics is None:
        metrics = [
            c
            for c in columns
            if (c.split("@")[0] in ("ap", "f1", "pq") and not c.endswith("_pooled")) or c in ("coco_mask_ap",)
        ]
    fig = Figure(figsize=(11, 4), dpi=100)
    ax_loss, ax_metric = fig.subplots(1, 2)
    for c in loss_cols:
        pts = [(r["epoch"], r[c]) for r in rows if isinstance(r.get(c), float)]
        if pts:
            ax_loss.plot(*zip(*pts, strict=True), marker="o", ms=3, label=c, lw=2 if c == "loss" else 1)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("training loss")
    ax_loss.set_yscale("log")
    ax_loss.legend(fontsize=7)
    for c in metrics:
        pts = [(r["epoch"], r[c]) for r in rows if isinstance(r.get(c), float)]
        if pts:
            ax_metric.plot(*zip(*pts, strict=True), marker="o", ms=3, label=c)
    ax_metric.set_xlabel("epoch")
    ax_metric.set_ylabel("validation metric")
    ax_metric.set_ylim(0, 1)
    if ax_metric.lines:
        ax_metric.legend(fontsize=7)
    fig.tight_layout()
    out = Path(png_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out
