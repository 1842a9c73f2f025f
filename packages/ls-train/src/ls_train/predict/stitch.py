"""Stitching tile labels into one label volume with one global id per object.

The rule (every step is deterministic and independent of the order tiles were computed in):

1. **Instances.** Each tile's instances are the labels of its own label tile. An instance is
   *complete* when its voxels keep ``border_margin`` voxels away from every cut face of its tile
   (a face inside the volume), else it is a *fragment* (the tile cut it).
2. **Merging.** For every two tiles whose boxes intersect, their label tiles are compared on the
   shared region only: two instances are the same object when ``criterion`` of their voxels in
   that region is at least ``threshold`` (``"iou"``: intersection over union; ``"overlap"``:
   intersection over the smaller of the two). Objects are the connected components of this
   relation, so an object crossing several tiles becomes one.
3. **Painting.** An object with a complete instance is painted with one of them: the one
   farthest from its tile's cut faces (best context), ties to the higher score, then the lower
   (tile, label). Its whole mask is painted, wherever it lies. An object seen only as fragments
   is painted with all of them, each restricted to its tile's core (the tiles' cores partition
   the volume), so every voxel comes from the tile that saw it farthest from a cut.
4. **Overlaps** between different objects go to the higher score (then the lower id), as within
   a tile.
5. **Ids.** Objects are numbered ``1..N`` in the order of their first instance (tile index, then
   label); an object whose voxels were all taken by better-scored ones keeps its number and is
   absent from the label volume and the table.

Objects that fit in the overlap (at most ``overlap`` voxels on every axis) are never split: such
an object lies whole inside the tile whose core holds its centre, is complete there, and is
painted from one tile.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ls_train.predict.tilestore import TileMeta
from ls_train.predict.tiling import Box, TileGrid

__all__ = [
    "MERGE_CRITERIA",
    "PAINT_CORE",
    "PAINT_FULL",
    "PAINT_NONE",
    "StitchPlan",
    "paint_block",
    "plan_stitch",
]

MERGE_CRITERIA = ("iou", "overlap")
PAINT_NONE, PAINT_FULL, PAINT_CORE = 0, 1, 2

ReadTile = Callable[[int, Box], np.ndarray]


@dataclass
class StitchPlan:
    """What painting needs: per instance (``offsets[t] + k - 1`` for label ``k`` of tile ``t``) its
    object id, painting mode and priority; per object its score and class.

    Attributes:
        offsets: ``(tiles + 1,)`` int64, where each tile's instances start.
        gid: ``(instances,)`` int64 object id (1-based) of every instance.
        mode: ``(instances,)`` uint8: PAINT_NONE, PAINT_FULL or PAINT_CORE.
        priority: ``(objects + 1,)`` int64, higher wins; 0 at index 0 (background).
        scores: ``(objects + 1,)`` float32 score of each object (index 0 unused).
        classes: ``(objects + 1,)`` int32 class of each object.
        members: ``(objects + 1,)`` int64 number of instances (tile views) merged into each object.
    """

    offsets: np.ndarray
    gid: np.ndarray
    mode: np.ndarray
    priority: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    members: np.ndarray

    @property
    def num_objects(self) -> int:
        return int(self.priority.shape[0] - 1)

    def tile_lookup(self, tile: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(gid, priority, mode)`` indexed by a tile's label (index 0: background)."""
        lo, hi = int(self.offsets[tile]), int(self.offsets[tile + 1])
        gid = np.concatenate([[0], self.gid[lo:hi]]).astype(np.int64)
        mode = np.concatenate([[PAINT_NONE], self.mode[lo:hi]]).astype(np.uint8)
        prio = np.where(mode != PAINT_NONE, self.priority[gid], 0)
        return gid, prio, mode


