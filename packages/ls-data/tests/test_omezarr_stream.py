"""Streaming OME-Zarr writers: block writes, pyramids, NGFF metadata, other processes, bad input."""

from __future__ import annotations

import json
import multiprocessing as mp
import pickle
from pathlib import Path

import numpy as np
import pytest
import tensorstore as ts
import zarr

from ls_data.errors import DataError, VolumeReadError
from ls_data.io import (
    ImageWriter,
    LabelImageWriter,
    check_ngff_image,
    check_ngff_labels,
    open_image,
    open_labels,
    pyramid_factors,
    write_ome_zarr,
)
from ls_data.io.omezarr_write import downsample_mean_yx
from ls_data.io.pyramid import _downsample_mean

SPACING = (2.0, 0.5, 0.5)
SHAPE = (20, 70, 90)
CHUNKS = (8, 32, 32)


def _labels(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 1000, size=SHAPE).astype(np.uint32)


def _image(channels: int = 2, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 4000, size=(channels, *SHAPE), dtype=np.uint16)


@pytest.fixture
def image_group(tmp_path: Path) -> Path:
    """An NGFF 0.4 image with two levels ((1, 2, 2) apart) and no labels."""
    return write_ome_zarr(tmp_path / "img.ome.zarr", _image(1), SPACING, chunks=CHUNKS, levels=2)


def _write_blocks(writer: LabelImageWriter | ImageWriter, data: np.ndarray, block) -> None:
    for window in writer.chunk_windows(block=block):
        offset = [s.start for s in window]
        writer.write(offset, data[(Ellipsis, *window)])


def _labels_listed(image_group: Path) -> list[str]:
    return json.loads((image_group / "labels" / ".zattrs").read_text())["labels"]


# --------------------------------------------------------------------------------------------
# pyramid_factors


def test_pyramid_factors_isotropic_anisotropic_and_small() -> None:
    assert pyramid_factors((256, 256, 256), (1.0, 1.0, 1.0)) == [(2, 2, 2)] * 3  # 128, 64, 32
    assert pyramid_factors((100, 1000, 1000), SPACING) == [(1, 2, 2), (1, 2, 2)] + [(2, 2, 2)] * 3
    assert pyramid_factors((100, 1000, 1000), SPACING, max_levels=3) == [(1, 2, 2), (1, 2, 2)]
    assert pyramid_factors((100, 1000, 1000), (3.0, 1.0, 1.0), max_levels=4) == [
        (1, 2, 2),
        (1, 2, 2),
        (2, 2, 2),
    ]
    assert pyramid_factors((5, 62, 200), (1.0, 1.0, 1.0)) == []  # the next Y would be 31 < 32
    assert pyramid_factors((5, 64, 64), (1.0, 1.0, 1.0)) == [(2, 2, 2)]  # 32 x 32 is allowed, 16 not
    assert pyramid_factors((1, 256, 256), (1.0, 1.0, 1.0)) == [(1, 2, 2)] * 3  # a single slice stays one
    assert pyramid_factors((8, 40, 40), SPACING) == []
    assert pyramid_factors((8, 400, 400), SPACING, max_levels=1) == []
    assert pyramid_factors((8, 40, 40), SPACING, min_size=10) == [(1, 2, 2), (1, 2, 2)]
    with pytest.raises(DataError, match="max_levels"):
        pyramid_factors((8, 40, 40), SPACING, max_levels=0)
    with pytest.raises(DataError, match="spacing"):
        pyramid_factors((8, 40, 40), (1.0, 0.0, 1.0))
    with pytest.raises(DataError, match="shape_zyx"):
        pyramid_factors((8, 40), SPACING)


# --------------------------------------------------------------------------------------------
# LabelImageWriter: blocks, processes, pyramid


