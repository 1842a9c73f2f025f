"""Crop index: streaming instance statistics, crop grid, criteria, fingerprint, build, reader."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import pickle
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ls_data.errors import DataError
from ls_data.index import (
    CropCriteria,
    CropIndex,
    CropIndexConfig,
    SkippedVolumeWarning,
    VolumeSource,
    axis_starts,
    build_crop_index,
    compute_fingerprint,
    crop_origins,
    label_stats,
    merge_stats,
    select_instances,
    source_state,
    stream_instance_stats,
)
from ls_data.index import build as build_module
from ls_data.index.grid import as_triple
from ls_data.io import classes_sidecar_path

_CONFIG_FIELDS = {f.name for f in fields(CropIndexConfig) if f.init}


def build(**kwargs):
    """``build_crop_index`` with the :class:`CropIndexConfig` fields given as keywords too."""
    config = CropIndexConfig(**{k: kwargs.pop(k) for k in _CONFIG_FIELDS & set(kwargs)})
    return build_crop_index(config=config, **kwargs)


def reference_stats(labels: np.ndarray) -> dict[int, tuple[tuple[int, ...], int]]:
    """Box and voxel count of every label by brute force (np.nonzero per id)."""
    out = {}
    for label_id in np.unique(labels):
        if label_id == 0:
            continue
        coords = np.nonzero(labels == label_id)
        box = tuple(int(c.min()) for c in coords) + tuple(int(c.max()) + 1 for c in coords)
        out[int(label_id)] = (box, int(coords[0].size))
    return out


def as_dict(stats) -> dict[int, tuple[tuple[int, ...], int]]:
    return {
        int(i): (tuple(int(v) for v in b), int(n))
        for i, b, n in zip(stats.ids, stats.boxes, stats.voxels, strict=True)
    }


label_arrays = arrays(
    dtype=st.sampled_from([np.uint8, np.uint16, np.uint32, np.int32, np.int64]),
    shape=st.tuples(st.integers(1, 7), st.integers(1, 7), st.integers(1, 7)),
    elements=st.integers(0, 6),
)


# ----------------------------------------------------------------------------- statistics


@settings(max_examples=60, deadline=None)
@given(labels=label_arrays, slab=st.integers(1, 8))
def test_stats_match_brute_force_for_any_slab_size(labels, slab):
    expected = reference_stats(labels)
    assert as_dict(label_stats(labels)) == expected
    streamed = stream_instance_stats(lambda w: labels[w], labels.shape, slab_size=slab)
    assert as_dict(streamed) == expected
    assert np.all(np.diff(streamed.ids) > 0)


def test_stream_reads_only_slabs_of_bounded_size():
    labels = np.zeros((10, 4, 5), np.uint16)
    labels[2:9, 1:3, 0:4] = 7
    labels[9, 3, 4] = 2
    reads = []

    def read(window):
        reads.append(window)
        return labels[window]

    stats = stream_instance_stats(read, labels.shape, slab_size=3)
    assert [w[0] for w in reads] == [slice(0, 3), slice(3, 6), slice(6, 9), slice(9, 10)]
    assert all(w[1] == slice(0, 4) and w[2] == slice(0, 5) for w in reads)
    assert as_dict(stats) == {2: ((9, 3, 4, 10, 4, 5), 1), 7: ((2, 1, 0, 9, 3, 4), 56)}


def test_label_stats_origin_and_errors():
    labels = np.zeros((2, 2, 2), np.int32)
    labels[1, 0, 1] = 5
    assert as_dict(label_stats(labels, (10, 20, 30))) == {5: ((11, 20, 31, 12, 21, 32), 1)}
    assert len(label_stats(np.zeros((3, 3, 3), np.uint8))) == 0
    with pytest.raises(DataError, match="negative"):
        label_stats(-labels)
    with pytest.raises(DataError, match=r"integer, got shape \(2, 2, 2\) dtype float32"):
        label_stats(labels.astype(np.float32))
    with pytest.raises(DataError, match="slab_size"):
        stream_instance_stats(lambda w: labels[w], labels.shape, slab_size=0)
    with pytest.raises(DataError, match="returned shape"):
        stream_instance_stats(lambda w: labels[:1], (4, 2, 2), slab_size=2)


def test_merge_stats_unions_boxes_and_sums_counts():
    a = np.zeros((2, 4, 4), np.uint8)
    a[0, 0, 0] = 1
    a[1, 3, 3] = 1
    b = np.zeros((2, 4, 4), np.uint8)
    b[0, 1, 2] = 1
    b[1, 0, 0] = 3
    merged = merge_stats([label_stats(a), label_stats(b, (2, 0, 0))])
    assert as_dict(merged) == as_dict(label_stats(np.concatenate([a, b])))


# ----------------------------------------------------------------------------- grid


def test_axis_starts_last_crop_flush_with_end():
    assert axis_starts(10, 4, 4).tolist() == [0, 4, 6]
    assert axis_starts(8, 4, 4).tolist() == [0, 4]
    assert axis_starts(10, 4, 2).tolist() == [0, 2, 4, 6]
    assert axis_starts(4, 4, 3).tolist() == [0]
    assert axis_starts(11, 4, 3).tolist() == [0, 3, 6, 7]


@settings(max_examples=50, deadline=None)
@given(size=st.integers(1, 40), crop=st.integers(1, 40), stride=st.integers(1, 40))
def test_axis_starts_cover_the_axis_inside_bounds(size, crop, stride):
    if crop > size:
        return
    starts = axis_starts(size, crop, stride)
    covered = np.zeros(size, bool)
    for s in starts:
        covered[s : s + crop] = True
    assert covered.all() or stride > crop  # a stride larger than the crop samples sparsely
    assert starts.min() == 0 and starts.max() + crop == size
    assert np.all(np.diff(starts) <= stride) and np.all(np.diff(starts) > 0)


def test_crop_origins_grid_and_errors():
    origins = crop_origins((10, 6, 8), (4, 6, 4), (4, 6, 4))
    assert origins.shape == (3 * 1 * 2, 3)
    assert origins.tolist()[:2] == [[0, 0, 0], [0, 0, 4]]
    assert origins[-1].tolist() == [6, 0, 4]
    with pytest.raises(DataError, match=r"volume 'vol7'.*crop shape \(4, 8, 4\).*volume shape \(10, 6, 8\)"):
        crop_origins((10, 6, 8), (4, 8, 4), (4, 4, 4), volume_name="vol7")


def test_as_triple():
    assert as_triple(3, "stride") == (3, 3, 3)
    assert as_triple([1, 2, 3], "stride") == (1, 2, 3)
    for bad in ([1, 2], "abc", [0, 1, 1], [1.5, 2, 2]):
        with pytest.raises(DataError, match="stride"):
            as_triple(bad, "stride")


# ----------------------------------------------------------------------------- criteria


def _two_objects() -> np.ndarray:
    labels = np.zeros((4, 10, 10), np.uint16)
    labels[:, 0:4, 0:4] = 1  # 64 voxels
    labels[:, 5:10, 5:10] = 2  # 100 voxels
    labels[0, 9, 0] = 3  # 1 voxel
    return labels


def test_select_instances_visible_fraction_and_volume():
    labels = _two_objects()
    whole = label_stats(labels)
    window = labels[:, 2:8, 2:8]  # 1: 2x2x4=16 of 64 (0.25); 2: 3x3x4=36 of 100 (0.36)
    found = select_instances(window, whole, CropCriteria())
    assert found.ids.tolist() == [1, 2]
    assert found.visible.tolist() == [16, 36]
    assert found.total.tolist() == [64, 100]
    assert found.boxes.tolist() == [[0, 0, 0, 4, 2, 2], [0, 3, 3, 4, 6, 6]]
    assert select_instances(window, whole, CropCriteria(min_visible_fraction=0.3)).ids.tolist() == [2]
    assert select_instances(window, whole, CropCriteria(min_visible_voxels=17)).ids.tolist() == [2]
    assert select_instances(window, whole, CropCriteria(min_instance_volume=65)).ids.tolist() == [2]
    full = select_instances(labels, whole, CropCriteria(min_instance_volume=2))
    assert full.ids.tolist() == [1, 2]


def test_select_instances_box_is_tight_to_visible_voxels():
    labels = np.zeros((1, 6, 6), np.uint8)
    labels[0, 0, 0:6] = 4  # an L: the clipped whole box would span y 0..5
    labels[0, 0:6, 0] = 4
    found = select_instances(labels[:, 1:6, 2:6], label_stats(labels), CropCriteria())
    assert found.ids.size == 0  # no voxel of the L there, although its whole box meets the crop
    found = select_instances(labels[:, 0:6, 2:6], label_stats(labels), CropCriteria())
    assert found.boxes.tolist() == [[0, 0, 0, 1, 1, 4]]


def test_select_instances_rejects_ids_unknown_to_the_whole_pass():
    labels = _two_objects()
    with pytest.raises(DataError, match=r"\[2, 3\].*changed"):
        select_instances(labels, label_stats(labels[:, :5, :5]), CropCriteria())


def test_criteria_validation():
    for kwargs in (
        {"min_visible_fraction": 1.5},
        {"min_visible_fraction": -0.1},
        {"min_instance_volume": 0},
        {"min_visible_voxels": 0},
        {"min_instances_per_crop": -1},
    ):
        with pytest.raises(DataError, match=next(iter(kwargs))):
            CropCriteria(**kwargs)


# ----------------------------------------------------------------------------- fingerprint


def test_fingerprint_follows_files_params_and_zarr_metadata(tmp_path):
    f = tmp_path / "a.tif"
    f.write_bytes(b"12345")
    base = compute_fingerprint({"crop": [1, 2, 3]}, [source_state(f)])
    assert base == compute_fingerprint({"crop": [1, 2, 3]}, [source_state(f)])
    assert base != compute_fingerprint({"crop": [1, 2, 4]}, [source_state(f)])
    os.utime(f, ns=(1, 2))
    assert compute_fingerprint({"crop": [1, 2, 3]}, [source_state(f)]) != base
    assert source_state(tmp_path / "gone.tif")[1] == "missing"

    group = tmp_path / "v.ome.zarr"
    (group / "0" / "0").mkdir(parents=True)
    (group / ".zattrs").write_text("{}")
    (group / "0" / ".zarray").write_text("{}")
    (group / "0" / "0" / "0").write_bytes(b"chunk")
    state = source_state(group)
    names = [item[0] for item in state[2]]
    assert str((group / ".zattrs").resolve()) in names and str((group / "0").resolve()) in names
    (group / "0" / "1").mkdir()  # a new chunk row changes the array listing
    assert source_state(group) != state


# ----------------------------------------------------------------------------- build and read


def make_volume(seed: int, shape=(12, 20, 24), channels: int = 2, n: int = 6):
    """Image (C, Z, Y, X) uint16 and labels (Z, Y, X) uint16 with ``n`` boxy instances."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.uint16)
    for k in range(1, n + 1):
        size = np.minimum(rng.integers(2, 7, size=3), shape)
        start = [int(rng.integers(0, s - d + 1)) for s, d in zip(shape, size, strict=True)]
        window = tuple(slice(a, a + d) for a, d in zip(start, size, strict=True))
        labels[window] = k
    image = rng.integers(0, 1000, size=(channels, *shape), dtype=np.uint16)
    classes = {k: 1 + k % 2 for k in range(1, n + 1)}
    return image, labels, classes


