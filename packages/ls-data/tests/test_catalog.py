"""The volume catalog: rows, selections, paths and roots, register_folder, bad input.

Tests taking ``catalog_url`` run on SQLite and on a real PostgreSQL server (conftest.py).
"""

from __future__ import annotations

import math
import sqlite3
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tifffile

from ls_data.catalog import (
    Catalog,
    CatalogError,
    CatalogNotFoundError,
    DuplicateVolumeError,
    MissingVolumeFileError,
    RegisterError,
    Selection,
    VolumeNotFoundError,
    VolumeRecord,
    mask_url,
)
from ls_data.errors import DataError, PathOutsideRootsError
from ls_data.io import open_labels, write_ome_zarr, write_tiff_pair


def _volume(**overrides):
    fields = {
        "image_uri": "vol_image.tif",
        "label_uri": "vol_labels.tif",
        "format": "tiff",
        "shape": (2, 4, 8, 8),
        "channels": ["dapi", "gfp"],
        "spacing": (2.0, 0.5, 0.5),
    }
    fields.update(overrides)
    return fields


def _image(shape=(2, 4, 8, 8), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 1000, size=shape, dtype=np.uint16)


def _labels(shape=(4, 8, 8)) -> np.ndarray:
    labels = np.zeros(shape, dtype=np.uint16)
    labels[1:3, 2:5, 2:5] = 1
    return labels


# ---------------------------------------------------------------- rows (both backends)


def test_add_get_round_trip(catalog_url):
    with Catalog(catalog_url, create=True) as catalog:
        volume_id = catalog.add_volume(
            name="embryo-1", **_volume(), grade="gold", split="train", attributes={"stage": 12, "tags": ["a"]}
        )
        record = catalog.get(volume_id)
        assert record == catalog.get("embryo-1")
        assert record.id == volume_id and record.name == "embryo-1"
        assert record.shape == (2, 4, 8, 8) and record.num_channels == 2
        assert record.channels == ("dapi", "gfp")
        assert record.spacing == (2.0, 0.5, 0.5)
        assert (record.grade, record.split, record.format) == ("gold", "train", "tiff")
        assert record.attributes == {"stage": 12, "tags": ["a"]}
        assert record.created is not None and record.created.tzinfo is not None
        assert len(catalog) == 1
    with Catalog(catalog_url) as reopened:  # persisted, schema not re-created
        assert reopened.get("embryo-1") == record


def test_channel_count_names_channels(catalog_url):
    with Catalog(catalog_url, create=True) as catalog:
        catalog.add_volume(name="v", **_volume(channels=2))
        assert catalog.get("v").channels == ("ch0", "ch1")


def test_duplicate_name(catalog_url):
    with Catalog(catalog_url, create=True) as catalog:
        first = catalog.add_volume(name="v", **_volume())
        with pytest.raises(DuplicateVolumeError, match=rf"'v' \(id {first}"):
            catalog.add_volume(name="v", **_volume(image_uri="other.tif"))
        assert len(catalog) == 1


def test_unknown_volume(catalog_url):
    with Catalog(catalog_url, create=True) as catalog:
        catalog.add_volume(name="embryo-1", **_volume())
        with pytest.raises(VolumeNotFoundError, match=r"no volume named 'embryo-2'.*did you mean 'embryo-1'"):
            catalog.get("embryo-2")
        with pytest.raises(VolumeNotFoundError, match="no volume with id 999"):
            catalog.get(999)
        with pytest.raises(VolumeNotFoundError):
            catalog.remove("nope")


def test_remove_returns_row_and_ids_are_not_reused(catalog_url):
    with Catalog(catalog_url, create=True) as catalog:
        a = catalog.add_volume(name="a", **_volume())
        b = catalog.add_volume(name="b", **_volume())
        removed = catalog.remove("b")
        assert removed.id == b and removed.name == "b"
        assert [v.name for v in catalog.volumes()] == ["a"]
        c = catalog.add_volume(name="c", **_volume())
        assert c not in (a, b)


