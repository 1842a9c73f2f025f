"""ls-predict on bad input: a clear error before any work (exit status 2), nothing left behind that
refuses the corrected rerun (issue 18)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from ls_data.errors import DataError
from ls_data.io import open_image, open_labels
from ls_train.cli import predict_main
from ls_train.config import ConfigError, load_config
from ls_train.predict import checks as checks_module
from ls_train.predict import run_prediction
from ls_train.predict.checks import NonFiniteInputError
from ls_train.predict.normalization import volume_normalization
from ls_train.predict.segmenters import ThresholdSegmenter
from ls_train.predict.tilestore import TileStore

SHAPE = (8, 32, 40)  # (Z, Y, X)
THRESHOLD = (
    "predict.segmenter=threshold",
    "predict.threshold_segmenter.threshold=500",
    "predict.tile_shape=[8,16,16]",
    "predict.overlap=[2,4,4]",
    "predict.chunks=[8,16,16]",
    "predict.progress=false",
)


def _image(channels: int = 1, dtype=np.uint16) -> np.ndarray:
    """``(C, Z, Y, X)``: a few bright boxes on a dim background."""
    image = np.full((channels, *SHAPE), 100, dtype=dtype)
    image[:, 2:5, 4:10, 4:12] = 1000
    image[:, 3:7, 20:28, 25:35] = 1000
    return image


def _tiff(path: Path, image: np.ndarray) -> Path:
    """An ImageJ hyperstack with axes ZCYX (or ZYX for one channel)."""
    if image.shape[0] == 1:
        tifffile.imwrite(path, image[0], imagej=True, metadata={"axes": "ZYX"})
    else:
        tifffile.imwrite(path, image.transpose(1, 0, 2, 3), imagej=True, metadata={"axes": "ZCYX"})
    return path


def _cfg(tmp_path: Path, *extra: str) -> dict:
    return load_config("quickstart", [f"data.root={tmp_path / 'data'}", *THRESHOLD, *extra])


def _run(cfg: dict, tif: Path, out: Path, **kwargs):
    return run_prediction(cfg, input=tif, output=out, print_fn=lambda s: None, **kwargs)


def _nothing_created(folder: Path, *keep: str) -> None:
    assert sorted(p.name for p in folder.iterdir()) == sorted(keep)


# -- 1. channels ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def one_channel_model(tmp_path_factory, tiny_model) -> tuple[Path, list[str]]:
    """Weights of an untrained tiny 1-channel model and the CLI arguments that use it."""
    from ls_train.factory import build_model

    root = tmp_path_factory.mktemp("model")
    args = [
        f"data.root={root / 'data'}",
        *tiny_model,
        "predict.tile_shape=[8,32,32]",
        "predict.overlap=[2,8,8]",
        "predict.chunks=[8,16,16]",
        "predict.progress=false",
    ]
    torch.manual_seed(0)
    ckpt = root / "weights.pt"
    torch.save({"model": build_model(load_config("quickstart", args)).state_dict()}, ckpt)
    return ckpt, ["--config-name=quickstart", *args, f"checkpoint={ckpt}"]


@pytest.mark.slow(seconds=6)
def test_three_channel_tiff_to_a_one_channel_model_is_refused_before_any_work(
    tmp_path, one_channel_model, capsys
):
    _, args = one_channel_model
    tif = _tiff(tmp_path / "three.tif", _image(3))
    out = tmp_path / "out.ome.zarr"
    assert predict_main([*args, f"input={tif}", f"output={out}"]) == 2
    err = capsys.readouterr().err
    assert str(tif) in err and "has 3 channel(s)" in err and "takes 1 input channel(s)" in err
    assert "predict.channels=[...]" in err and "predict.channels=[0]" in err
    _nothing_created(tmp_path, "three.tif")
    # a selection of the wrong length names it
    assert predict_main([*args, f"input={tif}", f"output={out}", "predict.channels=[0,2]"]) == 2
    assert "predict.channels=[0, 2] selects 2" in capsys.readouterr().err
    _nothing_created(tmp_path, "three.tif")
    # the corrected run works
    assert predict_main([*args, f"input={tif}", f"output={out}", "predict.channels=[1]"]) == 0
    assert (out / "labels" / "instances").is_dir()


def test_a_predict_channels_index_the_input_lacks_names_the_key_and_the_file(tmp_path, capsys):
    tif = _tiff(tmp_path / "three.tif", _image(3))
    out = tmp_path / "out.ome.zarr"
    with pytest.raises(DataError, match=r"predict\.channels=\[1, 3\]: channel index 3 does not exist"):
        _run(_cfg(tmp_path, "predict.channels=[1,3]"), tif, out)
    args = ["--config-name=quickstart", f"data.root={tmp_path / 'data'}", *THRESHOLD]
    assert predict_main([*args, f"input={tif}", f"output={out}", "predict.channels=[3]"]) == 2
    err = capsys.readouterr().err
    assert "predict.channels=[3]" in err and str(tif) in err and "has 3 channel(s)" in err
    _nothing_created(tmp_path, "three.tif")


# -- 2. NaN and infinite values ------------------------------------------------------------------


def test_nan_in_a_small_volume_is_refused_before_any_work_and_the_fixed_file_runs(tmp_path, capsys):
    image = _image(dtype=np.float32)
    image[0, 5, 30, 38] = np.nan
    tif = _tiff(tmp_path / "nan.tif", image)
    out = tmp_path / "out.ome.zarr"
    args = ["--config-name=quickstart", f"data.root={tmp_path / 'data'}", *THRESHOLD]
    assert predict_main([*args, f"input={tif}", f"output={out}"]) == 2
    err = capsys.readouterr().err
    assert str(tif) in err and "1 NaN or infinite value(s)" in err and "(c, z, y, x)=(0, 5, 30, 38)" in err
    assert "voxels z 0:8, y 0:32, x 0:40" in err
    _nothing_created(tmp_path, "nan.tif")
    _tiff(tif, np.nan_to_num(image))  # corrected in place
    assert predict_main([*args, f"input={tif}", f"output={out}"]) == 0


def test_nan_in_a_large_volume_stops_at_its_tile_and_the_corrected_reruns_work(tmp_path, monkeypatch):
    """Above FINITE_SCAN_VOXELS the tiles are checked as they are read: the error names the tile's
    voxels; the finished tiles are kept for a rerun on the input corrected in place, and a rerun
    on a corrected copy (another plan) replaces them instead of refusing them."""
    monkeypatch.setattr(checks_module, "FINITE_SCAN_VOXELS", 100)
    image = _image(dtype=np.float32)
    image[0, 4, 30, 39] = np.inf  # in the last tile only
    tif = _tiff(tmp_path / "inf.tif", image)
    out = tmp_path / "out.ome.zarr"
    cfg = _cfg(tmp_path)
    with pytest.raises(NonFiniteInputError, match=r"tile 8 \(voxels z 0:8, y 16:32, x 24:40\)") as info:
        _run(cfg, tif, out)
    assert str(tif) in str(info.value) and "(c, z, y, x)=(0, 4, 30, 39)" in str(info.value)
    work = tmp_path / "out.ome.zarr.ls-predict"
    assert not out.exists() and TileStore.replaceable(work)
    # a corrected copy elsewhere: another plan, which replaces the abandoned work folder
    fixed = _tiff(tmp_path / "fixed.tif", np.nan_to_num(image, posinf=0))
    result = _run(cfg, fixed, out)
    assert result.tiles == 9 and result.tiles_resumed == 0 and result.objects == 2
    # the same again, corrected in place: the finished tiles are reused
    with pytest.raises(NonFiniteInputError):
        _run(cfg, tif, tmp_path / "again.ome.zarr")
    _tiff(tif, np.nan_to_num(image, posinf=0))
    result = _run(cfg, tif, tmp_path / "again.ome.zarr")
    assert result.tiles_resumed == 8 and result.objects == 2


def test_nan_in_the_normalization_sample_names_the_file_and_block(tmp_path):
    image = _image(2, dtype=np.float32)
    image[1, 0, 0, 1] = np.nan
    reader = open_image(_tiff(tmp_path / "n.tif", image))
    entry = {"name": "normalize_intensity", "mode": "percentile", "low": 1.0, "high": 99.0}
    with pytest.raises(NonFiniteInputError, match=r"sample block \(voxels z 0:8, y 0:32, x 0:40\)"):
        volume_normalization(reader, [0, 1], entry, sample_voxels=10**6)


# -- 3. folders that are not writable ------------------------------------------------------------


@pytest.fixture
def read_only(tmp_path, mount_tmpfs) -> Path:
    """A folder that cannot be written: without write permission for a user, a read-only tmpfs for
    root (who ignores permission bits; skipped where mounting is not permitted)."""
    if os.geteuid() == 0:
        return mount_tmpfs("ro", "ro")
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o555)
    return folder


@pytest.mark.slow(seconds=8)
def test_an_output_work_folder_or_table_in_a_read_only_folder_is_refused_before_any_work(
    tmp_path, read_only, capsys
):
    tif = _tiff(tmp_path / "v.tif", _image())
    args = ["--config-name=quickstart", f"data.root={tmp_path / 'data'}", *THRESHOLD, f"input={tif}"]
    out = read_only / "out.ome.zarr"
    assert predict_main([*args, f"output={out}"]) == 2
    err = capsys.readouterr().err
    assert f"output={out}: the folder {read_only} is not writable" in err
    assert ("(a read-only file system)" if os.geteuid() == 0 else "(permission denied)") in err
    ok = tmp_path / "ok.ome.zarr"
    with pytest.raises(ConfigError, match=f"predict.work_dir={read_only / 'w'}: the folder {read_only}"):
        _run(_cfg(tmp_path, f"predict.work_dir={read_only / 'w'}"), tif, ok)
    with pytest.raises(ConfigError, match=f"predict.table={read_only / 't.csv'}: the folder {read_only}"):
        _run(_cfg(tmp_path, f"predict.table={read_only / 't.csv'}"), tif, ok)
    _nothing_created(tmp_path, "v.tif", "ro")
    _nothing_created(read_only)
    assert predict_main([*args, f"output={ok}"]) == 0


# -- 4. 2-D images -------------------------------------------------------------------------------


def test_a_2d_tiff_is_refused_naming_the_file_and_its_shape(tmp_path, capsys):
    tif = tmp_path / "plane.tif"
    tifffile.imwrite(tif, _image()[0, 3])
    args = ["--config-name=quickstart", f"data.root={tmp_path / 'data'}", *THRESHOLD]
    assert predict_main([*args, f"input={tif}", f"output={tmp_path / 'out.ome.zarr'}"]) == 2
    err = capsys.readouterr().err
    assert str(tif) in err and "2-D image of shape (Y, X)=(32, 40)" in err and "3-D volumes" in err
    _nothing_created(tmp_path, "plane.tif")


# -- 5. no leftover refuses the corrected rerun --------------------------------------------------


def test_a_run_failing_before_its_first_tile_leaves_no_work_folder(tmp_path, monkeypatch):
    tif = _tiff(tmp_path / "v.tif", _image())
    out = tmp_path / "out.ome.zarr"

    def fail(self, images):
        raise ValueError("the segmenter rejects these settings")

    original = ThresholdSegmenter.__call__
    monkeypatch.setattr(ThresholdSegmenter, "__call__", fail)
    with pytest.raises(ValueError, match="rejects"):
        _run(_cfg(tmp_path), tif, out)
    _nothing_created(tmp_path, "v.tif")
    monkeypatch.setattr(ThresholdSegmenter, "__call__", original)
    result = _run(_cfg(tmp_path, "predict.overlap=[2,6,6]"), tif, out)  # corrected settings
    assert result.objects == 2
    np.testing.assert_array_equal(np.unique(open_labels(out / "labels" / "instances").read()), [0, 1, 2])


def test_a_left_work_folder_without_finished_tiles_does_not_refuse_another_plan(tmp_path):
    """As left by a run that failed on bad input before this fix (or was killed at once)."""
    tif = _tiff(tmp_path / "v.tif", _image())
    out = tmp_path / "out.ome.zarr"
    work = tmp_path / "out.ome.zarr.ls-predict"
    TileStore.open_or_create(work, {"version": 1, "channels": [0, 1, 2]}, 6, (8, 16, 16))
    result = _run(_cfg(tmp_path), tif, out)
    assert result.objects == 2 and not work.exists()
