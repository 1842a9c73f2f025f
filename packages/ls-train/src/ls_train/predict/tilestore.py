"""The work folder of a prediction run: the plan and every finished tile's labels.

Layout of ``<work_dir>``::

    plan.json          what the tiles depend on (input, grid, model, thresholds, normalisation)
    tiles.zarr/        uint32 array (tiles, Z, Y, X): each tile's own label tile, chunked so that
                       reading a tile's overlap with a neighbour touches only that part
    tiles/000042.npz   scores, classes, boxes and voxel counts of tile 42's instances; written
                       (atomically) after its labels, so its presence marks the tile as done
    bad_input.txt      present when the last run stopped on bad input (NaN in a tile): the message

A run that stops (killed, crashed, a node lost) leaves the finished tiles behind; the next run
with the same plan skips them. A work folder is *replaceable* (:meth:`TileStore.replaceable`)
when it holds no finished tile or its last run stopped on bad input: a run with another plan
then replaces it instead of refusing it, so that a run that failed on bad input never blocks
the corrected one. Several processes may write different tiles at once: every tile owns whole
chunks of ``tiles.zarr``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ls_train.atomic import atomic_write
from ls_train.predict.segmenters import TileLabels

__all__ = ["PlanMismatchError", "TileMeta", "TileStore"]

PLAN_FILE = "plan.json"
BAD_INPUT_FILE = "bad_input.txt"
_CHUNK = (32, 64, 64)


class PlanMismatchError(RuntimeError):
    """A work folder holds tiles of a different run (other input, grid, model or settings)."""


@dataclass
class TileMeta:
    """What stitching needs of one tile's instances (instance ``k`` at index ``k - 1``).

    Attributes:
        scores: ``(n,)`` float32.
        classes: ``(n,)`` int32.
        boxes: ``(n, 6)`` int64 voxel boxes ``(z0, y0, x0, z1, y1, x1)`` in tile coordinates,
            half-open, of the instance's voxels in the label tile.
        counts: ``(n,)`` int64 voxel counts in the label tile.
        capped: the segmenter's detection cap dropped detections in this tile.
    """

    scores: np.ndarray
    classes: np.ndarray
    boxes: np.ndarray
    counts: np.ndarray
    capped: bool = False

    @classmethod
    def of(cls, tile: TileLabels) -> TileMeta:
        """Boxes and counts measured on the label tile (instances without voxels get empty boxes)."""
        from scipy import ndimage

        n = tile.scores.shape[0]
        counts = np.bincount(tile.labels.ravel(), minlength=n + 1)[1 : n + 1].astype(np.int64)
        boxes = np.zeros((n, 6), dtype=np.int64)
        for k, found in enumerate(ndimage.find_objects(tile.labels, max_label=n)):
            if found is not None:
                boxes[k] = [s.start for s in found] + [s.stop for s in found]
        return cls(scores=tile.scores, classes=tile.classes, boxes=boxes, counts=counts, capped=tile.capped)


class TileStore:
    """A prediction run's work folder (see the module docstring). Picklable: opens lazily.

    Args:
        root: The work folder.
        num_tiles: Number of tiles of the grid.
        tile_shape: ``(Z, Y, X)`` of every tile.
    """

    def __init__(self, root: str | Path, num_tiles: int, tile_shape: tuple[int, int, int]) -> None:
        self.root = Path(root)
        self.num_tiles = int(num_tiles)
        self.tile_shape = tuple(int(s) for s in tile_shape)
        self._array = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_array": None}

    # -- plan ----------------------------------------------------------------------------------

    @staticmethod
    def read_plan(root: str | Path) -> dict[str, Any] | None:
        """The plan stored in ``root``, or None when there is none."""
        path = Path(root) / PLAN_FILE
        if not path.is_file():
            return None
        return json.loads(path.read_text())

    @classmethod
    def open_or_create(
        cls, root: str | Path, plan: Mapping[str, Any], num_tiles: int, tile_shape: tuple[int, int, int]
    ) -> TileStore:
        """Reuse the work folder when its plan equals ``plan``, else create it.

        Raises:
            PlanMismatchError: ``root`` holds a different plan (the message lists the keys that differ).
            FileExistsError: ``root`` exists and is not a work folder (never deleted).
        """
        root = Path(root)
        plan = json.loads(json.dumps(plan))  # as it reads back
        old = cls.read_plan(root)
        if old is not None:
            if old != plan:
                keys = sorted(k for k in set(old) | set(plan) if old.get(k) != plan.get(k))
                raise PlanMismatchError(
                    f"work folder {root} holds tiles of another run (differing: {', '.join(keys)}); "
                    f"pass overwrite=true to discard them, or choose another predict.work_dir"
                )
            (root / BAD_INPUT_FILE).unlink(missing_ok=True)  # resumed: no longer abandoned
            return cls(root, num_tiles, tile_shape)
        if root.exists() and any(root.iterdir()):
            raise FileExistsError(
                f"work folder {root} exists, is not empty and has no {PLAN_FILE}; "
                f"refusing to use or delete it"
            )
        (root / "tiles").mkdir(parents=True, exist_ok=True)
        store = cls(root, num_tiles, tile_shape)
        store._create_array()
        text = json.dumps(plan, indent=1, sort_keys=True).encode()
        atomic_write(root / PLAN_FILE, lambda f: f.write(text))
        return store

    @staticmethod
    def remove(root: str | Path) -> None:
        """Delete a work folder (only one that has a plan file)."""
        root = Path(root)
        if root.exists():
            if not (root / PLAN_FILE).is_file():
                raise FileExistsError(
                    f"{root} is not a prediction work folder (no {PLAN_FILE}); not deleting it"
                )
            shutil.rmtree(root)

    @staticmethod
    def replaceable(root: str | Path) -> bool:
        """Whether the work folder ``root`` (one with a plan) may be replaced by a run of another
        plan without ``overwrite``: it holds no finished tile, or its last run stopped on bad input."""
        root = Path(root)
        if (root / BAD_INPUT_FILE).is_file():
            return True
        return not any(p.stem.isdigit() for p in (root / "tiles").glob("*.npz"))

    def mark_bad_input(self, message: str) -> None:
        """Record that this run stopped on bad input (see :meth:`replaceable`)."""
        text = message.encode()
        atomic_write(self.root / BAD_INPUT_FILE, lambda f: f.write(text))

    # -- tile labels ---------------------------------------------------------------------------

    def _spec(self) -> dict[str, Any]:
        return {"driver": "zarr", "kvstore": {"driver": "file", "path": str(self.root / "tiles.zarr")}}

    def _create_array(self) -> None:
        import tensorstore as ts

        chunks = [1, *(min(c, s) for c, s in zip(_CHUNK, self.tile_shape, strict=True))]
        spec = {
            **self._spec(),
            "metadata": {
                "shape": [self.num_tiles, *self.tile_shape],
                "chunks": chunks,
                "dtype": "<u4",
                "compressor": {"id": "blosc", "cname": "zstd", "clevel": 1, "shuffle": 2},
                "dimension_separator": "/",
                "fill_value": 0,
            },
            "create": True,
        }
        self._array = ts.open(spec).result()

    @property
    def array(self):
        """The TensorStore of all tiles' labels, opened on first use in this process."""
        if self._array is None:
            import tensorstore as ts

            self._array = ts.open({**self._spec(), "open": True}).result()
        return self._array

    def _meta_path(self, index: int) -> Path:
        return self.root / "tiles" / f"{index:06d}.npz"

    def done(self) -> set[int]:
        """Indices of the finished tiles."""
        return {i for i in self._finished(self.root) if i < self.num_tiles}

    @staticmethod
    def _finished(root: Path) -> set[int]:
        return {int(p.stem) for p in (root / "tiles").glob("*.npz") if p.stem.isdigit()}

    @staticmethod
    def tiles_done(root: str | Path) -> int:
        """How many finished tiles the work folder ``root`` holds (0: none, or no such folder)."""
        return len(TileStore._finished(Path(root)))

    def write(self, index: int, tile: TileLabels) -> TileMeta:
        """Store tile ``index``'s labels, then its metadata (which marks it done)."""
        if tuple(tile.labels.shape) != self.tile_shape:
            raise ValueError(f"tile {index}: labels of shape {tile.labels.shape}, expected {self.tile_shape}")
        self.array[index].write(tile.labels).result()
        meta = TileMeta.of(tile)
        atomic_write(
            self._meta_path(index),
            lambda f: np.savez(
                f, scores=meta.scores, classes=meta.classes, boxes=meta.boxes, counts=meta.counts,
                capped=np.bool_(meta.capped),
            ),
        )
        return meta

    def meta(self, index: int) -> TileMeta:
        """The metadata of a finished tile."""
        with np.load(self._meta_path(index)) as data:
            return TileMeta(
                scores=data["scores"], classes=data["classes"], boxes=data["boxes"], counts=data["counts"],
                capped=bool(data["capped"]) if "capped" in data.files else False,  # older work folders
            )

    def read(self, index: int, region: tuple[tuple[int, int], ...]) -> np.ndarray:
        """Labels of tile ``index`` in ``region`` (tile coordinates, half-open per axis)."""
        (z0, z1), (y0, y1), (x0, x1) = region
        return self.array[index, z0:z1, y0:y1, x0:x1].read().result()
