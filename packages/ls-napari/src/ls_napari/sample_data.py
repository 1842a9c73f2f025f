"""Sample data: a synthetic light-sheet volume and its exact instance labels (``ls-data synth``).

The volume is drawn like the quickstart's training data (ellipsoids, spacing 2 x 0.5 x 0.5 µm,
one channel), so a quickstart checkpoint segments it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["SAMPLE_SHAPE", "synthetic_sample"]

SAMPLE_SHAPE = (32, 128, 128)
"""Voxels ``(z, y, x)`` of the sample volume."""

_OBJECTS_PER_VOXEL = 40 / (24 * 96 * 96)  # the quickstart's density


def synthetic_sample(
    shape: Sequence[int] = SAMPLE_SHAPE, *, seed: int = 0
) -> list[tuple[np.ndarray, dict[str, Any], str]]:
    """The image (``synthetic image``) and the true labels (``synthetic truth``, with each
    object's class as a feature) as napari layer data, scaled by the voxel spacing."""
    from ls_data.synth import synthesize_volume

    shape = tuple(int(s) for s in shape)
    objects = max(1, round(_OBJECTS_PER_VOXEL * float(np.prod(shape))))
    vol = synthesize_volume(
        style="ellipsoids", shape=shape, spacing=(2.0, 0.5, 0.5), channels=1, num_objects=objects,
        num_classes=1, seed=seed,
    )  # fmt: skip
    scale = tuple(float(s) for s in vol.spacing)
    ids = sorted(vol.classes)
    truth = pd.DataFrame({"index": ids, "class": [vol.classes[i] for i in ids]})
    image_meta = {
        "name": "synthetic image",
        "scale": scale,
        "colormap": "gray",
        "metadata": {"spacing": scale},
    }
    label_meta = {"name": "synthetic truth", "scale": scale, "features": truth, "opacity": 0.5}
    return [(vol.image[0], image_meta, "image"), (vol.labels, label_meta, "labels")]
