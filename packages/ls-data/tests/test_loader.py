"""gather_dataset, collate_detection, DataLoader options, splits and the distributed sampler."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler, SequentialSampler

from ls_data.errors import DataError
from ls_data.loader import (
    LOADER_KEYS,
    build_dataloaders,
    collate_detection,
    gather_dataset,
    loader_options,
    worker_init_fn,
)
from ls_data.registry import RegistryError
from ls_data.sampler import EpochShuffleSampler
from ls_data.transforms import Compose, boxes_from_masks

TINY_DATASET = """
import numpy as np
import torch


class TinyDataset:
    '''n samples (C=1, Z=2, Y=6, X=6) with i % 3 + 1 instances each; meta records a numpy draw.'''

    def __init__(self, *, n: int, transforms=None) -> None:
        self.n = n
        self.transforms = transforms

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        count = i % 3 + 1
        masks = torch.zeros((count, 2, 6, 6), dtype=torch.uint8)
        for k in range(count):
            masks[k, :, 2 * k : 2 * k + 2, k : k + 3] = 1
        boxes = torch.tensor([[0, 2 * k, k, 2, 2 * k + 2, k + 3] for k in range(count)], dtype=torch.float32)
        target = {"boxes": boxes, "labels": torch.ones(count, dtype=torch.int64), "masks": masks}
        meta = {"index": i, "origin": (0, 0, 0), "spacing": (2.0, 1.0, 1.0),
                "label_ids": list(range(1, count + 1)), "numpy_draw": float(np.random.rand())}
        image = torch.full((1, 2, 6, 6), float(i))
        if self.transforms is not None:
            return self.transforms(image, target, meta)
        return image, target, meta


