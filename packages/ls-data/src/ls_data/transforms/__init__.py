"""Joint transforms of ``(image, target, meta)`` samples and the config -> pipeline builder.

Each transform is registered in the ``ls.transforms`` entry-point group under the name given
below; :func:`build_transforms` turns a list of ``{"name": ..., **kwargs}`` or
``{"_target_": ..., **kwargs}`` dicts into a :class:`Compose`.

=====================  ==========================
name                   class
=====================  ==========================
random_crop            :class:`RandomCrop3D`
random_flip            :class:`RandomFlip`
random_rot90_yx        :class:`RandomRot90YX`
random_zoom            :class:`RandomZoom3D`
random_elastic         :class:`RandomElastic3D`
normalize_intensity    :class:`NormalizeIntensity`
random_gamma           :class:`RandomGamma`
gaussian_noise         :class:`GaussianNoise`
random_blur            :class:`RandomBlur`
random_stripes         :class:`RandomStripes`
random_intensity_scale :class:`RandomIntensityScale`
rescale_to_spacing     :class:`RescaleToSpacing`
=====================  ==========================
"""

from __future__ import annotations

from ls_data.transforms.base import Compose, RandomTransform, Transform, build_transforms
from ls_data.transforms.elastic import RandomElastic3D
from ls_data.transforms.intensity import (
    GaussianNoise,
    NormalizeIntensity,
    RandomBlur,
    RandomGamma,
    RandomIntensityScale,
    RandomStripes,
)
from ls_data.transforms.resample import RescaleToSpacing
from ls_data.transforms.spatial import RandomCrop3D, RandomFlip, RandomRot90YX, RandomZoom3D
from ls_data.transforms.targets import (
    PER_INSTANCE_META_KEYS,
    boxes_from_masks,
    drop_empty_instances,
    select_instances,
)

__all__ = [
    "PER_INSTANCE_META_KEYS",
    "Compose",
    "GaussianNoise",
    "NormalizeIntensity",
    "RandomBlur",
    "RandomCrop3D",
    "RandomElastic3D",
    "RandomFlip",
    "RandomGamma",
    "RandomIntensityScale",
    "RandomRot90YX",
    "RandomStripes",
    "RandomTransform",
    "RandomZoom3D",
    "RescaleToSpacing",
    "Transform",
    "boxes_from_masks",
    "build_transforms",
    "drop_empty_instances",
    "select_instances",
]
