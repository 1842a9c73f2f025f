"""Styles of the synthetic generator: the original output pinned, each style's labels and statistics,
parameter handling, dataset records and the ``ls-data synth --style`` option."""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
from pathlib import Path

import numpy as np
import pytest

from ls_data.errors import DataError
from ls_data.io import open_image, open_labels
from ls_data.synth import (
    STYLE_DEFAULT,
    STYLES,
    BlobsStyle,
    DenseStyle,
    EllipsoidsStyle,
    _paint_nearest,
    _sample_parts,
    synthesize_dataset,
    synthesize_volume,
)

NEW_STYLES = ("blobs", "dense")
#: The same volume size for every style (the user report's 24 x 96 x 96 at 2.0 x 0.5 x 0.5 um).
COMMON = {
    "ellipsoids": {"shape": (24, 96, 96), "channels": 1, "num_classes": 1},
    "blobs": {},
    "dense": {},
}
#: Optics and camera without noise sources that hide the footprint (for the label / image match).
CLEAN = {
    "stripes": 0,
    "attenuation_um": None,
    "read_noise": 0.0,
    "background": 0.0,
    "photons": 5000.0,
    "brightness_range": (1.0, 1.0),
}


def _digest(vol) -> str:
    """sha256 of the labels and classes. (The image was bit-identical too when the styles came in;
    it is left out here because its noise and blur depend on floating-point results that another
    numpy build may round differently, while the geometry depends only on the random stream.)"""
    digest = hashlib.sha256()
    digest.update(vol.labels.tobytes())
    digest.update(repr(sorted(vol.classes.items())).encode())
    return digest.hexdigest()


def _object_stats(vol) -> dict[str, np.ndarray]:
    """Per object (ids 1..N): voxels, mean image (channel sum) and first / last z slice."""
    labels = vol.labels.astype(np.int64)
    n = vol.num_objects
    counts = np.bincount(labels.ravel(), minlength=n + 1)
    sums = np.bincount(labels.ravel(), weights=vol.image.astype(np.float64).sum(0).ravel(), minlength=n + 1)
    z_lo, z_hi = np.full(n + 1, labels.shape[0]), np.full(n + 1, -1)
    for z in range(labels.shape[0]):
        present = np.unique(labels[z])
        z_lo[present] = np.minimum(z_lo[present], z)
        z_hi[present] = np.maximum(z_hi[present], z)
    return {"voxels": counts[1:], "mean": sums[1:] / counts[1:], "z_lo": z_lo[1:], "z_hi": z_hi[1:]}


def _near(mask: np.ndarray, reach: tuple[int, int, int]) -> np.ndarray:
    """``mask`` dilated by a box of half-widths ``reach`` (z, y, x)."""
    padded = np.pad(mask, [(r, r) for r in reach])
    out = np.zeros_like(mask)
    for dz in range(2 * reach[0] + 1):
        for dy in range(2 * reach[1] + 1):
            for dx in range(2 * reach[2] + 1):
                out |= padded[dz : dz + mask.shape[0], dy : dy + mask.shape[1], dx : dx + mask.shape[2]]
    return out


def _touching_fraction(labels: np.ndarray) -> float:
    """Fraction of objects with a face-adjacent voxel of another object."""
    lab = labels.astype(np.int64)
    touching: set[int] = set()
    for axis in range(3):
        a = np.moveaxis(lab, axis, 0)
        left, right = a[:-1], a[1:]
        contact = (left > 0) & (right > 0) & (left != right)
        touching |= set(left[contact].tolist()) | set(right[contact].tolist())
    return len(touching) / max(int(lab.max()), 1)


# -- the original generator, unchanged --------------------------------------------------------