def test_blocks_equal_one_write_and_pyramid_is_the_stride(image_group: Path) -> None:
    labels = _labels()
    factors = [(1, 2, 2), (2, 2, 2)]
    one = LabelImageWriter.create(image_group, "one", SHAPE, SPACING, chunks=CHUNKS, factors=factors)
    blocks = LabelImageWriter.create(image_group, "blocks", SHAPE, SPACING, chunks=CHUNKS, factors=factors)
    assert blocks.levels == 3 and blocks.level_shapes == [SHAPE, (20, 35, 45), (10, 18, 23)]
    assert blocks.chunks == CHUNKS and blocks.dtype == np.uint32 and blocks.shape == SHAPE
    one.write((0, 0, 0), labels)
    _write_blocks(blocks, labels, block=(8, 32, 64))
    assert blocks.missing_chunks(0) == [] and len(blocks.missing_chunks(1)) > 0
    np.testing.assert_array_equal(blocks.read(), labels)
    np.testing.assert_array_equal(one.read(), labels)
    window = (slice(3, 17), slice(31, 33), slice(0, 90))
    np.testing.assert_array_equal(blocks.read(window), labels[window])
    for writer in (one, blocks):
        writer.build_pyramid()
        np.testing.assert_array_equal(writer.read(level=1), labels[:, ::2, ::2])
        np.testing.assert_array_equal(writer.read(level=2), labels[::2, ::4, ::4])
        assert all(writer.missing_chunks(level) == [] for level in range(3))


def test_build_pyramid_reads_only_blocks(image_group: Path, monkeypatch) -> None:
    labels = _labels(3)
    writer = LabelImageWriter.create(
        image_group, "cells", SHAPE, SPACING, chunks=(4, 8, 8), factors=[(1, 2, 2), (2, 2, 2)]
    )
    writer.write((0, 0, 0), labels)
    sources: list[tuple[int, ...]] = []
    original = LabelImageWriter._downsample

    def recording(self, level, source, factors):
        sources.append(tuple(s.stop - s.start for s in source))
        return original(self, level, source, factors)

    monkeypatch.setattr(LabelImageWriter, "_downsample", recording)
    writer.build_pyramid(block=(3, 5, 9))  # rounded up to whole chunks: (4, 8, 16)
    # Each read covers at most one block times the factor, far less than the volume.
    assert len(sources) > 10
    assert max(np.prod(s) for s in sources) <= 4 * 8 * 16 * 8 < np.prod(SHAPE) / 10
    np.testing.assert_array_equal(writer.read(level=1), labels[:, ::2, ::2])
    np.testing.assert_array_equal(writer.read(level=2), labels[::2, ::4, ::4])
    # A single block over everything gives the same result.
    sources.clear()
    whole = LabelImageWriter.create(
        image_group, "whole", SHAPE, SPACING, chunks=(4, 8, 8), factors=[(1, 2, 2), (2, 2, 2)]
    )
    whole.write((0, 0, 0), labels)
    whole.build_pyramid(block=SHAPE)
    assert len(sources) == 2
    for level in (1, 2):
        np.testing.assert_array_equal(whole.read(level=level), writer.read(level=level))


@pytest.mark.slow(seconds=6)
def test_spawned_processes_write_disjoint_slabs(image_group: Path) -> None:
    labels = _labels(5)
    writer = LabelImageWriter.create(image_group, "cells", SHAPE, SPACING, chunks=CHUNKS)
    # Chunk-aligned slabs: z 0:8 and z 8:20 (the end), y split at 64 (chunk-aligned) for the second.
    jobs = [
        ((0, 0, 0), labels[0:8]),
        ((8, 0, 0), labels[8:20, 0:64]),
        ((8, 64, 0), labels[8:20, 64:70]),
    ]
    ctx = mp.get_context("spawn")
    with ctx.Pool(2) as pool:  # the writer travels pickled, as to Ray workers
        pool.starmap(writer.write, jobs)
        remote = pool.apply(writer.read, ((slice(5, 12), slice(60, 70), slice(0, 90)),))
    np.testing.assert_array_equal(writer.read(), labels)
    np.testing.assert_array_equal(remote, labels[5:12, 60:70])
    reopened = LabelImageWriter.open(image_group, "cells")
    assert (reopened.shape, reopened.chunks, reopened.factors) == (SHAPE, CHUNKS, writer.factors)
    reopened.build_pyramid()
    reopened.finalize()
    np.testing.assert_array_equal(open_labels(image_group, level=1).read(), labels[:, ::2, ::2])


def test_pickled_writer_reopens_handles(image_group: Path) -> None:
    labels = _labels(6)
    writer = LabelImageWriter.create(image_group, "cells", SHAPE, SPACING, chunks=CHUNKS)
    writer.write((0, 0, 0), labels[:, :, :45])  # opens a TensorStore handle in this process
    copy = pickle.loads(pickle.dumps(writer))
    assert copy._stores == {}
    copy.write((0, 0, 45), labels[:, :, 45:])  # x 45 is not chunk-aligned: fine within one process
    np.testing.assert_array_equal(writer.read(), labels)
    assert copy.path == writer.path == image_group / "labels" / "cells"


