"""The sample data: a synthetic light-sheet volume and its labels, opened through napari."""

from __future__ import annotations

import numpy as np

from ls_napari.sample_data import SAMPLE_SHAPE


def test_sample_opens_in_napari_with_its_spacing(viewer):
    viewer.open_sample("ls-napari", "synthetic")
    image, truth = viewer.layers["synthetic image"], viewer.layers["synthetic truth"]
    assert image.data.shape == truth.data.shape == SAMPLE_SHAPE
    assert tuple(image.scale) == tuple(truth.scale) == (2.0, 0.5, 0.5)
    ids = np.unique(truth.data)[1:]
    assert len(ids) > 50 and list(truth.features["index"]) == ids.tolist()
    inside = image.data[truth.data > 0].mean()
    assert inside > 1.5 * image.data[truth.data == 0].mean(), "objects are brighter than the background"
