"""The per-object table of a Labels layer (its ``features``): one row per object id.

Built from ``ls-predict``'s table (:data:`ls_train.predict.table.TABLE_COLUMNS`), it holds what the
segment widget shows and sorts: ``index`` (the label value, napari's key), ``score``, ``class``,
the volume in voxels and in µm³, and the centroid in voxels and µm.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["FEATURE_COLUMNS", "features_from_table", "read_prediction_table"]

FEATURE_COLUMNS = (
    "index",
    "score",
    "class",
    "voxels",
    "volume_um3",
    "centroid_z",
    "centroid_y",
    "centroid_x",
    "centroid_z_um",
    "centroid_y_um",
    "centroid_x_um",
)
"""Columns of the features table; ``index`` is the object's label value."""


def features_from_table(table: Mapping[str, np.ndarray], spacing: Sequence[float]) -> pd.DataFrame:
    """The features of a prediction's label layer from its per-object table.

    Args:
        table: ``ls-predict``'s table by column (``id``, ``score``, ``class``, ``voxels``,
            ``centroid_*``, ``centroid_*_um``), e.g. :func:`ls_train.predict.in_memory.read_table`.
        spacing: ``(sz, sy, sx)`` in micrometres, for the volume in µm³.

    Raises:
        KeyError: a column of the table is missing (named).
    """
    missing = [c for c in ("id", "score", "class", "voxels") if c not in table]
    if missing:
        raise KeyError(f"the prediction table lacks the column(s) {missing}")
    voxel_um3 = float(np.prod([float(s) for s in spacing]))
    voxels = np.asarray(table["voxels"], dtype=np.int64)
    frame = pd.DataFrame(
        {
            "index": np.asarray(table["id"], dtype=np.int64),
            "score": np.round(np.asarray(table["score"], dtype=np.float64), 4),
            "class": np.asarray(table["class"], dtype=np.int64),
            "voxels": voxels,
            "volume_um3": np.round(voxels * voxel_um3, 3),
        }
    )
    for axis in "zyx":
        for suffix in ("", "_um"):
            frame[f"centroid_{axis}{suffix}"] = np.round(np.asarray(table[f"centroid_{axis}{suffix}"]), 3)
    return frame[list(FEATURE_COLUMNS)]


def read_prediction_table(path: str | Path, spacing: Sequence[float]) -> pd.DataFrame:
    """The features of the label image that ``ls-predict`` wrote next to its per-object CSV ``path``."""
    from ls_train.predict.in_memory import read_table

    return features_from_table(read_table(path), spacing)