ORIGINAL = [  # sha256 of labels and classes from the generator before styles existed
    ({}, 150, "23870bf8067b91196ad05ca71cad465e3fe2de52ff5fc823abebafcb80a1448a"),
    (
        {"shape": (24, 96, 96), "seed": 7},
        150,
        "98a267354ec2ea0055c6cd4e0d41efff8ccc5f918f6db58a4c72f3cfd1b40e67",
    ),
    (
        {
            "shape": (12, 48, 48),
            "channels": 2,
            "num_classes": 4,
            "num_objects": 20,
            "radius_range_um": (2.5, 4.0),
            "light_sheet_axis": "y",
            "attenuation_um": None,
            "seed": 3,
        },
        20,
        "63e742299c102e0585d07ac3cebe0cf9c44b6e88a680c03350916deef66ddf09",
    ),
]


@pytest.mark.parametrize(("kwargs", "objects", "sha256"), ORIGINAL)
def test_ellipsoids_is_bit_identical_to_the_original_generator(
    kwargs: dict, objects: int, sha256: str
) -> None:
    vol = synthesize_volume(**kwargs)
    assert vol.style == "ellipsoids" and vol.num_objects == objects
    assert _digest(vol) == sha256
    assert _digest(synthesize_volume(style="ellipsoids", **kwargs)) == sha256
    seed = kwargs.get("seed", 0)
    fields = {k: v for k, v in kwargs.items() if k != "seed"}
    assert _digest(synthesize_volume(style=EllipsoidsStyle(**fields), seed=seed)) == sha256
    assert _digest(synthesize_volume(style_params=fields, seed=seed)) == sha256


def test_ellipsoids_defaults_are_the_original_defaults() -> None:
    assert EllipsoidsStyle().params() == {
        "shape": [32, 128, 128],
        "channels": 3,
        "num_objects": 150,
        "num_classes": 3,
        "radius_range_um": [3.5, 7.0],
        "aspect_range": [0.6, 1.0],
        "touching": 0.8,
        "brightness_range": [0.6, 1.4],
        "psf_sigma_um": [1.5, 0.35, 0.35],
        "background": 20.0,
        "attenuation_um": 200.0,
        "stripes": 10,
        "stripe_strength": 0.5,
        "light_sheet_axis": "x",
        "photons": 300.0,
        "read_noise": 2.0,
        "offset": 100.0,
    }


# -- every style: exact labels, ids, depth, determinism ---------------------------------------


@pytest.mark.parametrize("style", list(STYLES))
def test_style_labels_ids_and_reported_count(style: str) -> None:
    vol = synthesize_volume(style=style, seed=1, **COMMON[style])
    assert vol.style == style and vol.spacing == (2.0, 0.5, 0.5)
    assert vol.image.shape == (1, 24, 96, 96) and vol.image.dtype == np.uint16
    assert vol.labels.shape == (24, 96, 96) and vol.labels.dtype == np.uint16
    ids = np.unique(vol.labels)
    ids = ids[ids > 0]
    assert ids.tolist() == list(range(1, vol.num_objects + 1)) == sorted(vol.classes)
    assert set(vol.classes.values()) == {1}
    expected = STYLES[style]().num_objects
    if style == "dense":
        assert 0.9 * expected <= vol.num_objects <= expected
    else:
        assert vol.num_objects == expected


@pytest.mark.parametrize("style", list(STYLES))
def test_style_labels_match_the_image(style: str) -> None:
    defaults = STYLES[style]()
    baseline = defaults.offset + defaults.background
    noisy = synthesize_volume(style=style, seed=2, **COMMON[style])
    signal = noisy.image[0].astype(np.float64) - baseline
    inside, outside = noisy.labels > 0, noisy.labels == 0
    assert signal[inside].mean() > 2.5 * max(signal[outside].mean(), 1.0)
    stats = _object_stats(noisy)
    assert np.mean(stats["mean"] - baseline > 0) >= (0.9 if style == "dense" else 1.0)

    extra = {"style_params": {"psf_tail_weight": 0.0}} if style == "blobs" else {}
    clean = synthesize_volume(style=style, seed=2, **COMMON[style], **CLEAN, **extra)
    np.testing.assert_array_equal(clean.labels, noisy.labels)  # optics and camera leave geometry alone
    signal = clean.image[0].astype(np.float64) - defaults.offset
    per_object = _object_stats(clean)["mean"] - defaults.offset
    assert per_object.min() > 0.3 * CLEAN["photons"]  # every object is bright where its labels are
    far = ~_near(clean.labels > 0, (1, 3, 3))  # beyond the blur of the core PSF
    assert far.sum() > 1000
    assert signal[far].mean() < 0.05 * signal[clean.labels > 0].mean()


