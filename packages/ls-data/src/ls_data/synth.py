"""Synthetic light-sheet volumes ("skittles"): ellipsoidal objects, optics and camera noise.

The generator models what a light-sheet microscope records of a dense field of stained cells:

1. Geometry, in physical units (micrometres) on the anisotropic voxel grid: ellipsoids with
   three random semi-axes and a random orientation. Centres are placed by rejection sampling
   with a minimum centre distance of ``touching`` times the sum of the two mean radii;
   ``touching < 1`` lets neighbours touch or overlap slightly. Objects are drawn in order and a
   later object never overwrites an earlier one's voxels, so the label volume is exact and
   every visible voxel has one owner. Each object is drawn only within its bounding box.
2. Colour: each object has a class in ``1..num_classes``; the class fixes its emission
   spectrum across channels (a primary channel, for classes beyond the channel count a
   secondary one, and cross-talk), the object varies its brightness.
3. Illumination: depth attenuation ``exp(-z / attenuation_um)`` and stripe artefacts: shadows
   that run along the light-sheet axis as multiplicative streaks.
4. Detection: an anisotropic Gaussian PSF (wider along z), applied as a separable convolution.
5. Camera: background, Poisson photon noise, Gaussian read noise, offset, ``uint16`` output.

The same seed and parameters always give identical arrays.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from ls_data.errors import DataError

if TYPE_CHECKING:
    from ls_data.catalog import Catalog

__all__ = [
    "DEFAULT_CATALOG_URL",
    "SynthesisReport",
    "SynthesizedVolume",
    "SyntheticVolume",
    "class_spectrum",
    "gaussian_blur",
    "synthesize_dataset",
    "synthesize_volume",
]

Triple = tuple[float, float, float]
DEFAULT_CATALOG_URL = "sqlite:///{out}/catalog.sqlite"


@dataclass(frozen=True)
class SyntheticVolume:
    """One synthetic volume.

    Attributes:
        image: ``(C, Z, Y, X)`` uint16 camera counts.
        labels: ``(Z, Y, X)`` instance ids, 0 = background, ids ``1..N`` (uint16, or uint32 when
            N > 65535).
        classes: Class (``1..num_classes``) of each instance id.
        spacing: ``(sz, sy, sx)`` in micrometres.
    """

    image: np.ndarray
    labels: np.ndarray
    classes: dict[int, int]
    spacing: Triple

    @property
    def num_objects(self) -> int:
        """Number of instances in the label volume."""
        return len(self.classes)


def class_spectrum(cls: int, channels: int, *, crosstalk: float = 0.12) -> np.ndarray:
    """Relative emission of class ``cls`` (>= 1) in each of ``channels`` channels.

    Class ``k`` is brightest in channel ``(k - 1) % C``; classes beyond ``C`` add a secondary
    channel at 60 %, so up to ``C * C`` classes have distinct colours. Every channel gets
    ``crosstalk``.
    """
    spectrum = np.full(channels, crosstalk, dtype=np.float64)
    primary = (cls - 1) % channels
    spectrum[primary] = 1.0
    round_ = (cls - 1) // channels
    if round_ and channels > 1:
        secondary = (primary + round_) % channels
        if secondary == primary:
            secondary = (primary + 1) % channels
        spectrum[secondary] = 0.6
    return spectrum


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly distributed 3x3 rotation matrix (QR of a Gaussian matrix, signs fixed)."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def _draw_ellipsoid(
    labels: np.ndarray,
    label_id: int,
    centre: np.ndarray,
    radii: np.ndarray,
    rotation: np.ndarray,
    spacing: np.ndarray,
) -> int:
    """Paint ``label_id`` into the free (0) voxels inside the ellipsoid; return the voxels painted.

    ``rotation``'s columns are the ellipsoid's axes in (z, y, x) world coordinates; only the
    ellipsoid's bounding box is evaluated.
    """
    shape = np.asarray(labels.shape)
    half = np.sqrt(((rotation * radii[None, :]) ** 2).sum(axis=1))
    lo = np.maximum(np.floor((centre - half) / spacing).astype(int), 0)
    hi = np.minimum(np.ceil((centre + half) / spacing).astype(int) + 1, shape)
    if np.any(hi <= lo):
        return 0
    dz, dy, dx = (np.arange(lo[a], hi[a]) * spacing[a] - centre[a] for a in range(3))
    # Coordinates along the ellipsoid axes, divided by the semi-axes: q_j = sum_k d_k R[k, j] / r_j.
    scaled = rotation / radii[None, :]
    inside = np.zeros((hi - lo).tolist(), dtype=np.float32)
    for j in range(3):
        q = (
            dz[:, None, None] * scaled[0, j]
            + dy[None, :, None] * scaled[1, j]
            + dx[None, None, :] * scaled[2, j]
        )
        inside += (q * q).astype(np.float32)
    region = labels[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    paint = (inside <= 1.0) & (region == 0)
    region[paint] = label_id
    return int(paint.sum())


def gaussian_blur(volume: np.ndarray, sigma_um: Sequence[float], spacing: Sequence[float]) -> np.ndarray:
    """Separable Gaussian blur of ``(C, Z, Y, X)`` data with per-axis sigma in micrometres.

    Each axis is convolved with a normalised 1-D Gaussian (radius ``ceil(3 sigma)`` voxels,
    edges replicated), as a weighted sum of shifted views of the edge-padded array: for the
    small kernels of a microscope PSF this beats FFTs and framework convolutions on CPU.

    Args:
        volume: ``(C, Z, Y, X)`` array.
        sigma_um: ``(sz, sy, sx)`` Gaussian sigma in micrometres; 0 skips the axis.
        spacing: ``(sz, sy, sx)`` voxel spacing in micrometres.

    Returns:
        Blurred ``(C, Z, Y, X)`` float32 array.
    """
    data = np.asarray(volume, dtype=np.float32)
    for axis in range(1, 4):
        sigma = float(sigma_um[axis - 1]) / float(spacing[axis - 1])
        if sigma <= 0:
            continue
        radius = max(1, math.ceil(3.0 * sigma))
        kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
        kernel = (kernel / kernel.sum()).astype(np.float32)
        widths = [(0, 0)] * 4
        widths[axis] = (radius, radius)
        padded = np.pad(data, widths, mode="edge")
        length = data.shape[axis]
        out = np.zeros(data.shape, dtype=np.float32)
        for i, weight in enumerate(kernel):
            view = padded[(slice(None),) * axis + (slice(i, i + length),)]
            out += weight * view
        data = out
    return data


def _stripe_pattern(
    rng: np.random.Generator, shape: tuple[int, int, int], count: int, strength: float, axis: str
) -> np.ndarray:
    """Multiplicative streaks constant along the light-sheet ``axis`` (``"x"`` or ``"y"``).

    Returns a ``(Z, Y, 1)`` or ``(Z, 1, X)`` array of factors in ``[1 - strength, 1]``: each
    streak is a Gaussian dip across the other in-plane axis over a random range of z slices.
    """
    nz, ny, nx = shape
    across = nx if axis == "y" else ny
    pattern = np.ones((nz, across), dtype=np.float32)
    coords = np.arange(across, dtype=np.float32)
    for _ in range(count):
        centre = rng.uniform(0, across)
        width = rng.uniform(0.5, 3.0)
        depth = rng.uniform(0.2, 1.0) * strength
        z0 = int(rng.integers(0, nz))
        z1 = int(rng.integers(z0 + 1, nz + 1))
        pattern[z0:z1] *= 1.0 - depth * np.exp(-0.5 * ((coords - centre) / width) ** 2)
    np.maximum(pattern, 1.0 - strength, out=pattern)  # overlapping streaks never go darker
    return pattern[:, :, None] if axis == "x" else pattern[:, None, :]


def _check_triple(name: str, value: Sequence[float], *, positive: bool, integer: bool = False) -> tuple:
    values = tuple(value)
    if len(values) != 3:
        raise DataError(f"synth parameter {name} must have three values (z, y, x), got {values!r}")
    for v in values:
        if integer and (isinstance(v, bool) or int(v) != v):
            raise DataError(f"synth parameter {name} must hold integers, got {values!r}")
        if not math.isfinite(float(v)) or (float(v) <= 0 if positive else float(v) < 0):
            bound = "> 0" if positive else ">= 0"
            raise DataError(f"synth parameter {name} must hold finite values {bound}, got {values!r}")
    return tuple(int(v) for v in values) if integer else tuple(float(v) for v in values)


def _check_volume_params(
    *,
    shape: Sequence[int],
    spacing: Sequence[float],
    channels: int,
    num_objects: int,
    num_classes: int,
    radius_range_um: tuple[float, float],
    aspect_range: tuple[float, float],
    touching: float,
    psf_sigma_um: Sequence[float],
    background: float,
    stripe_strength: float,
    light_sheet_axis: str,
    photons: float,
    read_noise: float,
    offset: float,
    max_failures: int = 2000,
) -> tuple[tuple, tuple, tuple]:
    """Check the parameters of :func:`synthesize_volume`; return ``shape``, ``spacing`` and
    ``psf_sigma_um`` as checked triples.

    Raises:
        DataError: A parameter is out of range (the message names it).
    """
    shape_t = _check_triple("shape", shape, positive=True, integer=True)
    spacing_t = _check_triple("spacing", spacing, positive=True)
    sigma_t = _check_triple("psf_sigma_um", psf_sigma_um, positive=False)
    if channels < 1 or num_classes < 1 or num_objects < 0:
        raise DataError(
            f"synth parameters need channels >= 1, num_classes >= 1, num_objects >= 0; got "
            f"channels={channels}, num_classes={num_classes}, num_objects={num_objects}"
        )
    rmin, rmax = (float(r) for r in radius_range_um)
    amin, amax = (float(a) for a in aspect_range)
    if not 0 < rmin <= rmax:
        raise DataError(f"synth parameter radius_range_um must satisfy 0 < min <= max, got {radius_range_um}")
    if not 0 < amin <= amax <= 1:
        raise DataError(f"synth parameter aspect_range must satisfy 0 < min <= max <= 1, got {aspect_range}")
    if touching <= 0:
        raise DataError(f"synth parameter touching must be > 0, got {touching}")
    if max_failures < 1:
        raise DataError(f"synth parameter max_failures must be >= 1, got {max_failures}")
    if not 0 <= stripe_strength < 1:
        raise DataError(f"synth parameter stripe_strength must be in [0, 1), got {stripe_strength}")
    if light_sheet_axis not in ("x", "y"):
        raise DataError(f"synth parameter light_sheet_axis must be 'x' or 'y', got {light_sheet_axis!r}")
    if photons <= 0 or background < 0 or read_noise < 0 or offset < 0:
        raise DataError(
            "synth parameters need photons > 0 and background, read_noise, offset >= 0; got "
            f"photons={photons}, background={background}, read_noise={read_noise}, offset={offset}"
        )
    return shape_t, spacing_t, sigma_t


#: The keywords of :func:`synthesize_volume` that :func:`_check_volume_params` checks.
_CHECKED_VOLUME_PARAMS = frozenset(inspect.signature(_check_volume_params).parameters)


def synthesize_volume(
    *,
    shape: Sequence[int] = (32, 128, 128),
    spacing: Sequence[float] = (2.0, 0.5, 0.5),
    channels: int = 3,
    num_objects: int = 150,
    num_classes: int = 3,
    radius_range_um: tuple[float, float] = (3.5, 7.0),
    aspect_range: tuple[float, float] = (0.6, 1.0),
    touching: float = 0.8,
    brightness_range: tuple[float, float] = (0.6, 1.4),
    psf_sigma_um: Sequence[float] = (1.5, 0.35, 0.35),
    background: float = 20.0,
    attenuation_um: float | None = 200.0,
    stripes: int = 10,
    stripe_strength: float = 0.5,
    light_sheet_axis: Literal["x", "y"] = "x",
    photons: float = 300.0,
    read_noise: float = 2.0,
    offset: float = 100.0,
    max_failures: int = 2000,
    seed: int = 0,
) -> SyntheticVolume:
    """Generate one synthetic light-sheet volume and its exact instance labels.

    Args:
        shape: ``(Z, Y, X)`` voxels.
        spacing: ``(sz, sy, sx)`` voxel spacing in micrometres (z usually coarser).
        channels: Number of image channels ``C``.
        num_objects: Objects to place; fewer are placed when ``max_failures`` candidates in a
            row find no free position (``SyntheticVolume.num_objects`` says how many).
        num_classes: Classes ``1..num_classes``, drawn uniformly per object.
        radius_range_um: Range of an object's longest semi-axis, micrometres.
        aspect_range: Range of the two other semi-axes as fractions of the longest.
        touching: Minimum centre distance as a multiple of the sum of the two objects' mean
            semi-axes; below 1 neighbours may touch and overlap slightly (earlier objects keep
            the shared voxels).
        brightness_range: Range of an object's brightness factor.
        psf_sigma_um: Gaussian PSF sigma ``(z, y, x)`` in micrometres.
        background: Background photons per voxel.
        attenuation_um: Depth attenuation length (signal ``* exp(-z / L)``); None disables it.
        stripes: Number of illumination streaks; 0 disables them.
        stripe_strength: Maximum relative intensity loss in a streak, in ``[0, 1)``.
        light_sheet_axis: In-plane axis (``"x"`` or ``"y"``) the light sheet travels along;
            streaks run along it.
        photons: Expected photons per voxel of a brightness-1 object at full illumination.
        read_noise: Gaussian read noise sigma, in counts.
        offset: Camera offset added to every voxel, in counts.
        max_failures: Consecutive rejected candidates after which placement stops.
        seed: Random seed; the same seed and parameters give identical arrays.

    Returns:
        A :class:`SyntheticVolume`.

    Raises:
        DataError: A parameter is out of range (the message names it).
    """
    shape_t, spacing_t, sigma_t = _check_volume_params(
        shape=shape,
        spacing=spacing,
        channels=channels,
        num_objects=num_objects,
        num_classes=num_classes,
        radius_range_um=radius_range_um,
        aspect_range=aspect_range,
        touching=touching,
        psf_sigma_um=psf_sigma_um,
        background=background,
        stripe_strength=stripe_strength,
        light_sheet_axis=light_sheet_axis,
        photons=photons,
        read_noise=read_noise,
        offset=offset,
        max_failures=max_failures,
    )
    rmin, rmax = (float(r) for r in radius_range_um)
    amin, amax = (float(a) for a in aspect_range)

    rng = np.random.default_rng(seed)
    spacing_a = np.asarray(spacing_t)
    extent = np.asarray(shape_t) * spacing_a
    label_dtype = np.uint16 if num_objects <= np.iinfo(np.uint16).max else np.uint32
    labels = np.zeros(shape_t, dtype=label_dtype)

    centres = np.zeros((num_objects, 3))
    mean_radii = np.zeros(num_objects)
    placed = 0
    classes: dict[int, int] = {}
    brightness: list[np.ndarray] = []
    failures = 0
    while placed < num_objects and failures < max_failures:
        longest = rng.uniform(rmin, rmax)
        radii = longest * np.concatenate([[1.0], rng.uniform(amin, amax, size=2)])
        centre = rng.uniform(0.0, 1.0, size=3) * extent
        if placed:
            dist = np.linalg.norm(centres[:placed] - centre, axis=1)
            if np.any(dist < touching * (mean_radii[:placed] + radii.mean())):
                failures += 1
                continue
        label_id = len(classes) + 1
        if _draw_ellipsoid(labels, label_id, centre, radii, _random_rotation(rng), spacing_a) == 0:
            failures += 1
            continue  # hidden behind earlier objects or clipped away: no voxels
        failures = 0
        centres[placed], mean_radii[placed] = centre, radii.mean()
        placed += 1
        cls = int(rng.integers(1, num_classes + 1))
        classes[label_id] = cls
        jitter = np.clip(1.0 + 0.1 * rng.normal(size=channels), 0.5, 1.5)
        brightness.append(rng.uniform(*brightness_range) * class_spectrum(cls, channels) * jitter)

    # Fluorophore density per channel via a lookup table over label ids.
    lut = np.zeros((channels, len(classes) + 1), dtype=np.float32)
    if brightness:
        lut[:, 1:] = np.stack(brightness, axis=1)
    density = lut[:, labels]  # (C, Z, Y, X)

    illumination = np.ones(shape_t, dtype=np.float32)
    if attenuation_um:
        z_um = np.arange(shape_t[0], dtype=np.float32) * spacing_t[0]
        illumination *= np.exp(-z_um / float(attenuation_um))[:, None, None]
    if stripes > 0 and stripe_strength > 0:
        illumination *= _stripe_pattern(rng, shape_t, stripes, stripe_strength, light_sheet_axis)
    signal = gaussian_blur(density * illumination[None], sigma_t, spacing_t)

    expected = np.maximum(signal, 0.0) * np.float32(photons) + np.float32(background)
    counts = rng.poisson(expected).astype(np.float32) + np.float32(offset)
    if read_noise > 0:
        counts += np.float32(read_noise) * rng.standard_normal(size=counts.shape, dtype=np.float32)
    image = np.clip(np.rint(counts), 0, np.iinfo(np.uint16).max).astype(np.uint16)
    return SyntheticVolume(image=image, labels=labels, classes=classes, spacing=spacing_t)


@dataclass(frozen=True)
class SynthesizedVolume:
    """One volume written by :func:`synthesize_dataset`.

    Attributes:
        name: Volume name (file prefix).
        split: ``"train"`` or ``"val"``.
        seed: The volume's own seed.
        num_objects: Instances in its label volume.
        files: Format -> ``(image path, label path)``.
        catalog_ids: Format -> catalog volume id (empty without a catalog).
    """

    name: str
    split: str
    seed: int
    num_objects: int
    files: dict[str, tuple[Path, Path]]
    catalog_ids: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class SynthesisReport:
    """What :func:`synthesize_dataset` wrote.

    Attributes:
        out: The dataset folder.
        volumes: One entry per volume.
        catalog_url: The catalog the volumes were registered in, or None.
        seconds: Wall time of the whole run.
    """

    out: Path
    volumes: list[SynthesizedVolume]
    catalog_url: str | None
    seconds: float

    def summary(self) -> str:
        """One line: volumes, objects, formats, catalog, time."""
        objects = sum(v.num_objects for v in self.volumes)
        formats = sorted({f for v in self.volumes for f in v.files})
        where = f", catalog {self.catalog_url}" if self.catalog_url else ""
        return (
            f"{len(self.volumes)} volumes ({objects} objects) written to {self.out} as "
            f"{', '.join(formats)}{where} in {self.seconds:.1f} s"
        )


_FORMATS = ("tiff", "ome-zarr")


def synthesize_dataset(
    out: str | Path,
    *,
    num_volumes: int = 8,
    shape: Sequence[int] = (32, 128, 128),
    spacing: Sequence[float] = (2.0, 0.5, 0.5),
    channels: int = 3,
    num_objects: int = 150,
    num_classes: int = 3,
    radius_range_um: tuple[float, float] = (3.5, 7.0),
    aspect_range: tuple[float, float] = (0.6, 1.0),
    touching: float = 0.8,
    brightness_range: tuple[float, float] = (0.6, 1.4),
    psf_sigma_um: Sequence[float] = (1.5, 0.35, 0.35),
    background: float = 20.0,
    attenuation_um: float | None = 200.0,
    stripes: int = 10,
    stripe_strength: float = 0.5,
    light_sheet_axis: Literal["x", "y"] = "x",
    photons: float = 300.0,
    read_noise: float = 2.0,
    offset: float = 100.0,
    formats: Sequence[str] = _FORMATS,
    val_fraction: float = 0.2,
    levels: int = 1,
    catalog_url: str | None = DEFAULT_CATALOG_URL,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> SynthesisReport:
    """Write a synthetic dataset (TIFF pairs and/or OME-Zarr) and register it in a catalog.

    Files: ``out/tiff/<name>_image.tif``, ``<name>_labels.tif``, ``<name>_classes.json`` and
    ``out/ome-zarr/<name>.ome.zarr`` (labels in ``labels/cells``), with names ``synth_000``,
    ``synth_001``, ... Each written copy is added to the catalog as ``<name>-<format>``
    (``synth_000-tiff``, ``synth_000-ome-zarr``) with grade ``"synthetic"``, its split, and
    attributes ``{"seed", "num_objects", "volume"}``; URIs are relative to the catalog root when
    the files lie below it.

    Args:
        out: Dataset folder (created; an existing folder is written into).
        num_volumes: Number of volumes.
        shape: ``(Z, Y, X)`` per volume.
        spacing: ``(sz, sy, sx)`` in micrometres.
        channels: Image channels.
        num_objects: Objects per volume.
        num_classes: Number of object classes.
        radius_range_um, aspect_range, touching, brightness_range, psf_sigma_um, background,
            attenuation_um, stripes, stripe_strength, light_sheet_axis, photons, read_noise,
            offset: As in :func:`synthesize_volume`.
        formats: Any of ``"tiff"``, ``"ome-zarr"``.
        val_fraction: Fraction of volumes (rounded, at least one when > 0 and there are two
            or more volumes) put in split ``"val"``; the rest are ``"train"``.
        levels: OME-Zarr multiscale levels.
        catalog_url: Catalog database URL; ``{out}`` is replaced by the dataset folder. None
            skips the catalog.
        seed: Dataset seed; volume ``i`` uses a seed derived from ``(seed, i)``.
        progress: Called with one line of text per written volume.

    Returns:
        A :class:`SynthesisReport`.

    Raises:
        DataError: Bad parameters, ``out`` is not a folder, the catalog already holds volumes of
            these names, or a catalog error (the catalog's own DataError subclasses). Parameters,
            ``out`` and the catalog URL are checked before anything is created.
    """
    start = time.perf_counter()
    from ls_data.io import write_ome_zarr, write_tiff_pair

    out_dir = Path(out).expanduser().absolute()
    volume_kwargs = {
        "shape": shape,
        "spacing": spacing,
        "channels": channels,
        "num_objects": num_objects,
        "num_classes": num_classes,
        "radius_range_um": radius_range_um,
        "aspect_range": aspect_range,
        "touching": touching,
        "brightness_range": brightness_range,
        "psf_sigma_um": psf_sigma_um,
        "background": background,
        "attenuation_um": attenuation_um,
        "stripes": stripes,
        "stripe_strength": stripe_strength,
        "light_sheet_axis": light_sheet_axis,
        "photons": photons,
        "read_noise": read_noise,
        "offset": offset,
    }
    # Every check runs before anything is created: bad input leaves no folder and no catalog.
    _check_volume_params(**{k: v for k, v in volume_kwargs.items() if k in _CHECKED_VOLUME_PARAMS})
    formats = _check_dataset_params(formats, num_volumes, val_fraction, levels)
    url = _catalog_url(catalog_url, out_dir)
    _check_out_dir(out_dir)
    num_val = round(val_fraction * num_volumes)
    if val_fraction > 0 and num_volumes >= 2:
        num_val = max(1, min(num_val, num_volumes - 1))
    val_ids = set(np.random.default_rng(seed).permutation(num_volumes)[:num_val].tolist())
    names = [f"synth_{i:03d}" for i in range(num_volumes)]

    created_out = not out_dir.exists()
    _make_dir(out_dir)
    catalog = None
    if url is not None:
        catalog_names = [f"{name}-{fmt}" for name in names for fmt in formats]
        catalog = _open_catalog(url, out_dir, catalog_names, created_out=created_out)
    volumes: list[SynthesizedVolume] = []
    try:
        for i, name in enumerate(names):
            volume_seed = int(np.random.SeedSequence([seed, i]).generate_state(1)[0])
            vol = synthesize_volume(**volume_kwargs, seed=volume_seed)
            files: dict[str, tuple[Path, Path]] = {}
            if "tiff" in formats:
                files["tiff"] = write_tiff_pair(
                    out_dir / "tiff", name, vol.image, vol.labels, vol.spacing, vol.classes
                )
            if "ome-zarr" in formats:
                group = write_ome_zarr(
                    out_dir / "ome-zarr" / f"{name}.ome.zarr",
                    vol.image,
                    vol.spacing,
                    labels=vol.labels,
                    classes=vol.classes,
                    levels=levels,
                    overwrite=True,
                )
                files["ome-zarr"] = (group, group / "labels" / "cells")
            split = "val" if i in val_ids else "train"
            ids: dict[str, int] = {}
            if catalog is not None:
                for fmt, (image_path, label_path) in files.items():
                    ids[fmt] = catalog.add_volume(
                        name=f"{name}-{fmt}",
                        image_uri=_uri(image_path, catalog.root),
                        label_uri=_uri(label_path, catalog.root),
                        format=fmt,
                        shape=vol.image.shape,
                        channels=channels,
                        spacing=vol.spacing,
                        grade="synthetic",
                        split=split,
                        attributes={"seed": volume_seed, "num_objects": vol.num_objects, "volume": name},
                    )
            volumes.append(SynthesizedVolume(name, split, volume_seed, vol.num_objects, files, ids))
            if progress is not None:
                progress(
                    f"[{i + 1}/{num_volumes}] {name}: {vol.num_objects} objects, split {split}, "
                    f"{', '.join(files)} ({time.perf_counter() - start:.1f} s)"
                )
    finally:
        if catalog is not None:
            catalog.close()
    return SynthesisReport(out=out_dir, volumes=volumes, catalog_url=url, seconds=time.perf_counter() - start)


def _check_dataset_params(
    formats: Sequence[str], num_volumes: int, val_fraction: float, levels: int
) -> tuple[str, ...]:
    """Check the dataset-level parameters of :func:`synthesize_dataset`; return the formats."""
    formats = tuple(formats)
    unknown = [f for f in formats if f not in _FORMATS]
    if unknown or not formats:
        raise DataError(f"synth formats must be a non-empty subset of {list(_FORMATS)}, got {list(formats)}")
    if num_volumes < 1:
        raise DataError(f"synth parameter num_volumes must be >= 1, got {num_volumes}")
    if not 0 <= val_fraction < 1:
        raise DataError(f"synth parameter val_fraction must be in [0, 1), got {val_fraction}")
    if "ome-zarr" in formats and (isinstance(levels, bool) or not isinstance(levels, int) or levels < 1):
        raise DataError(f"synth parameter levels must be an int >= 1, got {levels!r}")
    return formats


def _catalog_url(catalog_url: str | None, out_dir: Path) -> str | None:
    """The catalog URL with ``{out}`` filled in, checked (parsed) before anything is written."""
    if catalog_url is None:
        return None
    from ls_data.catalog.url import parse_url

    url = catalog_url.replace("{out}", str(out_dir))
    parse_url(url)
    return url


def _check_out_dir(out_dir: Path) -> None:
    """Raise DataError unless ``out_dir`` is a folder or can be created as one."""
    for path in (out_dir, *out_dir.parents):
        if not (path.exists() or path.is_symlink()):
            continue
        if path.is_dir():
            return
        if path == out_dir:
            raise DataError(
                f"synth output folder {str(out_dir)!r} exists and is not a folder; choose another --out"
            )
        raise DataError(
            f"synth output folder {str(out_dir)!r} cannot be created: {str(path)!r} is not a folder"
        )


def _make_dir(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise DataError(f"cannot create synth output folder {str(out_dir)!r}: {reason}") from None


def _open_catalog(url: str, out_dir: Path, names: Sequence[str], *, created_out: bool) -> Catalog:
    """Open (or create) the catalog, refusing one that already holds volumes of these names.

    On failure the output folder is removed again when this run created it and it is empty.
    """
    from ls_data.catalog import Catalog, Selection

    try:
        catalog = Catalog(url, roots=[out_dir], create=True)
    except BaseException:
        _remove_new_empty_dir(out_dir, created_out)
        raise
    try:
        taken = [r.name for r in catalog.volumes(Selection(names=list(names)))]
        if taken:
            shown = ", ".join(taken[:3]) + (", ..." if len(taken) > 3 else "")
            raise DataError(
                f"catalog {catalog.safe_url!r} already has {len(taken)} volume(s) of this synth run "
                f"({shown}); nothing written. Choose another --out (or --db), or remove them with "
                "'ls-data catalog remove'"
            )
    except BaseException:
        catalog.close()
        _remove_new_empty_dir(out_dir, created_out)
        raise
    return catalog


def _remove_new_empty_dir(out_dir: Path, created: bool) -> None:
    if created:
        with contextlib.suppress(OSError):
            out_dir.rmdir()  # only succeeds when empty


def _uri(path: Path, root: Path | None) -> str:
    """``path`` relative to ``root`` when it lies below it, else absolute (POSIX separators)."""
    if root is not None:
        try:
            return path.relative_to(root).as_posix()
        except ValueError:
            pass
    return path.as_posix()
