"""ls-predict end to end on real OME-Zarr / TIFF files, with the threshold segmenter (exact answer)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ls_data.errors import DataError
from ls_data.io import check_ngff_image, check_ngff_labels, open_labels, write_ome_zarr, write_tiff_pair
from ls_train.config import ConfigError, load_config
from ls_train.predict import run_prediction
from ls_train.predict.segmenters import ThresholdSegmenter
from ls_train.predict.tilestore import TileStore
from ls_train.trainer.faults import FAULT_DIR_ENV, FAULT_ENV

SPACING = (2.0, 0.5, 0.5)


def make_volume(shape=(12, 72, 88), seed=0) -> tuple[np.ndarray, np.ndarray]:
    """Bright separated ellipsoids (and a bar longer than a tile) on a dim noisy background."""
    rng = np.random.default_rng(seed)
    truth = np.zeros(shape, np.int32)
    truth[3:6, 8:12, 4:84] = 1  # crosses every tile border along x
    zz, yy, xx = np.indices(shape)
    k = 1
    for _ in range(200):
        c = [rng.integers(0, s) for s in shape]
        r = [rng.integers(1, 4), rng.integers(2, 8), rng.integers(2, 8)]
        inside = ((zz - c[0]) / r[0]) ** 2 + ((yy - c[1]) / r[1]) ** 2 + ((xx - c[2]) / r[2]) ** 2 <= 1
        grown = ((zz - c[0]) / (r[0] + 1)) ** 2 + ((yy - c[1]) / (r[1] + 1)) ** 2 + (
            (xx - c[2]) / (r[2] + 1)
        ) ** 2 <= 1
        if inside.any() and not truth[grown].any():
            k += 1
            truth[inside] = k
        if k == 25:
            break
    image = (100 + rng.integers(0, 50, size=shape) + 1000 * (truth > 0)).astype(np.uint16)[None]
    return image, truth


def same_partition(result: np.ndarray, truth: np.ndarray) -> bool:
    pairs = np.unique(np.stack([truth.ravel(), result.ravel()]), axis=1)
    if not ((pairs[0] == 0) == (pairs[1] == 0)).all():
        return False
    fg = pairs[:, pairs[0] > 0]
    return len(np.unique(fg[0])) == fg.shape[1] == len(np.unique(fg[1]))


PREDICT_ARGS = (
    "predict.segmenter=threshold",
    "predict.threshold_segmenter.threshold=500",
    "predict.tile_shape=[8,32,32]",
    "predict.overlap=[4,12,12]",
    "predict.chunks=[8,16,16]",
    "predict.progress=false",
)


def predict_cfg(tmp_path: Path, *extra: str) -> dict:
    return load_config("quickstart", [f"data.root={tmp_path / 'data'}", *PREDICT_ARGS, *extra])


@pytest.fixture(scope="module")
def volume(tmp_path_factory) -> tuple[Path, np.ndarray]:
    root = tmp_path_factory.mktemp("predict")
    image, truth = make_volume()
    path = write_ome_zarr(root / "vol.ome.zarr", image, SPACING, labels=truth, levels=2)
    return path, truth


def test_tiled_threshold_prediction_reproduces_every_object_once(tmp_path, volume):
    path, truth = volume
    cfg = predict_cfg(tmp_path)
    out = tmp_path / "out.ome.zarr"
    result = run_prediction(cfg, input=path, output=out, print_fn=lambda s: None)
    assert result.tiles > 8 and result.tiles_resumed == 0
    labels = open_labels(out / "labels" / "instances").read()
    assert same_partition(labels, truth)
    assert result.objects == len(np.unique(truth)) - 1
    # the same as one tile over the whole volume
    single = predict_cfg(tmp_path, "predict.tile_shape=[12,72,88]", "predict.overlap=[0,0,0]")
    out1 = tmp_path / "single.ome.zarr"
    run_prediction(single, input=path, output=out1, print_fn=lambda s: None)
    assert same_partition(labels, open_labels(out1 / "labels" / "instances").read())
    # no work folder left behind
    assert not (tmp_path / "out.ome.zarr.ls-predict").exists()


def test_output_is_valid_ngff_with_pyramid_table_and_image_copy(tmp_path, volume):
    import tensorstore as ts
    import zarr

    from ls_data.io import open_image

    path, _truth = volume
    out = tmp_path / "out.ome.zarr"
    result = run_prediction(predict_cfg(tmp_path), input=path, output=out, print_fn=lambda s: None)
    assert check_ngff_image(out) == []
    assert check_ngff_labels(out, "instances") == []
    group = zarr.open_group(out / "labels" / "instances", mode="r")
    level0 = np.asarray(group["0"])
    level1 = np.asarray(group["1"])
    np.testing.assert_array_equal(level1, level0[:, ::2, ::2])
    store = ts.open(
        {"driver": "zarr", "kvstore": {"driver": "file", "path": str(out / "labels/instances/0")}}
    ).result()
    np.testing.assert_array_equal(store.read().result(), level0)
    copy = open_image(out).read()
    np.testing.assert_array_equal(copy, open_image(path).read())
    assert open_labels(out / "labels" / "instances").spacing == pytest.approx(SPACING)
    with open(result.table) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == result.objects
    for row in rows:
        where = np.argwhere(level0 == int(row["id"]))
        assert int(row["voxels"]) == len(where)
        assert [int(row["z0"]), int(row["y0"]), int(row["x0"])] == where.min(0).tolist()
        assert float(row["centroid_y_um"]) == pytest.approx(where.mean(0)[1] * SPACING[1], abs=1e-3)


def test_labels_into_the_input_keep_its_other_labels(tmp_path, volume):
    import shutil

    src, truth = volume
    path = tmp_path / "copy.ome.zarr"
    shutil.copytree(src, path)
    cfg = predict_cfg(tmp_path)
    run_prediction(cfg, input=path, output=path, print_fn=lambda s: None)
    assert check_ngff_labels(path, "instances") == [] and check_ngff_labels(path, "cells") == []
    assert same_partition(open_labels(path / "labels" / "instances").read(), truth)
    with pytest.raises(ConfigError, match="exists; pass overwrite=true"):
        run_prediction(cfg, input=path, output=path, print_fn=lambda s: None)
    run_prediction(cfg, input=path, output=path, overwrite=True, print_fn=lambda s: None)


def test_interrupted_write_into_the_input_resumes_without_overwrite(tmp_path, volume, monkeypatch):
    import shutil

    from ls_data.io import LabelImageWriter

    src, truth = volume
    path = tmp_path / "copy.ome.zarr"
    shutil.copytree(src, path)
    original = LabelImageWriter.build_pyramid

    def crash(self, **kwargs):
        raise RuntimeError("killed while writing")

    monkeypatch.setattr(LabelImageWriter, "build_pyramid", crash)
    with pytest.raises(RuntimeError, match="killed"):
        run_prediction(predict_cfg(tmp_path), input=path, output=path, print_fn=lambda s: None)
    assert (path / "labels" / "instances").exists()
    assert check_ngff_labels(path, "instances"), "an unfinished label image must not look valid"
    monkeypatch.setattr(LabelImageWriter, "build_pyramid", original)
    result = run_prediction(predict_cfg(tmp_path), input=path, output=path, print_fn=lambda s: None)
    assert result.tiles_resumed == result.tiles
    assert check_ngff_labels(path, "instances") == []
    assert same_partition(open_labels(path / "labels" / "instances").read(), truth)


def test_parquet_table(tmp_path, volume):
    pq = pytest.importorskip("pyarrow.parquet")
    path, truth = volume
    table = tmp_path / "objects.parquet"
    result = run_prediction(
        predict_cfg(tmp_path, f"predict.table={table}"),
        input=path,
        output=tmp_path / "p.ome.zarr",
        print_fn=lambda s: None,
    )
    data = pq.read_table(table).to_pydict()
    assert result.table == table and len(data["id"]) == len(np.unique(truth)) - 1
    assert sorted(data["voxels"]) == sorted(np.bincount(truth.ravel())[1:].tolist())


def test_level_one_and_tiff_inputs(tmp_path, volume):
    path, truth = volume
    out = tmp_path / "l1.ome.zarr"
    run_prediction(predict_cfg(tmp_path, "predict.level=1"), input=path, output=out, print_fn=lambda s: None)
    labels = open_labels(out / "labels" / "instances")
    assert labels.shape == (12, 36, 44) and labels.spacing == pytest.approx((2.0, 1.0, 1.0))
    image, truth = make_volume(seed=1)
    tif, _ = write_tiff_pair(tmp_path, "t", image, truth, SPACING)
    out = tmp_path / "t.ome.zarr"
    run_prediction(
        predict_cfg(tmp_path, "predict.trim_memory=true"), input=tif, output=out, print_fn=lambda s: None
    )
    assert same_partition(open_labels(out / "labels" / "instances").read(), truth)


def test_interrupted_run_resumes_with_the_tiles_not_yet_done(tmp_path, volume, monkeypatch):
    path, truth = volume
    cfg = predict_cfg(tmp_path)
    out = tmp_path / "r.ome.zarr"
    calls = {"n": 0}
    original = ThresholdSegmenter.__call__

    def failing(self, images):
        calls["n"] += 1
        if calls["n"] == 4:
            raise RuntimeError("node lost")
        return original(self, images)

    monkeypatch.setattr(ThresholdSegmenter, "__call__", failing)
    with pytest.raises(RuntimeError, match="node lost"):
        run_prediction(cfg, input=path, output=out, print_fn=lambda s: None)
    assert not out.exists()  # nothing that looks like a result
    monkeypatch.setattr(ThresholdSegmenter, "__call__", original)
    result = run_prediction(cfg, input=path, output=out, print_fn=lambda s: None)
    assert result.tiles_resumed == 3
    assert same_partition(open_labels(out / "labels" / "instances").read(), truth)
    # a work folder of another plan is refused, and discarded with overwrite=true
    from ls_train.predict.tilestore import PlanMismatchError

    work = tmp_path / "work"
    run_prediction(
        predict_cfg(tmp_path, f"predict.work_dir={work}", "predict.keep_work_dir=true"),
        input=path,
        output=tmp_path / "k.ome.zarr",
        print_fn=lambda s: None,
    )
    other = predict_cfg(tmp_path, f"predict.work_dir={work}", "predict.overlap=[4,10,10]")
    with pytest.raises(PlanMismatchError, match="overlap"):
        run_prediction(other, input=path, output=tmp_path / "k2.ome.zarr", print_fn=lambda s: None)
    run_prediction(
        other, input=path, output=tmp_path / "k2.ome.zarr", overwrite=True, print_fn=lambda s: None
    )


@pytest.mark.slow(seconds=18)
def test_a_killed_prediction_resumes_with_the_tiles_done(tmp_path, volume):
    """ls-predict killed (SIGKILL, no chance to clean up) after its 3rd tile was handed to the
    writer: the same command finishes from the tiles that were complete and gives a clean run's
    labels."""
    path, _ = volume
    clean = tmp_path / "clean.ome.zarr"
    tiles = run_prediction(predict_cfg(tmp_path), input=path, output=clean, print_fn=lambda s: None).tiles
    out = tmp_path / "k.ome.zarr"
    argv = [sys.executable, "-m", "ls_train.cli", "predict", "--config-name=quickstart",
            f"data.root={tmp_path / 'data'}", *PREDICT_ARGS, f"input={path}", f"output={out}"]
    folder = tmp_path / "fault"
    folder.mkdir()
    env = {**os.environ, FAULT_ENV: "predict.tile:3", FAULT_DIR_ENV: str(folder)}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 300
    while not (folder / "paused").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (folder / "paused").exists(), proc.communicate()[0][-3000:]
    time.sleep(1.0)  # the writer threads go on while the main thread is paused
    proc.kill()
    proc.wait()
    done = TileStore.tiles_done(tmp_path / "k.ome.zarr.ls-predict")
    assert 0 < done <= 3 < tiles and not out.exists()
    again = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert f"{done} already done" in again.stdout
    np.testing.assert_array_equal(
        open_labels(out / "labels" / "instances").read(), open_labels(clean / "labels" / "instances").read()
    )


def test_bad_inputs_give_clear_errors(tmp_path, volume):
    path, _ = volume
    cfg = predict_cfg(tmp_path)
    not_a_volume = tmp_path / "notes.txt"
    not_a_volume.write_text("hello")
    with pytest.raises(DataError, match=r"notes\.txt"):
        run_prediction(cfg, input=not_a_volume, output=tmp_path / "a.ome.zarr", print_fn=lambda s: None)
    with pytest.raises(DataError, match="no such file"):
        run_prediction(
            cfg, input=tmp_path / "missing.ome.zarr", output=tmp_path / "a.ome.zarr", print_fn=lambda s: None
        )
    with pytest.raises(DataError, match="channel index 3"):
        run_prediction(
            predict_cfg(tmp_path, "predict.channels=[3]"),
            input=path,
            output=tmp_path / "a.ome.zarr",
            print_fn=lambda s: None,
        )
    with pytest.raises(ConfigError, match=r"ending in \.zarr"):
        run_prediction(cfg, input=path, output=tmp_path / "a.tif", print_fn=lambda s: None)
    existing = tmp_path / "exists.ome.zarr"
    existing.mkdir()
    (existing / "keep.txt").write_text("x")
    with pytest.raises(ConfigError, match="overwrite=true"):
        run_prediction(cfg, input=path, output=existing, print_fn=lambda s: None)
    with pytest.raises(ConfigError, match="not a Zarr group"):
        run_prediction(cfg, input=path, output=existing, overwrite=True, print_fn=lambda s: None)
    assert (existing / "keep.txt").exists()
    with pytest.raises(ConfigError, match="overlap"):
        predict_cfg(tmp_path, "predict.overlap=[8,12,12]")
    with pytest.raises(ConfigError, match="merge_criterion"):
        predict_cfg(tmp_path, "predict.merge_criterion=dice")
