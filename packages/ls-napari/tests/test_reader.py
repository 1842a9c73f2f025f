"""The reader: TIFF volumes with their spacing, OME-Zarr images with their labels and tables."""

from __future__ import annotations

import re

import numpy as np
import pytest

from ls_data.io import write_ome_zarr, write_tiff_pair
from ls_data.synth import synthesize_volume
from ls_napari.reader import get_reader, read_tiff
from ls_train.cli import predict_main

SPACING = (2.0, 0.5, 0.25)


@pytest.fixture(scope="module")
def volume():
    return synthesize_volume(
        shape=(8, 40, 48), spacing=SPACING, channels=2, num_objects=6, num_classes=2, seed=2
    )


def test_tiff_volumes_open_with_their_spacing(viewer, volume, tmp_path):
    image_tif, label_tif = write_tiff_pair(
        tmp_path, "vol", volume.image, volume.labels, SPACING, volume.classes
    )
    one_tif, _ = write_tiff_pair(tmp_path, "one", volume.image[:1], volume.labels, SPACING)

    [image] = viewer.open(str(image_tif), plugin="ls-napari")
    assert image.name == "vol_image" and image.data.shape == volume.image.shape
    np.testing.assert_array_equal(image.data, volume.image)
    assert tuple(image.scale) == (1.0, *SPACING)
    [one] = viewer.open(str(one_tif), plugin="ls-napari")
    assert one.ndim == 3 and tuple(one.scale) == SPACING

    [labels] = viewer.open(str(label_tif), plugin="ls-napari")
    assert type(labels).__name__ == "Labels" and tuple(labels.scale) == SPACING
    np.testing.assert_array_equal(labels.data, volume.labels)
    assert dict(zip(labels.features["index"], labels.features["class"], strict=True)) == volume.classes


def _level0(layer) -> np.ndarray:
    return np.asarray(layer.data[0] if layer.multiscale else layer.data)


@pytest.mark.slow(seconds=7)
def test_ome_zarr_opens_with_labels_and_the_ls_predict_table(viewer, volume, tmp_path, capsys):
    path = write_ome_zarr(tmp_path / "vol.ome.zarr", volume.image, SPACING, labels=volume.labels)
    # ls-predict (its threshold segmenter) adds labels/instances and vol_instances.csv
    args = ["--config-name=quickstart", f"data.root={tmp_path}", "predict.segmenter=threshold",
            "+predict.threshold_segmenter.threshold=400", f"input={path}", f"output={path}"]  # fmt: skip
    assert predict_main(args) == 0
    objects = int(re.search(r"ls-predict: (\d+) objects", capsys.readouterr().out).group(1))
    layers = viewer.open(str(path), plugin="ls-napari")
    kinds = sorted(type(layer).__name__ for layer in layers)
    assert kinds == ["Image", "Image", "Labels", "Labels"], kinds  # 2 channels, truth and prediction
    predicted = viewer.layers["instances"]
    assert predicted.visible and tuple(predicted.scale) == SPACING
    assert len(predicted.features) == objects > 0
    voxels = predicted.features["voxels"].to_numpy()
    np.testing.assert_allclose(predicted.features["volume_um3"], voxels * np.prod(SPACING))
    ids, counts = np.unique(_level0(predicted), return_counts=True)
    assert dict(zip(ids[1:], counts[1:], strict=True)) == dict(
        zip(predicted.features["index"], voxels, strict=True)
    )
    truth = viewer.layers["cells"]
    np.testing.assert_array_equal(_level0(truth), volume.labels)


def test_paths_it_does_not_read(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    assert get_reader(str(tmp_path / "notes.txt")) is None
    assert get_reader([str(tmp_path / "a.tif"), str(tmp_path / "b.tif")]) is None
    assert get_reader(str(tmp_path / "missing.tif")) is None
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"not a tiff")
    with pytest.raises(Exception, match=r"bad\.tif"):
        read_tiff(bad)