def test_selection(catalog_url):
    with Catalog(catalog_url, create=True) as catalog:
        catalog.add_volume(name="a", **_volume(), grade="gold", split="train", attributes={"stage": 12})
        catalog.add_volume(name="b", **_volume(), grade="silver", split="train", attributes={"stage": 14})
        catalog.add_volume(
            name="c",
            **_volume(format="ome-zarr", shape=(3, 4, 8, 8), channels=["dapi", "gfp", "rfp"]),
            grade="gold",
            split="val",
        )
        catalog.add_volume(name="d", **_volume(shape=(1, 4, 8, 8), channels=["rfp"]))

        def names(**kwargs):
            return [v.name for v in catalog.volumes(Selection(**kwargs))]

        assert names() == ["a", "b", "c", "d"]
        assert names(grades=["gold"]) == ["a", "c"]
        assert names(grades="gold") == ["a", "c"]  # a single string is a one-element list
        assert names(grades=["gold"], splits=["train"]) == ["a"]
        assert names(formats=["ome-zarr"]) == ["c"]
        assert names(min_channels=2) == ["a", "b", "c"]
        assert names(channels=["rfp"]) == ["c", "d"]
        assert names(channels=["dapi", "rfp"]) == ["c"]
        assert names(attributes={"stage": 14}) == ["b"]
        assert names(names=["d", "a"]) == ["a", "d"]
        assert names(ids=[catalog.get("b").id]) == ["b"]
        assert names(grades=[]) == []  # an empty list matches nothing


def test_values_are_parameters_not_sql(catalog_url):
    hostile = "x'); DROP TABLE volumes; --"
    with Catalog(catalog_url, create=True) as catalog:
        catalog.add_volume(name=hostile, **_volume(), grade="' OR '1'='1")
        catalog.add_volume(name="plain", **_volume(), grade="gold")
        assert catalog.get(hostile).name == hostile
        assert [v.name for v in catalog.volumes(Selection(grades=["' OR '1'='1"]))] == [hostile]
        assert len(catalog) == 2


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"shape": (4, 8, 8)}, r"shape must be 4 positive integers"),
        ({"shape": (2, 0, 8, 8)}, r"shape must be 4 positive integers"),
        ({"spacing": (1.0, -0.5, 0.5)}, r"spacing must be 3 positive numbers"),
        ({"format": "n5"}, r"format must be one of"),
        ({"channels": ["a"]}, r"1 channel name\(s\)"),
        ({"channels": 3}, r"channels=3 but shape"),
        ({"channels": ["a", "a"]}, r"channels must be distinct"),
        ({"attributes": {"x": object()}}, r"attributes are not JSON-serialisable"),
        ({"image_uri": ""}, r"image_uri must be a non-empty"),
    ],
)
def test_bad_volume_fields(tmp_path, overrides, message):
    with Catalog(f"sqlite:///{tmp_path / 'c.sqlite'}", create=True) as catalog:
        overrides = dict(overrides)
        attributes = overrides.pop("attributes", None)
        with pytest.raises(CatalogError, match=rf"volume 'bad': {message}"):
            catalog.add_volume(name="bad", **_volume(**overrides), attributes=attributes)


def test_bad_selection():
    with pytest.raises(CatalogError, match="unknown format"):
        Selection(formats=["n5"])
    with pytest.raises(CatalogError, match="min_channels"):
        Selection(min_channels=0)
    with pytest.raises(CatalogError, match=r"Selection\.ids"):
        Selection(ids=["1"])
    assert Selection(grades="gold").to_dict()["grades"] == ["gold"]


# ---------------------------------------------------------------- paths and roots