def write_pair(folder: Path, name: str, seed: int, **kwargs) -> VolumeSource:
    from ls_data.io import write_tiff_pair

    image, labels, classes = make_volume(seed, **kwargs)
    image_path, label_path = write_tiff_pair(folder, name, image, labels, (2.0, 0.5, 0.5), classes)
    return VolumeSource(name=name, image_path=image_path, label_path=label_path)


def check_against_reference(index: CropIndex, crop_shape, criteria: CropCriteria) -> int:
    """Every crop of the index equals a brute-force evaluation of its label window."""
    import tifffile

    listed = 0
    volumes: dict[Path, tuple[np.ndarray, dict]] = {}
    for i in range(len(index)):
        record = index.crop(i)
        if record.volume.label_path not in volumes:
            labels = tifffile.imread(record.volume.label_path)
            volumes[record.volume.label_path] = (labels, reference_stats(labels))
        labels, whole = volumes[record.volume.label_path]
        window = labels[record.window]
        expected = {}
        for label_id, (box, visible) in reference_stats(window).items():
            total = whole[label_id][1]
            if (
                total >= criteria.min_instance_volume
                and visible >= criteria.min_visible_voxels
                and visible >= criteria.min_visible_fraction * total
            ):
                expected[label_id] = (box, visible, total)
        got = {inst.label_id: (inst.box, inst.visible_voxels, inst.total_voxels) for inst in record.instances}
        assert got == expected, f"crop {i} at {record.origin}"
        assert len(got) >= criteria.min_instances_per_crop
        assert all(inst.class_id == 1 + inst.label_id % 2 for inst in record.instances)
        listed += len(got)
    return listed


