"""Synthetic light-sheet data: determinism, geometry, optics, noise statistics and dataset writing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ls_data.errors import DataError
from ls_data.io import open_image, open_labels
from ls_data.synth import (
    _draw_ellipsoid,
    _random_rotation,
    _stripe_pattern,
    class_spectrum,
    gaussian_blur,
    synthesize_dataset,
    synthesize_volume,
)

SMALL = {"shape": (12, 48, 48), "spacing": (2.0, 0.5, 0.5), "num_objects": 20, "radius_range_um": (2.5, 4.0)}


def test_same_seed_same_arrays_other_seed_differs() -> None:
    a = synthesize_volume(**SMALL, seed=3)
    b = synthesize_volume(**SMALL, seed=3)
    c = synthesize_volume(**SMALL, seed=4)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.classes == b.classes
    assert not np.array_equal(a.labels, c.labels)


def test_shapes_dtypes_ids_and_classes() -> None:
    vol = synthesize_volume(**SMALL, channels=2, num_classes=4, seed=0)
    assert vol.image.shape == (2, 12, 48, 48) and vol.image.dtype == np.uint16
    assert vol.labels.shape == (12, 48, 48) and vol.labels.dtype == np.uint16
    assert vol.spacing == (2.0, 0.5, 0.5)
    ids = np.unique(vol.labels)
    ids = ids[ids > 0]
    assert ids.tolist() == list(range(1, vol.num_objects + 1)) == sorted(vol.classes)
    assert vol.num_objects == 20  # enough room for every requested object
    assert set(vol.classes.values()) <= {1, 2, 3, 4}


def test_object_count_tracks_request_and_stops_when_full() -> None:
    many = synthesize_volume(shape=(8, 32, 32), spacing=(2.0, 0.5, 0.5), num_objects=500, seed=0)
    assert 0 < many.num_objects < 500  # a 16 um cube cannot hold 500 cells of radius >= 3.5 um
    assert synthesize_volume(**{**SMALL, "num_objects": 7}, seed=1).num_objects == 7


def test_some_objects_touch_when_densely_packed() -> None:
    vol = synthesize_volume(**{**SMALL, "num_objects": 40}, touching=0.7, seed=2)
    lab = vol.labels.astype(np.int64)
    touching = 0
    for axis in range(3):
        a = np.moveaxis(lab, axis, 0)
        left, right = a[:-1], a[1:]
        touching += int(((left > 0) & (right > 0) & (left != right)).sum())
    assert touching > 0


def test_bounding_box_drawing_equals_full_grid_reference() -> None:
    rng = np.random.default_rng(5)
    spacing = np.array([2.0, 0.5, 0.4])
    shape = (10, 40, 50)
    for _ in range(5):
        centre = rng.uniform(0, 1, 3) * np.array(shape) * spacing
        radii = rng.uniform(2.0, 6.0, 3)
        rotation = _random_rotation(rng)
        assert np.allclose(rotation @ rotation.T, np.eye(3)) and np.isclose(np.linalg.det(rotation), 1.0)
        labels = np.zeros(shape, np.uint16)
        painted = _draw_ellipsoid(labels, 1, centre, radii, rotation, spacing)
        grid = np.stack(
            np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, spacing, strict=True)], indexing="ij"), -1
        )
        q = (grid - centre) @ rotation / radii
        reference = (q**2).sum(-1) <= 1.0
        np.testing.assert_array_equal(labels == 1, reference)
        assert painted == reference.sum()


def test_later_objects_do_not_overwrite_earlier_ones() -> None:
    labels = np.zeros((6, 20, 20), np.uint16)
    spacing = np.ones(3)
    eye = np.eye(3)
    first = _draw_ellipsoid(labels, 1, np.array([3.0, 10, 10]), np.array([2.0, 5, 5]), eye, spacing)
    second = _draw_ellipsoid(labels, 2, np.array([3.0, 10, 14]), np.array([2.0, 5, 5]), eye, spacing)
    assert (labels == 1).sum() == first and (labels == 2).sum() == second
    assert 0 < second < first  # the overlap stays with object 1


def test_labels_match_image_footprint_and_class_colours() -> None:
    vol = synthesize_volume(
        **SMALL,
        channels=3,
        num_classes=3,
        stripes=0,
        attenuation_um=None,
        read_noise=0.0,
        photons=2000.0,
        seed=6,
    )
    image = vol.image.astype(np.float64) - 100.0  # offset
    inside, outside = vol.labels > 0, vol.labels == 0
    assert image.sum(0)[inside].mean() > 5 * image.sum(0)[outside].mean()
    for label_id, cls in vol.classes.items():
        voxels = vol.labels == label_id
        if voxels.sum() < 20:
            continue
        means = image[:, voxels].mean(axis=1)
        assert int(np.argmax(means)) == cls - 1, (label_id, cls, means)


def test_class_spectrum() -> None:
    assert np.argmax(class_spectrum(2, 3)) == 1
    assert class_spectrum(1, 3).tolist() == pytest.approx([1.0, 0.12, 0.12])
    assert sorted(class_spectrum(4, 3).tolist()) == pytest.approx([0.12, 0.6, 1.0])  # second colour round
    assert class_spectrum(3, 1).tolist() == [1.0]


def test_blur_is_wider_along_z() -> None:
    delta = np.zeros((1, 21, 21, 21), np.float32)
    delta[0, 10, 10, 10] = 1.0
    spacing = (2.0, 0.5, 0.5)
    sigma_um = (2.4, 0.4, 0.3)
    blurred = gaussian_blur(delta, sigma_um, spacing)[0]
    offsets = np.arange(21) - 10.0
    profiles = [blurred.sum(axis=(1, 2)), blurred.sum(axis=(0, 2)), blurred.sum(axis=(0, 1))]
    variances = [float((p * offsets**2).sum() / p.sum()) for p in profiles]
    expected = [(s / d) ** 2 for s, d in zip(sigma_um, spacing, strict=True)]  # in voxels: 1.44, 0.64, 0.36
    assert variances == pytest.approx(expected, rel=0.05)
    assert blurred.sum() == pytest.approx(1.0, rel=1e-4)
    physical = [v * d**2 for v, d in zip(variances, spacing, strict=True)]
    assert physical[0] > 4 * physical[1] > 4 * physical[2] / 1.5


def test_background_noise_is_poisson_plus_read_noise() -> None:
    vol = synthesize_volume(
        shape=(16, 64, 64),
        num_objects=0,
        stripes=0,
        attenuation_um=None,
        background=50.0,
        read_noise=3.0,
        offset=100.0,
        seed=7,
    )
    counts = vol.image.astype(np.float64)
    assert vol.num_objects == 0 and not vol.labels.any()
    assert counts.mean() == pytest.approx(150.0, abs=0.3)
    assert counts.var() == pytest.approx(50.0 + 9.0 + 1 / 12, rel=0.05)  # Poisson + read + rounding


def test_depth_attenuation_and_stripes() -> None:
    rng = np.random.default_rng(0)
    pattern = _stripe_pattern(rng, (5, 16, 24), count=6, strength=0.5, axis="x")
    assert pattern.shape == (5, 16, 1)  # constant along x, the light-sheet direction
    assert pattern.min() >= 0.5 - 1e-6 and pattern.max() <= 1.0 and pattern.min() < 0.99
    assert _stripe_pattern(rng, (5, 16, 24), count=3, strength=0.5, axis="y").shape == (5, 1, 24)
    deep = synthesize_volume(
        shape=(20, 32, 32),
        num_objects=60,
        read_noise=0.0,
        offset=0.0,
        radius_range_um=(3.0, 4.0),
        background=0.0,
        photons=500.0,
        attenuation_um=10.0,
        stripes=0,
        seed=1,
    )
    inside = deep.labels > 0
    top = deep.image[:, :5][:, inside[:5]].mean()
    bottom = deep.image[:, -5:][:, inside[-5:]].mean()
    assert bottom < 0.1 * top  # 30 um deeper with L = 10 um: exp(-3) ~ 0.05


def test_parameter_errors_name_the_parameter() -> None:
    with pytest.raises(DataError, match="shape"):
        synthesize_volume(shape=(0, 10, 10))
    with pytest.raises(DataError, match="spacing"):
        synthesize_volume(spacing=(1.0, -1.0, 1.0))
    with pytest.raises(DataError, match="radius_range_um"):
        synthesize_volume(radius_range_um=(5.0, 2.0))
    with pytest.raises(DataError, match="stripe_strength"):
        synthesize_volume(stripe_strength=1.0)
    with pytest.raises(DataError, match="formats"):
        synthesize_dataset("unused", formats=("png",), catalog=None)


TINY = {
    "num_volumes": 3,
    "shape": (6, 24, 24),
    "num_objects": 5,
    "radius_range_um": (2.0, 3.0),
    "channels": 2,
}


def test_dataset_files_without_catalog(tmp_path: Path) -> None:
    lines: list[str] = []
    report = synthesize_dataset(tmp_path / "ds", **TINY, catalog=None, seed=1, progress=lines.append)
    assert len(report.volumes) == 3 and len(lines) == 3 and report.catalog is None
    assert [v.split for v in report.volumes].count("val") == 1
    assert not (tmp_path / "ds" / "catalog.sqlite").exists()
    v = report.volumes[0]
    assert v.files["tiff"][0] == tmp_path / "ds" / "tiff" / "synth_000_image.tif"
    assert v.files["ome-zarr"][0] == tmp_path / "ds" / "ome-zarr" / "synth_000.ome.zarr"
    expected = synthesize_volume(
        shape=TINY["shape"], num_objects=5, radius_range_um=(2.0, 3.0), channels=2, seed=v.seed
    )
    for fmt in ("tiff", "ome-zarr"):
        image_path, label_path = v.files[fmt]
        np.testing.assert_array_equal(open_image(image_path).read(), expected.image)
        labels = open_labels(label_path)
        np.testing.assert_array_equal(labels.read(), expected.labels)
        assert labels.classes() == expected.classes
        assert labels.spacing == pytest.approx((2.0, 0.5, 0.5))
    again = synthesize_dataset(tmp_path / "again", **TINY, catalog=None, seed=1, formats=("tiff",))
    assert [x.seed for x in again.volumes] == [x.seed for x in report.volumes]
    assert "ome-zarr" not in again.volumes[0].files


def test_dataset_registers_every_written_volume(tmp_path: Path) -> None:
    from ls_data.catalog import Catalog

    out = tmp_path / "ds"
    report = synthesize_dataset(out, **TINY, seed=2)
    assert report.catalog == f"sqlite:///{out}/catalog.sqlite"
    with Catalog(report.catalog, roots=[out]) as catalog:
        records = catalog.volumes()
        assert sorted(r.name for r in records) == sorted(
            f"synth_{i:03d}-{fmt}" for i in range(3) for fmt in ("tiff", "ome-zarr")
        )
        for record in records:
            assert record.grade == "synthetic" and record.split in ("train", "val")
            assert record.shape == (2, 6, 24, 24) and record.spacing == pytest.approx((2.0, 0.5, 0.5))
            assert not Path(record.image_uri).is_absolute()
            assert record.attributes["num_objects"] == 5 and "seed" in record.attributes
            image_path, label_path = catalog.resolve(record)
            assert open_image(image_path).shape == record.shape
            assert open_labels(label_path).shape == record.shape[1:]
        val = {r.attributes["volume"] for r in records if r.split == "val"}
        assert len(val) == 1