@pytest.mark.parametrize("style", list(STYLES))
def test_style_objects_are_a_few_slices_deep(style: str) -> None:
    vol = synthesize_volume(style=style, seed=3, **COMMON[style])
    stats = _object_stats(vol)
    depth = stats["z_hi"] - stats["z_lo"] + 1
    interior = (stats["z_lo"] > 0) & (stats["z_hi"] < vol.labels.shape[0] - 1)
    assert interior.sum() >= 0.5 * vol.num_objects
    assert depth[interior].min() >= 2 and np.median(depth[interior]) >= 3
    assert depth.max() <= 12  # at most half the volume deep


@pytest.mark.parametrize("style", NEW_STYLES)
def test_style_is_deterministic_per_seed(style: str) -> None:
    a = synthesize_volume(style=style, seed=5)
    b = synthesize_volume(style=style, seed=5)
    c = synthesize_volume(style=style, seed=6)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.classes == b.classes
    assert not np.array_equal(a.labels, c.labels) and not np.array_equal(a.image, c.image)


def test_styles_have_distinct_statistics() -> None:
    vols = {s: synthesize_volume(style=s, seed=4, **COMMON[s]) for s in STYLES}
    stats = {s: _object_stats(v) for s, v in vols.items()}
    voxel_um3 = 2.0 * 0.5 * 0.5
    volume = {s: float(np.mean(st["voxels"])) * voxel_um3 for s, st in stats.items()}
    count = {s: v.num_objects for s, v in vols.items()}
    # Object size: blobs (unions of spheres) > ellipsoids > dense (small nuclei).
    assert volume["blobs"] > 1.5 * volume["ellipsoids"] > 1.5 * 1.5 * volume["dense"]
    # Object count in the same volume: dense >> ellipsoids > blobs.
    assert count["dense"] > 3 * count["ellipsoids"] > 3 * count["blobs"]
    # Packing: dense objects nearly all touch and fill more of the volume.
    assert _touching_fraction(vols["dense"].labels) > 0.95
    assert (vols["dense"].labels > 0).mean() > (vols["ellipsoids"].labels > 0).mean()
    assert _touching_fraction(vols["blobs"].labels) > 0.5
    # Brightness spread (object signal above the camera baseline, 95th / 5th percentile).
    spread = {}
    for s, st in stats.items():
        p = STYLES[s]()
        signal = st["mean"] - p.offset - p.background
        spread[s] = np.percentile(signal, 95) / max(np.percentile(signal, 5), 1.0)
    assert spread["dense"] > 3 * max(spread["ellipsoids"], spread["blobs"])
    # Some dense objects sit near the noise floor; none of the other styles' do.
    p = DenseStyle()
    snr = (stats["dense"]["mean"] - p.offset - p.background) / np.sqrt(p.background + p.read_noise**2)
    assert 0.02 < np.mean(snr < 3) < 0.4
    for s in ("ellipsoids", "blobs"):
        q = STYLES[s]()
        other = (stats[s]["mean"] - q.offset - q.background) / np.sqrt(q.background + q.read_noise**2)
        assert other.min() > 5
    # Noise: background (far from objects in the dense style too) has distinct levels.
    backgrounds = {s: float(np.median(v.image[0][v.labels == 0])) for s, v in vols.items()}
    assert len({round(b) for b in backgrounds.values()}) == 3