# --------------------------------------------------------------------------------------------
# Finalize and NGFF metadata


def test_unfinished_labels_are_refused_then_finalize_publishes_them(image_group: Path) -> None:
    labels = _labels(7)
    writer = LabelImageWriter.create(image_group, "cells", SHAPE, SPACING, chunks=CHUNKS)
    assert writer.factors == [(1, 2, 2)]  # the image's own pyramid
    _write_blocks(writer, labels, block=(8, 64, 64))
    writer.build_pyramid()
    label_path = image_group / "labels" / "cells"
    assert _labels_listed(image_group) == []
    with pytest.raises((DataError, VolumeReadError)):
        open_labels(image_group)
    with pytest.raises((DataError, VolumeReadError)):
        open_labels(label_path)
    assert any("does not include 'cells'" in p for p in check_ngff_labels(image_group, "cells"))

    writer.finalize(properties=[{"label-value": 3, "class": 2, "score": 0.5}, {"label-value": 4, "class": 1}])
    assert _labels_listed(image_group) == ["cells"]
    assert check_ngff_labels(image_group, "cells") == []
    assert check_ngff_image(image_group) == []
    assert check_ngff_image(label_path) == []
    lab0, lab1 = open_labels(image_group), open_labels(image_group, level=1)
    assert lab0.path == label_path and lab0.spacing == pytest.approx(SPACING)
    assert lab1.spacing == pytest.approx((2.0, 1.0, 1.0)) and lab1.shape == (20, 35, 45)
    np.testing.assert_array_equal(lab0.read(), labels)
    np.testing.assert_array_equal(lab1.read(), labels[:, ::2, ::2])
    assert lab0.classes() == {3: 2, 4: 1}
    attrs = json.loads((label_path / ".zattrs").read_text())
    (ms,) = attrs["multiscales"]
    assert ms["version"] == "0.4" and ms["type"] == "nearest" and ms["name"] == "cells"
    assert [a["name"] for a in ms["axes"]] == ["z", "y", "x"]
    assert all(a["unit"] == "micrometer" for a in ms["axes"])
    assert ms["datasets"][1]["coordinateTransformations"] == [{"type": "scale", "scale": [2.0, 1.0, 1.0]}]
    assert attrs["image-label"]["version"] == "0.4"
    assert attrs["image-label"]["source"] == {"image": "../../"}
    zarray = json.loads((label_path / "0" / ".zarray").read_text())
    assert zarray["dimension_separator"] == "/" and zarray["fill_value"] == 0
    assert zarray["compressor"]["cname"] == "zstd" and zarray["dtype"] == "<u4"
    store = ts.open({"driver": "zarr", "kvstore": {"driver": "file", "path": str(label_path / "1")}}).result()
    np.testing.assert_array_equal(store[2:5].read().result(), labels[2:5, ::2, ::2])
    root = zarr.open_group(image_group, mode="r")
    np.testing.assert_array_equal(root["labels/cells/0"][:], labels)
    assert root["labels/cells"].attrs["image-label"]["properties"][0]["score"] == 0.5
    # Finalizing again keeps one entry.
    LabelImageWriter.open(image_group, "cells").finalize()
    assert _labels_listed(image_group) == ["cells"]


def test_second_label_image_keeps_the_first_listed(tmp_path: Path) -> None:
    image = _image(1)
    first = np.ones(SHAPE, np.uint16)
    path = write_ome_zarr(tmp_path / "x.ome.zarr", image, SPACING, labels=first, chunks=CHUNKS, levels=2)
    labels = _labels(8)
    writer = LabelImageWriter.create(
        path, "pred", SHAPE, SPACING, chunks=CHUNKS, dtype="uint64", translation=(1.0, 0.0, -0.5)
    )
    writer.write((0, 0, 0), labels)
    writer.build_pyramid()
    writer.finalize()
    assert _labels_listed(path) == ["cells", "pred"]
    assert check_ngff_labels(path, "pred") == [] and check_ngff_labels(path, "cells") == []
    np.testing.assert_array_equal(open_labels(path).read(), first)  # "cells" stays the default
    # A label image written by write_ome_zarr reopens from its multiscales metadata.
    cells = LabelImageWriter.open(path, "cells")
    assert (cells.factors, cells.spacing, cells.dtype) == ([(1, 2, 2)], SPACING, np.uint16)
    np.testing.assert_array_equal(cells.read(level=1), first[:, ::2, ::2])
    pred = open_labels(path / "labels" / "pred", level=1)
    assert pred.dtype == np.uint64
    np.testing.assert_array_equal(pred.read(), labels[:, ::2, ::2])
    ms = json.loads((path / "labels" / "pred" / ".zattrs").read_text())["multiscales"][0]
    for ds in ms["datasets"]:  # a stride keeps the first voxel: every level has the level-0 translation
        assert ds["coordinateTransformations"][1] == {"type": "translation", "translation": [1.0, 0.0, -0.5]}