def test_build_matches_brute_force_and_keeps_valid_crops(tmp_path):
    sources = [write_pair(tmp_path / "data", f"v{k}", seed=k) for k in range(2)]
    kwargs = dict(
        crop_shape=(6, 10, 12), stride=(3, 5, 6), min_visible_fraction=0.2, min_instances_per_crop=2
    )
    index = build(volumes=sources, index_path=tmp_path / "index.sqlite", slab_size=5, **kwargs)
    criteria = CropCriteria(min_visible_fraction=0.2, min_instances_per_crop=2)
    assert len(index) > 0
    listed = check_against_reference(index, (6, 10, 12), criteria)
    assert index.report["crop_instances"] == listed
    assert index.report["volumes"] == 2 and index.report["skipped_count"] == 0
    # every grid crop that qualifies is present: count them by brute force
    import tifffile

    expected = 0
    for src in sources:
        labels = tifffile.imread(src.label_path)
        whole = reference_stats(labels)
        for origin in crop_origins(labels.shape, (6, 10, 12), (3, 5, 6)):
            win = labels[tuple(slice(o, o + c) for o, c in zip(origin, (6, 10, 12), strict=True))]
            seen = reference_stats(win)
            ok = [i for i, (_, v) in seen.items() if v >= 0.2 * whole[i][1]]
            expected += len(ok) >= 2
    assert len(index) == expected
    vol = index.crop(0).volume
    assert vol.shape == (2, 12, 20, 24) and vol.spacing == pytest.approx((2.0, 0.5, 0.5))
    assert vol.channels == (0, 1) and vol.format == "tiff"


