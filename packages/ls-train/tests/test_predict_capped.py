"""Tiles in which the detector's detection cap dropped detections are carried through the tile
store and reported by ls-predict (issue 16)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np

from ls_train.predict.run import _capped_warning
from ls_train.predict.segmenters import TileLabels, _capped_images
from ls_train.predict.tilestore import TileMeta, TileStore


def _store(tmp_path: Path) -> TileStore:
    return TileStore.open_or_create(tmp_path / "work", {"plan": 1}, 3, (2, 4, 4))


def test_the_capped_flag_survives_the_tile_store(tmp_path: Path) -> None:
    store = _store(tmp_path)
    labels = np.zeros((2, 4, 4), dtype=np.uint32)
    labels[0, :2, :2] = 1
    store.write(0, TileLabels(labels=labels, scores=[0.9], classes=[1], capped=True))
    store.write(1, TileLabels(labels=labels, scores=[0.9], classes=[1]))
    assert store.meta(0).capped and not store.meta(1).capped
    # a work folder of an older version holds no flag: not capped
    np.savez(store.root / "tiles" / "000002.npz", scores=np.ones(1, np.float32),
             classes=np.ones(1, np.int32), boxes=np.zeros((1, 6), np.int64), counts=np.ones(1, np.int64))
    assert not store.meta(2).capped and store.meta(2).scores.tolist() == [1.0]


def test_the_flags_come_from_the_roi_heads_of_the_last_call() -> None:
    model = SimpleNamespace(roi_heads=SimpleNamespace(capped=[False, True]))
    assert _capped_images(model, 2) == [False, True]
    assert _capped_images(model, 3) == [False, False, False]  # not this call's: nothing claimed
    assert _capped_images(SimpleNamespace(), 2) == [False, False]


def test_the_warning_names_the_keys_and_the_tiles() -> None:
    text = _capped_warning(list(range(12)), 40)
    assert text.startswith("ls-predict: warning: 12 of 40 tiles had more detections than the detector keeps")
    assert "models.box_detections_per_img" in text and "models.test_caps_shape" in text
    assert "(tiles 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, ...)" in text
    assert TileMeta.of(TileLabels(labels=np.zeros((1, 1, 1)), scores=[], classes=[], capped=True)).capped