def test_finalize_refuses_unwritten_chunks(image_group: Path) -> None:
    writer = LabelImageWriter.create(image_group, "cells", SHAPE, SPACING, chunks=CHUNKS)
    writer.write((0, 0, 0), np.zeros((8, 32, 32), np.uint32))  # all-zero chunks are stored too
    assert (image_group / "labels" / "cells" / "0" / "0" / "0" / "0").is_file()
    missing = writer.missing_chunks()
    assert len(missing) == 3 * 3 * 3 - 1 and (0, 0, 0) not in missing and (2, 2, 2) in missing
    with pytest.raises(VolumeReadError, match=r"chunk \(0, 0, 1\) of level 0.*has not been written"):
        writer.read((slice(0, 1), slice(0, 1), slice(30, 40)))
    np.testing.assert_array_equal(writer.read(allow_missing_chunks=True), 0)
    with pytest.raises(VolumeReadError, match="before build_pyramid"):
        writer.build_pyramid()
    with pytest.raises(DataError, match=r"26 chunk\(s\) of level 0 have not been written"):
        writer.finalize()
    assert _labels_listed(image_group) == []
    writer.write((0, 0, 0), np.zeros(SHAPE, np.uint32))
    with pytest.raises(DataError, match=r"level 1.*build_pyramid"):
        writer.finalize()
    writer.build_pyramid()
    writer.finalize()
    assert _labels_listed(image_group) == ["cells"]


def test_open_label_image_with_dot_separated_chunk_keys(image_group: Path) -> None:
    """A label image written by zarr-python (Zarr v2, "." chunk keys: ``z.y.x``) reopens with every
    chunk present; one deleted chunk is found missing by its real key."""
    labels = _labels(3)
    group = zarr.open_group(image_group, mode="a").require_group("labels").require_group("cells")
    group.create_array("0", data=labels, chunks=CHUNKS)
    group.create_array("1", data=labels[:, ::2, ::2], chunks=CHUNKS)
    axes = [{"name": a, "type": "space", "unit": "micrometer"} for a in "zyx"]
    scales = [[{"type": "scale", "scale": [2.0, 0.5 * 2**i, 0.5 * 2**i]}] for i in range(2)]
    datasets = [{"path": str(i), "coordinateTransformations": scales[i]} for i in range(2)]
    group.attrs["multiscales"] = [{"version": "0.4", "axes": axes, "datasets": datasets}]
    group.attrs["image-label"] = {"version": "0.4"}
    array = image_group / "labels" / "cells" / "0"
    assert (array / "2.2.2").is_file()
    writer = LabelImageWriter.open(image_group, "cells")
    assert writer.missing_chunks(0) == [] and writer.missing_chunks(1) == []
    np.testing.assert_array_equal(writer.read(), labels)
    (array / "1.0.2").unlink()
    assert writer.missing_chunks(0) == [(1, 0, 2)]
    with pytest.raises(VolumeReadError, match=r"chunk \(1, 0, 2\) of level 0"):
        writer.read((slice(8, 9), slice(0, 1), slice(64, 65)))