def test_min_instances_zero_keeps_every_grid_crop(tmp_path):
    src = write_pair(tmp_path, "v", seed=3)
    index = build(
        volumes=[src], index_path=tmp_path / "i.sqlite", crop_shape=(12, 10, 8), min_instances_per_crop=0
    )
    assert len(index) == len(crop_origins((12, 20, 24), (12, 10, 8), (12, 10, 8))) == 6
    check_against_reference(index, (12, 10, 8), CropCriteria(min_instances_per_crop=0))


def test_crop_record_and_reader(tmp_path):
    src = write_pair(tmp_path, "v", seed=4)
    path = tmp_path / "i.sqlite"
    index = build(volumes=[src], index_path=path, crop_shape=(6, 10, 12), channels=[1])
    last = index.crop(-1)
    assert last.index == len(index) - 1 and last.shape == (6, 10, 12) and last.channels == (1,)
    assert last.volume.name == "v" and last.volume.image_path == src.image_path.resolve()
    with pytest.raises(IndexError, match=r"crop 99 out of range.*i.sqlite"):
        index.crop(99)
    clone = pickle.loads(pickle.dumps(index))
    assert clone._conn is None
    assert clone.crop(0) == index.crop(0)
    reopened = CropIndex.open(path)
    assert len(reopened) == len(index) and reopened.fingerprint == index.fingerprint
    assert reopened.params["crop_shape"] == [6, 10, 12] and reopened.params["channels"] == [1]
    with sqlite3.connect(path) as conn:  # the schema is indexed on crop id
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "crop_instances_by_crop" in names
    with pytest.raises(DataError, match="does not exist"):
        CropIndex.open(tmp_path / "nope.sqlite")
    (tmp_path / "junk.sqlite").write_bytes(b"not a database at all" * 100)
    with pytest.raises(DataError, match=r"junk\.sqlite"):
        CropIndex.open(tmp_path / "junk.sqlite")


def test_reuse_rebuild_on_change_and_forced_rebuild(tmp_path, monkeypatch):
    src = write_pair(tmp_path, "v", seed=5)
    calls = []
    real = build_module._write_index
    monkeypatch.setattr(build_module, "_write_index", lambda *a, **k: (calls.append(1), real(*a, **k)))
    kwargs = dict(volumes=[src], index_path=tmp_path / "i.sqlite", crop_shape=(6, 10, 12))
    first = build(**kwargs)
    build(**kwargs)
    assert len(calls) == 1
    build(**kwargs, rebuild=True)
    assert len(calls) == 2
    build(**{**kwargs, "stride": (3, 10, 12)})
    assert len(calls) == 3
    build(**kwargs)
    assert len(calls) == 4  # parameters changed back
    st_ = src.label_path.stat()
    os.utime(src.label_path, ns=(st_.st_atime_ns, st_.st_mtime_ns + 10**9))
    again = build(**kwargs)
    assert len(calls) == 5 and again.fingerprint != first.fingerprint
    build(**kwargs, slab_size=3)  # slab size does not change the result: reused
    assert len(calls) == 5
    # the label TIFF's classes live in <name>_classes.json: editing it changes the crops' classes
    sidecar = classes_sidecar_path(src.label_path)
    sidecar.write_text(json.dumps({str(k): 3 for k in range(1, 7)}), encoding="utf-8")
    edited = build(**kwargs)
    assert len(calls) == 6 and edited.fingerprint != again.fingerprint
    assert index_classes(edited) == {3}
    sidecar.unlink()  # gone: every instance has class 1
    assert index_classes(build(**kwargs)) == {1}
    assert len(calls) == 7
    # str paths are taken as paths
    as_str = VolumeSource(name="v", image_path=str(src.image_path), label_path=str(src.label_path))
    build(**{**kwargs, "volumes": [as_str]})
    assert len(calls) == 7