def test_psf_shape_differs_between_styles() -> None:
    """One object, no noise: the blobs PSF (broad core and tail along z) spreads the light over
    more slices than the dense PSF, and further than the object reaches."""
    widths = {}
    for style, extra in (("blobs", {"lobes": (1, 1)}), ("dense", {"aspect_range": (1.0, 1.0)})):
        vol = synthesize_volume(
            style=style,
            shape=(32, 32, 32),
            num_objects=1,
            radius_range_um=(3.0, 3.0),
            style_params={**extra, "texture": 0.0},
            **CLEAN,
            seed=0,
        )
        profile = vol.image[0].astype(np.float64).sum(axis=(1, 2)) - 100.0 * 32 * 32
        z = np.arange(32)
        centre = (profile * z).sum() / profile.sum()
        widths[style] = np.sqrt((profile * (z - centre) ** 2).sum() / profile.sum())
        label_z = np.flatnonzero(vol.labels.any(axis=(1, 2)))
        assert label_z.size >= 3
    assert widths["blobs"] > 1.5 * widths["dense"]


# -- geometry of the new styles ---------------------------------------------------------------


def test_blob_parts_are_two_to_four_overlapping_spheres_around_the_centre() -> None:
    rng = np.random.default_rng(0)
    style = BlobsStyle()
    counts = set()
    for _ in range(200):
        parts, outer = _sample_parts(rng, style)
        counts.add(len(parts))
        offsets = np.stack([o for o, _, _ in parts])
        radii = np.array([r[0] for _, r, _ in parts])
        assert all(np.all(r == r[0]) and np.array_equal(rot, np.eye(3)) for _, r, rot in parts)  # spheres
        assert np.all((radii >= 3.0) & (radii <= 6.0)) and np.all(np.diff(radii) <= 0)
        assert len(set(radii.tolist())) == len(radii)  # different radii
        largest = offsets[0]
        assert np.all(np.linalg.norm(offsets[1:] - largest, axis=1) < radii[0])  # each overlaps the largest
        assert np.linalg.norm(largest) < radii[0]  # the object centre lies inside the largest sphere
        assert outer == pytest.approx(np.max(np.linalg.norm(offsets, axis=1) + radii))
    assert counts == {2, 3, 4}


def test_shared_voxels_go_to_the_nearest_centre_in_any_order() -> None:
    spacing = np.array([1.0, 1.0, 1.0])
    eye = np.eye(3)
    a = (np.array([5.0, 10.0, 8.0]), [(np.zeros(3), np.array([4.0, 4, 4]), eye)])
    b = (np.array([5.0, 10.0, 13.0]), [(np.zeros(3), np.array([4.0, 4, 4]), eye)])
    results = []
    for first, second in ((a, b), (b, a)):
        labels = np.zeros((10, 20, 22), np.uint16)
        nearest = np.full(labels.shape, np.inf, np.float32)
        ids = {id(a): 1, id(b): 2}
        for obj in (first, second):
            _paint_nearest(labels, nearest, ids[id(obj)], obj[0], obj[1], spacing)
        results.append(labels)
    np.testing.assert_array_equal(results[0], results[1])
    labels = results[0]
    grid = np.stack(np.meshgrid(*[np.arange(n, dtype=float) for n in labels.shape], indexing="ij"), -1)
    da = np.linalg.norm(grid - a[0], axis=-1)
    db = np.linalg.norm(grid - b[0], axis=-1)
    in_a, in_b = da <= 4.0, db <= 4.0
    both = in_a & in_b
    assert both.any()
    np.testing.assert_array_equal(labels[both & (da < db)], 1)
    np.testing.assert_array_equal(labels[both & (db < da)], 2)
    np.testing.assert_array_equal(labels[in_a & ~in_b], 1)
    np.testing.assert_array_equal(labels[~in_a & ~in_b], 0)
    assert int((labels == 1).sum()) == int((labels == 2).sum())  # symmetric split


# -- parameters -------------------------------------------------------------------------------


