"""TIFF reading and writing: round trips, window reads, spacing, classes and every bad-input case."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import tifffile

from ls_data.errors import DataError, PathOutsideRootsError, VolumeReadError
from ls_data.io import (
    TiffLabelReader,
    TiffVolumeReader,
    check_same_grid,
    format_of,
    open_image,
    open_labels,
    resolve_uri,
    write_tiff_pair,
)

SPACING = (2.0, 0.3, 0.25)


def _volume(label_dtype: str = "uint32") -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 4000, size=(3, 5, 20, 18), dtype=np.uint16)
    labels = rng.integers(0, 6, size=(5, 20, 18)).astype(label_dtype)
    return image, labels


@pytest.fixture(params=[None, "zlib"], ids=["memmap", "zarr-store"])
def pair(request, tmp_path: Path) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    image, labels = _volume()
    ip, lp = write_tiff_pair(tmp_path, "vol", image, labels, SPACING, {1: 2, 4: 3}, compression=request.param)
    return ip, lp, image, labels


def test_round_trip(pair) -> None:
    ip, lp, image, labels = pair
    assert ip.name == "vol_image.tif" and lp.name == "vol_labels.tif"
    assert format_of(ip) == "tiff"
    img = open_image(ip)
    lab = open_labels(lp)
    assert isinstance(img, TiffVolumeReader) and isinstance(lab, TiffLabelReader)
    assert img.shape == image.shape and img.dtype == np.uint16
    assert lab.shape == labels.shape and lab.dtype == np.uint32
    assert img.spacing == pytest.approx(SPACING) and lab.spacing == pytest.approx(SPACING)
    np.testing.assert_array_equal(img.read(), image)
    np.testing.assert_array_equal(lab.read(), labels)
    assert lab.classes() == {1: 2, 4: 3}
    check_same_grid(img, lab)


def test_memmap_for_uncompressed_and_store_for_compressed(tmp_path: Path) -> None:
    image, labels = _volume()
    plain, _ = write_tiff_pair(tmp_path / "a", "v", image, labels, SPACING)
    packed, _ = write_tiff_pair(tmp_path / "b", "v", image, labels, SPACING, compression="zlib")
    assert open_image(plain).chunks is None  # contiguous: memory-mapped
    assert open_image(packed).chunks == (1, 20, 18)  # decoded page by page


@pytest.mark.parametrize(
    "window", [(slice(1, 4), slice(2, 9), slice(3, 17)), (slice(0, 5), slice(19, 20), slice(0, 1)), None]
)
@pytest.mark.parametrize("channels", [None, [2, 0], [1], [0, 1, 2]])
def test_window_reads_equal_full_read_sliced(pair, window, channels) -> None:
    ip, lp, _, labels = pair
    img, lab = open_image(ip), open_labels(lp)
    full = img.read()
    expected = full if channels is None else full[channels]
    if window is not None:
        expected = expected[(slice(None), *window)]
    got = img.read(window, channels)
    assert got.dtype == np.uint16
    np.testing.assert_array_equal(got, expected)
    lab_expected = labels if window is None else labels[window]
    np.testing.assert_array_equal(lab.read(window), lab_expected)


def test_readers_pickle_and_reopen(pair) -> None:
    ip, lp, image, labels = pair
    img, lab = open_image(ip), open_labels(lp)
    img.read((slice(0, 1), slice(0, 2), slice(0, 2)))  # opens the file
    img2, lab2 = pickle.loads(pickle.dumps(img)), pickle.loads(pickle.dumps(lab))
    np.testing.assert_array_equal(img2.read(channels=[1]), image[[1]])
    np.testing.assert_array_equal(lab2.read(), labels)


def test_close_and_reopen(pair) -> None:
    ip, lp, image, labels = pair
    with open_image(ip) as img:
        np.testing.assert_array_equal(img.read(channels=[0]), image[[0]])
    np.testing.assert_array_equal(img.read(channels=[0]), image[[0]])  # reopens after close
    lab = open_labels(lp)
    lab.close()
    np.testing.assert_array_equal(lab.read(), labels)


def test_uint16_labels_are_imagej_and_no_sidecar_means_no_classes(tmp_path: Path) -> None:
    image, labels = _volume("uint16")
    _, lp = write_tiff_pair(tmp_path, "v", image, labels, SPACING)
    with tifffile.TiffFile(lp) as tif:
        assert tif.is_imagej and tif.imagej_metadata["spacing"] == pytest.approx(2.0)
    lab = open_labels(lp)
    assert lab.dtype == np.uint16 and lab.classes() == {}
    assert not (tmp_path / "v_classes.json").exists()


def test_image_is_an_imagej_hyperstack_with_spacing(pair) -> None:
    ip = pair[0]
    with tifffile.TiffFile(ip) as tif:
        assert tif.is_imagej
        assert tif.series[0].axes == "ZCYX"
        assert tif.imagej_metadata["channels"] == 3 and tif.imagej_metadata["slices"] == 5
        num, den = tif.pages[0].tags["XResolution"].value
        assert den / num == pytest.approx(0.25)


def test_plain_single_channel_tiff_and_other_layouts(tmp_path: Path) -> None:
    zyx = np.arange(4 * 6 * 7, dtype=np.uint16).reshape(4, 6, 7)
    tifffile.imwrite(tmp_path / "plain.tif", zyx, photometric="minisblack")
    img = open_image(tmp_path / "plain.tif")
    assert img.shape == (1, 4, 6, 7) and img.spacing == (1.0, 1.0, 1.0)
    np.testing.assert_array_equal(img.read()[0], zyx)
    # CZYX written by tifffile with shaped metadata, spacing in nm.
    czyx = np.arange(2 * 3 * 4 * 5, dtype=np.int32).reshape(2, 3, 4, 5)
    tifffile.imwrite(
        tmp_path / "czyx.tif",
        czyx,
        photometric="minisblack",
        metadata={"axes": "CZYX", "spacing": 500.0, "unit": "nm"},
        resolution=(1 / 100, 1 / 200),  # pixels per nm in x, y
    )
    img = open_image(tmp_path / "czyx.tif")
    assert img.shape == (2, 3, 4, 5)
    assert img.spacing == pytest.approx((0.5, 0.2, 0.1))
    np.testing.assert_array_equal(
        img.read((slice(1, 3), slice(0, 4), slice(2, 5)), [1]), czyx[1:2, 1:3, :, 2:5]
    )


def test_ome_tiff_spacing_comes_from_ome_xml(tmp_path: Path) -> None:
    """Bio-Formats / Micro-Manager style OME-TIFF: PhysicalSizeZ/Y/X with units (default µm)."""
    czyx = np.arange(2 * 3 * 4 * 5, dtype=np.uint16).reshape(2, 3, 4, 5)
    sizes = {"PhysicalSizeX": 0.4, "PhysicalSizeY": 0.35, "PhysicalSizeZ": 2500.0, "PhysicalSizeZUnit": "nm"}
    tifffile.imwrite(tmp_path / "emb.ome.tif", czyx, ome=True, metadata={"axes": "CZYX", **sizes})
    img = open_image(tmp_path / "emb.ome.tif")
    assert img.shape == (2, 3, 4, 5) and img.spacing == pytest.approx((2.5, 0.35, 0.4))
    np.testing.assert_array_equal(img.read()[:, 1], czyx[:, 1])
    # no physical sizes: 1.0 on every axis; an unknown unit names the file and the key
    tifffile.imwrite(tmp_path / "bare.ome.tif", czyx, ome=True, metadata={"axes": "CZYX"})
    assert open_image(tmp_path / "bare.ome.tif").spacing == (1.0, 1.0, 1.0)
    bad = {"PhysicalSizeX": 0.4, "PhysicalSizeXUnit": "furlong"}
    tifffile.imwrite(tmp_path / "bad.ome.tif", czyx, ome=True, metadata={"axes": "CZYX", **bad})
    with pytest.raises(DataError, match=r"bad\.ome\.tif.*PhysicalSizeX.*furlong"):
        open_image(tmp_path / "bad.ome.tif")


def test_truncated_tiff_is_a_read_error_naming_the_file(tmp_path: Path) -> None:
    image, labels = _volume()
    for compression in (None, "zlib"):
        ip, _ = write_tiff_pair(
            tmp_path / str(compression), "v", image, labels, SPACING, compression=compression
        )
        data = ip.read_bytes()
        ip.write_bytes(data[: len(data) * 2 // 3])
        with pytest.raises(VolumeReadError, match=r"v_image\.tif") as info:
            open_image(ip)
        assert info.value.path == ip
        assert isinstance(info.value, DataError)


def test_garbage_file_is_a_read_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad_image.tif"
    bad.write_bytes(b"this is not a tiff file at all")
    with pytest.raises(VolumeReadError, match=r"bad_image\.tif"):
        open_image(bad)
    with pytest.raises(VolumeReadError, match=r"missing\.tif"):
        open_image(tmp_path / "missing.tif")


def test_non_integer_labels(tmp_path: Path) -> None:
    tifffile.imwrite(
        tmp_path / "f_labels.tif", np.zeros((2, 3, 4), np.float32), imagej=True, metadata={"axes": "ZYX"}
    )
    with pytest.raises(DataError, match=r"f_labels.tif.*integer dtype, got float32"):
        open_labels(tmp_path / "f_labels.tif")
    image, labels = _volume()
    with pytest.raises(DataError, match="integer dtype"):
        write_tiff_pair(tmp_path, "x", image, labels.astype(np.float32), SPACING)


def test_shape_mismatch(tmp_path: Path) -> None:
    image, labels = _volume()
    with pytest.raises(DataError, match=r"\(5, 20, 18\) differs from labels shape \(5, 20, 17\)"):
        write_tiff_pair(tmp_path, "x", image, labels[:, :, :17], SPACING)
    ip, _ = write_tiff_pair(tmp_path / "a", "v", image, labels, SPACING)
    _, lp = write_tiff_pair(tmp_path / "b", "v", image[:, :4], labels[:4], SPACING)
    with pytest.raises(DataError, match=r"v_image.tif.*v_labels.tif"):
        check_same_grid(open_image(ip), open_labels(lp))


def test_window_and_channel_errors(pair) -> None:
    ip, lp, _, _ = pair
    img, lab = open_image(ip), open_labels(lp)
    with pytest.raises(DataError, match=r"vol_image.tif.*window z=3:6 is out of bounds"):
        img.read((slice(3, 6), slice(0, 2), slice(0, 2)))
    with pytest.raises(DataError, match="out of bounds"):
        lab.read((slice(0, 1), slice(-1, 2), slice(0, 2)))
    with pytest.raises(DataError, match="step"):
        lab.read((slice(0, 4, 2), slice(0, 2), slice(0, 2)))
    with pytest.raises(DataError, match="three slices"):
        img.read((slice(0, 1), slice(0, 2)))
    with pytest.raises(DataError, match=r"vol_image.tif.*channel index 3 is out of range.*3 channel"):
        img.read(channels=[0, 3])
    with pytest.raises(DataError, match="level"):
        open_image(ip, level=1)


def test_paths_outside_roots(tmp_path: Path) -> None:
    image, labels = _volume()
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    ip, _ = write_tiff_pair(outside, "v", image, labels, SPACING)
    root.mkdir()
    with pytest.raises(PathOutsideRootsError, match=r"outside the allowed roots") as info:
        open_image(ip, roots=[root])
    assert str(root) in str(info.value)
    with pytest.raises(PathOutsideRootsError):
        open_labels("../outside/v_labels.tif", base=root, roots=[root])
    # A symlink inside the root that points outside is rejected as well.
    os.symlink(ip, root / "link_image.tif")
    with pytest.raises(PathOutsideRootsError, match=r"link_image\.tif"):
        open_image("link_image.tif", base=root, roots=[root])
    # Inside the roots, relative URIs resolve against base.
    inside = open_image("v_image.tif", base=outside, roots=[outside])
    assert inside.path == ip.resolve()
    assert resolve_uri("file://" + str(ip)) == ip.resolve()
    with pytest.raises(DataError, match="not a filesystem path"):
        resolve_uri("s3://bucket/v_image.tif")


def test_unknown_format(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match=r"notes\.txt"):
        open_image(tmp_path / "notes.txt")
    (tmp_path / "folder").mkdir()
    with pytest.raises(DataError, match="not a Zarr group"):
        format_of(tmp_path / "folder")


def test_bad_classes_sidecar(tmp_path: Path) -> None:
    image, labels = _volume()
    _, lp = write_tiff_pair(tmp_path, "v", image, labels, SPACING)
    (tmp_path / "v_classes.json").write_text('{"1": 0}')
    with pytest.raises(DataError, match=r"v_classes.json.*class >= 1"):
        open_labels(lp).classes()