def index_classes(index: CropIndex) -> set[int]:
    return {i.class_id for c in range(len(index)) for i in index.crop(c).instances}


def test_failed_build_leaves_no_index_and_no_temp_file(tmp_path, monkeypatch):
    src = write_pair(tmp_path, "v", seed=6)
    path = tmp_path / "i.sqlite"

    def boom(*args, **kwargs):
        raise RuntimeError("killed mid-build")

    monkeypatch.setattr(build_module, "select_instances", boom)
    with pytest.raises(RuntimeError, match="killed"):
        build(volumes=[src], index_path=path, crop_shape=(6, 10, 12))
    assert sorted(p.name for p in tmp_path.iterdir() if "sqlite" in p.name) == []
    monkeypatch.undo()
    good = build(volumes=[src], index_path=path, crop_shape=(6, 10, 12))
    monkeypatch.setattr(build_module, "select_instances", boom)
    with pytest.raises(RuntimeError):  # a failed rebuild keeps the previous index intact
        build(volumes=[src], index_path=path, crop_shape=(6, 10, 12), rebuild=True)
    assert CropIndex.open(path).fingerprint == good.fingerprint
    assert sorted(p.name for p in tmp_path.iterdir() if "sqlite" in p.name) == ["i.sqlite"]


_KILLED_BUILD = """
import os, signal, sys
from ls_data.index import CropIndexConfig, VolumeSource, build_crop_index

def die(line):  # called once the first volume is in the temporary file
    os.kill(os.getpid(), signal.SIGKILL)

print(os.getpid(), flush=True)
source = VolumeSource("v", sys.argv[1], sys.argv[2])
config = CropIndexConfig(crop_shape=(6, 10, 12))
build_crop_index(volumes=[source], index_path=sys.argv[3], config=config, rebuild=True, progress=die)
"""


@pytest.mark.skipif(os.name == "nt", reason="SIGKILL")
def test_killed_build_keeps_the_index_and_the_next_build_removes_its_temp_file(tmp_path):
    src = write_pair(tmp_path, "v", seed=6)
    path = tmp_path / "i.sqlite"
    good = build(volumes=[src], index_path=path, crop_shape=(6, 10, 12))
    before = path.read_bytes()
    args = [sys.executable, "-c", _KILLED_BUILD, str(src.image_path), str(src.label_path), str(path)]
    killed = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert path.read_bytes() == before  # the half-written index never replaced it
    left = [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name]
    assert left == [f"i.sqlite.tmp-{build_module._host_tag()}-{int(killed.stdout)}"]
    again = build(volumes=[src], index_path=path, crop_shape=(6, 10, 12), rebuild=True)
    assert again.fingerprint == good.fingerprint
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_next_build_removes_only_temp_files_of_dead_processes_on_this_host(tmp_path):
    src = write_pair(tmp_path, "v", seed=6)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = build_module._host_tag()
    stale = [f"i.sqlite.tmp-{host}-{dead.pid}", f"i.sqlite.tmp-{dead.pid}"]  # the second: older naming
    kept = [
        f"i.sqlite.tmp-{host}-{os.getppid()}",  # a live process: maybe a concurrent build
        f"i.sqlite.tmp-{host}x-{dead.pid}",  # another machine on a shared filesystem
        f"j.sqlite.tmp-{host}-{dead.pid}",  # another index
        "i.sqlite.tmp-notes.txt",
    ]
    for name in stale + kept:
        (tmp_path / name).write_bytes(b"half-written")
    build(volumes=[src], index_path=tmp_path / "i.sqlite", crop_shape=(6, 10, 12))
    assert sorted(p.name for p in tmp_path.iterdir() if ".tmp-" in p.name) == sorted(kept)