def test_keywords_default_to_the_style_and_override_it() -> None:
    sig = inspect.signature(synthesize_volume)
    assert sig.parameters["style"].default == "ellipsoids"
    assert sig.parameters["photons"].default is STYLE_DEFAULT and repr(STYLE_DEFAULT) == "<style default>"
    assert sig.parameters["spacing"].default == (2.0, 0.5, 0.5)
    vol = synthesize_volume(
        style="blobs", shape=(12, 48, 48), num_objects=5, channels=2, num_classes=2, seed=0
    )
    assert vol.image.shape == (2, 12, 48, 48) and vol.num_objects == 5
    spheres = synthesize_volume(style=BlobsStyle(lobes=(1, 1)), shape=(12, 48, 48), num_objects=5, seed=0)
    same = synthesize_volume(style="blobs", style_params={"lobes": [1, 1]}, shape=(12, 48, 48), num_objects=5)
    np.testing.assert_array_equal(spheres.labels, same.labels)
    assert not np.array_equal(
        spheres.labels, synthesize_volume(style="blobs", shape=(12, 48, 48), num_objects=5).labels
    )


def test_unused_and_bad_parameters_are_refused_with_the_style_named() -> None:
    with pytest.raises(DataError, match=r"aspect_range is not used by style 'blobs'.*'ellipsoids', 'dense'"):
        synthesize_volume(style="blobs", aspect_range=(0.5, 1.0))
    with pytest.raises(DataError, match=r"lobes is not used by style 'ellipsoids'.*'blobs'"):
        synthesize_volume(style_params={"lobes": (2, 3)})
    with pytest.raises(
        DataError, match=r"unknown synth style 'cubes'; known styles: ellipsoids, blobs, dense"
    ):
        synthesize_volume(style="cubes")
    with pytest.raises(DataError, match="unknown synth style"):
        synthesize_dataset("unused", style="cubes", catalog=None)
    with pytest.raises(DataError, match="photons is given both as a keyword and in style_params"):
        synthesize_volume(style="dense", photons=10.0, style_params={"photons": 20.0})
    with pytest.raises(DataError, match=r"lobes must satisfy 1 <= min <= max.*\(style 'blobs'\)"):
        BlobsStyle(lobes=(3, 2))
    with pytest.raises(DataError, match="lobe_offset"):
        synthesize_volume(style="blobs", style_params={"lobe_offset": (0.5, 1.2)})
    with pytest.raises(DataError, match=r"brightness_range must be > 0 for a log-uniform.*'dense'"):
        synthesize_volume(style="dense", brightness_range=(0.0, 1.0))
    with pytest.raises(DataError, match="psf_tail_weight"):
        DenseStyle(psf_tail_weight=1.0)
    with pytest.raises(DataError, match=r"touching must be > 0.*'dense'"):
        synthesize_volume(style="dense", touching=0)
    with pytest.raises(DataError, match="style_params must be a mapping"):
        synthesize_volume(style_params=[("lobes", 2)])  # type: ignore[arg-type]
    with pytest.raises(DataError, match="max_failures"):
        synthesize_volume(style="blobs", max_failures=0)


def test_style_dataclasses_are_frozen_and_normalised() -> None:
    style = DenseStyle(shape=[8, 16, 16], radius_range_um=[2, 3], num_objects=4.0)
    assert style.shape == (8, 16, 16) and style.radius_range_um == (2.0, 3.0) and style.num_objects == 4
    assert isinstance(style.num_objects, int)
    with pytest.raises(dataclasses.FrozenInstanceError):
        style.photons = 1.0  # type: ignore[misc]
    assert set(STYLES) == {"ellipsoids", "blobs", "dense"}
    assert {f.name for f in dataclasses.fields(BlobsStyle)} >= {"lobes", "lobe_offset", "psf_tail_sigma_um"}


# -- datasets and the command line ------------------------------------------------------------

TINY = {"num_volumes": 2, "shape": (8, 32, 32), "num_objects": 6}


