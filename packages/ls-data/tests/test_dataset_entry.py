"""parse_dataset_entry: a dataset entry split into the index to build and the dataset to open."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ls_data.catalog import Catalog, Selection
from ls_data.dataset import SkittlezDataset
from ls_data.dataset_entry import DatasetEntry, IndexBuild, parse_dataset_entry
from ls_data.errors import DataError
from ls_data.index import CropIndexConfig
from ls_data.io import write_tiff_pair
from ls_data.registry import RegistryError

CROP = (6, 10, 12)
SPACING = (2.0, 0.5, 0.5)


def make_catalog(tmp_path: Path) -> str:
    """A catalog of two 3-channel TIFF volumes with boxy instances, split train and val."""
    url = f"sqlite:///{tmp_path / 'catalog.sqlite'}"
    rng = np.random.default_rng(0)
    with Catalog(url, roots=[tmp_path], create=True) as catalog:
        for k, split in enumerate(["train", "val"]):
            labels = np.zeros((12, 20, 24), np.uint32)
            for label in range(1, 7):
                z, y, x = (int(rng.integers(0, s - 5)) for s in labels.shape)
                labels[z : z + 4, y : y + 4, x : x + 4] = label
            image = rng.integers(0, 1000, size=(3, *labels.shape), dtype=np.uint16)
            image_path, label_path = write_tiff_pair(tmp_path / "tiff", f"v{k}", image, labels, SPACING)
            catalog.add_volume(name=f"v{k}", image_uri=str(image_path), label_uri=str(label_path),
                               format="tiff", shape=image.shape, channels=3, spacing=SPACING,
                               split=split)
    return url


def test_an_entry_with_a_catalog_is_an_index_build_then_a_dataset(tmp_path):
    url = make_catalog(tmp_path)
    entry = parse_dataset_entry(
        {"name": "skittlez", "index_path": str(tmp_path / "train.sqlite"), "catalog": url,
         "selection": {"splits": ["train"]}, "crop_shape": list(CROP), "stride": 6, "channels": [0],
         "roots": [str(tmp_path)], "min_instances_per_crop": 0},
        "datasets.database",
    )
    assert entry.entry == {"name": "skittlez", "index_path": str(tmp_path / "train.sqlite"), "channels": [0]}
    assert entry.index == IndexBuild(
        index_path=tmp_path / "train.sqlite", catalog=url,
        config=CropIndexConfig(crop_shape=CROP, stride=6, channels=(0,), min_instances_per_crop=0),
        selection=Selection(splits=["train"]), roots=(str(tmp_path),),
    )
    assert not (tmp_path / "train.sqlite").exists()  # parsing opens nothing
    index = entry.index.build()
    dataset = entry.open(fingerprint=index.fingerprint)
    assert isinstance(dataset, SkittlezDataset) and len(dataset) == len(index) > 0
    assert {v.name for v in dataset.index.volumes()} == {"v0"}
    assert dataset[0][0].shape == (1, *CROP)


def test_an_entry_without_a_catalog_opens_the_index_as_it_is(tmp_path):
    entry = parse_dataset_entry({"_target_": "ls_data.dataset.SkittlezDataset",
                                 "index_path": "i.sqlite", "crop_shape": 8}, "evaluation.database")
    opened = {"_target_": "ls_data.dataset.SkittlezDataset", "index_path": "i.sqlite"}
    assert entry == DatasetEntry("evaluation.database", opened, None)
    with pytest.raises(DataError, match=r"crop index 'i\.sqlite' does not exist"):
        entry.open()


def test_other_datasets_get_their_keys_as_they_are():
    entry = parse_dataset_entry({"_target_": "torch.utils.data.TensorDataset", "tensors": []}, "x")
    assert entry == DatasetEntry("x", {"_target_": "torch.utils.data.TensorDataset", "tensors": []}, None)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"crop_shape": [0, 64, 64]}, r"^datasets\.database: crop_shape must be >= 1"),
        ({"crop_shape": [8, 64, 64], "stride": [8, -1, 8]}, r"^datasets\.database: stride must be >= 1"),
        ({"crop_shape": None}, r"crop_shape is required to build an index from a catalog"),
        ({"crop_shape": 8, "selection": {"nope": 1}}, r"bad selection"),
        ({"crop_shape": 8, "crop_shap": 8}, r"^datasets\.database\.crop_shap: unknown key.*crop_shape"),
        ({"crop_shape": 8, "transforms": []}, r"'transforms' is set by the caller"),
    ],
)
def test_bad_entries_are_refused_without_opening_anything(tmp_path: Path, arguments: dict, message: str):
    entry = {"name": "skittlez", "index_path": str(tmp_path / "i.sqlite"),
             "catalog": f"sqlite:///{tmp_path / 'catalog.sqlite'}", **arguments}
    with pytest.raises(DataError, match=message):
        parse_dataset_entry(entry, "datasets.database")
    with pytest.raises(RegistryError, match=r"datasets\.database: .*unknown dataset 'skitlez'"):
        parse_dataset_entry({**entry, "name": "skitlez"}, "datasets.database")
    assert not list(tmp_path.iterdir())


def test_a_mistyped_catalog_is_an_error_and_creates_nothing(tmp_path):
    from ls_data.catalog import CatalogNotFoundError

    typo = tmp_path / "typo.sqlite"
    entry = parse_dataset_entry({"name": "skittlez", "index_path": str(tmp_path / "i.sqlite"),
                                 "catalog": f"sqlite:///{typo}", "crop_shape": 6}, "datasets.database")
    with pytest.raises(CatalogNotFoundError, match=rf"no file '{typo}'.*ls-data catalog register"):
        entry.index.build()
    assert list(tmp_path.iterdir()) == []