def test_resolve_relative_to_root_and_missing_file(catalog_url, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "vol_image.tif").write_bytes(b"")
    with Catalog(catalog_url, roots=[data], create=True) as catalog:
        if catalog_url.startswith("sqlite"):
            assert catalog.root == tmp_path  # the SQLite file's folder
            uris = {"image_uri": "data/vol_image.tif", "label_uri": "data/vol_labels.tif"}
        else:
            assert catalog.root == data  # the first root
            uris = {"image_uri": "vol_image.tif", "label_uri": "vol_labels.tif"}
        volume_id = catalog.add_volume(name="v", **_volume(**uris))
        record = catalog.get("v")
        image, labels = catalog.resolve(record, must_exist=False)
        assert image == (data / "vol_image.tif").resolve() and labels == (data / "vol_labels.tif").resolve()
        with pytest.raises(MissingVolumeFileError) as info:
            catalog.resolve(record)  # the label file is gone
        message = str(info.value)
        assert f"volume {volume_id} 'v'" in message and str(labels) in message and "label" in message
        assert record.image_path(must_exist=True) == image  # the record helper, no roots


def test_path_outside_roots(catalog_url, tmp_path):
    data, outside = tmp_path / "data", tmp_path / "outside"
    data.mkdir()
    outside.mkdir()
    secret = outside / "secret_image.tif"
    secret.write_bytes(b"")
    (data / "link_image.tif").symlink_to(secret)  # a symlink that leaves the root
    with Catalog(catalog_url, roots=[data], create=True) as catalog:
        catalog.add_volume(name="abs", **_volume(image_uri=str(secret), label_uri=str(data / "l.tif")))
        catalog.add_volume(
            name="link", **_volume(image_uri=str(data / "link_image.tif"), label_uri=str(data / "l.tif"))
        )
        catalog.add_volume(name="dots", **_volume(image_uri=str(data / ".." / "outside" / "x.tif")))
        for name in ("abs", "link", "dots"):
            with pytest.raises(PathOutsideRootsError, match=str(data)):
                catalog.resolve(catalog.get(name), must_exist=False)
    with Catalog(catalog_url) as unrestricted:  # no roots configured: any path
        assert unrestricted.resolve(unrestricted.get("link"), must_exist=False)[0] == secret.resolve()


# ---------------------------------------------------------------- URLs and databases


def test_sqlite_urls(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with Catalog("sqlite:///rel.sqlite", create=True) as catalog:
        assert catalog.root == tmp_path
    assert (tmp_path / "rel.sqlite").is_file()
    with Catalog(f"sqlite:///{tmp_path / 'abs.sqlite'}", create=True) as catalog:
        assert catalog.url == f"sqlite:////{str(tmp_path / 'abs.sqlite').lstrip('/')}"
    with Catalog("sqlite:///:memory:", roots=[tmp_path]) as catalog:
        assert catalog.root == tmp_path
        catalog.add_volume(name="m", **_volume())
        assert len(catalog) == 1
    with Catalog(create=True) as default:  # sqlite:///catalog.sqlite in the current folder
        assert default.url == "sqlite:///catalog.sqlite"
    assert (tmp_path / "catalog.sqlite").is_file()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("catalog.sqlite", "has no scheme"),
        ("mysql://u:pw@h/db", "unsupported scheme 'mysql'"),
        ("sqlite://", "needs a file path"),
        ("sqlite:///no/such/folder/c.sqlite", "folder 'no/such/folder'|does not exist"),
        ("postgresql:///db", "names no host"),
    ],
)
def test_bad_urls(url, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CatalogError, match=message) as info:
        Catalog(url)
    assert isinstance(info.value, DataError)


def test_not_a_database_and_wrong_schema_version(tmp_path):
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not an sqlite file" * 100)
    with pytest.raises(CatalogError, match=r"junk\.sqlite.*not a database"):
        Catalog(f"sqlite:///{junk}")
    path = tmp_path / "old.sqlite"
    Catalog(f"sqlite:///{path}", create=True).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE catalog_schema SET version = 99")
    with pytest.raises(CatalogError, match=r"schema version \[99\]"):
        Catalog(f"sqlite:///{path}")