def test_nothing_to_index_is_an_error_and_keeps_the_index(tmp_path):
    from ls_data.catalog import CatalogNotFoundError

    src = write_pair(tmp_path, "v", seed=6)
    path = tmp_path / "i.sqlite"
    build(volumes=[src], index_path=path, crop_shape=6)
    before = path.read_bytes()
    typo = tmp_path / "typo.sqlite"
    with pytest.raises(CatalogNotFoundError, match=r"typo\.sqlite"):
        build(catalog=f"sqlite:///{typo}", index_path=path, crop_shape=6, rebuild=True)
    assert not typo.exists()
    with pytest.raises(DataError, match=r"`volumes` is empty; crop index '.*i\.sqlite' not written"):
        build(volumes=[], index_path=path, crop_shape=6, rebuild=True)
    gone = VolumeSource("gone", tmp_path / "gone_image.tif", src.label_path)
    with (
        pytest.warns(SkippedVolumeWarning),
        pytest.raises(
            DataError, match=r"every volume was skipped as bad.*not written: 'gone': .*does not exist"
        ),
    ):
        build(volumes=[gone], index_path=path, crop_shape=6, skip_bad_volumes=True)
    assert path.read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_bad_volumes_fail_or_are_skipped(tmp_path):
    good = write_pair(tmp_path, "good", seed=7)
    missing = VolumeSource(name="gone", image_path=tmp_path / "gone_image.tif", label_path=good.label_path)
    trunc = write_pair(tmp_path, "trunc", seed=8)
    data = trunc.image_path.read_bytes()
    trunc.image_path.write_bytes(data[: len(data) // 2])
    other = write_pair(tmp_path, "other", seed=9, shape=(12, 20, 20))
    mismatch = VolumeSource(name="mismatch", image_path=good.image_path, label_path=other.label_path)
    small = write_pair(tmp_path, "small", seed=10, shape=(4, 20, 24))
    cases = {
        "gone": (missing, "gone_image.tif.*does not exist"),
        "trunc": (trunc, "trunc_image.tif"),
        "mismatch": (mismatch, r"\(2, 12, 20, 24\).*\(12, 20, 20\)"),
        "small": (small, r"crop shape \(6, 10, 12\).*volume shape \(4, 20, 24\)"),
    }
    for name, (source, pattern) in cases.items():
        with pytest.raises(DataError, match=f"volume '{name}'.*{pattern}"):
            build(volumes=[good, source], index_path=tmp_path / "i.sqlite", crop_shape=(6, 10, 12))
        assert not (tmp_path / "i.sqlite").exists()
    with pytest.warns(SkippedVolumeWarning) as caught:
        index = build(
            volumes=[good, *(c[0] for c in cases.values())],
            index_path=tmp_path / "i.sqlite",
            crop_shape=(6, 10, 12),
            skip_bad_volumes=True,
        )
    assert len(caught) == 4
    assert index.report["skipped_count"] == 4 and index.report["volumes"] == 1
    assert [s["name"] for s in index.report["skipped"]] == list(cases)
    assert {v.name for v in index.volumes()} == {"good"}


def test_channel_checks(tmp_path):
    a = write_pair(tmp_path, "a", seed=11)
    b = write_pair(tmp_path, "b", seed=12, channels=3)
    with pytest.raises(DataError, match=r"different channel counts.*a: 2, b: 3"):
        build(volumes=[a, b], index_path=tmp_path / "i.sqlite", crop_shape=6)
    index = build(volumes=[a, b], index_path=tmp_path / "i.sqlite", crop_shape=6, channels=[0, 1])
    assert {v.channels for v in index.volumes()} == {(0, 1)}
    with pytest.raises(DataError, match=r"volume 'a'.*channels \[2\] out of range.*2 channels"):
        build(volumes=[a, b], index_path=tmp_path / "j.sqlite", crop_shape=6, channels=[2])
    with pytest.raises(DataError, match="exactly one of"):
        build(index_path=tmp_path / "k.sqlite", crop_shape=6)
    with pytest.raises(DataError, match="unique"):
        build(volumes=[a, a], index_path=tmp_path / "k.sqlite", crop_shape=6)


def test_ome_zarr_volume(tmp_path):
    from ls_data.io import write_ome_zarr

    image, labels, classes = make_volume(13)
    group = write_ome_zarr(tmp_path / "v.ome.zarr", image, (2.0, 0.5, 0.5), labels=labels, classes=classes)
    src = VolumeSource(name="z", image_path=group, label_path=group / "labels" / "cells")
    index = build(volumes=[src], index_path=tmp_path / "i.sqlite", crop_shape=(6, 10, 12))
    tiff = write_pair(tmp_path, "t", seed=13)
    ref = build(volumes=[tiff], index_path=tmp_path / "r.sqlite", crop_shape=(6, 10, 12))
    assert index.crop(0).volume.format == "ome-zarr"
    assert len(index) == len(ref) > 0
    for i in range(len(index)):
        a, b = index.crop(i), ref.crop(i)
        assert a.origin == b.origin
        assert [(x.label_id, x.class_id, x.box) for x in a.instances] == [
            (x.label_id, x.class_id, x.box) for x in b.instances
        ]


def test_a_missing_image_chunk_fails_the_build_unless_allowed(tmp_path):
    """A chunk file deleted in the middle of an OME-Zarr image (not the first or last voxel, which
    the build reads) is found by the build, before any training, naming the chunk."""
    from ls_data.io import write_ome_zarr

    image, labels, _ = make_volume(13)
    group = write_ome_zarr(tmp_path / "v.ome.zarr", image, (2.0, 0.5, 0.5), labels=labels, chunks=(4, 8, 8))
    (group / "0" / "0" / "1" / "1" / "1").unlink()  # channel 0, z 4:8, y 8:16, x 8:16
    src = VolumeSource(name="z", image_path=group, label_path=group / "labels" / "cells")
    with pytest.raises(DataError, match=r"volume 'z'.*chunk \(0, 1, 1, 1\) of Zarr array .* is missing"):
        build(volumes=[src], index_path=tmp_path / "i.sqlite", crop_shape=(6, 10, 12))
    assert not (tmp_path / "i.sqlite").exists()
    index = build(
        volumes=[src], index_path=tmp_path / "i.sqlite", crop_shape=(6, 10, 12), allow_missing_chunks=True
    )
    assert len(index) > 0


def test_build_from_catalog_selection(tmp_path):
    from ls_data.catalog import Catalog, Selection

    data = tmp_path / "data"
    for k, split in enumerate(["train", "train", "val"]):
        src = write_pair(data, f"v{k}", seed=20 + k)
        with Catalog(f"sqlite:///{tmp_path / 'cat.sqlite'}", roots=[tmp_path], create=True) as cat:
            cat.add_volume(
                name=f"v{k}",
                image_uri=str(src.image_path.relative_to(tmp_path)),
                label_uri=str(src.label_path.relative_to(tmp_path)),
                format="tiff",
                shape=(2, 12, 20, 24),
                channels=2,
                spacing=(2.0, 0.5, 0.5),
                split=split,
            )
    url = f"sqlite:///{tmp_path / 'cat.sqlite'}"
    index = build(
        catalog=url, selection=Selection(splits=["train"]), index_path=tmp_path / "i.sqlite", crop_shape=6
    )
    assert {v.name for v in index.volumes()} == {"v0", "v1"}
    assert {v.catalog_id for v in index.volumes()} == {1, 2}
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    (data / "v2_image.tif").rename(outside / "v2_image.tif")
    (data / "v2_image.tif").symlink_to(outside / "v2_image.tif")
    with pytest.raises(DataError, match=r"volume 'v2'.*outside"):
        build(catalog=url, roots=[tmp_path], index_path=tmp_path / "j.sqlite", crop_shape=6)


# ----------------------------------------------------------------------------- distributed


def test_waiting_rank_times_out_with_a_clear_error(tmp_path, monkeypatch):
    src = write_pair(tmp_path, "v", seed=30)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(DataError, match=r"timed out after 0.3 s waiting for rank 0.*i.sqlite.*no index"):
        build(
            volumes=[src],
            index_path=tmp_path / "i.sqlite",
            crop_shape=6,
            wait_timeout=0.3,
            poll_interval=0.05,
        )
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(DataError, match="RANK='x'"):
        build(volumes=[src], index_path=tmp_path / "i.sqlite", crop_shape=6)


def test_rank_zero_builds_while_another_rank_waits(tmp_path, monkeypatch):
    src = write_pair(tmp_path, "v", seed=31)
    path = tmp_path / "i.sqlite"
    config = CropIndexConfig(crop_shape=(6, 10, 12))
    kwargs = dict(volumes=[src], index_path=path, config=config, wait_timeout=120, poll_interval=0.1)
    ctx = mp.get_context("spawn")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    waiter = ctx.Process(target=build_crop_index, kwargs=kwargs)
    waiter.start()  # the child copies the environment at start: it is rank 1
    time.sleep(1.0)
    assert waiter.is_alive() and not path.exists()
    monkeypatch.setenv("RANK", "0")
    built = build_crop_index(**kwargs)  # this process is rank 0
    waiter.join(120)
    assert waiter.exitcode == 0
    assert len(built) > 0
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_build_from_volume_records(tmp_path):
    from ls_data.catalog import Catalog

    src = write_pair(tmp_path / "data", "v", seed=40)
    with Catalog(f"sqlite:///{tmp_path / 'cat.sqlite'}", create=True) as cat:
        cat.add_volume(
            name="v",
            image_uri="data/v_image.tif",
            label_uri="data/v_labels.tif",
            format="tiff",
            shape=(2, 12, 20, 24),
            channels=2,
            spacing=(2.0, 0.5, 0.5),
        )
        records = cat.volumes()
    index = build(
        volumes=records, index_path=tmp_path / "i.sqlite", crop_shape=6, roots=[tmp_path]
    )
    assert index.volumes()[0].label_path == src.label_path.resolve() and index.volumes()[0].catalog_id == 1
    with pytest.raises(DataError, match=r"volume 'v'.*outside"):
        build(
            volumes=records, index_path=tmp_path / "j.sqlite", crop_shape=6, roots=[tmp_path / "data2"]
        )
    with pytest.raises(DataError, match="VolumeSource or catalog VolumeRecord"):
        build(volumes=["v"], index_path=tmp_path / "j.sqlite", crop_shape=6)


def test_torch_distributed_ranks(tmp_path, monkeypatch):
    """With torch.distributed: rank 0 always reaches the barrier (even when its build fails); other
    ranks open the index after the barrier, or fail clearly when rank 0 produced none."""
    from ls_data.index.distributed import RankInfo

    src = write_pair(tmp_path, "v", seed=41)
    kwargs = dict(volumes=[src], index_path=tmp_path / "i.sqlite", crop_shape=6)
    barriers = []
    monkeypatch.setattr(build_module, "rank_info", lambda: RankInfo(1, 2, True))
    monkeypatch.setattr(build_module, "barrier", lambda: barriers.append("rank 1"))
    with pytest.raises(DataError, match="rank 1: rank 0 did not produce the crop index"):
        build(**kwargs)
    assert barriers == ["rank 1"] and not (tmp_path / "i.sqlite").exists()

    def rank0_builds_meanwhile():
        barriers.append("rank 1")
        monkeypatch.setattr(build_module, "rank_info", lambda: RankInfo(0, 1, False))
        build(**kwargs)

    monkeypatch.setattr(build_module, "barrier", rank0_builds_meanwhile)
    assert len(build(**kwargs)) > 0

    monkeypatch.setattr(build_module, "rank_info", lambda: RankInfo(0, 2, True))
    monkeypatch.setattr(build_module, "barrier", lambda: barriers.append("rank 0"))
    monkeypatch.setattr(build_module, "select_instances", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        build(**kwargs, rebuild=True)
    assert barriers[-1] == "rank 0"


def test_volume_failing_midway_leaves_no_rows_when_skipped(tmp_path, monkeypatch):
    a = write_pair(tmp_path, "a", seed=42)
    b = write_pair(tmp_path, "b", seed=43)
    kwargs = dict(index_path=tmp_path / "i.sqlite", crop_shape=(6, 10, 12), min_instances_per_crop=0)
    alone = build(volumes=[a], **kwargs)
    calls = []
    real = build_module.select_instances

    def failing_in_b(*args, **kw):
        calls.append(1)
        if len(calls) == len(alone) + 2:  # b's second crop, after its first one was written
            raise DataError("chunk 0/1/1 is missing")
        return real(*args, **kw)

    monkeypatch.setattr(build_module, "select_instances", failing_in_b)
    with pytest.warns(SkippedVolumeWarning, match="volume 'b'.*chunk 0/1/1 is missing"):
        index = build(volumes=[a, b], skip_bad_volumes=True, rebuild=True, **kwargs)
    assert len(index) == len(alone) and [index.crop(i) for i in range(len(index))] == [
        alone.crop(i) for i in range(len(alone))
    ]
    with sqlite3.connect(index.path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM volumes").fetchone()[0] == 1
        assert conn.execute("SELECT COUNT(DISTINCT volume_id) FROM instances").fetchone()[0] == 1
        assert conn.execute("SELECT MAX(crop_id) FROM crop_instances").fetchone()[0] < len(alone)
    assert index.report["skipped"][0]["name"] == "b"