def test_dataset_of_a_style_without_catalog(tmp_path: Path) -> None:
    report = synthesize_dataset(tmp_path / "ds", style="blobs", **TINY, catalog=None, formats=("tiff",))
    v = report.volumes[0]
    assert v.style == "blobs" and "style blobs" in report.summary()
    expected = synthesize_volume(style="blobs", shape=(8, 32, 32), num_objects=6, seed=v.seed)
    image_path, label_path = v.files["tiff"]
    np.testing.assert_array_equal(open_image(image_path).read(), expected.image)
    np.testing.assert_array_equal(open_labels(label_path).read(), expected.labels)
    with pytest.raises(DataError, match="aspect_range is not used by style 'blobs'"):
        synthesize_dataset(tmp_path / "bad", style="blobs", aspect_range=(0.5, 1.0), catalog=None)
    assert not (tmp_path / "bad").exists()


def test_dataset_catalog_records_the_style_and_its_parameters(tmp_path: Path) -> None:
    from ls_data.catalog import Catalog

    out = tmp_path / "ds"
    report = synthesize_dataset(
        out, style="dense", style_params={"texture": 0.0}, **TINY, formats=("tiff",), seed=3
    )
    with Catalog(report.catalog, roots=[out]) as catalog:
        records = catalog.volumes()
        assert len(records) == 2
        for record in records:
            assert record.grade == "synthetic" and record.shape == (1, 8, 32, 32)
            assert record.attributes["style"] == "dense"
            params = record.attributes["style_params"]
            assert params["texture"] == 0.0 and params["num_objects"] == 6 and params["shape"] == [8, 32, 32]
            regenerated = synthesize_volume(
                style=record.attributes["style"],
                style_params=params,
                spacing=record.spacing,
                seed=record.attributes["seed"],
            )
            _, label_path = catalog.resolve(record)
            np.testing.assert_array_equal(open_labels(label_path).read(), regenerated.labels)


def test_cli_style_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ls_data.cli import main

    out = tmp_path / "ds"
    args = ["synth", "--out", str(out), "--num-volumes", "1", "--shape", "8", "32", "32"]
    args += ["--num-objects", "20"]
    assert main([*args, "--style", "dense", "--formats", "tiff", "--no-catalog"]) == 0
    captured = capsys.readouterr()
    assert "dense objects" in captured.out and "style dense" in captured.out
    labels = open_labels(out / "tiff" / "synth_000_labels.tif").read()
    seed = int(np.random.SeedSequence([0, 0]).generate_state(1)[0])
    expected = synthesize_volume(style="dense", shape=(8, 32, 32), num_objects=20, seed=seed)
    np.testing.assert_array_equal(labels, expected.labels)
    assert open_image(out / "tiff" / "synth_000_image.tif").shape == (1, 8, 32, 32)  # the style's channels

    assert main(["synth", "--out", str(tmp_path / "x"), "--style", "cubes"]) == 2
    err = capsys.readouterr().err
    assert (
        err == "ls-data synth: error: unknown synth style 'cubes'; known styles: ellipsoids, blobs, dense\n"
    )
    assert not (tmp_path / "x").exists()


def test_cli_default_style_is_the_original_dataset(tmp_path: Path) -> None:
    from ls_data.cli import main

    args = ["--num-volumes", "1", "--shape", "6", "24", "24", "--num-objects", "4"]
    args += ["--formats", "tiff", "--no-catalog"]
    assert main(["synth", "--out", str(tmp_path / "a"), *args]) == 0
    assert main(["synth", "--out", str(tmp_path / "b"), *args, "--style", "ellipsoids"]) == 0
    seed = int(np.random.SeedSequence([0, 0]).generate_state(1)[0])
    expected = synthesize_volume(shape=(6, 24, 24), num_objects=4, seed=seed)
    for name in ("a", "b"):
        image = open_image(tmp_path / name / "tiff" / "synth_000_image.tif").read()
        np.testing.assert_array_equal(image, expected.image)
        assert image.shape == (3, 6, 24, 24)
