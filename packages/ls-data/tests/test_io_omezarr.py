"""OME-Zarr writing (NGFF 0.4) and TensorStore reading: metadata, pyramids, windows, bad input."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorstore as ts
import zarr

from ls_data.errors import DataError, PathOutsideRootsError, VolumeReadError
from ls_data.io import (
    OmeZarrLabelReader,
    OmeZarrVolumeReader,
    check_same_grid,
    format_of,
    open_image,
    open_labels,
    write_ome_zarr,
)
from ls_data.io.omezarr import ngff_translation
from ls_data.io.omezarr_write import downsample_labels_yx, downsample_mean_yx

SPACING = (2.0, 0.3, 0.25)
CLASSES = {1: 2, 2: 1, 5: 3}


def _volume() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 4000, size=(3, 5, 20, 17), dtype=np.uint16)
    labels = rng.integers(0, 6, size=(5, 20, 17)).astype(np.uint32)
    return image, labels


@pytest.fixture
def volume(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    image, labels = _volume()
    path = write_ome_zarr(
        tmp_path / "vol.ome.zarr", image, SPACING, labels=labels, classes=CLASSES, chunks=(2, 8, 8), levels=2
    )
    return path, image, labels


def test_round_trip(volume) -> None:
    path, image, labels = volume
    assert format_of(path) == "ome-zarr"
    img, lab = open_image(path), open_labels(path)
    assert isinstance(img, OmeZarrVolumeReader) and isinstance(lab, OmeZarrLabelReader)
    assert lab.path == path / "labels" / "cells"
    assert img.shape == image.shape and img.dtype == np.uint16
    assert lab.shape == labels.shape and lab.dtype == np.uint32
    assert img.spacing == pytest.approx(SPACING) and lab.spacing == pytest.approx(SPACING)
    assert img.chunks == (2, 8, 8) and lab.chunks == (2, 8, 8)
    np.testing.assert_array_equal(img.read(), image)
    np.testing.assert_array_equal(lab.read(), labels)
    assert lab.classes() == CLASSES
    assert open_labels(path / "labels" / "cells").classes() == CLASSES
    check_same_grid(img, lab)


@pytest.mark.parametrize(
    "window", [(slice(1, 4), slice(2, 9), slice(3, 17)), (slice(4, 5), slice(19, 20), slice(0, 1)), None]
)
@pytest.mark.parametrize("channels", [None, [2, 0], [1], [0, 1, 2]])
def test_window_reads_equal_full_read_sliced(volume, window, channels) -> None:
    path, _, labels = volume
    img, lab = open_image(path), open_labels(path)
    full = img.read()
    expected = full if channels is None else full[channels]
    if window is not None:
        expected = expected[(slice(None), *window)]
    np.testing.assert_array_equal(img.read(window, channels), expected)
    np.testing.assert_array_equal(lab.read(window), labels if window is None else labels[window])


def test_pyramid_levels(volume) -> None:
    path, image, labels = volume
    img1, lab1 = open_image(path, level=1), open_labels(path, level=1)
    assert img1.shape == (3, 5, 10, 9) and lab1.shape == (5, 10, 9)
    assert img1.spacing == pytest.approx((2.0, 0.6, 0.5))
    np.testing.assert_array_equal(img1.read(), downsample_mean_yx(image))
    np.testing.assert_array_equal(lab1.read(), labels[:, ::2, ::2])
    with pytest.raises(DataError, match=r"level 2 does not exist; it has 2 level"):
        open_image(path, level=2)


def test_downsampling_rules() -> None:
    a = np.array([[[1, 2, 7], [3, 5, 9]]], dtype=np.uint16)  # (1, 2, 3); x is odd -> edge padded
    np.testing.assert_array_equal(downsample_mean_yx(a), np.array([[[3, 8]]], dtype=np.uint16))
    lab = np.array([[[1, 2, 3], [4, 5, 6]]], dtype=np.uint32)
    np.testing.assert_array_equal(downsample_labels_yx(lab), np.array([[[1, 3]]], dtype=np.uint32))


def test_metadata_is_ngff_04(volume) -> None:
    path, _, _ = volume
    attrs = json.loads((path / ".zattrs").read_text())
    assert json.loads((path / ".zgroup").read_text())["zarr_format"] == 2
    (ms,) = attrs["multiscales"]
    assert ms["version"] == "0.4"
    assert [a["name"] for a in ms["axes"]] == ["c", "z", "y", "x"]
    assert [a["type"] for a in ms["axes"]] == ["channel", "space", "space", "space"]
    assert all(a["unit"] == "micrometer" for a in ms["axes"][1:])
    assert [d["path"] for d in ms["datasets"]] == ["0", "1"]
    for level, ds in enumerate(ms["datasets"]):
        scale = ds["coordinateTransformations"][0]
        assert scale["type"] == "scale"
        assert scale["scale"] == pytest.approx([1.0, 2.0, 0.3 * 2**level, 0.25 * 2**level])
    zarray = json.loads((path / "0" / ".zarray").read_text())
    assert zarray["zarr_format"] == 2 and zarray["dimension_separator"] == "/"
    assert json.loads((path / "labels" / ".zattrs").read_text()) == {"labels": ["cells"]}
    label_attrs = json.loads((path / "labels" / "cells" / ".zattrs").read_text())
    assert label_attrs["image-label"]["version"] == "0.4"
    assert label_attrs["image-label"]["properties"] == [
        {"label-value": k, "class": v} for k, v in sorted(CLASSES.items())
    ]
    (lms,) = label_attrs["multiscales"]
    assert [a["name"] for a in lms["axes"]] == ["z", "y", "x"]
    assert lms["datasets"][0]["coordinateTransformations"][0]["scale"] == pytest.approx(list(SPACING))


def test_reopen_with_zarr_and_tensorstore(volume) -> None:
    path, image, labels = volume
    root = zarr.open_group(path, mode="r")
    np.testing.assert_array_equal(root["0"][:], image)
    np.testing.assert_array_equal(root["labels/cells/0"][:], labels)
    assert root["labels/cells"].attrs["image-label"]["properties"][0] == {"label-value": 1, "class": 2}
    store = ts.open({"driver": "zarr", "kvstore": {"driver": "file", "path": str(path / "0")}}).result()
    np.testing.assert_array_equal(store[1, 2:4].read().result(), image[1, 2:4])


def test_empty_chunks_are_written(tmp_path: Path) -> None:
    image = np.zeros((1, 2, 8, 8), np.uint16)
    path = write_ome_zarr(
        tmp_path / "z.ome.zarr", image, SPACING, labels=np.zeros((2, 8, 8), np.uint16), chunks=(1, 4, 4)
    )
    assert len([p for p in (path / "0").rglob("*") if p.is_file() and not p.name.startswith(".")]) == 8
    np.testing.assert_array_equal(open_labels(path).read(), 0)


def test_pickled_readers_reopen(volume) -> None:
    path, image, labels = volume
    img, lab = open_image(path), open_labels(path)
    img.read((slice(0, 1), slice(0, 1), slice(0, 1)))
    img2, lab2 = pickle.loads(pickle.dumps(img)), pickle.loads(pickle.dumps(lab))
    np.testing.assert_array_equal(img2.read(channels=[2]), image[[2]])
    np.testing.assert_array_equal(lab2.read(), labels)
    assert lab2.classes() == CLASSES


def test_close_and_reopen(volume) -> None:
    path, image, labels = volume
    with open_image(path) as img, open_labels(path) as lab:
        np.testing.assert_array_equal(img.read(channels=[1]), image[[1]])
        lab.read()
    np.testing.assert_array_equal(img.read(channels=[1]), image[[1]])
    np.testing.assert_array_equal(lab.read(), labels)


def test_missing_chunk_is_an_error_not_zeros(volume) -> None:
    path, image, _ = volume
    (path / "0" / "1" / "1" / "1" / "1").unlink()  # channel 1, z 2:4, y 8:16, x 8:16
    img = open_image(path)
    with pytest.raises(VolumeReadError, match=r"chunk \(1, 1, 1, 1\).*missing") as info:
        img.read()
    assert info.value.path == path / "0" / "1" / "1" / "1" / "1"
    # Windows that do not touch the chunk still read.
    np.testing.assert_array_equal(img.read(None, [0, 2]), image[[0, 2]])
    np.testing.assert_array_equal(img.read((slice(0, 2), slice(None), slice(None)), [1]), image[[1], 0:2])
    with pytest.raises(VolumeReadError):
        img.read((slice(3, 4), slice(10, 11), slice(9, 10)), [1])
    # The explicit opt-out returns the fill value there.
    lenient = open_image(path, allow_missing_chunks=True).read((slice(2, 4), slice(8, 16), slice(8, 16)), [1])
    assert (lenient == 0).all()
    (path / "labels" / "cells" / "0" / "0" / "0" / "0").unlink()
    with pytest.raises(VolumeReadError, match=r"labels/cells/0/0/0/0"):
        open_labels(path).read((slice(0, 1), slice(0, 1), slice(0, 1)))


def test_missing_array_and_group(volume, tmp_path: Path) -> None:
    path, _, _ = volume
    shutil.rmtree(path / "1")
    with pytest.raises(VolumeReadError, match=r"vol.ome.zarr/1.*level 1 is missing"):
        open_image(path, level=1)
    assert open_image(path).shape == (3, 5, 20, 17)
    with pytest.raises(VolumeReadError, match="does not exist"):
        open_image(tmp_path / "nothing.ome.zarr")
    no_labels = write_ome_zarr(tmp_path / "img.ome.zarr", np.zeros((1, 2, 4, 4), np.uint8), SPACING)
    with pytest.raises(VolumeReadError, match=r"img.ome.zarr.*no OME-Zarr labels"):
        open_labels(no_labels)


def test_non_integer_labels_and_shape_mismatch(volume) -> None:
    path, image, labels = volume
    group = zarr.open_group(path / "labels" / "cells", mode="r+")
    group.create_array("0", shape=labels.shape, dtype="float32", chunks=(2, 8, 8), overwrite=True)
    with pytest.raises(DataError, match=r"labels/cells.*integer dtype, got float32"):
        open_labels(path)
    group.create_array("0", shape=(5, 20, 16), dtype="uint32", chunks=(2, 8, 8), overwrite=True)
    with pytest.raises(DataError, match=r"shape \(Z, Y, X\)=\(5, 20, 16\).*vol.ome.zarr.*\(5, 20, 17\)"):
        open_labels(path)
    with pytest.raises(DataError, match="integer dtype"):
        write_ome_zarr(path.parent / "f.ome.zarr", image, SPACING, labels=labels.astype(np.float64))
    with pytest.raises(DataError, match=r"\(5, 20, 17\) differs from labels shape \(5, 20, 16\)"):
        write_ome_zarr(path.parent / "g.ome.zarr", image, SPACING, labels=labels[..., :16])


def test_window_channel_and_root_errors(volume, tmp_path: Path) -> None:
    path, _, _ = volume
    img, lab = open_image(path), open_labels(path)
    with pytest.raises(DataError, match=r"vol.ome.zarr.*window x=10:18 is out of bounds"):
        img.read((slice(0, 1), slice(0, 1), slice(10, 18)))
    with pytest.raises(DataError, match="out of bounds"):
        lab.read((slice(0, 6), slice(0, 1), slice(0, 1)))
    with pytest.raises(DataError, match=r"channel index -1 is out of range"):
        img.read(channels=[-1])
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(PathOutsideRootsError):
        open_image(path, roots=[root])
    (root / "link.ome.zarr").symlink_to(path, target_is_directory=True)
    with pytest.raises(PathOutsideRootsError, match=r"link\.ome\.zarr"):
        open_labels(root / "link.ome.zarr" / "labels" / "cells", roots=[root])
    assert open_image(root / "link.ome.zarr", roots=[root, tmp_path]).shape == img.shape


def test_overwrite_rules(volume, tmp_path: Path) -> None:
    path, image, _ = volume
    with pytest.raises(DataError, match="already exists"):
        write_ome_zarr(path, image, SPACING)
    write_ome_zarr(path, image[:1], SPACING, overwrite=True)
    assert open_image(path).shape == (1, 5, 20, 17)
    (tmp_path / "keep").mkdir()
    (tmp_path / "keep" / "data.txt").write_text("precious")
    with pytest.raises(DataError, match="not a Zarr group"):
        write_ome_zarr(tmp_path / "keep", image, SPACING, overwrite=True)
    assert (tmp_path / "keep" / "data.txt").exists()
    with pytest.raises(DataError, match="levels"):
        write_ome_zarr(tmp_path / "l.ome.zarr", image, SPACING, levels=0)
    with pytest.raises(DataError, match="spacing"):
        write_ome_zarr(tmp_path / "s.ome.zarr", image, (1.0, 0.0, 1.0))


def _write_ngff05(path: Path, image: np.ndarray) -> None:
    """An NGFF 0.5 image (Zarr v3, default chunk keys) written directly with zarr-python."""
    root = zarr.open_group(path, mode="w-", zarr_format=3)
    array = root.create_array("s0", shape=image.shape, dtype=image.dtype, chunks=(1, 2, 8, 8))
    array[...] = image
    root.attrs["ome"] = {
        "version": "0.5",
        "multiscales": [
            {
                "axes": [
                    {"name": "c", "type": "channel"},
                    {"name": "z", "type": "space", "unit": "micrometer"},
                    {"name": "y", "type": "space", "unit": "nanometer"},
                    {"name": "x", "type": "space", "unit": "nanometer"},
                ],
                "datasets": [
                    {
                        "path": "s0",
                        "coordinateTransformations": [{"type": "scale", "scale": [1, 2.0, 300, 250]}],
                    }
                ],
            }
        ],
    }


def test_metadata_that_breaks_ngff_is_refused_with_file_and_key(volume) -> None:
    path, _, _ = volume
    zattrs = path / ".zattrs"
    attrs = json.loads(zattrs.read_text())
    attrs["multiscales"][0]["datasets"][1]["coordinateTransformations"].reverse()
    zattrs.write_text(json.dumps(attrs))
    with pytest.raises(VolumeReadError) as info:
        open_image(path)
    assert str(zattrs) in str(info.value)
    assert "multiscales[0].datasets[1].coordinateTransformations" in str(info.value)
    assert "must be listed after the scale" in str(info.value)


def test_ngff_translation_of_each_level(volume) -> None:
    path, _, _ = volume
    assert ngff_translation(path, 0) == (0.0, 0.0, 0.0)
    # a 2x2 mean: the coarse voxel centre lies half a fine voxel after the first fine centre
    assert ngff_translation(path, 1) == pytest.approx((0.0, 0.15, 0.125))
    assert ngff_translation(path / "labels" / "cells", 1) == (0.0, 0.0, 0.0)  # a stride
    with pytest.raises(DataError, match="level 2 does not exist"):
        ngff_translation(path, 2)


def test_ngff05_zarr_v3_is_read_with_zarr3_driver(tmp_path: Path) -> None:
    image, _ = _volume()
    path = tmp_path / "v3.ome.zarr"
    _write_ngff05(path, image)
    img = open_image(path)
    assert img.shape == image.shape and img.spacing == pytest.approx(SPACING)
    np.testing.assert_array_equal(
        img.read((slice(1, 3), slice(4, 20), slice(0, 9)), [2]), image[[2], 1:3, 4:20, :9]
    )
    (path / "s0" / "c" / "2" / "0" / "0" / "0").unlink()
    with pytest.raises(VolumeReadError, match=r"s0/c/2/0/0/0"):
        img.read(channels=[2])