def _instance_geometry(
    grid: TileGrid, metas: Sequence[TileMeta], margin: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per instance: complete (bool) and distance to the nearest cut face (large when none)."""
    complete, distance = [], []
    big = np.iinfo(np.int64).max // 4
    for t, meta in enumerate(metas):
        n = meta.scores.shape[0]
        dist = np.full(n, big, dtype=np.int64)
        for axis, (cut_low, cut_high) in enumerate(grid.cut_faces(t)):
            if cut_low:
                dist = np.minimum(dist, meta.boxes[:, axis])
            if cut_high:
                dist = np.minimum(dist, grid.tile_shape[axis] - meta.boxes[:, axis + 3])
        has_voxels = meta.counts > 0
        complete.append((dist >= margin) & has_voxels)
        distance.append(dist)
    if not complete:
        return np.zeros(0, bool), np.zeros(0, np.int64)
    return np.concatenate(complete), np.concatenate(distance)


def _pair_edges(
    a: np.ndarray, b: np.ndarray, criterion: str, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """Label pairs ``(i, j)`` of two label arrays over the same region that are the same object."""
    both = (a > 0) & (b > 0)
    if not both.any():
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    keys = (a[both].astype(np.uint64) << np.uint64(32)) | b[both].astype(np.uint64)
    pairs, inter = np.unique(keys, return_counts=True)
    i = (pairs >> np.uint64(32)).astype(np.int64)
    j = (pairs & np.uint64(0xFFFFFFFF)).astype(np.int64)
    size_a = np.bincount(a.ravel(), minlength=int(i.max()) + 1)[i]
    size_b = np.bincount(b.ravel(), minlength=int(j.max()) + 1)[j]
    union_or_smaller = size_a + size_b - inter if criterion == "iou" else np.minimum(size_a, size_b)
    value = inter / union_or_smaller
    keep = value >= threshold
    return i[keep], j[keep]


def plan_stitch(
    grid: TileGrid,
    metas: Sequence[TileMeta],
    read_tile: ReadTile,
    *,
    criterion: str = "iou",
    threshold: float = 0.5,
    border_margin: int = 1,
) -> StitchPlan:
    """Merge the tiles' instances into objects and decide how each is painted (module docstring).

    Args:
        grid: The tile grid.
        metas: Every tile's :class:`TileMeta`, in tile order.
        read_tile: ``read_tile(t, region)``: labels of tile ``t`` in ``region`` (tile coordinates).
        criterion: ``"iou"`` or ``"overlap"``, on the region two tiles share.
        threshold: Instances are merged when the criterion is at least this.
        border_margin: Instances closer than this (voxels) to a cut face are fragments.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if criterion not in MERGE_CRITERIA:
        raise ValueError(f"merge criterion must be one of {MERGE_CRITERIA}, got {criterion!r}")
    if len(metas) != len(grid):
        raise ValueError(f"{len(metas)} tile metadata for a grid of {len(grid)} tiles")
    counts = np.array([m.scores.shape[0] for m in metas], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    n = int(offsets[-1])
    scores = np.concatenate([m.scores for m in metas]) if n else np.zeros(0, np.float32)
    classes = np.concatenate([m.classes for m in metas]) if n else np.zeros(0, np.int32)
    if n == 0:
        empty = np.zeros(0, np.int64)
        return StitchPlan(
            offsets=offsets,
            gid=empty,
            mode=np.zeros(0, np.uint8),
            priority=np.zeros(1, np.int64),
            scores=np.zeros(1, np.float32),
            classes=np.zeros(1, np.int32),
            members=np.zeros(1, np.int64),
        )
    complete, distance = _instance_geometry(grid, metas, border_margin)

    rows, cols = [], []
    for a, b in grid.neighbour_pairs():
        if counts[a] == 0 or counts[b] == 0:
            continue
        shared = TileGrid.intersection(grid.box(a), grid.box(b))
        if shared is None:
            continue
        local_a = tuple((lo - o[0], hi - o[0]) for (lo, hi), o in zip(shared, grid.box(a), strict=True))
        local_b = tuple((lo - o[0], hi - o[0]) for (lo, hi), o in zip(shared, grid.box(b), strict=True))
        i, j = _pair_edges(read_tile(a, local_a), read_tile(b, local_b), criterion, threshold)
        rows.append(offsets[a] + i - 1)
        cols.append(offsets[b] + j - 1)
    if rows:
        r, c = np.concatenate(rows), np.concatenate(cols)
    else:
        r = c = np.zeros(0, np.int64)
    graph = coo_matrix((np.ones(r.shape[0], np.int8), (r, c)), shape=(n, n))
    _, component = connected_components(graph, directed=False)

    # objects numbered by their first instance
    first = np.full(component.max(initial=-1) + 1, n, dtype=np.int64)
    np.minimum.at(first, component, np.arange(n))
    rank = np.empty_like(first)
    rank[np.argsort(first, kind="stable")] = np.arange(first.shape[0])
    gid = rank[component] + 1
    num_objects = int(first.shape[0])

    # the best complete instance of each object: sort by (object, complete, distance, score, index)
    order = np.lexsort((np.arange(n), -scores, -distance, ~complete, gid))
    is_head = np.ones(n, dtype=bool)
    is_head[1:] = gid[order][1:] != gid[order][:-1]
    heads = order[is_head]  # one instance per object, objects in increasing gid
    head_complete = complete[heads]
    mode = np.full(n, PAINT_NONE, dtype=np.uint8)
    mode[heads[head_complete]] = PAINT_FULL
    fragment_objects = np.zeros(num_objects + 1, dtype=bool)
    fragment_objects[gid[heads[~head_complete]]] = True
    mode[fragment_objects[gid]] = PAINT_CORE

    # object score/class: the painted complete instance, else the best-scored fragment
    obj_scores = np.zeros(num_objects + 1, dtype=np.float32)
    obj_classes = np.zeros(num_objects + 1, dtype=np.int32)
    obj_scores[gid[heads]] = scores[heads]
    obj_classes[gid[heads]] = classes[heads]
    if fragment_objects.any():
        frag = np.where(fragment_objects[gid])[0]
        best = frag[np.lexsort((frag, -scores[frag], gid[frag]))]
        head = np.ones(best.shape[0], dtype=bool)
        head[1:] = gid[best][1:] != gid[best][:-1]
        best = best[head]
        obj_scores[gid[best]] = scores[best]
        obj_classes[gid[best]] = classes[best]
    members = np.bincount(gid, minlength=num_objects + 1).astype(np.int64)

    # priority: higher score first, then lower id
    ids = np.arange(1, num_objects + 1)
    by_rank = ids[np.lexsort((ids, -obj_scores[1:]))]
    priority = np.zeros(num_objects + 1, dtype=np.int64)
    priority[by_rank] = np.arange(num_objects, 0, -1)
    return StitchPlan(
        offsets=offsets,
        gid=gid.astype(np.int64),
        mode=mode,
        priority=priority,
        scores=obj_scores,
        classes=obj_classes,
        members=members,
    )


def paint_block(grid: TileGrid, plan: StitchPlan, read_tile: ReadTile, block: Box) -> np.ndarray:
    """The stitched labels of ``block`` (volume coordinates), ``uint32`` object ids.

    Reads only the parts of the tiles that intersect the block.
    """
    shape = tuple(hi - lo for lo, hi in block)
    out = np.zeros(shape, dtype=np.uint32)
    best = np.zeros(shape, dtype=np.int64)
    for t in grid.tiles_overlapping(block):
        box = grid.box(t)
        region = TileGrid.intersection(box, block)
        if region is None or plan.offsets[t + 1] == plan.offsets[t]:
            continue
        gid, prio, mode = plan.tile_lookup(t)
        labels = read_tile(t, tuple((lo - b[0], hi - b[0]) for (lo, hi), b in zip(region, box, strict=True)))
        p = prio[labels]
        if (mode == PAINT_CORE).any():
            core = TileGrid.intersection(grid.core(t), region)
            inside = np.zeros(labels.shape, dtype=bool)
            if core is not None:
                inside[
                    tuple(slice(lo - r[0], hi - r[0]) for (lo, hi), r in zip(core, region, strict=True))
                ] = True
            p[(mode[labels] == PAINT_CORE) & ~inside] = 0
        sl = tuple(slice(lo - b[0], hi - b[0]) for (lo, hi), b in zip(region, block, strict=True))
        sub_best, sub_out = best[sl], out[sl]
        win = p > sub_best
        sub_best[win] = p[win]
        sub_out[win] = gid[labels[win]]
    return out