def test_labels_in_a_zarr_v3_ngff05_image(tmp_path: Path) -> None:
    path = tmp_path / "v3.ome.zarr"
    root = zarr.open_group(path, mode="w-", zarr_format=3)
    image = _image(1)
    root.create_array("s0", shape=image.shape, dtype=image.dtype, chunks=(1, *CHUNKS))[...] = image
    root.attrs["ome"] = {
        "version": "0.5",
        "multiscales": [
            {
                "axes": [
                    {"name": "c", "type": "channel"},
                    *({"name": a, "type": "space", "unit": "micrometer"} for a in "zyx"),
                ],
                "datasets": [
                    {"path": "s0", "coordinateTransformations": [{"type": "scale", "scale": [1.0, *SPACING]}]}
                ],
            }
        ],
    }
    assert check_ngff_image(path) == []
    meta = json.loads((path / "zarr.json").read_text())
    meta["attributes"]["ome"].pop("version")
    (path / "zarr.json").write_text(json.dumps(meta))
    assert any(
        p.startswith(f"{str(path / 'zarr.json')!r}: ome.version is None, expected '0.5'")
        for p in check_ngff_image(path)
    )
    root.attrs["ome"] = {**root.attrs["ome"], "version": "0.5"}
    labels = _labels(9)
    writer = LabelImageWriter.create(path, "cells", SHAPE, SPACING, chunks=CHUNKS, factors=[])
    writer.write((0, 0, 0), labels)
    writer.build_pyramid()
    writer.finalize(properties=[{"label-value": 1, "class": 3}])
    meta = json.loads((path / "labels" / "cells" / "zarr.json").read_text())
    assert meta["attributes"]["ome"]["version"] == "0.5"
    assert "version" not in meta["attributes"]["ome"]["multiscales"][0]
    assert json.loads((path / "labels" / "zarr.json").read_text())["attributes"]["ome"]["labels"] == ["cells"]
    array_meta = json.loads((path / "labels" / "cells" / "0" / "zarr.json").read_text())
    assert array_meta["dimension_names"] == ["z", "y", "x"] and array_meta["zarr_format"] == 3
    assert check_ngff_labels(path, "cells") == []
    reader = open_labels(path)
    np.testing.assert_array_equal(reader.read(), labels)
    assert reader.classes() == {1: 3}
    assert LabelImageWriter.open(path, "cells").dtype == np.uint32


# --------------------------------------------------------------------------------------------
# ImageWriter


def test_image_writer_round_trip_matches_write_ome_zarr(tmp_path: Path) -> None:
    image = _image(2)
    writer = ImageWriter.create(
        tmp_path / "copy.ome.zarr",
        image.shape,
        image.dtype,
        SPACING,
        chunks=CHUNKS,
        factors=[(1, 2, 2), (1, 2, 2)],
        channel_names=["nuclei", "membrane"],
    )
    assert writer.shape == image.shape and writer.chunks == CHUNKS and writer.levels == 3
    _write_blocks(pickle.loads(pickle.dumps(writer)), image, block=(8, 64, 32))
    ImageWriter.open(writer.path).build_pyramid(block=(8, 32, 32))
    with pytest.raises(VolumeReadError):
        open_image(writer.path)  # no multiscales before finalize
    writer.finalize()
    assert check_ngff_image(writer.path) == []
    level1 = open_image(writer.path, level=1)
    assert level1.spacing == pytest.approx((2.0, 1.0, 1.0)) and level1.shape == (2, 20, 35, 45)
    np.testing.assert_array_equal(level1.read(), downsample_mean_yx(image))
    np.testing.assert_array_equal(
        open_image(writer.path, level=2).read(), downsample_mean_yx(downsample_mean_yx(image))
    )
    np.testing.assert_array_equal(open_image(writer.path).read(), image)
    reference = write_ome_zarr(tmp_path / "ref.ome.zarr", image, SPACING, chunks=CHUNKS, levels=3)
    ours = json.loads((writer.path / ".zattrs").read_text())
    theirs = json.loads((reference / ".zattrs").read_text())
    assert ours["multiscales"][0]["datasets"] == theirs["multiscales"][0]["datasets"]
    assert ours["multiscales"][0]["axes"] == theirs["multiscales"][0]["axes"]
    assert [c["label"] for c in ours["omero"]["channels"]] == ["nuclei", "membrane"]
    # NGFF's display window: the channel's range in the coarsest level, within the dtype's range
    coarsest = downsample_mean_yx(downsample_mean_yx(image))
    for c, channel in enumerate(ours["omero"]["channels"]):
        assert channel["window"] == {
            "start": float(coarsest[c].min()),
            "end": float(coarsest[c].max()),
            "min": 0.0,
            "max": 65535.0,
        }
    for level in range(3):
        a = json.loads((writer.path / str(level) / ".zarray").read_text())
        b = json.loads((reference / str(level) / ".zarray").read_text())
        assert a == b  # same shape, chunks (1, cz, cy, cx), compressor, fill value, separator


