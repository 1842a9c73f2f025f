"""Evaluation results as JSON, CSV and a printed table.

A *summary* is the flat ``dict[str, float]`` of one or more metrics' ``compute()``; *per-crop
rows* are dicts with a ``"crop_id"`` and that crop's values (``Metric.per_crop()``). NaN is
written as ``null`` in JSON and as an empty cell in CSV.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ls_train.metrics.keys import parse_metric_key

__all__ = [
    "format_table",
    "join_per_crop",
    "read_json",
    "write_columns_csv",
    "write_csv",
    "write_json",
    "write_report",
]

_INT_NAMES = ("tp", "fp", "fn")


def _plain(value: Any) -> Any:
    """JSON-safe python value: numpy scalars/arrays unwrapped, NaN / inf -> None."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"cannot write a value of type {type(value).__name__} to a report: {value!r}")


def _atomic_write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def join_per_crop(*row_lists: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Join per-crop rows of several metrics on ``"crop_id"`` (first-seen crop order).

    A crop id that occurs several times in one list (two crops reported under one id) joins
    occurrence by occurrence: the k-th row with that id in each list forms one joined row.

    Raises:
        ValueError: a row without ``"crop_id"``, or two metrics giving one crop different
            values for the same column.
    """
    joined: dict[tuple[str, int], dict[str, Any]] = {}
    for rows in row_lists:
        seen: dict[str, int] = {}
        for row in rows:
            if "crop_id" not in row:
                raise ValueError(f"per-crop row without 'crop_id': {dict(row)}")
            crop = str(row["crop_id"])
            k = seen.get(crop, 0)
            seen[crop] = k + 1
            dest = joined.setdefault((crop, k), {"crop_id": crop})
            for key, v in row.items():
                if key in dest and key != "crop_id" and _plain(dest[key]) != _plain(v):
                    raise ValueError(f"crop {crop!r}: column {key!r} is {dest[key]!r} and {v!r}")
                dest.setdefault(key, v)
    return list(joined.values())


def write_json(
    path: str | os.PathLike[str],
    summary: Mapping[str, float],
    per_crop: Sequence[Mapping[str, Any]] = (),
    meta: Mapping[str, Any] | None = None,
    *,
    rows_key: str = "per_crop",
) -> Path:
    """Write ``{"summary": ..., "per_crop": [...], "meta": {...}}`` to ``path`` (atomically);
    ``rows_key`` names the rows (``"per_region"`` for a whole volume)."""
    doc = {
        "summary": _plain(dict(summary)),
        rows_key: _plain(list(per_crop)),
        "meta": _plain(dict(meta or {})),
    }
    return _atomic_write(Path(path), json.dumps(doc, indent=2, allow_nan=False) + "\n")


def read_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a report written by :func:`write_json`; ``null`` metric values come back as NaN."""
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    doc["summary"] = {k: math.nan if v is None else v for k, v in doc["summary"].items()}
    return doc


def _csv_cell(value: Any) -> Any:
    value = _plain(value)
    return "" if value is None else value


def write_csv(path: str | os.PathLike[str], rows: Sequence[Mapping[str, Any]]) -> Path:
    """Write rows as CSV; the columns are the union of the rows' keys, ``crop_id`` first."""
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    if "crop_id" in columns:
        columns.remove("crop_id")
        columns.insert(0, "crop_id")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_cell(row.get(k)) for k in columns})
    return _atomic_write(Path(path), buf.getvalue())


def write_report(
    out_dir: str | os.PathLike[str],
    summary: Mapping[str, float],
    per_crop: Sequence[Mapping[str, Any]] = (),
    meta: Mapping[str, Any] | None = None,
    *,
    stem: str = "metrics",
) -> dict[str, Path]:
    """Write ``<stem>.json``, ``<stem>_summary.csv`` (metric, value) and ``<stem>_per_crop.csv``.

    Returns:
        ``{"json": ..., "summary_csv": ..., "per_crop_csv": ...}`` paths.
    """
    out = Path(out_dir)
    return {
        "json": write_json(out / f"{stem}.json", summary, per_crop, meta),
        "summary_csv": write_csv(
            out / f"{stem}_summary.csv", [{"metric": k, "value": v} for k, v in summary.items()]
        ),
        "per_crop_csv": write_csv(out / f"{stem}_per_crop.csv", per_crop),
    }


def write_columns_csv(
    path: str | os.PathLike[str], columns: Mapping[str, np.ndarray], *, rows_per_step: int = 100_000
) -> Path:
    """Write equal-length 1-D columns as CSV (atomically), a step of rows at a time: for tables of
    millions of rows (no dict per row). Floats are written in their shortest exact form."""
    names = list(columns)
    arrays = [np.asarray(columns[n]) for n in names]
    n = arrays[0].shape[0] if arrays else 0
    if any(a.shape != (n,) for a in arrays):
        shapes = {k: a.shape for k, a in zip(names, arrays, strict=True)}
        raise ValueError(f"{path}: columns must be 1-D of one length, got {shapes}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(",".join(names) + "\n")
            for start in range(0, n, rows_per_step):
                cells = [map(str, a[start : start + rows_per_step].tolist()) for a in arrays]
                f.writelines(",".join(row) + "\n" for row in zip(*cells, strict=True))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _fmt(name: str, value: float, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if name in _INT_NAMES or name.startswith("n_"):
        return str(round(value))
    return f"{value:.{digits}f}"


def _align(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for r in rows:
        cells = [r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)]
        out.append("  ".join(cells).rstrip())
    return out


def format_table(summary: Mapping[str, float], *, digits: int = 4) -> str:
    """A printable table of a summary.

    Thresholded keys (``ap@50``, ``f1@75_pooled``, ...) form a grid with one row per metric
    (pooled rows after averaged ones) and one column per threshold; every other key follows
    as ``name  value`` lines. Missing / NaN values print as ``-``.
    """
    grid: dict[str, dict[float, float]] = {}
    others: list[tuple[str, float]] = []
    for key, value in summary.items():
        parsed = parse_metric_key(key)
        if parsed is None:
            others.append((key, value))
            continue
        name, t, pooled = parsed
        grid.setdefault(f"{name} (pooled)" if pooled else name, {})[t] = value
    lines: list[str] = []
    if grid:
        thresholds = sorted({t for row in grid.values() for t in row})
        header = ["metric"] + [f"@{t * 100:g}" for t in thresholds]
        names = [n for n in grid if not n.endswith("(pooled)")] + [n for n in grid if n.endswith("(pooled)")]
        body = [
            [n] + [_fmt(n.split(" ")[0], grid[n].get(t, math.nan), digits) for t in thresholds] for n in names
        ]
        lines += _align([header, *body])
    if others:
        if lines:
            lines.append("")
        lines += _align([[k, _fmt(k, v, digits)] for k, v in others])
    return "\n".join(lines)
