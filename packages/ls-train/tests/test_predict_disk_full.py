"""ls-predict on a full disk: a clear error naming what is kept, and the same command, run again
once there is space, finishes from the finished tiles (issue 18).

The disk is made full where the writes happen: the tile store (TensorStore, whose error carries
``os_error_code=28``) and the OME-Zarr label writer (an ``OSError`` ENOSPC), and, where this
process may mount one, a real tmpfs too small for the output, written by this process or by Ray
workers (``predict.executor=ray``)."""

from __future__ import annotations

import errno
import subprocess
from pathlib import Path

import numpy as np
import pytest
import tifffile

from ls_data.io import LabelImageWriter, open_labels
from ls_train.cli import predict_main
from ls_train.predict.tilestore import TileStore
from ls_train.storage import StorageFullError, no_space_left

ARGS = (
    "predict.segmenter=threshold",
    "predict.threshold_segmenter.threshold=500",
    "predict.tile_shape=[8,16,16]",
    "predict.overlap=[2,4,4]",
    "predict.chunks=[8,16,16]",
    "predict.progress=false",
)
RAY_ARGS = ("predict.executor=ray", "predict.num_workers=1", "predict.threads_per_worker=1")
TENSORSTORE_ENOSPC = (
    'RESOURCE_EXHAUSTED: Error writing local file "{path}": Failed to write 3610 bytes to file 3: '
    "No space left on device [os_error_code='28']"
)


@pytest.fixture
def volume(tmp_path: Path) -> Path:
    image = np.full((8, 32, 40), 100, dtype=np.uint16)
    image[2:5, 4:10, 4:12] = 1000
    image[3:7, 20:28, 25:35] = 1000
    path = tmp_path / "vol.tif"
    tifffile.imwrite(path, image, imagej=True, metadata={"axes": "ZYX"})
    return path


def _predict(tmp_path: Path, tif: Path, out: Path, *extra: str) -> int:
    return predict_main(
        ["--config-name=quickstart", f"data.root={tmp_path / 'data'}", *ARGS, *extra, f"input={tif}",
         f"output={out}"]
    )


def _labels(out: Path) -> np.ndarray:
    return np.asarray(open_labels(out / "labels" / "instances").read())


def test_the_errors_of_a_full_disk_are_recognised_through_their_causes() -> None:
    wrapped = RuntimeError("tile 3 failed")
    wrapped.__cause__ = ValueError(TENSORSTORE_ENOSPC.format(path="/x/tiles.zarr/0/0"))
    assert "os_error_code='28'" in no_space_left(wrapped)
    assert no_space_left(OSError(errno.ENOSPC, "No space left on device", "/x/a.zarr")).endswith("/x/a.zarr")
    assert no_space_left(OSError(errno.EDQUOT, "Disk quota exceeded")) is not None
    assert no_space_left(OSError(errno.EACCES, "Permission denied")) is None
    assert no_space_left(ValueError("RESOURCE_EXHAUSTED: out of memory")) is None


def test_a_full_disk_in_a_ray_task_is_found_in_its_cause() -> None:
    """A Ray task error's text is the worker's traceback (first line ``ray::Class.method() (pid=…)``);
    the worker's exception is its ``cause``, and names the file."""

    class TaskError(RuntimeError):  # what ray.get raises: RayTaskError(ValueError), with .cause
        def __init__(self, cause: BaseException) -> None:
            super().__init__(f"ray::TileWorker.run() (pid=1, ip=10.0.0.1)\n  File x.py\n{cause!r}")
            self.cause = cause

    store = ValueError(TENSORSTORE_ENOSPC.format(path="/x/tiles.zarr/0/0"))
    assert no_space_left(TaskError(store)).startswith('RESOURCE_EXHAUSTED: Error writing local file "/x/')
    full = OSError(errno.ENOSPC, "No space left on device", "/x/a")
    assert no_space_left(TaskError(full)).endswith(": /x/a")


@pytest.mark.parametrize("where", ["tile store", "label writer"])
@pytest.mark.slow(seconds=5)
def test_a_full_disk_is_a_clear_error_and_the_rerun_finishes(
    where: str, volume: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    assert _predict(tmp_path, volume, tmp_path / "clean.ome.zarr") == 0
    out = tmp_path / "out.ome.zarr"
    writes = [0]
    if where == "tile store":
        real = TileStore.write

        def write(self, index, tile):
            writes[0] += 1
            if writes[0] == 3:
                raise ValueError(TENSORSTORE_ENOSPC.format(path=self.root / "tiles.zarr" / str(index)))
            return real(self, index, tile)

        monkeypatch.setattr(TileStore, "write", write)
    else:
        def write(self, offset, labels):
            raise OSError(errno.ENOSPC, "No space left on device", str(self.path))

        monkeypatch.setattr(LabelImageWriter, "write", write)
    capsys.readouterr()
    assert _predict(tmp_path, volume, out) == 1
    err = capsys.readouterr().err
    assert "ls-predict: error: no space left on device" in err and "Traceback" not in err
    work = tmp_path / "out.ome.zarr.ls-predict"
    kept = TileStore.tiles_done(work)  # tiles run in threads: those written before the failure
    assert (kept < 9) if where == "tile store" else (kept == 9)  # 9 tiles of 8x16x16 cover 8x32x40
    assert f"{kept} of 9 tiles are finished and kept in {work}" in err
    assert not (out / "labels").exists()
    monkeypatch.undo()
    assert _predict(tmp_path, volume, out) == 0
    assert f"{kept} already done" in capsys.readouterr().out
    np.testing.assert_array_equal(_labels(out), _labels(tmp_path / "clean.ome.zarr"))


@pytest.mark.parametrize("executor", ["local", "ray"])
@pytest.mark.slow(seconds=42)
def test_a_real_full_disk_is_a_clear_error_and_the_rerun_finishes(
    executor: str, mount_tmpfs, volume: Path, tmp_path: Path, capsys, request
) -> None:
    """Also with the tiles written by Ray workers: the error found in a Ray task's cause names the
    file. (One Ray instance for both runs, started here: ls-predict leaves it running.)"""
    if executor == "ray":
        import ray

        ray.init(address="local", num_cpus=1, include_dashboard=False, logging_level="WARNING")
        request.addfinalizer(ray.shutdown)
    small_disk = mount_tmpfs("disk", "size=64k")
    big = tmp_path / "big.tif"
    tifffile.imwrite(big, np.tile(tifffile.imread(volume), (1, 3, 3)), imagej=True, metadata={"axes": "ZYX"})
    out = small_disk / "out.ome.zarr"
    extra = RAY_ARGS if executor == "ray" else ()
    capsys.readouterr()
    assert _predict(tmp_path, big, out, *extra) == 1
    err = capsys.readouterr().err
    assert "ls-predict: error: no space left on device" in err and "Traceback" not in err
    assert f"{small_disk}/out.ome.zarr.ls-predict/" in err.split(";")[0]  # the file that was refused
    assert "tiles are finished and kept in" in err
    subprocess.run(["mount", "-o", "remount,size=16m", str(small_disk)], check=True)
    assert _predict(tmp_path, big, out, *extra) == 0
    assert _predict(tmp_path, big, tmp_path / "clean.ome.zarr") == 0
    np.testing.assert_array_equal(_labels(out), _labels(tmp_path / "clean.ome.zarr"))


def test_a_storage_full_error_is_not_wrapped_twice() -> None:
    exc = StorageFullError("no space left on device (x); 1 of 2 tiles are finished")
    assert no_space_left(exc) == str(exc)