def test_image_pyramid_with_z_factor_and_translation(tmp_path: Path) -> None:
    image = np.random.default_rng(2).random((1, 9, 21, 17)).astype(np.float32)
    writer = ImageWriter.create(
        tmp_path / "f.ome.zarr",
        image.shape,
        "float32",
        (1.0, 1.0, 1.0),
        chunks=(4, 8, 8),
        factors=[(2, 2, 2)],
        translation=(10.0, 0.0, 0.0),
    )
    writer.write((0, 0, 0), image)
    writer.build_pyramid(block=(1, 1, 1))
    writer.finalize()
    expected = _downsample_mean(image, (2, 2, 2))
    assert expected.shape == (1, 5, 11, 9)
    padded = np.pad(image, [(0, 0), (0, 1), (0, 1), (0, 1)], mode="edge")
    np.testing.assert_allclose(expected[0, 1, 2, 3], padded[0, 2:4, 4:6, 6:8].mean(), rtol=1e-6)
    np.testing.assert_allclose(writer.read(level=1), expected, rtol=1e-6)
    ds = json.loads((writer.path / ".zattrs").read_text())["multiscales"][0]["datasets"]
    assert ds[0]["coordinateTransformations"][1]["translation"] == [0.0, 10.0, 0.0, 0.0]
    assert ds[1]["coordinateTransformations"] == [
        {"type": "scale", "scale": [1.0, 2.0, 2.0, 2.0]},
        {"type": "translation", "translation": [0.0, 10.5, 0.5, 0.5]},
    ]
    assert check_ngff_image(writer.path) == []
    # A label image on the unfinished-then-finished image follows the image's pyramid.
    labels = LabelImageWriter.create(writer.path, "cells", (9, 21, 17), (1.0, 1.0, 1.0), chunks=(4, 8, 8))
    assert labels.factors == [(2, 2, 2)]


def test_image_writer_bad_input(tmp_path: Path) -> None:
    path = tmp_path / "i.ome.zarr"
    writer = ImageWriter.create(path, (2, 4, 8, 8), "uint8", SPACING, chunks=(2, 4, 4), factors=[])
    with pytest.raises(DataError, match=r"already exists"):
        ImageWriter.create(path, (2, 4, 8, 8), "uint8", SPACING)
    with pytest.raises(DataError, match=r"1 channel\(s\), the image has 2"):
        writer.write((0, 0, 0), np.zeros((1, 2, 4, 4), np.uint8))
    with pytest.raises(DataError, match=r"values 0\.\.300 do not fit.*uint8"):
        writer.write((0, 0, 0), np.array([0, 300], np.uint16).reshape(2, 1, 1, 1))
    with pytest.raises(DataError, match="cannot store data of dtype float64"):
        writer.write((0, 0, 0), np.zeros((2, 1, 1, 1)))
    with pytest.raises(DataError, match=r"out of bounds.*\(2, 4, 8, 8\)"):
        writer.write((0, 0, 5), np.zeros((2, 1, 1, 4), np.uint8))
    with pytest.raises(DataError, match="channel_names"):
        ImageWriter.create(tmp_path / "n.ome.zarr", (2, 4, 8, 8), "uint8", SPACING, channel_names=["a"])
    with pytest.raises(DataError, match="integer or float"):
        ImageWriter.create(tmp_path / "b.ome.zarr", (1, 4, 8, 8), "bool", SPACING)
    (tmp_path / "keep").mkdir()
    (tmp_path / "keep" / "data.txt").write_text("precious")
    with pytest.raises(DataError, match="not a Zarr group; refusing"):
        ImageWriter.create(tmp_path / "keep", (1, 4, 8, 8), "uint8", SPACING, overwrite=True)
    assert (tmp_path / "keep" / "data.txt").exists()
    new = ImageWriter.create(path, (1, 4, 8, 8), "uint16", SPACING, overwrite=True)
    assert ImageWriter.open(path).shape == new.shape == (1, 4, 8, 8)
    with pytest.raises(DataError, match="not created by ImageWriter"):
        ImageWriter.open(write_ome_zarr(tmp_path / "w.ome.zarr", np.zeros((1, 2, 4, 4), np.uint8), SPACING))


# --------------------------------------------------------------------------------------------
# Bad label input


