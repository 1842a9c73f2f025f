"""The stitch plan against its reference: ``plan_stitch`` (tiles read once, arrays throughout) gives
the same ``StitchPlan``, array for array, as ``plan_stitch_reference`` (the implementation it
replaced) on random tiles, grids and settings."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ls_train.predict.segmenters import TileLabels
from ls_train.predict.stitch import StitchPlan, plan_stitch
from ls_train.predict.stitch_reference import plan_stitch_reference
from ls_train.predict.tilestore import TileMeta
from ls_train.predict.tiling import TileGrid


def _random_box(rng: np.random.Generator, shape: tuple[int, ...], longest: int) -> tuple[slice, ...]:
    """A box inside ``shape``, at most ``longest`` voxels along any axis."""
    lo = [int(rng.integers(0, s)) for s in shape]
    size = [int(rng.integers(1, longest + 1)) for _ in shape]
    return tuple(slice(a, min(s, a + b)) for a, b, s in zip(lo, size, shape, strict=True))


def random_tile(rng: np.random.Generator, shape: tuple[int, ...], max_instances: int) -> TileLabels:
    """Boxes painted over each other (later ones win), some labels left without voxels, scores with
    ties: tiles that agree with no neighbour, to exercise every merge and tie."""
    n = int(rng.integers(0, max_instances + 1))
    labels = np.zeros(shape, np.uint32)
    for k in range(1, n + 1):
        if rng.random() < 0.1:
            continue  # an instance without voxels
        labels[_random_box(rng, shape, max(2, min(shape) // 2))] = k
    scores = rng.choice([0.5, 0.7, 0.9], size=n).astype(np.float32)
    return TileLabels(labels=labels, scores=scores, classes=rng.integers(1, 3, size=n))


def truth_tiles(rng: np.random.Generator, grid: TileGrid) -> list[TileLabels]:
    """Tiles that each see a common truth of boxes (so instances merge along chains of tiles)."""
    truth = np.zeros(grid.shape, np.int64)
    for k in range(1, 25):
        truth[_random_box(rng, grid.shape, max(1, max(grid.shape) // 2))] = k
    scores = rng.choice([0.6, 0.8], size=25).astype(np.float32)
    tiles = []
    for t in range(len(grid)):
        block = truth[tuple(slice(lo, hi) for lo, hi in grid.box(t))]
        ids, inverse = np.unique(block, return_inverse=True)
        labels = (inverse.reshape(block.shape) + (ids[0] != 0)).astype(np.uint32)
        ids = ids[ids > 0]
        tiles.append(TileLabels(labels=labels, scores=scores[ids], classes=np.ones(ids.shape[0])))
    return tiles


def assert_same_plan(got: StitchPlan, want: StitchPlan) -> None:
    for field in dataclasses.fields(StitchPlan):
        a, b = getattr(got, field.name), getattr(want, field.name)
        assert a.dtype == b.dtype, f"StitchPlan.{field.name}: dtype {a.dtype}, reference {b.dtype}"
        np.testing.assert_array_equal(a, b, err_msg=f"StitchPlan.{field.name}")


def _both(
    grid: TileGrid, tiles: list[TileLabels], cache_bytes: int, **kwargs
) -> tuple[StitchPlan, StitchPlan]:
    """(plan, reference plan); with room for every tile, the plan reads each tile once."""
    metas = [TileMeta.of(t) for t in tiles]
    reads: list[tuple[int, tuple]] = []

    def read(t, region):
        reads.append((t, region))
        return tiles[t].labels[tuple(slice(lo, hi) for lo, hi in region)]

    want = plan_stitch_reference(grid, metas, read, **kwargs)
    reads.clear()
    got = plan_stitch(grid, metas, read, cache_bytes=cache_bytes, **kwargs)
    if cache_bytes >= len(grid) * 4 * int(np.prod(grid.tile_shape)):
        read_tiles = [t for t, _ in reads]
        assert len(read_tiles) == len(set(read_tiles)), "a tile was read twice though all tiles fit"
    return got, want


@st.composite
def grids(draw) -> TileGrid:
    shape = tuple(draw(st.integers(1, m)) for m in (12, 40, 40))
    tile = tuple(draw(st.integers(2, m)) for m in (8, 20, 20))
    overlap = tuple(draw(st.integers(0, t - 1)) for t in tile)
    return TileGrid(shape, tile, overlap)


@settings(max_examples=40, deadline=None)
@given(
    grid=grids(),
    seed=st.integers(0, 2**16),
    source=st.sampled_from(["random", "truth"]),
    criterion=st.sampled_from(["iou", "overlap"]),
    threshold=st.sampled_from([0.0, 0.3, 0.5, 0.9]),
    border_margin=st.integers(0, 3),
    cache_tiles=st.sampled_from([0, 3, 10_000]),
)
def test_plan_equals_the_reference(grid, seed, source, criterion, threshold, border_margin, cache_tiles):
    rng = np.random.default_rng(seed)
    if source == "random":
        tiles = [random_tile(rng, grid.tile_shape, 6) for _ in range(len(grid))]
    else:
        tiles = truth_tiles(rng, grid)
    got, want = _both(
        grid,
        tiles,
        cache_tiles * 4 * int(np.prod(grid.tile_shape)),
        criterion=criterion,
        threshold=threshold,
        border_margin=border_margin,
    )
    assert_same_plan(got, want)


def test_plan_of_tiles_without_instances_equals_the_reference():
    grid = TileGrid((6, 30, 30), (4, 16, 16), (1, 4, 4))
    rng = np.random.default_rng(3)
    tiles = [random_tile(rng, grid.tile_shape, 5 if t % 3 == 0 else 0) for t in range(len(grid))]
    assert_same_plan(*_both(grid, tiles, 1 << 30))
    empty = [random_tile(rng, grid.tile_shape, 0) for _ in range(len(grid))]
    assert_same_plan(*_both(grid, empty, 1 << 30))


def test_bad_metadata_names_the_tile():
    grid = TileGrid((4, 20, 20), (4, 12, 12), (0, 4, 4))
    tiles = [random_tile(np.random.default_rng(t), grid.tile_shape, 3) for t in range(len(grid))]
    metas = [TileMeta.of(t) for t in tiles]
    metas[2] = dataclasses.replace(metas[2], boxes=np.zeros((metas[2].scores.shape[0] + 1, 6), np.int64))
    with pytest.raises(ValueError, match="tile 2: metadata"):
        plan_stitch(grid, metas, lambda t, r: tiles[t].labels)
    with pytest.raises(ValueError, match="3 tile metadata for a grid of 4 tiles"):
        plan_stitch(grid, metas[:3], lambda t, r: tiles[t].labels)
    with pytest.raises(ValueError, match="merge criterion"):
        plan_stitch(grid, metas, lambda t, r: tiles[t].labels, criterion="dice")


def test_labels_too_large_for_32_bit_pair_keys_merge_as_in_the_reference():
    """Labels whose product exceeds 32 bits take the 64-bit keys; same pairs either way."""
    grid = TileGrid((4, 10, 30), (4, 10, 18), (0, 0, 6))
    tiles = []
    for t in range(len(grid)):
        labels = np.zeros(grid.tile_shape, np.uint32)
        n = 70_000 + t  # a few labelled voxels; the rest of the labels have none
        x = slice(10, 18) if t == 0 else slice(0, 8)  # both see x 12..18 of the volume alike
        labels[:, 2:8, x] = n
        labels[0, 0, 0] = 1
        scores = np.ones(n, np.float32)
        tiles.append(TileLabels(labels=labels, scores=scores, classes=np.ones(n)))
    got, want = _both(grid, tiles, 1 << 30)
    assert_same_plan(got, want)
    assert got.num_objects == 70_000 + 70_001 - 1  # only the two large labels merged
