"""Reference of the stitch plan: the specification the fast :func:`~ls_train.predict.stitch.plan_stitch`
is tested against.

This is the implementation :mod:`ls_train.predict.stitch` had before it was made to read every
tile once and to enumerate the tile pairs with arrays (issue 16), kept as it was (with rule 4's
complete-before-fragment key, which came first): for every pair of overlapping tiles it reads
both tiles' shared region, and it walks the pairs through :meth:`TileGrid.neighbour_pairs`. Same
arguments and the same :class:`~ls_train.predict.stitch.StitchPlan`, array for array; use it for
tests and benchmarks.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ls_train.predict.stitch import MERGE_CRITERIA, PAINT_CORE, PAINT_FULL, PAINT_NONE, ReadTile, StitchPlan
from ls_train.predict.tilestore import TileMeta
from ls_train.predict.tiling import TileGrid

__all__ = ["plan_stitch_reference"]


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


def plan_stitch_reference(
    grid: TileGrid,
    metas: Sequence[TileMeta],
    read_tile: ReadTile,
    *,
    criterion: str = "iou",
    threshold: float = 0.5,
    border_margin: int = 1,
) -> StitchPlan:
    """:func:`~ls_train.predict.stitch.plan_stitch` as it was first written (same arguments).

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

    # priority: objects painted from a complete instance first, then higher score, then lower id
    ids = np.arange(1, num_objects + 1)
    by_rank = ids[np.lexsort((ids, -obj_scores[1:], fragment_objects[1:]))]
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
