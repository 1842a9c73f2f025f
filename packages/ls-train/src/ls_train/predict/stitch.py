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
4. **Overlaps** between different objects go to an object painted from a complete instance over
   one painted from fragments (a view with the whole object in context over a cut one), then to
   the higher score, then to the lower id. Without the first key a fragment that did not merge
   (a U-shaped object cut by a face into two arms, one too small for the merge threshold) would
   cut its piece out of the complete object whenever it scored higher, and the result would
   depend on the tile grid.
5. **Ids.** Objects are numbered ``1..N`` in the order of their first instance (tile index, then
   label); an object whose voxels were all taken by ones of higher priority (rule 4) keeps its
   number and is absent from the label volume and the table.

Objects that fit in the overlap are never split and do not depend on the grid. *Fit* means at
most ``overlap - 2 * border_margin + 1`` voxels on every axis that tiles cut (``overlap - 1`` with
the default margin): such an object lies at least ``border_margin`` voxels inside some tile
(on each axis, the last tile that starts ``border_margin`` or more voxels before it), so it is
complete there, painted whole from one tile (rule 3), and no fragment takes voxels from it
(rule 4). With a segmenter that sees every object whole in any tile that holds it whole, the
label volume is then the same for any tile shape, overlap and grid offset
(``tests/test_predict_tile_invariance.py``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ls_train.predict.tilestore import TileMeta
from ls_train.predict.tiling import Box, TileGrid

__all__ = [
    "DEFAULT_CACHE_BYTES",
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


DEFAULT_CACHE_BYTES = 1 << 30
"""Label tiles that :func:`plan_stitch` keeps in memory to read each tile once (see there)."""


def _check_metas(grid: TileGrid, metas: Sequence[TileMeta]) -> np.ndarray:
    """Instances per tile; a tile whose arrays disagree raises ValueError naming it."""
    if len(metas) != len(grid):
        raise ValueError(f"{len(metas)} tile metadata for a grid of {len(grid)} tiles")
    counts = np.array([m.scores.shape[0] for m in metas], dtype=np.int64)
    for t, (m, k) in enumerate(zip(metas, counts, strict=True)):
        shapes = (m.classes.shape, np.shape(m.boxes), np.shape(m.counts))
        if shapes != ((k,), (k, 6), (k,)):
            raise ValueError(
                f"tile {t}: metadata of {k} instances has classes {shapes[0]}, boxes {shapes[1]} and "
                f"counts {shapes[2]}; expected ({k},), ({k}, 6) and ({k},)"
            )
    return counts


def _tile_starts(grid: TileGrid) -> np.ndarray:
    """``(tiles, 3)`` int64 start of every tile (z-major tile order)."""
    positions = np.unravel_index(np.arange(len(grid)), grid.counts)
    return np.stack([np.asarray(grid.starts[a], np.int64)[positions[a]] for a in range(3)], axis=1)


def _instance_geometry(
    grid: TileGrid, metas: Sequence[TileMeta], margin: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per instance: complete (bool) and distance to the nearest cut face (large when none).

    A loop over tiles and axes, each tile's instances at once: the temporaries stay within one
    tile, and every operation is on whole columns."""
    big = np.iinfo(np.int64).max // 4
    start = _tile_starts(grid)
    size = np.asarray(grid.tile_shape, np.int64)
    cut_low, cut_high = (start > 0).tolist(), (start + size < np.asarray(grid.shape)).tolist()
    complete, distance = [], []
    for t, meta in enumerate(metas):
        boxes = np.asarray(meta.boxes, np.int64)
        dist = np.full(boxes.shape[0], big, dtype=np.int64)
        for axis in range(3):
            if cut_low[t][axis]:
                dist = np.minimum(dist, boxes[:, axis])
            if cut_high[t][axis]:
                dist = np.minimum(dist, size[axis] - boxes[:, axis + 3])
        complete.append((dist >= margin) & (np.asarray(meta.counts) > 0))
        distance.append(dist)
    return np.concatenate(complete), np.concatenate(distance)


def _axis_pairs(starts: Sequence[int], tile: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Along one axis, every ordered pair ``(i, j)`` of tile positions (``i == j`` included) whose
    intervals intersect, with the intersection ``[lo, hi)``: four ``(pairs,)`` int64 arrays."""
    s = np.asarray(starts, np.int64)
    first = np.searchsorted(s, s - tile, side="right")
    last = np.searchsorted(s, s + tile, side="left")
    i = np.repeat(np.arange(s.shape[0]), last - first)
    j = np.arange(i.shape[0]) - np.repeat(np.cumsum(last - first) - (last - first), last - first)
    j = j + first[i]
    return i, j, np.maximum(s[i], s[j]), np.minimum(s[i], s[j]) + tile


def _layer_pairs(grid: TileGrid, layer: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pairs ``a < b`` of intersecting tiles with ``a`` in z-layer ``layer`` of the grid, sorted
    by ``(a, b)``: ``a``, ``b`` and their shared regions ``(pairs, 3, 2)`` in volume coordinates."""
    per_axis = [_axis_pairs(grid.starts[axis], grid.tile_shape[axis]) for axis in range(3)]
    z = per_axis[0]
    z = tuple(v[z[0] == layer] for v in z)
    # every combination of one z, one y and one x pair (a cartesian product of row indices)
    kz, ky, kx = np.meshgrid(*(np.arange(p[0].shape[0]) for p in (z, *per_axis[1:])), indexing="ij")
    kz, ky, kx = kz.ravel(), ky.ravel(), kx.ravel()
    (zi, zj, zlo, zhi), (yi, yj, ylo, yhi), (xi, xj, xlo, xhi) = z, per_axis[1], per_axis[2]
    _, ny, nx = grid.counts
    a = (zi[kz] * ny + yi[ky]) * nx + xi[kx]
    b = (zj[kz] * ny + yj[ky]) * nx + xj[kx]
    region = np.stack(
        [np.stack([zlo[kz], zhi[kz]], 1), np.stack([ylo[ky], yhi[ky]], 1), np.stack([xlo[kx], xhi[kx]], 1)],
        axis=1,
    )
    keep = a < b
    order = np.lexsort((b[keep], a[keep]))
    return a[keep][order], b[keep][order], region[keep][order]


class _TileCache:
    """Whole label tiles, read on first use and kept until :meth:`release_before` passes them
    (pairs come in order of their lower tile ``a``, and ``b > a``: once the pairs of ``a`` begin,
    no tile before ``a`` is needed again). Beyond ``budget`` bytes (at least two tiles) the least
    recently used tile goes first, and is read again if needed."""

    def __init__(self, read_tile: ReadTile, tile_shape: tuple[int, int, int], budget: int) -> None:
        self.read_tile = read_tile
        self.full = tuple((0, s) for s in tile_shape)
        self.capacity = max(2, int(budget) // max(1, 4 * int(np.prod(tile_shape))))
        self.tiles: OrderedDict[int, np.ndarray] = OrderedDict()

    def get(self, t: int) -> np.ndarray:
        tile = self.tiles.pop(t, None)
        if tile is None:
            tile = np.asarray(self.read_tile(t, self.full))
            while len(self.tiles) >= self.capacity:
                self.tiles.popitem(last=False)
        self.tiles[t] = tile
        return tile

    def release_before(self, t: int) -> None:
        for old in [k for k in self.tiles if k < t]:
            del self.tiles[old]


def _merge_edges(
    grid: TileGrid,
    counts: np.ndarray,
    offsets: np.ndarray,
    cache: _TileCache,
    criterion: str,
    threshold: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Instance pairs (global indices) that rule 2 merges, over every pair of intersecting tiles."""
    start = _tile_starts(grid)
    rows, cols = [], []
    for layer in range(grid.counts[0]):
        a, b, region = _layer_pairs(grid, layer)
        keep = (counts[a] > 0) & (counts[b] > 0)
        previous = -1
        for ta, tb, box in zip(a[keep].tolist(), b[keep].tolist(), region[keep], strict=True):
            if ta != previous:
                cache.release_before(ta)
                previous = ta
            in_a = tuple(slice(lo, hi) for lo, hi in (box - start[ta][:, None]).tolist())
            in_b = tuple(slice(lo, hi) for lo, hi in (box - start[tb][:, None]).tolist())
            i, j = _pair_edges(cache.get(ta)[in_a], cache.get(tb)[in_b], criterion, threshold)
            rows.append(offsets[ta] + i - 1)
            cols.append(offsets[tb] + j - 1)
    cache.release_before(len(grid))
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(rows), np.concatenate(cols)


def _pair_edges(
    a: np.ndarray, b: np.ndarray, criterion: str, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """Label pairs ``(i, j)`` of two label arrays over the same region that are the same object,
    sorted by ``(i, j)``: one sort of the voxels both label (32-bit keys ``i * (max b + 1) + j``
    when they fit, else ``i << 32 | j``), two histograms."""
    fa, fb = a.ravel(), b.ravel()
    both = (fa != 0) & (fb != 0)
    if not both.any():
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    nb = int(fb.max()) + 1
    narrow = (int(fa.max()) + 1) * nb < 2**32
    if narrow:
        keys = fa[both].astype(np.uint32) * np.uint32(nb) + fb[both].astype(np.uint32)
    else:
        keys = (fa[both].astype(np.uint64) << np.uint64(32)) | fb[both].astype(np.uint64)
    keys.sort()
    first = np.concatenate([[0], np.flatnonzero(keys[1:] != keys[:-1]) + 1])
    inter = np.diff(np.append(first, keys.shape[0]))
    pairs = keys[first]
    if narrow:
        i, j = (pairs // nb).astype(np.int64), (pairs % nb).astype(np.int64)
    else:
        i, j = (pairs >> np.uint64(32)).astype(np.int64), (pairs & np.uint64(0xFFFFFFFF)).astype(np.int64)
    size_a = np.bincount(fa, minlength=int(i.max()) + 1)[i]
    size_b = np.bincount(fb, minlength=int(j.max()) + 1)[j]
    union_or_smaller = size_a + size_b - inter if criterion == "iou" else np.minimum(size_a, size_b)
    keep = inter / union_or_smaller >= threshold
    return i[keep], j[keep]


def _empty_plan(offsets: np.ndarray) -> StitchPlan:
    return StitchPlan(
        offsets=offsets,
        gid=np.zeros(0, np.int64),
        mode=np.zeros(0, np.uint8),
        priority=np.zeros(1, np.int64),
        scores=np.zeros(1, np.float32),
        classes=np.zeros(1, np.int32),
        members=np.zeros(1, np.int64),
    )


def _object_ids(n: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Object id (1-based) of every instance: the connected components of the merge graph,
    numbered in the order of their first instance (rule 5)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(rows.shape[0], np.int8), (rows, cols)), shape=(n, n))
    count, component = connected_components(graph, directed=False)
    first = np.full(count, n, dtype=np.int64)
    np.minimum.at(first, component, np.arange(n))
    rank = np.empty(count, dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(count)
    return rank[component] + 1


def _paint_plan(
    offsets: np.ndarray,
    gid: np.ndarray,
    complete: np.ndarray,
    distance: np.ndarray,
    scores: np.ndarray,
    classes: np.ndarray,
) -> StitchPlan:
    """Rules 3 to 5 for instances already grouped into objects ``gid``."""
    n = gid.shape[0]
    num_objects = int(gid.max())
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
        frag = np.flatnonzero(fragment_objects[gid])
        best = frag[np.lexsort((frag, -scores[frag], gid[frag]))]
        head = np.ones(best.shape[0], dtype=bool)
        head[1:] = gid[best][1:] != gid[best][:-1]
        best = best[head]
        obj_scores[gid[best]] = scores[best]
        obj_classes[gid[best]] = classes[best]

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
        members=np.bincount(gid, minlength=num_objects + 1).astype(np.int64),
    )


def plan_stitch(
    grid: TileGrid,
    metas: Sequence[TileMeta],
    read_tile: ReadTile,
    *,
    criterion: str = "iou",
    threshold: float = 0.5,
    border_margin: int = 1,
    cache_bytes: int = DEFAULT_CACHE_BYTES,
) -> StitchPlan:
    """Merge the tiles' instances into objects and decide how each is painted (module docstring).

    Time and memory grow linearly with the instances and the tile pairs: the pairs, the instance
    geometry, the merge graph (``scipy.sparse.csgraph.connected_components``) and the painting
    decisions are arrays; the only loop is over tile pairs, comparing two label arrays on their
    shared region. Each tile is read whole, once, when it is first needed, and kept while later
    pairs need it, within ``cache_bytes``: pairs are taken in the grid's z-major order, so about
    one z-layer of tiles is kept (``ny * nx + nx`` tiles). A grid whose layer does not fit reads
    some tiles more than once; memory stays within ``cache_bytes`` either way.

    Args:
        grid: The tile grid.
        metas: Every tile's :class:`TileMeta`, in tile order.
        read_tile: ``read_tile(t, region)``: labels of tile ``t`` in ``region`` (tile coordinates).
        criterion: ``"iou"`` or ``"overlap"``, on the region two tiles share.
        threshold: Instances are merged when the criterion is at least this.
        border_margin: Instances closer than this (voxels) to a cut face are fragments.
        cache_bytes: Memory for whole label tiles kept between tile pairs (at least two tiles).

    Raises:
        ValueError: an unknown criterion, metadata for another number of tiles, or a tile whose
            metadata arrays disagree in length (the message names the tile).
    """
    if criterion not in MERGE_CRITERIA:
        raise ValueError(f"merge criterion must be one of {MERGE_CRITERIA}, got {criterion!r}")
    counts = _check_metas(grid, metas)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    n = int(offsets[-1])
    if n == 0:
        return _empty_plan(offsets)
    scores = np.concatenate([m.scores for m in metas])
    classes = np.concatenate([m.classes for m in metas])
    complete, distance = _instance_geometry(grid, metas, border_margin)
    cache = _TileCache(read_tile, grid.tile_shape, cache_bytes)
    rows, cols = _merge_edges(grid, counts, offsets, cache, criterion, threshold)
    del cache
    gid = _object_ids(n, rows, cols)
    del rows, cols
    return _paint_plan(offsets, gid, complete, distance, scores, classes)


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