def test_reading_a_missing_catalog_creates_nothing(tmp_path):
    typo = tmp_path / "typo.sqlite"
    with pytest.raises(CatalogNotFoundError) as info:
        Catalog(f"sqlite:///{typo}")
    message = str(info.value)
    assert f"no file '{typo}'" in message and "does not exist" in message
    assert f"'ls-data catalog register FOLDER --catalog sqlite:///{typo}'" in message
    assert "ls-data synth" in message
    assert isinstance(info.value, DataError)
    with pytest.raises(CatalogNotFoundError, match="no file"):
        Catalog(f"sqlite:///{tmp_path / 'missing' / 'c.sqlite'}")
    assert list(tmp_path.iterdir()) == []  # no file, no folder
    empty = tmp_path / "empty.sqlite"
    empty.touch()
    with pytest.raises(CatalogNotFoundError, match=r"empty\.sqlite.*has no catalog tables"):
        Catalog(f"sqlite:///{empty}")
    assert empty.stat().st_size == 0  # no tables were created in it
    with Catalog("sqlite:///:memory:") as scratch:  # nothing on disk: always created
        assert len(scratch) == 0


def test_create_makes_the_catalog_once_and_readers_then_open_it(catalog_url):
    with pytest.raises(CatalogNotFoundError):
        Catalog(catalog_url)
    with Catalog(catalog_url, create=True) as catalog:
        catalog.add_volume(name="v", **_volume())
    with Catalog(catalog_url) as reader, Catalog(catalog_url, create=True) as again:
        assert [v.name for v in reader.volumes()] == [v.name for v in again.volumes()] == ["v"]


def test_mask_url():
    assert mask_url("postgresql://u:pw@h:5/db") == "postgresql://u:***@h:5/db"
    assert mask_url("postgresql://u@h/db") == "postgresql://u@h/db"
    assert mask_url("postgresql://h/db?user=u&password=pw") == "postgresql://h/db?user=u&password=***"
    assert mask_url("sqlite:////a/b.sqlite") == "sqlite:////a/b.sqlite"
    assert "p@ss" not in mask_url("postgresql://u:p@ss@h/db")


# ---------------------------------------------------------------- register_folder


