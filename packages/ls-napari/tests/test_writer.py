"""The writer: a Labels layer into an OME-Zarr image (NGFF label image) and as TIFF, read back."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ls_data.io import check_ngff_labels, open_labels, write_ome_zarr
from ls_data.synth import synthesize_volume
from ls_napari.reader import read_tiff
from ls_napari.writer import write_labels

SPACING = (2.0, 0.5, 0.5)


@pytest.fixture
def labels_layer(viewer):
    vol = synthesize_volume(
        shape=(8, 64, 64), spacing=SPACING, channels=1, num_objects=8, num_classes=2, seed=4
    )
    edited = vol.labels.astype(np.int32)
    edited[edited == 3] = 0  # an object deleted by hand
    edited[0:2, 0:4, 0:4] = 99  # one painted by hand
    classes = {i: vol.classes.get(i, 1) for i in np.unique(edited) if i}
    features = pd.DataFrame({"index": sorted(classes), "class": [classes[i] for i in sorted(classes)]})
    layer = viewer.add_labels(edited, name="edited cells", scale=SPACING, features=features)
    return vol, layer, classes


def test_into_an_ome_zarr_image_and_back(viewer, labels_layer, tmp_path):
    vol, layer, classes = labels_layer
    image = write_ome_zarr(tmp_path / "vol.ome.zarr", vol.image, SPACING, labels=vol.labels, levels=2)
    [written] = layer.save(str(image), plugin="ls-napari")
    assert written.endswith("vol.ome.zarr/labels/edited_cells")
    check_ngff_labels(image, "edited_cells")
    reader = open_labels(image / "labels" / "edited_cells")
    np.testing.assert_array_equal(reader.read(), layer.data)
    assert tuple(reader.spacing) == SPACING and reader.classes() == classes
    np.testing.assert_array_equal(open_labels(image / "labels" / "cells").read(), vol.labels)  # kept
    reopened = viewer.open(str(image), plugin="ls-napari")
    assert "edited_cells" in [layer.name for layer in reopened]

    layer.data[layer.data == 99] = 0  # saved again: replaced
    write_labels(str(image), layer.data, {"name": "edited cells", "scale": SPACING})
    assert 99 not in open_labels(image / "labels" / "edited_cells").read()


def test_as_tiff_and_back(labels_layer, tmp_path):
    _, layer, classes = labels_layer
    [written] = layer.save(str(tmp_path / "edited_labels.tif"), plugin="ls-napari")
    [(data, meta, kind)] = read_tiff(written)
    assert kind == "labels" and tuple(meta["scale"]) == SPACING
    np.testing.assert_array_equal(data, layer.data)
    assert dict(zip(meta["features"]["index"], meta["features"]["class"], strict=True)) == classes
    big = np.zeros((4, 8, 8), np.uint32)
    big[0, 0, 0] = 70_000
    write_labels(str(tmp_path / "big_labels.tif"), big, {"name": "big", "scale": SPACING})
    np.testing.assert_array_equal(open_labels(tmp_path / "big_labels.tif").read(), big)


def test_refusals_name_the_problem(tmp_path):
    labels = np.zeros((4, 8, 8), np.int32)
    with pytest.raises(ValueError, match="not an existing OME-Zarr image"):
        write_labels(str(tmp_path / "new.ome.zarr"), labels, {"name": "x"})
    with pytest.raises(ValueError, match=r"layer 'flat': labels of shape \(8, 8\)"):
        write_labels(str(tmp_path / "a.tif"), np.zeros((8, 8), np.int32), {"name": "flat"})
    with pytest.raises(ValueError, match=r"save labels as \.tif/\.tiff or into an OME-Zarr"):
        write_labels(str(tmp_path / "a.png"), labels, {"name": "x"})
