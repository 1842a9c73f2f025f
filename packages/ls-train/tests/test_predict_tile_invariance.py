"""Tile invariance of ls-predict: the objects do not depend on the tile grid (issue 16).

A deterministic stand-in segmenter labels the connected components of a thresholded tile, so each
tile sees exactly the true objects inside its box. Random tile shapes, overlaps and grid offsets
(the volume is padded in front, which moves the grid over the objects) must then give the same
objects, identical label sets up to renumbering, for every object that fits in the overlap: convex
boxes and U-shaped objects (which a tile face can cut into several pieces).
"""

from __future__ import annotations

import itertools
import tempfile

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scipy import ndimage

from ls_train.config import load_config
from ls_train.predict import predict_array
from ls_train.predict.segmenters import TileLabels
from ls_train.predict.stitch import paint_block, plan_stitch
from ls_train.predict.tilestore import TileMeta
from ls_train.predict.tiling import TileGrid

VOLUME = (10, 30, 34)
EXTENT = (3, 6, 6)
"""Largest object extent per axis; every grid below has an overlap of at least EXTENT + 1."""


def _object_mask(rng: np.random.Generator) -> np.ndarray:
    """A box, or a U or J (a box with a slot cut from one side, one arm maybe shorter; still
    face-connected), within EXTENT."""
    extent = [int(rng.integers(1, e + 1)) for e in EXTENT]
    mask = np.ones(extent, dtype=bool)
    if rng.random() < 0.6 and extent[1] >= 2 and extent[2] >= 3:
        mask[:, : extent[1] - 1, 1 : extent[2] - 1] = False  # the U opens towards low y
        mask[:, : int(rng.integers(0, extent[1])), -1] = False  # its second arm shorter: a J
        for axis in (1, 2):
            if rng.random() < 0.5:
                mask = np.flip(mask, axis)
    return mask


def make_truth(seed: int, shape: tuple[int, int, int] = VOLUME, count: int = 30) -> np.ndarray:
    """Up to ``count`` objects (:func:`_object_mask`), each with a free voxel all around it."""
    rng = np.random.default_rng(seed)
    truth = np.zeros(shape, dtype=np.int32)
    k = 0
    for _ in range(20 * count):
        mask = _object_mask(rng)
        corner = [int(rng.integers(0, s - m + 1)) for s, m in zip(shape, mask.shape, strict=True)]
        around = tuple(slice(max(c - 1, 0), c + m + 1) for c, m in zip(corner, mask.shape, strict=True))
        if truth[around].any():
            continue
        k += 1
        where = tuple(slice(c, c + m) for c, m in zip(corner, mask.shape, strict=True))
        truth[where][mask] = k
        if k == count:
            break
    return truth


def assert_same_objects(result: np.ndarray, truth: np.ndarray) -> None:
    """Every true object is exactly one result object and back (ids may differ)."""
    pairs = np.unique(np.stack([truth.ravel(), result.ravel()]), axis=1)
    wrong = pairs[:, (pairs[0] == 0) != (pairs[1] == 0)]
    assert wrong.shape[1] == 0, f"background and objects disagree (truth, result): {wrong.T.tolist()[:5]}"
    fg = pairs[:, pairs[0] > 0]
    ids, n = np.unique(fg[0], return_counts=True)
    assert (n == 1).all(), f"true objects {ids[n > 1].tolist()} were split"
    ids, n = np.unique(fg[1], return_counts=True)
    assert (n == 1).all(), f"result objects {ids[n > 1].tolist()} hold several true objects"