def _write_folder(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_tiff_pair(folder, "t1", _image(), _labels(), (2.0, 0.5, 0.5))
    write_ome_zarr(folder / "z1.ome.zarr", _image((3, 4, 8, 8)), (3.0, 0.25, 0.25), labels=_labels())


def _overwrite_labels(path: Path, labels: np.ndarray) -> None:
    """Replace a label TIFF by one of another shape (the writers refuse mismatched pairs)."""
    tifffile.imwrite(path, labels, imagej=True, metadata={"axes": "ZYX"})


def test_register_folder_tiff_and_ome_zarr(catalog_url, tmp_path):
    data = tmp_path / "data"
    _write_folder(data)
    with Catalog(catalog_url, roots=[tmp_path], create=True) as catalog:
        report = catalog.register_folder(data, grade="gold", split="train", attributes={"batch": 1})
        assert sorted(report.added) == ["t1", "z1"] and not report.updated and not report.skipped
        t1, z1 = catalog.get("t1"), catalog.get("z1")
        assert report.ids == {"t1": t1.id, "z1": z1.id}
        assert (t1.format, t1.shape, t1.spacing) == ("tiff", (2, 4, 8, 8), (2.0, 0.5, 0.5))
        assert (z1.format, z1.shape, z1.spacing) == ("ome-zarr", (3, 4, 8, 8), (3.0, 0.25, 0.25))
        assert len(z1.channels) == 3
        assert (z1.grade, z1.split, z1.attributes) == ("gold", "train", {"batch": 1})
        # URIs are stored relative to the catalog root (the SQLite folder, or the first root)
        assert not Path(t1.image_uri).is_absolute()
        assert z1.label_uri.endswith("z1.ome.zarr/labels/cells")
        image, labels = catalog.resolve(z1)
        assert image == (data / "z1.ome.zarr").resolve()
        assert labels == (data / "z1.ome.zarr/labels/cells").resolve()


def test_register_folder_ome_tiff_pairs(tmp_path):
    """<name>_image.ome.tif + <name>_labels.ome.tif (+ <name>_classes.json) pair up like .tif."""
    meta = {"axes": "CZYX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5, "PhysicalSizeZ": 2.0}
    tifffile.imwrite(tmp_path / "e1_image.ome.tif", _image(), ome=True, metadata=meta)
    tifffile.imwrite(tmp_path / "e1_labels.ome.tif", _labels(), ome=True, metadata={"axes": "ZYX"})
    (tmp_path / "e1_classes.json").write_text('{"1": 2}', encoding="utf-8")
    with Catalog(f"sqlite:///{tmp_path}/c.sqlite", create=True) as catalog:
        assert catalog.register_folder(tmp_path).added == ["e1"]
        e1 = catalog.get("e1")
        assert (e1.format, e1.shape, e1.spacing) == ("tiff", (2, 4, 8, 8), (2.0, 0.5, 0.5))
        assert open_labels(catalog.resolve(e1)[1]).classes() == {1: 2}


def test_register_again_updates_same_files_and_rejects_name_collisions(tmp_path):
    data = tmp_path / "data"
    _write_folder(data)
    with Catalog(f"sqlite:///{tmp_path / 'c.sqlite'}", create=True) as catalog:
        first = catalog.register_folder(data, grade="silver", attributes={"batch": 1})
        again = catalog.register_folder(data, split="val", attributes={"checked": True})
        assert again.added == [] and sorted(again.updated) == ["t1", "z1"]
        assert again.ids == first.ids  # same rows, refreshed in place
        t1 = catalog.get("t1")
        assert (t1.grade, t1.split) == ("silver", "val")  # grade kept, split set
        assert t1.attributes == {"batch": 1, "checked": True}
        # another folder with a volume of the same name is a collision, not a silent re-point
        other = tmp_path / "other"
        other.mkdir()
        write_tiff_pair(other, "t1", _image(), _labels(), (1.0, 1.0, 1.0))
        with pytest.raises(RegisterError, match=r"'t1' is already in the catalog \(id \d+\)"):
            catalog.register_folder(other)
        assert catalog.get("t1").image_uri == t1.image_uri


def test_register_shape_mismatch_names_both_files_and_writes_nothing(tmp_path):
    data = tmp_path / "data"
    _write_folder(data)
    image_path, label_path = write_tiff_pair(data, "bad", _image(), _labels(), (1.0, 1.0, 1.0))
    _overwrite_labels(label_path, _labels((4, 8, 6)))
    with Catalog(f"sqlite:///{tmp_path / 'c.sqlite'}", create=True) as catalog:
        with pytest.raises(RegisterError) as info:
            catalog.register_folder(data)
        message = str(info.value)
        assert str(image_path) in message and str(label_path) in message and "(4, 8, 6)" in message
        assert [p[0] for p in info.value.problems] == ["bad"]
        assert len(catalog) == 0  # nothing registered


def test_register_skip_bad_reports_reasons(catalog_url, tmp_path):
    data = tmp_path / "data"
    _write_folder(data)
    _, mismatch_labels = write_tiff_pair(data, "mismatch", _image(), _labels(), (1.0, 1.0, 1.0))
    _overwrite_labels(mismatch_labels, _labels((4, 8, 6)))
    write_tiff_pair(data, "lonely", _image(), _labels(), (1.0, 1.0, 1.0))
    (data / "lonely_labels.tif").unlink()
    (data / "orphan_labels.tif").write_bytes(b"")
    good_image, _ = write_tiff_pair(data, "corrupt", _image(), _labels(), (1.0, 1.0, 1.0))
    good_image.write_bytes(good_image.read_bytes()[:200])  # truncated TIFF
    nolabels = write_ome_zarr(data / "nolabels.ome.zarr", _image(), (1.0, 1.0, 1.0))
    with Catalog(catalog_url, roots=[tmp_path], create=True) as catalog:
        with pytest.warns(UserWarning, match="skipping volume") as caught:
            report = catalog.register_folder(data, skip_bad=True)
        assert sorted(report.added) == ["t1", "z1"]
        reasons = {s.name: s.reason for s in report.skipped}
        assert sorted(reasons) == ["corrupt", "lonely", "mismatch", "nolabels", "orphan"]
        assert "spatial shape" in reasons["mismatch"] and "mismatch_labels.tif" in reasons["mismatch"]
        assert "no label file" in reasons["lonely"]
        assert "no image file" in reasons["orphan"]
        assert "corrupt_image.tif" in reasons["corrupt"]
        assert "no labels/ group" in reasons["nolabels"] and str(nolabels) in reasons["nolabels"]
        assert len(caught) == 5
        assert "5 skipped" in report.summary()
        assert [v.name for v in catalog.volumes()] == sorted(report.added)


def test_register_outside_roots_and_label_name(tmp_path):
    data = tmp_path / "data"
    _write_folder(data)
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    with (
        Catalog(f"sqlite:///{allowed / 'c.sqlite'}", roots=[allowed], create=True) as catalog,
        pytest.raises(RegisterError, match="outside the allowed roots"),
    ):
        catalog.register_folder(data)
    with (
        Catalog(f"sqlite:///{tmp_path / 'c.sqlite'}", create=True) as catalog,
        pytest.raises(RegisterError, match="no label image 'nuclei'"),
    ):
        catalog.register_folder(data, label_name="nuclei")


def test_register_recursive_prefixes_names(tmp_path):
    root = tmp_path / "data"
    _write_folder(root / "a")
    _write_folder(root / "b")
    with Catalog(f"sqlite:///{tmp_path / 'c.sqlite'}", create=True) as catalog:
        with pytest.raises(CatalogError, match=r"no volumes.*recursive=True"):
            catalog.register_folder(root)
        report = catalog.register_folder(root, recursive=True)
        assert sorted(report.added) == ["a/t1", "a/z1", "b/t1", "b/z1"]
        with pytest.raises(CatalogError, match="is not a folder"):
            catalog.register_folder(tmp_path / "missing")


def test_record_is_frozen():
    record = VolumeRecord(
        id=1,
        name="v",
        image_uri="a.tif",
        label_uri="b.tif",
        format="tiff",
        shape=(1, 1, 1, 1),
        channels=("ch0",),
        spacing=(1.0, 1.0, 1.0),
    )
    with pytest.raises(AttributeError):
        record.name = "w"  # type: ignore[misc]
    assert record.to_dict()["shape"] == [1, 1, 1, 1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert record.root is None


def test_concurrent_first_opens_and_writes(catalog_url):
    """Several connections creating the schema of a new database at once, then writing."""
    barrier = threading.Barrier(4)

    def worker(i: int) -> int:
        barrier.wait()
        with Catalog(catalog_url, create=True) as catalog:
            return catalog.add_volume(name=f"v{i}", **_volume())

    with ThreadPoolExecutor(4) as pool:
        ids = list(pool.map(worker, range(4)))
    assert len(set(ids)) == 4
    with Catalog(catalog_url) as catalog:
        assert sorted(v.name for v in catalog.volumes()) == ["v0", "v1", "v2", "v3"]


def test_register_rejects_negative_label_ids(tmp_path, monkeypatch):
    import ls_data.catalog.register as register_module

    data = tmp_path / "data"
    labels = _labels().astype(np.int32)
    write_tiff_pair(data, "fine", _image(), labels, (1.0, 1.0, 1.0))  # signed, but no negative id
    labels[3, 7, 7] = -4
    _, bad_tiff = write_tiff_pair(data, "neg", _image(), labels, (1.0, 1.0, 1.0))
    bad_zarr = write_ome_zarr(data / "zneg.ome.zarr", _image(), (1.0, 1.0, 1.0), labels=labels)
    url = f"sqlite:///{tmp_path / 'c.sqlite'}"
    with Catalog(url, create=True) as catalog:
        with pytest.raises(RegisterError) as info:
            catalog.register_folder(data)
        assert sorted(p[0] for p in info.value.problems) == ["neg", "zneg"]
        reasons = {p[0]: p[2] for p in info.value.problems}
        negative = f"label volume '{bad_tiff}' (int32) holds negative ids (min -4 in z 0..3, y 0..7, x 0..7)"
        assert negative in reasons["neg"]
        assert str(bad_zarr / "labels" / "cells") in reasons["zneg"] and "min -4" in reasons["zneg"]
        assert len(catalog) == 0
        # read in blocks smaller than a plane: the block with the negative id is named
        monkeypatch.setattr(register_module, "LABEL_BLOCK_VOXELS", 5)
        with pytest.raises(RegisterError) as info:
            catalog.register_folder(data)
        reasons = {p[0]: p[2] for p in info.value.problems}
        assert "holds negative ids (min -4 in z 3..3, y 7..7, x 5..7)" in reasons["neg"]


def test_register_rejects_negative_ids_in_a_signed_volume_of_any_size(tmp_path):
    """A signed label volume over 2^26 voxels (sparse memory-mapped TIFFs: fast) is read block by
    block: its one negative voxel, in the last plane, is found before anything is registered."""
    data = tmp_path / "data"
    data.mkdir()
    shape = (65, 1024, 1024)
    assert math.prod(shape) > 2**26
    for kind, dtype in (("image", np.uint8), ("labels", np.int8)):
        volume = tifffile.memmap(data / f"big_{kind}.tif", shape=shape, dtype=dtype, metadata={"axes": "ZYX"})
        if kind == "labels":
            volume[64, 1000, 1000] = -3
        volume.flush()
        del volume
    with Catalog(f"sqlite:///{tmp_path / 'c.sqlite'}", create=True) as catalog:
        with pytest.raises(RegisterError) as info:
            catalog.register_folder(data)
        [(name, _, reason)] = info.value.problems
        assert name == "big" and str(data / "big_labels.tif") in reason
        assert "(int8) holds negative ids (min -3 in z 64..64, y 0..1023, x 0..1023)" in reason
        assert len(catalog) == 0


@pytest.mark.parametrize("chunks", [None, (4, 16, 16)])
@pytest.mark.parametrize("budget", [1, 5, 100, 2000, 10**6])
def test_label_blocks_cover_the_volume_within_the_budget(chunks, budget):
    from ls_data.catalog.register import _label_blocks

    shape = (9, 40, 30)
    seen = np.zeros(shape, dtype=np.int32)
    windows = list(_label_blocks(shape, chunks, budget))
    step = [w.stop - w.start for w in windows[0]]
    for window in windows:
        seen[window] += 1
        assert math.prod(w.stop - w.start for w in window) <= budget
        for w, k, c in zip(window, step, chunks or (), strict=False):
            assert k < c or w.start % c == 0  # a side of a chunk or more: blocks start on chunks
    assert (seen == 1).all()


def test_register_same_name_twice_in_one_folder(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    write_tiff_pair(data, "twin", _image(), _labels(), (1.0, 1.0, 1.0))
    write_ome_zarr(data / "twin.ome.zarr", _image(), (1.0, 1.0, 1.0), labels=_labels())
    with (
        Catalog(f"sqlite:///{tmp_path / 'c.sqlite'}", create=True) as catalog,
        pytest.raises(RegisterError, match=r"'twin' is used by both .*twin\.ome\.zarr.*twin_image\.tif"),
    ):
        catalog.register_folder(data)
