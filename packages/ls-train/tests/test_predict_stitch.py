"""Tile grid and stitching rule of ls-predict, on label volumes whose answer is known."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from ls_train.predict.segmenters import TileLabels
from ls_train.predict.stitch import PAINT_CORE, PAINT_FULL, paint_block, plan_stitch
from ls_train.predict.table import StatsAccumulator, block_stats
from ls_train.predict.tilestore import TileMeta
from ls_train.predict.tiling import TileGrid, axis_starts


def test_axis_starts_cover_and_end_at_the_border():
    assert axis_starts(100, 40, 10) == [0, 30, 60]
    assert axis_starts(40, 40, 10) == [0]
    assert axis_starts(10, 40, 10) == [0]
    assert axis_starts(101, 40, 10) == [0, 30, 60, 61]
    with pytest.raises(ValueError, match="overlap < tile"):
        axis_starts(100, 10, 10)


@pytest.mark.parametrize("shape", [(20, 70, 90), (8, 8, 8), (33, 64, 65)])
def test_cores_partition_the_volume_and_keep_away_from_cut_faces(shape):
    grid = TileGrid(shape, (12, 32, 40), (4, 8, 10))
    owner = np.zeros(shape, dtype=np.int64)
    for t in range(len(grid)):
        core = grid.core(t)
        owner[tuple(slice(lo, hi) for lo, hi in core)] += 1
        box = grid.box(t)
        for axis, ((clo, chi), (blo, bhi), (cut_lo, cut_hi)) in enumerate(
            zip(core, box, grid.cut_faces(t), strict=True)
        ):
            assert blo <= clo < chi <= bhi
            if cut_lo:
                assert clo - blo >= grid.overlap[axis] // 2
            if cut_hi:
                assert bhi - chi >= grid.overlap[axis] // 2
    assert (owner == 1).all()


def test_tiles_overlapping_and_pairs():
    grid = TileGrid((10, 50, 50), (10, 20, 20), (0, 5, 5))
    assert grid.counts == (1, 3, 3)
    assert grid.tiles_overlapping(((0, 10), (0, 1), (0, 1))) == [0]
    pairs = set(grid.neighbour_pairs())
    assert (0, 4) in pairs and (0, 8) not in pairs and (0, 1) in pairs
    assert len(pairs) == 12 + 8  # 12 edge neighbours + 8 diagonal (corner) pairs in a 3x3 grid


def _relabel(block: np.ndarray) -> np.ndarray:
    ids, inverse = np.unique(block, return_inverse=True)
    if ids[0] != 0:
        inverse = inverse + 1
    return inverse.reshape(block.shape).astype(np.uint32)


def _oracle_tiles(grid: TileGrid, truth: np.ndarray, scores: dict[int, float] | None = None):
    """Each tile sees exactly the truth inside its box, numbered consecutively."""
    tiles, metas = {}, []
    for t in range(len(grid)):
        block = truth[tuple(slice(lo, hi) for lo, hi in grid.box(t))]
        labels = _relabel(block)
        ids = np.unique(block)
        ids = ids[ids > 0]
        s = np.array([(scores or {}).get(int(i), 1.0) for i in ids], dtype=np.float32)
        tile = TileLabels(labels=labels, scores=s, classes=np.ones(len(ids)))
        tiles[t] = tile.labels
        metas.append(TileMeta.of(tile))
    return tiles, metas


def _stitch(grid: TileGrid, tiles, metas, **kwargs) -> tuple[np.ndarray, object]:
    def read(t, region):
        return tiles[t][tuple(slice(lo, hi) for lo, hi in region)]

    plan = plan_stitch(grid, metas, read, **kwargs)
    out = np.zeros(grid.shape, dtype=np.uint32)
    blocks = [
        tuple((lo, min(lo + b, s)) for lo, b, s in zip(origin, (7, 19, 23), grid.shape, strict=True))
        for origin in itertools.product(
            *(range(0, s, b) for s, b in zip(grid.shape, (7, 19, 23), strict=True))
        )
    ]
    for block in blocks:
        out[tuple(slice(lo, hi) for lo, hi in block)] = paint_block(grid, plan, read, block)
    return out, plan


def _assert_same_partition(result: np.ndarray, truth: np.ndarray) -> None:
    """Every true object maps to exactly one result id and back (ids may differ)."""
    pairs = np.unique(np.stack([truth.ravel(), result.ravel()]), axis=1)
    assert ((pairs[0] == 0) == (pairs[1] == 0)).all(), "background and foreground disagree"
    fg = pairs[:, pairs[0] > 0]
    assert len(np.unique(fg[0])) == fg.shape[1], "an object was split into several ids"
    assert len(np.unique(fg[1])) == fg.shape[1], "two objects share one id"


def _objects(truth, rng, n, max_radius):
    """Add up to ``n`` ellipsoids that overlap nothing (each object stays connected), some touching."""
    shape = truth.shape
    zz, yy, xx = np.indices(shape)
    k = 0
    for _ in range(4 * n):
        c = [rng.integers(0, s) for s in shape]
        r = [rng.integers(1, max(2, m)) for m in max_radius]
        inside = ((zz - c[0]) / r[0]) ** 2 + ((yy - c[1]) / r[1]) ** 2 + ((xx - c[2]) / r[2]) ** 2 <= 1
        if inside.any() and not truth[inside].any():
            k += 1
            truth[inside] = k
        if k == n:
            break
    return truth


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stitching_reproduces_objects_across_borders_and_corners(seed):
    rng = np.random.default_rng(seed)
    shape = (18, 90, 100)
    truth = np.zeros(shape, np.int32)
    # a bar longer than any tile and a slab crossing a tile corner
    truth[2:5, 10:14, 5:95] = 1000
    truth[10:16, 40:70, 40:70] = 1001
    truth = _objects(truth, rng, 40, (4, 12, 12))
    grid = TileGrid(shape, (18, 40, 40), (0, 12, 12))
    tiles, metas = _oracle_tiles(grid, truth)
    result, plan = _stitch(grid, tiles, metas)
    _assert_same_partition(result, truth)
    assert (plan.mode == PAINT_CORE).any() and (plan.mode == PAINT_FULL).any()
    # the long bar is seen by several tiles, all merged
    bar_ids = np.unique(result[truth == 1000])
    assert len(bar_ids) == 1 and plan.members[bar_ids[0]] >= 3


def test_small_objects_are_painted_from_one_tile():
    """An object that fits in the overlap is complete in some tile and painted whole from it."""
    shape = (10, 60, 60)
    truth = np.zeros(shape, np.int32)
    truth[3:7, 26:34, 26:34] = 1  # straddles the middle of the overlap of 4 tiles
    grid = TileGrid(shape, (10, 36, 36), (0, 12, 12))
    tiles, metas = _oracle_tiles(grid, truth)
    result, plan = _stitch(grid, tiles, metas)
    gid = int(np.unique(result[truth == 1])[0])
    assert (plan.mode == PAINT_FULL).sum() == 1 and plan.members[gid] == 4
    assert ((result == gid) == (truth == 1)).all()


def test_overlapping_objects_of_different_tiles_go_to_the_higher_score():
    shape = (6, 40, 60)
    truth = np.zeros(shape, np.int32)
    truth[1:5, 10:30, 5:40] = 1
    grid = TileGrid(shape, (6, 40, 36), (0, 0, 12))
    tiles, metas = _oracle_tiles(grid, truth, scores={1: 0.9})
    # tile 1 also claims a made-up object overlapping the right end of object 1
    extra = np.zeros(grid.tile_shape, np.uint32)
    extra[1:5, 12:20, 10:20] = 1
    labels = tiles[1].copy()
    labels[extra > 0] = 2
    tile = TileLabels(labels=labels, scores=np.array([0.9, 0.95]), classes=np.array([1, 2]))
    tiles[1], metas[1] = tile.labels, TileMeta.of(tile)
    result, plan = _stitch(grid, tiles, metas)
    winner = int(result[2, 14, 24 + 15])
    assert plan.scores[winner] == pytest.approx(0.95) and plan.classes[winner] == 2


def test_merge_threshold_keeps_distinct_objects_apart():
    shape = (4, 20, 50)
    grid = TileGrid(shape, (4, 20, 30), (0, 0, 10))
    tiles, metas = _oracle_tiles(grid, np.zeros(shape, np.int32))
    # both tiles see one object in the shared region, but at different places
    a = np.zeros(grid.tile_shape, np.uint32)
    a[:, 2:8, 22:30] = 1
    b = np.zeros(grid.tile_shape, np.uint32)
    b[:, 12:18, 0:8] = 1
    for t, lab in ((0, a), (1, b)):
        tile = TileLabels(labels=lab, scores=np.ones(1), classes=np.ones(1))
        tiles[t], metas[t] = tile.labels, TileMeta.of(tile)
    result, plan = _stitch(grid, tiles, metas)
    assert plan.num_objects == 2 and len(np.unique(result)) == 3


def test_empty_volume_gives_empty_labels():
    grid = TileGrid((4, 30, 30), (4, 16, 16), (0, 4, 4))
    tiles, metas = _oracle_tiles(grid, np.zeros(grid.shape, np.int32))
    result, plan = _stitch(grid, tiles, metas)
    assert plan.num_objects == 0 and not result.any()


def test_block_stats_sum_to_the_whole():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, size=(6, 10, 12)).astype(np.uint32)
    acc = StatsAccumulator(4)
    for z0 in range(0, 6, 4):
        for x0 in range(0, 12, 5):
            block = labels[z0 : z0 + 4, :, x0 : x0 + 5]
            acc.add(block_stats(block, (z0, 0, x0)))
    rows = acc.rows(np.ones(5), np.ones(5, int), np.ones(5, int), (2.0, 0.5, 0.5), (1.0, 0.0, 0.0))
    for row in rows:
        where = np.argwhere(labels == row["id"])
        assert row["voxels"] == len(where)
        assert [row["z0"], row["y0"], row["x0"]] == where.min(0).tolist()
        assert [row["z1"], row["y1"], row["x1"]] == (where.max(0) + 1).tolist()
        assert row["centroid_z_um"] == pytest.approx(where.mean(0)[0] * 2.0 + 1.0, abs=1e-3)