@st.composite
def grids(draw, volume=VOLUME) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """``(tile, overlap, offset)`` per axis: a few tiles per axis, overlaps from EXTENT + 1 (the
    objects fit in the overlap, see ``ls_train.predict.stitch``) to half the tile, and offsets
    over one grid step."""
    tile, overlap, offset = [], [], []
    for e, size in zip(EXTENT, volume, strict=True):
        t = draw(st.integers(2 * e + 2, max(2 * e + 2, size // 2 + 2)))
        o = draw(st.integers(e + 1, t // 2))
        tile.append(t)
        overlap.append(o)
        offset.append(draw(st.integers(0, t - o - 1)))
    return tuple(tile), tuple(overlap), tuple(offset)


def _padded(truth: np.ndarray, offset: tuple[int, ...]) -> np.ndarray:
    """``truth`` behind ``offset`` voxels of background per axis: the grid moves over the objects."""
    return np.pad(truth, [(o, 0) for o in offset])


def _unpadded(labels: np.ndarray, offset: tuple[int, ...]) -> np.ndarray:
    return labels[tuple(slice(o, None) for o in offset)]


SMALL = (8, 22, 24)
"""The volume of the end-to-end test (each run writes and reads every tile)."""


@settings(max_examples=4, deadline=None)
@given(seed=st.integers(0, 2**16), grid=grids(SMALL))
@pytest.mark.slow(seconds=9)
def test_ls_predict_gives_the_same_objects_on_any_tile_grid(seed, grid):
    """End to end through ``ls-predict`` (``predict_array``) with the threshold segmenter."""
    tile, overlap, offset = grid
    truth = make_truth(seed, SMALL, count=12)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(
            "quickstart",
            [
                f"data.root={tmp}",
                "predict.segmenter=threshold",
                "+predict.threshold_segmenter.threshold=0.5",
                f"predict.tile_shape=[{','.join(map(str, tile))}]",
                f"predict.overlap=[{','.join(map(str, overlap))}]",
                "predict.progress=false",
            ],
        )
        image = (_padded(truth, offset) > 0).astype(np.float32)
        got = predict_array(cfg, image, spacing=(1.0, 1.0, 1.0), work_dir=tmp, print_fn=lambda _: None)
    assert got.result.tiles > 1
    assert_same_objects(_unpadded(got.labels, offset), truth)
    assert got.result.objects == int(truth.max())


class ContextSegmenter:
    """Components of a thresholded tile (26-connected), numbered and scored by tile context.

    The score of an instance falls with its distance to the tile's faces (``favour="fragments"``:
    instances cut by a face score highest) or rises with it (``"complete"``), and instances are
    numbered from the far corner of the tile: order and scores depend on the grid, the objects
    must not.
    """

    def __init__(self, favour: str) -> None:
        self.favour = favour

    def __call__(self, images):
        out = []
        for image in images:
            labels, n = ndimage.label(image[0] > 0.5, structure=np.ones((3, 3, 3)))
            found = ndimage.find_objects(labels)
            shape = np.array(labels.shape)
            lows = np.array([[s.start for s in f] for f in found]).reshape(-1, 3)
            highs = np.array([[s.stop for s in f] for f in found]).reshape(-1, 3)
            distance = np.minimum(lows, shape - highs).min(axis=1) if n else np.zeros(0)
            scores = 1.0 / (1.0 + distance) if self.favour == "fragments" else distance / (1.0 + distance)
            order = np.argsort(-highs.sum(axis=1), kind="stable")  # far corner first
            lookup = np.zeros(n + 1, dtype=np.int64)
            lookup[order + 1] = np.arange(1, n + 1)
            out.append(TileLabels(lookup[labels], 0.5 + 0.4 * scores[order], np.ones(n)))
        return out


def stitch_volume(image: np.ndarray, tile, overlap, segmenter, blocks=(5, 16, 16)) -> np.ndarray:
    """The stitch and paint passes of ``ls-predict`` (``plan_stitch``, ``paint_block``) on ``image``."""
    grid = TileGrid(image.shape, tile, overlap)
    tiles = [
        segmenter([image[None, *(slice(lo, hi) for lo, hi in grid.box(t))]])[0] for t in range(len(grid))
    ]

    def read(t, region):
        return tiles[t].labels[tuple(slice(lo, hi) for lo, hi in region)]

    plan = plan_stitch(grid, [TileMeta.of(t) for t in tiles], read)
    out = np.zeros(image.shape, dtype=np.uint32)
    for origin in itertools.product(*(range(0, s, b) for s, b in zip(image.shape, blocks, strict=True))):
        block = tuple((lo, min(lo + b, s)) for lo, b, s in zip(origin, blocks, image.shape, strict=True))
        out[tuple(slice(lo, hi) for lo, hi in block)] = paint_block(grid, plan, read, block)
    return out


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16), grid=grids(), favour=st.sampled_from(["fragments", "complete"]))
@example(seed=47818, grid=((8, 14, 19), (4, 7, 7), (3, 0, 6)), favour="fragments")  # a J cut in two
def test_stitching_gives_the_same_objects_whatever_the_tiles_number_and_score(seed, grid, favour):
    """The stitch pass alone, with a segmenter whose numbering and scores follow the tile."""
    tile, overlap, offset = grid
    truth = make_truth(seed)
    image = (_padded(truth, offset) > 0).astype(np.float32)
    result = stitch_volume(image, tile, overlap, ContextSegmenter(favour))
    assert_same_objects(_unpadded(result, offset), truth)