def test_label_writer_bad_input(image_group: Path, tmp_path: Path) -> None:
    writer = LabelImageWriter.create(image_group, "cells", SHAPE, SPACING, chunks=CHUNKS)
    with pytest.raises(DataError, match=r"labels/cells.*already exists; pass overwrite=True"):
        LabelImageWriter.create(image_group, "cells", SHAPE, SPACING)
    with pytest.raises(
        DataError, match=r"labels/cells.*offset \(z, y, x\)=\(10, 0, 0\) is out of bounds.*\(20, 70, 90\)"
    ):
        writer.write((10, 0, 0), np.zeros((11, 1, 1), np.uint32))
    with pytest.raises(DataError, match="offset"):
        writer.write((-1, 0, 0), np.zeros((1, 1, 1), np.uint32))
    with pytest.raises(DataError, match="integer dtype, got float32"):
        writer.write((0, 0, 0), np.zeros((1, 1, 1), np.float32))
    with pytest.raises(DataError, match=r"3 dimensions, got shape \(1, 1\)"):
        writer.write((0, 0, 0), np.zeros((1, 1), np.uint32))
    with pytest.raises(DataError, match=r"values -1\.\.5 do not fit the array dtype uint32"):
        writer.write((0, 0, 0), np.array([-1, 5]).reshape(1, 1, 2))
    writer.write((0, 0, 0), np.array([0, 5]).reshape(1, 1, 2))  # int64 values that fit are fine
    with pytest.raises(DataError, match="label dtype must be one of"):
        LabelImageWriter.create(image_group, "f", SHAPE, SPACING, dtype="float32")
    with pytest.raises(DataError, match="invalid label name"):
        LabelImageWriter.create(image_group, "a/b", SHAPE, SPACING)
    with pytest.raises(DataError, match=r"shape \(Z, Y, X\)=\(20, 70, 91\) differs.*\(20, 70, 90\)"):
        LabelImageWriter.create(image_group, "g", (20, 70, 91), SPACING)
    with pytest.raises(DataError, match="level 2 does not exist"):
        writer.read(level=2)
    with pytest.raises(VolumeReadError, match="does not exist"):
        LabelImageWriter.create(tmp_path / "nothing.ome.zarr", "cells", SHAPE, SPACING)
    # overwrite: the old one is replaced and unlisted; anything that is not a Zarr group is kept.
    writer.write((0, 0, 0), _labels())
    writer.build_pyramid()
    writer.finalize()
    assert _labels_listed(image_group) == ["cells"]
    again = LabelImageWriter.create(image_group, "cells", SHAPE, SPACING, chunks=CHUNKS, overwrite=True)
    assert _labels_listed(image_group) == []
    assert len(again.missing_chunks()) == 3 * 3 * 3
    (image_group / "labels" / "notes").mkdir()
    (image_group / "labels" / "notes" / "x.txt").write_text("keep")
    with pytest.raises(DataError, match="not a Zarr group; refusing to delete it"):
        LabelImageWriter.create(image_group, "notes", SHAPE, SPACING, overwrite=True)
    assert (image_group / "labels" / "notes" / "x.txt").exists()
    with pytest.raises(DataError, match="label-value"):
        again.finalize(properties=[{"class": 1}], check_complete=False)
    with pytest.raises(DataError, match=r"image-label\.properties: List items are not unique"):  # yaozarrs
        again.finalize(properties=[{"label-value": 2, "class": 1}, {"label-value": 2}], check_complete=False)
    assert _labels_listed(image_group) == []


# --------------------------------------------------------------------------------------------
# check_ngff_*


def _edit(path: Path, edit) -> None:
    attrs = json.loads(path.read_text())
    edit(attrs)
    path.write_text(json.dumps(attrs))


