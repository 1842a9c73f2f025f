"""ls-predict's parts: volume normalisation, the work folder, the progress line, the settings."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from ls_data.io import open_image, write_ome_zarr
from ls_data.transforms.intensity import NormalizeIntensity
from ls_train.config import ConfigError
from ls_train.predict.config import PredictConfig
from ls_train.predict.normalization import sample_blocks, volume_normalization
from ls_train.predict.progress import Progress, format_seconds
from ls_train.predict.segmenters import TileLabels, empty_target
from ls_train.predict.tilestore import PlanMismatchError, TileStore


@pytest.mark.parametrize(
    "entry",
    [
        {"name": "normalize_intensity", "mode": "percentile", "low": 2.0, "high": 99.0},
        {"name": "normalize_intensity", "mode": "meanstd", "clip": True},
        {"name": "normalize_intensity", "mode": "percentile", "per_channel": False},
    ],
)
def test_volume_statistics_of_a_small_volume_equal_the_per_crop_transform(tmp_path, entry):
    rng = np.random.default_rng(0)
    image = rng.gamma(2.0, 50.0, size=(2, 10, 40, 50)).astype(np.uint16)
    reader = open_image(write_ome_zarr(tmp_path / "v.ome.zarr", image, (2.0, 0.5, 0.5)))
    norm = volume_normalization(reader, [0, 1], entry, sample_voxels=10**9)
    kwargs = {k: v for k, v in entry.items() if k != "name"}
    expected, _, _ = NormalizeIntensity(**kwargs)(
        torch.from_numpy(image.astype(np.float32)), empty_target(image.shape[1:]), {}
    )
    torch.testing.assert_close(
        norm(torch.from_numpy(image.astype(np.float32))), expected, rtol=1e-5, atol=1e-5
    )


def test_sample_blocks_partition_or_spread():
    blocks = sample_blocks((20, 100, 70), 10**9, block=(16, 64, 64))
    covered = np.zeros((20, 100, 70), int)
    for w in blocks:
        covered[w] += 1
    assert (covered == 1).all()
    few = sample_blocks((64, 512, 512), 3 * 16 * 64 * 64, block=(16, 64, 64))
    assert len(few) == 3 and few[0][0].start == 0 and few[-1][2].stop == 512


def test_tile_store_marks_done_only_after_the_labels_and_checks_its_plan(tmp_path):
    root = tmp_path / "work"
    store = TileStore.open_or_create(root, {"a": 1, "shape": [4, 8, 8]}, 3, (4, 8, 8))
    assert store.done() == set()
    labels = np.zeros((4, 8, 8), np.uint32)
    labels[1:3, 2:5, 2:6] = 1
    meta = store.write(1, TileLabels(labels=labels, scores=[0.7], classes=[2]))
    assert store.done() == {1}
    assert meta.boxes.tolist() == [[1, 2, 2, 3, 5, 6]] and meta.counts.tolist() == [24]
    np.testing.assert_array_equal(store.read(1, ((0, 4), (0, 8), (0, 8))), labels)
    again = TileStore.open_or_create(root, {"a": 1, "shape": [4, 8, 8]}, 3, (4, 8, 8))
    assert again.done() == {1} and again.meta(1).classes.tolist() == [2]
    with pytest.raises(PlanMismatchError, match="differing: a"):
        TileStore.open_or_create(root, {"a": 2, "shape": [4, 8, 8]}, 3, (4, 8, 8))
    other = tmp_path / "precious"
    other.mkdir()
    (other / "thesis.txt").write_text("x")
    with pytest.raises(FileExistsError, match="refusing"):
        TileStore.open_or_create(other, {"a": 1}, 3, (4, 8, 8))
    with pytest.raises(FileExistsError, match="not a prediction work folder"):
        TileStore.remove(other)
    with pytest.raises(ValueError, match="expected"):
        store.write(0, TileLabels(labels=np.zeros((4, 8, 9)), scores=[], classes=[]))
    TileStore.remove(root)
    assert not root.exists()


def test_progress_lines():
    stream = io.StringIO()
    progress = Progress("tiles", 4, voxels_per_item=1e6, stream=stream, interval=3600)
    progress.update()
    progress.update(3)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2  # the first and the last one, when not on a terminal
    assert lines[-1].startswith("tiles [########################] 4/4") and "Mvoxel/s" in lines[-1]
    assert "ETA" in lines[-1]
    assert format_seconds(3725) == "1h02m" and format_seconds(65) == "1m05s" and format_seconds(4.4) == "4s"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tile_shape": [8, 32]}, r"predict.tile_shape must be an integer or a 3-tuple \(z, y, x\)"),
        ({"tile_shape": [8, 32, 32], "overlap": [8, 4, 4]}, "smaller than"),
        ({"channels": []}, "non-empty list"),
        ({"mask_threshold": 1.5}, r"\[0, 1\]"),
        ({"merge_threshold": 0.0}, "> 0"),
        ({"executor": "dask"}, "executor"),
        ({"segmenter": "threshold"}, "needs predict.threshold_segmenter.threshold"),
        ({"threshold_segmenter": {"threshold": 1, "sigma": 2}}, "takes threshold"),
        ({"label_name": "a/b"}, "plain name"),
        ({"device": "tpu"}, "cpu, cuda or auto"),
    ],
)
def test_bad_settings_name_the_key(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        PredictConfig(**kwargs)
