"""SkittlezDataset: crop windows, masks, boxes, classes, meta, transforms, DataLoader workers."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from ls_data.dataset import SkittlezDataset
from ls_data.errors import DataError
from ls_data.index import CropIndexConfig, VolumeSource, build_crop_index
from ls_data.io import write_ome_zarr, write_tiff_pair

SPACING = (2.0, 0.5, 0.5)
CROP = (6, 10, 12)


def make_volume(seed: int, shape=(12, 20, 24), channels: int = 3, n: int = 8):
    """Image (C, Z, Y, X) uint16 and labels (Z, Y, X) with ``n`` boxy instances, classes 1/2."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.uint32)
    for k in range(1, n + 1):
        size = rng.integers(2, 7, size=3)
        start = [int(rng.integers(0, s - d + 1)) for s, d in zip(shape, size, strict=True)]
        labels[tuple(slice(a, a + d) for a, d in zip(start, size, strict=True))] = 10 * k
    image = rng.integers(0, 60000, size=(channels, *shape), dtype=np.uint16)
    return image, labels, {10 * k: 1 + k % 2 for k in range(1, n + 1)}


@pytest.fixture
def tiff_index(tmp_path) -> tuple[Path, np.ndarray, np.ndarray, dict]:
    image, labels, classes = make_volume(0)
    image_path, label_path = write_tiff_pair(tmp_path, "v", image, labels, SPACING, classes)
    path = tmp_path / "index.sqlite"
    build_crop_index(
        volumes=[VolumeSource("v", image_path, label_path)],
        index_path=path,
        config=CropIndexConfig(crop_shape=CROP, stride=(3, 5, 6)),
    )
    return path, image, labels, classes


def check_sample(sample, record, image: np.ndarray, labels: np.ndarray, classes: dict, channels) -> None:
    img, target, meta = sample
    window = record.window
    assert img.dtype == torch.float32 and img.shape == (len(channels), *CROP)
    np.testing.assert_array_equal(
        img.numpy(), image[list(channels)][(slice(None), *window)].astype(np.float32)
    )
    crop_labels = labels[window]
    ids = meta["label_ids"].tolist()
    assert ids == [inst.label_id for inst in record.instances] and len(ids) > 0
    masks = target["masks"]
    assert masks.dtype == torch.uint8 and masks.shape == (len(ids), *CROP)
    for k, label_id in enumerate(ids):
        np.testing.assert_array_equal(masks[k].numpy(), (crop_labels == label_id).astype(np.uint8))
        coords = np.nonzero(crop_labels == label_id)
        box = [c.min() for c in coords] + [c.max() + 1 for c in coords]
        assert target["boxes"][k].tolist() == pytest.approx(box)
    assert target["boxes"].dtype == torch.float32 and target["boxes"].shape == (len(ids), 6)
    assert target["labels"].dtype == torch.int64
    assert target["labels"].tolist() == [classes[i] for i in ids]
    assert meta["origin"] == record.origin and meta["spacing"] == pytest.approx(SPACING)
    assert meta["volume_name"] == "v" and meta["crop_index"] == record.index


def test_samples_match_the_volume(tiff_index):
    path, image, labels, classes = tiff_index
    ds = SkittlezDataset(index_path=path)
    assert len(ds) == len(ds.index) > 3
    for i in range(len(ds)):
        check_sample(ds[i], ds.index.crop(i), image, labels, classes, channels=(0, 1, 2))


def test_channels_mask_dtype_and_transforms(tiff_index):
    path, image, _, _ = tiff_index
    calls = []

    def transform(img, target, meta):
        calls.append(meta["crop_index"])
        return img * 2, target, {**meta, "seen": True}

    ds = SkittlezDataset(index_path=path, channels=[2, 0], mask_dtype="bool", transforms=transform)
    img, target, meta = ds[1]
    assert calls == [1] and meta["seen"] and meta["channels"] == (2, 0)
    np.testing.assert_array_equal(img.numpy() / 2, image[[2, 0]][(slice(None), *ds.index.crop(1).window)])
    assert target["masks"].dtype == torch.bool
    with pytest.raises(DataError, match="mask_dtype"):
        SkittlezDataset(index_path=path, mask_dtype="float16")
    with pytest.raises(DataError, match="channel index 5 is out of range"):
        SkittlezDataset(index_path=path, channels=[5])[0]
    with pytest.raises(DataError, match="does not exist"):
        SkittlezDataset(index_path=path.with_name("missing.sqlite"))


def test_ome_zarr_samples(tmp_path):
    image, labels, classes = make_volume(1)
    group = write_ome_zarr(
        tmp_path / "v.ome.zarr", image, SPACING, labels=labels, classes=classes, chunks=(4, 8, 8)
    )
    path = tmp_path / "index.sqlite"
    build_crop_index(
        volumes=[VolumeSource("v", group, group / "labels" / "cells")],
        index_path=path,
        config=CropIndexConfig(crop_shape=CROP),
    )
    ds = SkittlezDataset(index_path=path, channels=[1])
    for i in range(len(ds)):
        check_sample(ds[i], ds.index.crop(i), image, labels, classes, channels=(1,))