def test_check_ngff_reports_broken_metadata(tmp_path: Path) -> None:
    """Each break is reported with the file and key: yaozarrs' rules, then the ones it lacks."""
    path = write_ome_zarr(
        tmp_path / "v.ome.zarr", _image(1), SPACING, labels=_labels(), chunks=CHUNKS, levels=2
    )
    assert check_ngff_image(path) == [] and check_ngff_labels(path, "cells") == []
    zattrs = path / ".zattrs"
    original = zattrs.read_text()

    def broken(edit, expected: str) -> None:
        _edit(zattrs, edit)
        problems = check_ngff_image(path)
        assert any(p.startswith(f"{str(zattrs)!r}: ") and expected in p for p in problems), problems
        zattrs.write_text(original)

    # the NGFF rules, from yaozarrs
    ms = "multiscales[0]"
    broken(
        lambda a: a["multiscales"][0]["datasets"][1].update(coordinateTransformations=[]),
        f"{ms}.datasets[1].coordinateTransformations: List should have at least 1 item",
    )
    broken(
        lambda a: a["multiscales"][0]["datasets"][1]["coordinateTransformations"].reverse(),
        f"{ms}.datasets[1].coordinateTransformations: Value error, If a translation transformation "
        "is given, it must be listed after the scale",
    )
    broken(
        lambda a: a["multiscales"][0]["axes"].pop(0),
        "The length of the transformation (4) does not match the number of axes (3)",
    )
    broken(
        lambda a: a["multiscales"][0]["axes"].append({"name": "t", "type": "time"}),
        f"{ms}.axes: Value error, Axes are not in the required order by type",
    )
    broken(lambda a: a["multiscales"][0]["axes"][2].update(name="z"), f"{ms}.axes: List items are not unique")
    broken(lambda a: a["multiscales"][0]["axes"][1].update(unit="micron"), "axes: Space axis unit 'micron'")
    _edit(zattrs, lambda a: a["multiscales"][0]["datasets"][1].update(path="9"))
    assert any(
        f"{str(zattrs)!r}: {ms}.datasets[1].path: Dataset path '9' not found" in p
        for p in check_ngff_image(path)
    )
    zattrs.write_text(original)
    # the rules yaozarrs does not check
    _edit(zattrs, lambda a: a["multiscales"][0]["datasets"].reverse())
    assert any(
        p.startswith(f"{str(path / '0')!r}: level 1 has shape") and "finest to coarsest" in p
        for p in check_ngff_image(path)
    )
    zattrs.write_text(original)
    broken(lambda a: a["multiscales"][0].pop("version"), f"{ms} has no 'version'")
    broken(
        lambda a: a["multiscales"][0]["datasets"][0]["coordinateTransformations"][0].update(
            scale=[1, 0, 1, 1]
        ),
        f"{ms}.datasets[0].coordinateTransformations: scale values must be > 0",
    )
    assert check_ngff_image(path) == []
    assert any("is not a Zarr group" in p for p in check_ngff_image(tmp_path))

    labels_attrs = path / "labels" / ".zattrs"
    labels_attrs.write_text(json.dumps({"labels": []}))
    assert any("does not include 'cells'" in p for p in check_ngff_labels(path, "cells"))
    labels_attrs.write_text(json.dumps({"labels": ["cells"]}))
    label_zattrs = path / "labels" / "cells" / ".zattrs"
    label_original = label_zattrs.read_text()

    def broken_label(edit, expected: str) -> None:
        _edit(label_zattrs, edit)
        problems = check_ngff_labels(path, "cells")
        assert any(p.startswith(f"{str(label_zattrs)!r}: ") and expected in p for p in problems), problems
        label_zattrs.write_text(label_original)

    broken_label(
        lambda a: a["image-label"].setdefault("properties", []).append({"label-value": "7"}),
        "image-label.properties[0].label-value: Input should be a valid integer",
    )
    broken_label(
        lambda a: a["image-label"].update(colors=[{"label-value": 1, "rgba": [300, 0, 0, 255]}]),
        "image-label.colors[0].rgba[0]: Input should be less than or equal to 255",
    )
    broken_label(lambda a: a.pop("image-label"), "image-label: Field required")
    broken_label(lambda a: a["image-label"].pop("version"), "image-label has no 'version'")
    _edit(label_zattrs, lambda a: a["multiscales"][0]["axes"][0].update(name="q"))
    assert any("space axes ['q', 'y', 'x'] differ" in p for p in check_ngff_labels(path, "cells"))
    label_zattrs.write_text(label_original)
    _edit(label_zattrs, lambda a: a["multiscales"][0]["datasets"][1].update(path="9"))
    assert any(
        p.startswith(f"{str(path / 'labels' / 'cells' / '9')!r}: dataset array is missing")
        for p in check_ngff_labels(path, "cells")
    )
    label_zattrs.write_text(label_original)
    cells = zarr.open_group(path / "labels" / "cells", mode="r+")
    cells.create_array("1", shape=(20, 35, 45), dtype="float32", chunks=CHUNKS, overwrite=True)
    assert any(
        "multiscales[0].datasets[1].path: Label array '1' has non-integer dtype" in p
        for p in check_ngff_labels(path, "cells")
    )
    cells.create_array("0", shape=(20, 71, 90), dtype="uint32", chunks=CHUNKS, overwrite=True)
    assert any("level-0 space shape [20, 71, 90] differs" in p for p in check_ngff_labels(path, "cells"))
    assert any("does not exist" in p for p in check_ngff_labels(path, "other"))