class NoTransforms:
    def __init__(self, *, n: int) -> None:
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return torch.zeros(1), {}, {}
"""


@pytest.fixture
def tiny(tmp_path: Path, monkeypatch) -> str:
    """Import path of the in-test dataset module."""
    (tmp_path / "ls_data_tiny_dataset.py").write_text(textwrap.dedent(TINY_DATASET))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "ls_data_tiny_dataset"


def config(tiny: str, n: int = 8, transforms=None, **loader) -> dict:
    cfg = {"datasets": {"database": {"_target_": f"{tiny}.TinyDataset", "n": n}, **loader}}
    if transforms is not None:
        cfg["transforms"] = {"transforms_list": transforms}
    return cfg


def test_collate_keeps_varying_instance_counts_as_lists() -> None:
    samples = [(torch.zeros(1, 2, 3, 3), {"boxes": torch.zeros(k, 6)}, {"i": k}) for k in (1, 3)]
    images, targets, metas = collate_detection(samples)
    assert len(images) == 2 and [t["boxes"].shape[0] for t in targets] == [1, 3]
    assert metas == [{"i": 1}, {"i": 3}]
    images, targets, metas = collate_detection([(torch.zeros(1), {})])
    assert metas == [{}]
    with pytest.raises(DataError, match="sample 1 must be"):
        collate_detection([(torch.zeros(1), {}, {}), torch.zeros(1)])


def test_returns_the_dataset_with_its_transforms(tiny: str) -> None:
    transforms = [{"name": "random_flip", "axes": ["y"], "p": 1.0}]
    dataset = gather_dataset(config(tiny, n=5, transforms=transforms))
    assert type(dataset).__name__ == "TinyDataset" and len(dataset) == 5
    assert isinstance(dataset.transforms, Compose) and len(dataset.transforms) == 1
    _, target, _ = dataset[1]
    torch.testing.assert_close(target["boxes"], boxes_from_masks(target["masks"]))
    assert target["boxes"][0].tolist() == [0, 4, 0, 2, 6, 3]  # y flipped: [0, 2) -> [4, 6)
    assert gather_dataset(config(tiny, n=5)).transforms is None  # nothing passed without a list


def test_train_and_val_loaders_have_the_right_sizes_and_batches(tiny: str) -> None:
    cfg = config(tiny, n=10, return_dataloaders=True, batch_size=3, val_fraction=0.2, split_seed=4)
    loaders = gather_dataset(cfg)
    assert set(loaders) == {"train", "val"}
    assert len(loaders["train"].dataset) == 8 and len(loaders["val"].dataset) == 2
    assert len(loaders["train"]) == 3 and len(loaders["val"]) == 1
    assert isinstance(loaders["train"].sampler, EpochShuffleSampler)
    assert isinstance(loaders["val"].sampler, SequentialSampler)
    seen = []
    for images, targets, metas in loaders["train"]:
        assert isinstance(images, list) and len(images) == len(targets) == len(metas) <= 3
        for image, target, meta in zip(images, targets, metas, strict=True):
            assert image.shape == (1, 2, 6, 6) and target["masks"].shape[0] == meta["index"] % 3 + 1
            seen.append(meta["index"])
    val = [m["index"] for _, _, metas in loaders["val"] for m in metas]
    assert sorted(seen + val) == list(range(10))
    # the split is a function of split_seed only
    again = gather_dataset(cfg)
    assert list(again["val"].dataset.indices) == list(loaders["val"].dataset.indices)
    other = gather_dataset(config(tiny, n=10, return_dataloaders=True, val_fraction=0.2, split_seed=5))
    assert list(other["train"].dataset.indices) != list(loaders["train"].dataset.indices)


def test_no_split_gives_one_shuffled_or_ordered_loader(tiny: str) -> None:
    loaders = gather_dataset(config(tiny, n=4, return_dataloaders=True, shuffle=False, batch_size=2))
    assert set(loaders) == {"train"} and isinstance(loaders["train"].sampler, SequentialSampler)
    assert [m["index"] for _, _, metas in loaders["train"] for m in metas] == [0, 1, 2, 3]
    one_val = build_dataloaders(gather_dataset(config(tiny, n=3)), val_fraction=0.01)
    assert len(one_val["val"].dataset) == 1  # at least one sample when val_fraction > 0


def test_seeded_shuffle_is_reproducible(tiny: str) -> None:
    cfg = config(tiny, n=12, return_dataloaders=True, batch_size=12, seed=3)
    order = [[m["index"] for m in next(iter(gather_dataset(cfg)["train"]))[2]] for _ in range(2)]
    assert order[0] == order[1] and order[0] != list(range(12))


def test_worker_batch_size_overrides_datasets_batch_size(tiny: str) -> None:
    cfg = config(tiny, n=8, return_dataloaders=True, batch_size=2)
    cfg["worker_batch_size"] = 4
    assert gather_dataset(cfg)["train"].batch_size == 4


@pytest.mark.slow(seconds=7)
def test_workers_are_persistent_and_seed_numpy_differently(tiny: str) -> None:
    cfg = config(tiny, n=4, return_dataloaders=True, batch_size=1, num_workers=2, shuffle=False, seed=0)
    loader = gather_dataset(cfg)["train"]
    assert loader.persistent_workers and loader.worker_init_fn is worker_init_fn
    draws = [metas[0]["numpy_draw"] for _, _, metas in loader]
    # samples 0 and 1 are the first of worker 0 and worker 1: different numpy states
    assert draws[0] != draws[1]
    assert not gather_dataset(config(tiny, n=4, return_dataloaders=True))["train"].persistent_workers


@pytest.mark.slow(seconds=8)
def test_workers_reseed_a_pipeline_generator(tiny: str) -> None:
    transforms = [{"name": "gaussian_noise", "std": 1.0, "p": 1.0}]
    cfg = config(tiny, n=2, transforms=transforms, return_dataloaders=True, num_workers=2, shuffle=False)
    loader = gather_dataset(cfg)["train"]
    loader.dataset.transforms.set_generator(torch.Generator().manual_seed(0))
    noise = [images[0] - metas[0]["index"] for images, _, metas in loader]
    # each worker's first sample; without the reseed both workers would add the same noise
    assert not torch.allclose(noise[0], noise[1], atol=1e-3)


def test_worker_init_fn_outside_a_worker_does_nothing() -> None:
    state = torch.get_rng_state()
    worker_init_fn(0)
    assert torch.equal(torch.get_rng_state(), state)


def test_distributed_run_uses_a_distributed_sampler(tiny: str, tmp_path: Path) -> None:
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        cfg = config(tiny, n=6, return_dataloaders=True, batch_size=2, val_fraction=0.5, seed=1)
        loaders = gather_dataset(cfg)
        train, val = loaders["train"].sampler, loaders["val"].sampler
        assert isinstance(train, DistributedSampler) and isinstance(val, DistributedSampler)
        assert train.shuffle and not val.shuffle and train.seed == 1
        assert train.num_replicas == 1 and train.rank == 0
        assert sum(len(metas) for _, _, metas in loaders["train"]) == 3
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize(
    ("update", "error", "pattern"),
    [
        ({"batch_szie": 2}, DataError,
         r"datasets.batch_szie: unknown key; known keys: database, return_dataloaders"),
        ({"batch_size": 0}, DataError, r"datasets.batch_size must be an int >= 1, got 0"),
        ({"num_workers": 1.5}, DataError, r"datasets.num_workers must be an int >= 0"),
        ({"val_fraction": 1.0}, DataError, r"datasets.val_fraction must be a number in \[0, 1\)"),
        ({"shuffle": "yes"}, DataError, r"datasets.shuffle must be true or false"),
        ({"database": {"name": "skitlez"}}, RegistryError,
         r"datasets.database: unknown dataset 'skitlez'.*skittlez"),
        ({"database": {"_target_": "TINY.TinyDataset", "m": 3}}, DataError,
         r"datasets.database \(_target_ 'ls_data_tiny_dataset.TinyDataset'\): unknown key 'm'"),
    ],
)  # fmt: skip
def test_bad_configs_name_the_key(tiny: str, update: dict, error: type, pattern: str) -> None:
    cfg = config(tiny, return_dataloaders=True)
    if "database" in update:
        update = {"database": {k: v.replace("TINY", tiny) if k == "_target_" else v
                               for k, v in update["database"].items()}}  # fmt: skip
    cfg["datasets"].update(update)
    with pytest.raises(error, match=pattern):
        gather_dataset(cfg)


def test_missing_sections_and_rejected_transforms(tiny: str) -> None:
    with pytest.raises(DataError, match="'datasets' section with a 'database'"):
        gather_dataset({"transforms": {"transforms_list": []}})
    cfg = {"datasets": {"database": {"_target_": f"{tiny}.NoTransforms", "n": 2}},
           "transforms": {"transforms_list": [{"name": "random_flip"}]}}  # fmt: skip
    with pytest.raises(DataError, match=r"NoTransforms'\): unknown key 'transforms'"):
        gather_dataset(cfg)
    with pytest.raises(DataError, match=r"transforms.transforms_list\[0\]"):
        gather_dataset(config(tiny, transforms=[{"name": "random_flip", "prob": 1.0}]))
    with pytest.raises(DataError, match="too few for val_fraction"):
        gather_dataset(config(tiny, n=1, return_dataloaders=True, val_fraction=0.5))


def write_volumes(folder: Path) -> None:
    """Two small TIFF volumes with cuboid instances (distinct ids, classes 1 and 2)."""
    from ls_data.io import write_tiff_pair

    rng = np.random.default_rng(0)
    for v in range(2):
        labels = np.zeros((8, 16, 16), np.uint16)
        next_id = 1
        for z0 in (0, 4):
            for y0 in range(0, 16, 5):
                for x0 in range(0, 16, 6):
                    labels[z0 : z0 + 3, y0 : y0 + 3, x0 : x0 + 4] = next_id
                    next_id += 1
        image = rng.integers(0, 4000, size=(2, 8, 16, 16), dtype=np.uint16)
        classes = {i: 1 + i % 2 for i in range(1, next_id)}
        write_tiff_pair(folder, f"vol{v}", image, labels, (2.0, 0.5, 0.5), classes)


def test_gather_skittlez_dataset_end_to_end(tmp_path: Path) -> None:
    from ls_data.catalog import Catalog

    data = tmp_path / "tiff"
    write_volumes(data)
    url = f"sqlite:///{tmp_path / 'catalog.sqlite'}"
    with Catalog(url, roots=[tmp_path], create=True) as catalog:
        catalog.register_folder(data, split="train")
    cfg = {
        "transforms": {"transforms_list": [
            {"name": "random_crop", "size": [4, 6, 6], "prefer_foreground": 1.0},
            {"name": "random_flip", "p": 0.5},
            {"name": "random_rot90_yx", "p": 0.5},
            {"name": "normalize_intensity", "mode": "percentile"},
            {"name": "rescale_to_spacing", "target_spacing": [2.0, 1.0, 1.0]},
        ]},
        "datasets": {
            "database": {"name": "skittlez", "index_path": str(tmp_path / "crops.sqlite"), "catalog": url,
                         "crop_shape": [4, 8, 8], "roots": [str(tmp_path)]},
            "return_dataloaders": True, "batch_size": 3, "val_fraction": 0.25, "split_seed": 0, "seed": 0,
        },
    }  # fmt: skip
    torch.manual_seed(0)  # the transforms draw from the global RNG (no workers here)
    loaders = gather_dataset(cfg)
    n = len(loaders["train"].dataset) + len(loaders["val"].dataset)
    assert n == 16  # 2 volumes x (2 x 2 x 2) crops of 4x8x8, every one holding instances
    assert len(loaders["val"].dataset) == 4
    batches = 0
    for images, targets, metas in loaders["train"]:
        batches += 1
        for image, target, meta in zip(images, targets, metas, strict=True):
            assert image.dtype == torch.float32 and image.shape == (2, 4, 3, 3)
            assert target["masks"].shape[1:] == (4, 3, 3)
            torch.testing.assert_close(target["boxes"], boxes_from_masks(target["masks"]))
            assert len(meta["label_ids"]) == len(target["labels"]) == target["masks"].shape[0]
            assert set(target["labels"].tolist()) <= {1, 2}
            assert sorted(meta["spacing"]) == [1.0, 1.0, 2.0]
    assert batches == 4


def test_workers_start_by_forkserver_once_tensorstore_is_imported(tiny: str) -> None:
    # a forked child of a process with running TensorStore threads aborts
    import tensorstore  # noqa: F401

    loader = gather_dataset(config(tiny, n=2, return_dataloaders=True, num_workers=1))["train"]
    assert loader.multiprocessing_context.get_start_method() == "forkserver"
    fork = gather_dataset(
        config(tiny, n=2, return_dataloaders=True, num_workers=1, multiprocessing_context="fork")
    )["train"]
    assert fork.multiprocessing_context.get_start_method() == "fork"
    with pytest.raises(DataError, match=r"datasets.multiprocessing_context must be"):
        gather_dataset(config(tiny, n=2, return_dataloaders=True, multiprocessing_context="threads"))


def test_loader_options_fill_defaults_and_name_bad_values() -> None:
    options = loader_options({"batch_size": 4})
    assert options == {**LOADER_KEYS, "batch_size": 4, "val_fraction": 0.0}
    assert loader_options({"batch_size": 4}, worker_batch_size=2)["batch_size"] == 2
    for key, value, rule in [
        ("batch_size", 0, "an int >= 1"),
        ("num_workers", -1, "an int >= 0"),
        ("val_fraction", 1.5, r"a number in \[0, 1\)"),
        ("shuffle", "yes", "true or false"),
    ]:
        with pytest.raises(DataError, match=rf"datasets\.{key} must be {rule}, got"):
            loader_options({key: value})
