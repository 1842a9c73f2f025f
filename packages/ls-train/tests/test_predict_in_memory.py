"""predict_array / predict_file: ls-predict on an array in memory or a file, labels back in memory."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from ls_data.errors import DataError
from ls_data.io import open_labels, write_ome_zarr, write_tiff_pair
from ls_train.config import load_config
from ls_train.predict import PredictionCancelled, predict_array, predict_file, run_prediction

SPACING = (2.0, 0.5, 0.5)
ARGS = (
    "predict.segmenter=threshold",
    "+predict.threshold_segmenter.threshold=500",
    "predict.tile_shape=[8,32,32]",
    "predict.overlap=[4,12,12]",
    "predict.progress=false",
)


def _volume() -> np.ndarray:
    rng = np.random.default_rng(0)
    image = (100 + rng.integers(0, 50, size=(12, 48, 56))).astype(np.uint16)
    image[2:6, 4:12, 4:50] += 1000  # crosses tiles
    image[8:11, 30:40, 10:20] += 1000
    image[8:11, 30:40, 30:40] += 1000
    return image


@pytest.fixture(scope="module")
def cfg(tmp_path_factory) -> dict:
    return load_config("quickstart", [f"data.root={tmp_path_factory.mktemp('data')}", *ARGS])


def test_array_gives_the_labels_and_table_of_ls_predict_on_its_file(cfg, tmp_path):
    image = _volume()
    steps = []
    got = predict_array(
        cfg, image, spacing=SPACING, progress=lambda *a: steps.append(a), work_dir=tmp_path / "work"
    )
    tif, _ = write_tiff_pair(tmp_path, "vol", image[None], np.zeros(image.shape, np.uint16), SPACING)
    ref = run_prediction(cfg, input=tif, output=tmp_path / "ref.ome.zarr", print_fn=lambda _: None)
    np.testing.assert_array_equal(got.labels, open_labels(ref.labels).read())
    assert got.labels.max() == got.result.objects == 3
    with ref.table.open() as f:
        rows = list(csv.DictReader(f))
    assert got.table["id"].tolist() == [int(r["id"]) for r in rows]
    assert got.table["voxels"].tolist() == [int(r["voxels"]) for r in rows]
    np.testing.assert_allclose(got.table["centroid_x_um"], [float(r["centroid_x_um"]) for r in rows])
    assert got.spacing == SPACING
    assert {s for s, _, _ in steps} == {"tiles", "write"}
    assert steps[-1][1] == steps[-1][2] and any(s == ("tiles", 1, ref.tiles) for s in steps)
    assert list((tmp_path / "work").iterdir()) == [], "the temporary folder is removed"


def test_file_is_predicted_and_left_unchanged(cfg, tmp_path):
    image = _volume()
    path = write_ome_zarr(tmp_path / "vol.ome.zarr", image[None], SPACING)
    before = sorted(p.relative_to(path) for p in path.rglob("*"))
    got = predict_file(cfg, path, work_dir=tmp_path / "work")
    assert sorted(p.relative_to(path) for p in path.rglob("*")) == before
    np.testing.assert_array_equal(got.labels, predict_array(cfg, image, spacing=SPACING).labels)
    # a 2-channel array: predict.channels picks the channel the segmenter sees
    two = np.stack([np.full_like(image, 100), image])
    picked = predict_array({**cfg, "predict": {**cfg["predict"], "channels": [1]}}, two, spacing=SPACING)
    np.testing.assert_array_equal(picked.labels, got.labels)


def test_cancel_and_bad_arrays(cfg, tmp_path):
    calls = []

    def cancel() -> bool:
        calls.append(1)
        return len(calls) > 2  # after the second tile

    with pytest.raises(PredictionCancelled):
        predict_array(cfg, _volume(), spacing=SPACING, cancel=cancel, work_dir=tmp_path)
    assert len(calls) == 3 and list(Path(tmp_path).iterdir()) == []
    with pytest.raises(PredictionCancelled):
        predict_array(cfg, _volume(), spacing=SPACING, cancel=lambda: True)
    with pytest.raises(DataError, match=r"image of shape \(48, 56\): expected a volume"):
        predict_array(cfg, np.zeros((48, 56)), spacing=SPACING)
