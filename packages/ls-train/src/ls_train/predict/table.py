"""The per-instance table of a prediction: id, score, class, box, voxel count, centroid.

Block statistics are computed where a block is painted and summed on the driver, so the table
never needs the whole label volume.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["TABLE_COLUMNS", "BlockStats", "StatsAccumulator", "block_stats", "write_table"]

TABLE_COLUMNS = (
    "id",
    "score",
    "class",
    "voxels",
    "tiles",
    "z0",
    "y0",
    "x0",
    "z1",
    "y1",
    "x1",
    "centroid_z",
    "centroid_y",
    "centroid_x",
    "centroid_z_um",
    "centroid_y_um",
    "centroid_x_um",
)
"""Columns of the table. ``z0..x1`` is the half-open voxel box; ``tiles`` the number of tile views
merged into the object; centroids are in voxels of the predicted level and in micrometres
(including the level's translation)."""


@dataclass
class BlockStats:
    """Per object id present in a block: voxel count, coordinate sums, box corners (volume voxels)."""

    ids: np.ndarray
    counts: np.ndarray
    sums: np.ndarray
    lows: np.ndarray
    highs: np.ndarray


def block_stats(labels: np.ndarray, offset: Sequence[int]) -> BlockStats:
    """Statistics of the non-zero ids of a label block whose corner is at ``offset``."""
    flat = labels.ravel()
    where = np.flatnonzero(flat)
    if where.size == 0:
        empty = np.zeros((0, 3), np.int64)
        return BlockStats(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 3)), empty, empty)
    ids = flat[where]
    order = np.argsort(ids, kind="stable")
    ids, where = ids[order], where[order]
    coords = np.stack(np.unravel_index(where, labels.shape), axis=1).astype(np.int64)
    coords += np.asarray(offset, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    counts = np.diff(np.r_[starts, ids.shape[0]])
    return BlockStats(
        ids=ids[starts].astype(np.int64),
        counts=counts.astype(np.int64),
        sums=np.add.reduceat(coords.astype(np.float64), starts, axis=0),
        lows=np.minimum.reduceat(coords, starts, axis=0),
        highs=np.maximum.reduceat(coords, starts, axis=0) + 1,
    )


class StatsAccumulator:
    """Sums :class:`BlockStats` over blocks for ids ``1..num_objects``."""

    def __init__(self, num_objects: int) -> None:
        n = int(num_objects) + 1
        self.counts = np.zeros(n, np.int64)
        self.sums = np.zeros((n, 3), np.float64)
        self.lows = np.full((n, 3), np.iinfo(np.int64).max, np.int64)
        self.highs = np.zeros((n, 3), np.int64)

    def add(self, stats: BlockStats) -> None:
        i = stats.ids
        self.counts[i] += stats.counts
        self.sums[i] += stats.sums
        self.lows[i] = np.minimum(self.lows[i], stats.lows)
        self.highs[i] = np.maximum(self.highs[i], stats.highs)

    def rows(
        self,
        scores: np.ndarray,
        classes: np.ndarray,
        members: np.ndarray,
        spacing: Sequence[float],
        translation: Sequence[float],
    ) -> list[dict[str, float | int]]:
        """One row per id with at least one voxel, by increasing id."""
        out = []
        spacing = np.asarray(spacing, np.float64)
        translation = np.asarray(translation, np.float64)
        for i in np.flatnonzero(self.counts):
            centroid = self.sums[i] / self.counts[i]
            um = centroid * spacing + translation
            row: dict[str, float | int] = {
                "id": int(i),
                "score": round(float(scores[i]), 6),
                "class": int(classes[i]),
                "voxels": int(self.counts[i]),
                "tiles": int(members[i]),
            }
            for axis, letter in enumerate("zyx"):
                row[f"{letter}0"] = int(self.lows[i, axis])
            for axis, letter in enumerate("zyx"):
                row[f"{letter}1"] = int(self.highs[i, axis])
            for axis, letter in enumerate("zyx"):
                row[f"centroid_{letter}"] = round(float(centroid[axis]), 4)
            for axis, letter in enumerate("zyx"):
                row[f"centroid_{letter}_um"] = round(float(um[axis]), 4)
            out.append(row)
        return out


def write_table(path: str | Path, rows: Sequence[dict[str, float | int]]) -> Path:
    """Write the rows as CSV, or as Parquet when ``path`` ends with ``.parquet`` (needs pyarrow).

    Raises:
        ValueError: a Parquet path without pyarrow installed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    if path.suffix == ".parquet":
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise ValueError(
                f"table {path}: writing Parquet needs pyarrow (pip install pyarrow), or give a .csv path"
            ) from exc
        columns = {name: [row[name] for row in rows] for name in TABLE_COLUMNS}
        pq.write_table(pa.table(columns), tmp)
    else:
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(TABLE_COLUMNS))
            writer.writeheader()
            writer.writerows(rows)
    tmp.replace(path)
    return path