def test_ome_zarr_without_empty_chunks(tmp_path):
    """zarr-python does not store chunks that hold only the fill value: a strict build names the
    missing chunk and the option; with allow_missing_chunks the index and its dataset read it as 0."""
    image, labels, classes = make_volume(3)
    labels[8:, 16:, 16:] = 0  # chunk (2, 2, 2) of (4, 8, 8) chunks holds only background
    group = write_ome_zarr(
        tmp_path / "v.ome.zarr", image, SPACING, labels=labels, classes=classes, chunks=(4, 8, 8)
    )
    array = group / "labels" / "cells" / "0"
    keys = (array / "2" / "2" / "2", array / "2.2.2", array / "c" / "2" / "2" / "2")  # v2 "/" or ".", v3
    (chunk,) = [p for p in keys if p.exists()]
    chunk.unlink()
    volumes = [VolumeSource("v", group, group / "labels" / "cells")]
    with pytest.raises(DataError, match=r"chunk \(2, 2, 2\).*missing.*allow_missing_chunks=True"):
        build_crop_index(volumes=volumes, index_path=tmp_path / "strict.sqlite", config=CropIndexConfig(CROP))
    path = tmp_path / "index.sqlite"
    config = CropIndexConfig(crop_shape=CROP, allow_missing_chunks=True)
    build_crop_index(volumes=volumes, index_path=path, config=config)
    ds = SkittlezDataset(index_path=path)  # the index says how to read
    assert ds.allow_missing_chunks and len(ds) > 0
    for i in range(len(ds)):
        check_sample(ds[i], ds.index.crop(i), image, labels, classes, channels=(0, 1, 2))


def test_stale_label_file_is_reported(tmp_path):
    image, labels, classes = make_volume(2)
    image_path, label_path = write_tiff_pair(tmp_path, "v", image, labels, SPACING, classes)
    path = tmp_path / "index.sqlite"
    build_crop_index(
        volumes=[VolumeSource("v", image_path, label_path)], index_path=path, config=CropIndexConfig(CROP)
    )
    labels[:] = 0
    write_tiff_pair(tmp_path, "v", image, labels, SPACING, classes)
    with pytest.raises(DataError, match=r"v_labels.tif.*changed since the index was built"):
        SkittlezDataset(index_path=path)[0]


def test_a_missing_index_is_an_error_naming_it_and_how_to_build_it(tmp_path):
    missing = tmp_path / "nowhere" / "train.sqlite"
    pattern = rf"crop index '{missing}' does not exist; build it first.*build_crop_index"
    with pytest.raises(DataError, match=pattern):
        SkittlezDataset(missing)
    assert not (tmp_path / "nowhere").exists()


def test_a_stale_index_is_an_error_naming_it(tiff_index):
    path = tiff_index[0]
    built = SkittlezDataset(path).index.fingerprint
    assert len(SkittlezDataset(path, fingerprint=built)) > 0
    pattern = rf"crop index '{path}' is stale: its fingerprint is {built[:12]}, expected 0000"
    with pytest.raises(DataError, match=pattern):
        SkittlezDataset(path, fingerprint="0" * 64)


class _WithWorkerInfo(Dataset):
    """Wraps a dataset; each item also says which process made it and whose SQLite connection it used."""

    def __init__(self, inner: SkittlezDataset) -> None:
        self.inner = inner

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, i):
        sample = self.inner[i]
        return sample, os.getpid(), self.inner.index._pid, id(self.inner.index._conn)


def test_dataloader_with_two_workers(tiff_index):
    from ls_data.loader import collate_detection

    path, image, labels, classes = tiff_index
    ds = SkittlezDataset(index_path=path)
    ds[0]  # the parent opens its connection and readers first; workers must not reuse them
    parent_conn = ds.index._conn
    loader = DataLoader(
        _WithWorkerInfo(ds),
        batch_size=2,
        num_workers=2,
        collate_fn=lambda batch: (collate_detection([b[0] for b in batch]), [b[1:] for b in batch]),
    )
    seen = 0
    pids = set()
    for (images, targets, metas), infos in loader:
        for img, target, meta, (pid, conn_pid, _) in zip(images, targets, metas, infos, strict=True):
            record = ds.index.crop(meta["crop_index"])
            check_sample((img, target, meta), record, image, labels, classes, channels=(0, 1, 2))
            assert conn_pid == pid != os.getpid()
            pids.add(pid)
            seen += 1
    assert seen == len(ds) and len(pids) == 2
    assert ds.index._conn is parent_conn


@pytest.mark.slow(seconds=8)
def test_ome_zarr_with_spawned_workers_after_the_parent_used_tensorstore(tmp_path):
    from ls_data.loader import collate_detection

    image, labels, classes = make_volume(3)
    group = write_ome_zarr(tmp_path / "v.ome.zarr", image, SPACING, labels=labels, classes=classes)
    path = tmp_path / "index.sqlite"
    build_crop_index(
        volumes=[VolumeSource("v", group, group / "labels" / "cells")],
        index_path=path,
        config=CropIndexConfig(crop_shape=CROP),
    )
    ds = SkittlezDataset(index_path=path)
    ds[0]  # TensorStore is now in use here: workers must not be forked from this process
    loader = DataLoader(
        ds, batch_size=1, num_workers=1, collate_fn=collate_detection, multiprocessing_context="spawn"
    )
    seen = 0
    for images, targets, metas in loader:
        record = ds.index.crop(metas[0]["crop_index"])
        check_sample((images[0], targets[0], metas[0]), record, image, labels, classes, channels=(0, 1, 2))
        seen += 1
    assert seen == len(ds)
