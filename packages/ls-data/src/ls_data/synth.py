"""Synthetic light-sheet volumes ("skittles"): objects, optics and camera noise, in several styles.

A *style* is one distribution of volumes; its parameters are the defaults of a frozen
dataclass in :mod:`ls_data.synth_styles`, and :func:`synthesize_volume` (``style=``) renders
it. Training on one style and evaluating on the others measures generalisation.

``"ellipsoids"`` (the default, the original generator) models a dense field of stained cells:

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

``"blobs"`` (irregular unions of 2-4 spheres) and ``"dense"`` (many small nuclei of widely
varying brightness) place object centres the same way, but a voxel inside several objects
belongs to the object with the nearest centre; they add a smooth texture inside the objects
and may use a two-Gaussian PSF (core plus wide tail). Their labels are exact too: the image is
rendered from the final label volume.

The same seed, style and parameters always give identical arrays.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ls_data.errors import DataError
from ls_data.synth_styles import (
    STYLE_DEFAULT,
    STYLES,
    BlobsStyle,
    DenseStyle,
    EllipsoidsStyle,
    SynthStyle,
    _check_triple,
    resolve_style,
)

if TYPE_CHECKING:
    from ls_data.catalog import Catalog

__all__ = [
    "STYLES",
    "STYLE_DEFAULT",
    "SYNTH_CATALOG",
    "BlobsStyle",
    "DenseStyle",
    "EllipsoidsStyle",
    "SynthStyle",
    "SynthesisReport",
    "SynthesizedVolume",
    "SyntheticVolume",
    "class_spectrum",
    "gaussian_blur",
    "resolve_style",
    "synthesize_dataset",
    "synthesize_volume",
]

Triple = tuple[float, float, float]
#: Default catalog of :func:`synthesize_dataset` and ``ls-data synth``: one inside the dataset
#: folder (``{out}``), unlike the catalog commands' ``DEFAULT_CATALOG`` in the current folder.
SYNTH_CATALOG = "sqlite:///{out}/catalog.sqlite"


@dataclass(frozen=True)
class SyntheticVolume:
    """One synthetic volume.

    Attributes:
        image: ``(C, Z, Y, X)`` uint16 camera counts.
        labels: ``(Z, Y, X)`` instance ids, 0 = background, ids ``1..N`` (uint16, or uint32 when
            N > 65535).
        classes: Class (``1..num_classes``) of each instance id.
        spacing: ``(sz, sy, sx)`` in micrometres.
        style: Name of the style that generated it.
    """

    image: np.ndarray
    labels: np.ndarray
    classes: dict[int, int]
    spacing: Triple
    style: str = "ellipsoids"

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


def synthesize_volume(
    *,
    style: str | SynthStyle = "ellipsoids",
    style_params: Mapping[str, Any] | None = None,
    shape: Sequence[int] = STYLE_DEFAULT,
    spacing: Sequence[float] = (2.0, 0.5, 0.5),
    channels: int = STYLE_DEFAULT,
    num_objects: int = STYLE_DEFAULT,
    num_classes: int = STYLE_DEFAULT,
    radius_range_um: tuple[float, float] = STYLE_DEFAULT,
    aspect_range: tuple[float, float] = STYLE_DEFAULT,
    touching: float = STYLE_DEFAULT,
    brightness_range: tuple[float, float] = STYLE_DEFAULT,
    psf_sigma_um: Sequence[float] = STYLE_DEFAULT,
    background: float = STYLE_DEFAULT,
    attenuation_um: float | None = STYLE_DEFAULT,
    stripes: int = STYLE_DEFAULT,
    stripe_strength: float = STYLE_DEFAULT,
    light_sheet_axis: Literal["x", "y"] = STYLE_DEFAULT,
    photons: float = STYLE_DEFAULT,
    read_noise: float = STYLE_DEFAULT,
    offset: float = STYLE_DEFAULT,
    max_failures: int = 2000,
    seed: int = 0,
) -> SyntheticVolume:
    """Generate one synthetic light-sheet volume of a style, and its exact instance labels.

    Every keyword shown as ``<style default>`` takes the style's value unless given; the
    defaults of each style are the fields of its dataclass in :mod:`ls_data.synth_styles`
    (:class:`EllipsoidsStyle`, :class:`BlobsStyle`, :class:`DenseStyle`). A keyword the style
    does not use (``aspect_range`` with ``"blobs"``) is refused with a DataError naming it.

    Args:
        style: ``"ellipsoids"`` (default: the original generator, bit-identical output),
            ``"blobs"``, ``"dense"``, or a style instance (``BlobsStyle(lobes=(2, 3))``).
        style_params: Further fields of the style to change, by name (any field of its
            dataclass, e.g. ``{"lobes": [2, 3]}``; JSON / Hydra friendly).
        shape: ``(Z, Y, X)`` voxels.
        spacing: ``(sz, sy, sx)`` voxel spacing in micrometres (z usually coarser); the same
            default for every style.
        channels: Number of image channels ``C``.
        num_objects: Objects to place; fewer are placed when ``max_failures`` candidates in a
            row find no free position (``SyntheticVolume.num_objects`` says how many).
        num_classes: Classes ``1..num_classes``, drawn uniformly per object.
        radius_range_um: Range of an object's longest semi-axis (of each sphere for
            ``"blobs"``), micrometres.
        aspect_range: Range of the two other semi-axes as fractions of the longest
            (``"ellipsoids"``, ``"dense"``).
        touching: Minimum centre distance as a multiple of the sum of the two objects' radii;
            below 1 neighbours may touch and overlap (``"ellipsoids"``: the earlier object keeps
            the shared voxels; ``"blobs"``, ``"dense"``: the object with the nearest centre).
        brightness_range: Range of an object's brightness factor.
        psf_sigma_um: Gaussian PSF sigma ``(z, y, x)`` in micrometres (the core Gaussian for
            styles with a PSF tail).
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
        seed: Random seed; the same seed, style and parameters give identical arrays.

    Returns:
        A :class:`SyntheticVolume` (its ``style`` names the style).

    Raises:
        DataError: Unknown style, a keyword the style does not use, or a parameter out of range
            (the message names it).
    """
    params, spacing_t = _resolve_volume_params(
        style,
        style_params,
        spacing=spacing,
        max_failures=max_failures,
        shape=shape,
        channels=channels,
        num_objects=num_objects,
        num_classes=num_classes,
        radius_range_um=radius_range_um,
        aspect_range=aspect_range,
        touching=touching,
        brightness_range=brightness_range,
        psf_sigma_um=psf_sigma_um,
        background=background,
        attenuation_um=attenuation_um,
        stripes=stripes,
        stripe_strength=stripe_strength,
        light_sheet_axis=light_sheet_axis,
        photons=photons,
        read_noise=read_noise,
        offset=offset,
    )
    if isinstance(params, EllipsoidsStyle):
        return _ellipsoids_volume(params, spacing_t, max_failures, seed)
    return _touching_objects_volume(params, spacing_t, max_failures, seed)


def _resolve_volume_params(
    style: str | SynthStyle,
    style_params: Mapping[str, Any] | None,
    *,
    spacing: Sequence[float],
    max_failures: int,
    **overrides: Any,
) -> tuple[SynthStyle, Triple]:
    """The checked style (with ``style_params`` and ``overrides``) and spacing; DataError otherwise."""
    params = resolve_style(style, style_params, **overrides)
    spacing_t = _check_triple("spacing", spacing, positive=True)
    if isinstance(max_failures, bool) or not isinstance(max_failures, int) or max_failures < 1:
        raise DataError(f"synth parameter max_failures must be an int >= 1, got {max_failures!r}")
    return params, spacing_t


def _ellipsoids_volume(
    p: EllipsoidsStyle, spacing_t: Triple, max_failures: int, seed: int
) -> SyntheticVolume:
    """The ``"ellipsoids"`` style: the original generator, unchanged (same arrays for a seed)."""
    shape_t, channels, num_objects = p.shape, p.channels, p.num_objects
    rmin, rmax = p.radius_range_um
    amin, amax = p.aspect_range

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
            if np.any(dist < p.touching * (mean_radii[:placed] + radii.mean())):
                failures += 1
                continue
        label_id = len(classes) + 1
        if _draw_ellipsoid(labels, label_id, centre, radii, _random_rotation(rng), spacing_a) == 0:
            failures += 1
            continue  # hidden behind earlier objects or clipped away: no voxels
        failures = 0
        centres[placed], mean_radii[placed] = centre, radii.mean()
        placed += 1
        cls = int(rng.integers(1, p.num_classes + 1))
        classes[label_id] = cls
        jitter = np.clip(1.0 + 0.1 * rng.normal(size=channels), 0.5, 1.5)
        brightness.append(rng.uniform(*p.brightness_range) * class_spectrum(cls, channels) * jitter)

    # Fluorophore density per channel via a lookup table over label ids.
    lut = np.zeros((channels, len(classes) + 1), dtype=np.float32)
    if brightness:
        lut[:, 1:] = np.stack(brightness, axis=1)
    density = lut[:, labels]  # (C, Z, Y, X)

    illumination = _illumination(p, rng, shape_t, spacing_t)
    signal = gaussian_blur(density * illumination[None], p.psf_sigma_um, spacing_t)
    image = _camera(p, rng, signal)
    return SyntheticVolume(image=image, labels=labels, classes=classes, spacing=spacing_t, style=p.name)


def _illumination(
    p: SynthStyle, rng: np.random.Generator, shape_t: tuple[int, int, int], spacing_t: Triple
) -> np.ndarray:
    """``(Z, Y, X)`` illumination factors: depth attenuation times light-sheet stripes."""
    illumination = np.ones(shape_t, dtype=np.float32)
    if p.attenuation_um:
        z_um = np.arange(shape_t[0], dtype=np.float32) * spacing_t[0]
        illumination *= np.exp(-z_um / float(p.attenuation_um))[:, None, None]
    if p.stripes > 0 and p.stripe_strength > 0:
        illumination *= _stripe_pattern(rng, shape_t, p.stripes, p.stripe_strength, p.light_sheet_axis)
    return illumination


def _camera(p: SynthStyle, rng: np.random.Generator, signal: np.ndarray) -> np.ndarray:
    """``uint16`` counts: Poisson photons over the background, offset, Gaussian read noise."""
    expected = np.maximum(signal, 0.0) * np.float32(p.photons) + np.float32(p.background)
    counts = rng.poisson(expected).astype(np.float32) + np.float32(p.offset)
    if p.read_noise > 0:
        counts += np.float32(p.read_noise) * rng.standard_normal(size=counts.shape, dtype=np.float32)
    return np.clip(np.rint(counts), 0, np.iinfo(np.uint16).max).astype(np.uint16)


# -- "blobs" and "dense": touching objects, shared voxels to the nearest centre -------------------


def _sample_parts(
    rng: np.random.Generator, p: BlobsStyle | DenseStyle
) -> tuple[list[tuple[np.ndarray, np.ndarray, np.ndarray | None]], float]:
    """One object's ellipsoids ``(offset from its centre, semi-axes, rotation)`` and its radius.

    ``"blobs"``: 2-4 spheres of different radii; the further ones' centres lie inside the
    largest sphere, and the object's centre (the volume-weighted mean of the sphere centres) lies
    inside it too, so each object owns the voxels around its centre. The radius for the
    ``touching`` rule is the outer radius (farthest sphere surface from the centre).
    ``"dense"``: one ellipsoid, its rotation None until the object is placed; the radius is
    its mean semi-axis.
    """
    rmin, rmax = p.radius_range_um
    if isinstance(p, BlobsStyle):
        count = int(rng.integers(p.lobes[0], p.lobes[1] + 1))
        radii = np.sort(rng.uniform(rmin, rmax, size=count))[::-1]
        centres = np.zeros((count, 3))
        for k in range(1, count):
            direction = rng.normal(size=3)
            direction /= max(float(np.linalg.norm(direction)), 1e-12)
            centres[k] = direction * radii[0] * rng.uniform(*p.lobe_offset)
        weights = radii**3
        centres -= (weights[:, None] * centres).sum(axis=0) / weights.sum()
        eye = np.eye(3)
        parts = [(centres[k], np.full(3, radii[k]), eye) for k in range(count)]
        outer = float(np.max(np.linalg.norm(centres, axis=1) + radii))
        return parts, outer
    amin, amax = p.aspect_range
    semi = rng.uniform(rmin, rmax) * np.concatenate([[1.0], rng.uniform(amin, amax, size=2)])
    return [(np.zeros(3), semi, None)], float(semi.mean())  # oriented once placed (saves QRs)


def _paint_nearest(
    labels: np.ndarray,
    nearest: np.ndarray,
    label_id: int,
    centre: np.ndarray,
    parts: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    spacing: np.ndarray,
) -> None:
    """Give ``label_id`` the voxels inside the union of ``parts`` that are nearer ``centre``
    than to the centre of the object that holds them (``nearest``: squared distance, um^2).

    The result does not depend on the order the objects are painted in (up to exact ties).
    """
    shape = np.asarray(labels.shape)
    lo, hi = np.full(3, np.iinfo(np.int64).max), np.full(3, np.iinfo(np.int64).min)
    for offset, radii, rotation in parts:
        half = np.sqrt(((rotation * radii[None, :]) ** 2).sum(axis=1))
        lo = np.minimum(lo, np.floor((centre + offset - half) / spacing).astype(np.int64))
        hi = np.maximum(hi, np.ceil((centre + offset + half) / spacing).astype(np.int64) + 1)
    lo, hi = np.maximum(lo, 0), np.minimum(hi, shape)
    if np.any(hi <= lo):
        return
    dz, dy, dx = ((np.arange(lo[a], hi[a]) * spacing[a] - centre[a]).astype(np.float32) for a in range(3))
    inside = np.zeros((hi - lo).tolist(), dtype=bool)
    for offset, radii, rotation in parts:
        scaled = (rotation / radii[None, :]).astype(np.float32)
        pz, py, px = dz - np.float32(offset[0]), dy - np.float32(offset[1]), dx - np.float32(offset[2])
        form = np.zeros(inside.shape, dtype=np.float32)
        for j in range(3):
            q = (
                pz[:, None, None] * scaled[0, j]
                + py[None, :, None] * scaled[1, j]
                + px[None, None, :] * scaled[2, j]
            )
            form += q * q
        inside |= form <= 1.0
    dist2 = dz[:, None, None] ** 2 + dy[None, :, None] ** 2 + dx[None, None, :] ** 2
    box = (slice(lo[0], hi[0]), slice(lo[1], hi[1]), slice(lo[2], hi[2]))
    claim = inside & (dist2 < nearest[box])
    labels[box][claim] = label_id
    nearest[box][claim] = dist2[claim]


def _draw_brightness(rng: np.random.Generator, p: BlobsStyle | DenseStyle) -> float:
    low, high = p.brightness_range
    if p.brightness_distribution == "log-uniform":
        return float(np.exp(rng.uniform(np.log(low), np.log(high))))
    return float(rng.uniform(low, high))


def _touching_objects_volume(
    p: BlobsStyle | DenseStyle, spacing_t: Triple, max_failures: int, seed: int
) -> SyntheticVolume:
    """The ``"blobs"`` and ``"dense"`` styles.

    Objects are placed by rejection sampling of their centres (minimum distance ``touching``
    times the sum of their radii), then painted so that a voxel inside several objects belongs
    to the one whose centre is nearest; objects left without voxels are dropped and the ids are
    renumbered ``1..N`` in placement order. The image is rendered from the final labels:
    brightness per object (times class colour), smooth texture, illumination, a one- or
    two-Gaussian PSF and the camera.
    """
    shape_t, channels = p.shape, p.channels
    rng = np.random.default_rng(seed)
    spacing_a = np.asarray(spacing_t)
    extent = np.asarray(shape_t) * spacing_a

    centres = np.zeros((p.num_objects, 3))
    radii = np.zeros(p.num_objects)
    objects: list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = []
    classes_drawn: list[int] = []
    brightness: list[np.ndarray] = []
    failures = 0
    while len(objects) < p.num_objects and failures < max_failures:
        parts, radius = _sample_parts(rng, p)
        centre = rng.uniform(0.0, 1.0, size=3) * extent
        placed = len(objects)
        if placed:
            dist = np.linalg.norm(centres[:placed] - centre, axis=1)
            if np.any(dist < p.touching * (radii[:placed] + radius)):
                failures += 1
                continue
        failures = 0
        centres[placed], radii[placed] = centre, radius
        objects.append([(o, r, _random_rotation(rng) if rot is None else rot) for o, r, rot in parts])
        cls = int(rng.integers(1, p.num_classes + 1))
        classes_drawn.append(cls)
        jitter = np.clip(1.0 + 0.1 * rng.normal(size=channels), 0.5, 1.5)
        brightness.append(_draw_brightness(rng, p) * class_spectrum(cls, channels) * jitter)

    label_dtype = np.uint16 if len(objects) <= np.iinfo(np.uint16).max else np.uint32
    labels = np.zeros(shape_t, dtype=label_dtype)
    nearest = np.full(shape_t, np.inf, dtype=np.float32)
    for k, parts in enumerate(objects):
        _paint_nearest(labels, nearest, k + 1, centres[k], parts, spacing_a)
    del nearest

    # Drop objects that kept no voxel (clipped away or covered by nearer neighbours); ids 1..N.
    kept = np.flatnonzero(np.bincount(labels.ravel(), minlength=len(objects) + 1)[1:] > 0)
    if len(kept) < len(objects):
        remap = np.zeros(len(objects) + 1, dtype=label_dtype)
        remap[kept + 1] = np.arange(1, len(kept) + 1, dtype=label_dtype)
        labels = remap[labels]
    classes = {i + 1: classes_drawn[k] for i, k in enumerate(kept.tolist())}

    lut = np.zeros((channels, len(kept) + 1), dtype=np.float32)
    if len(kept):
        lut[:, 1:] = np.stack([brightness[k] for k in kept.tolist()], axis=1)
    density = lut[:, labels]  # (C, Z, Y, X)
    if p.texture > 0 and len(kept):
        noise = rng.standard_normal(size=(1, *shape_t), dtype=np.float32)
        noise = gaussian_blur(noise, (p.texture_scale_um,) * 3, spacing_t)
        noise /= max(float(noise.std()), 1e-6)
        density *= np.maximum(1.0 + np.float32(p.texture) * noise, np.float32(0.1))

    emitted = density * _illumination(p, rng, shape_t, spacing_t)[None]
    signal = gaussian_blur(emitted, p.psf_sigma_um, spacing_t)
    if p.psf_tail_weight > 0:
        tail = gaussian_blur(emitted, p.psf_tail_sigma_um, spacing_t)
        signal = np.float32(1.0 - p.psf_tail_weight) * signal + np.float32(p.psf_tail_weight) * tail
    image = _camera(p, rng, signal)
    return SyntheticVolume(image=image, labels=labels, classes=classes, spacing=spacing_t, style=p.name)


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
        style: Name of the style that generated it.
    """

    name: str
    split: str
    seed: int
    num_objects: int
    files: dict[str, tuple[Path, Path]]
    catalog_ids: dict[str, int] = field(default_factory=dict)
    style: str = "ellipsoids"


@dataclass(frozen=True)
class SynthesisReport:
    """What :func:`synthesize_dataset` wrote.

    Attributes:
        out: The dataset folder.
        volumes: One entry per volume.
        catalog: The URL of the catalog the volumes were registered in, or None.
        seconds: Wall time of the whole run.
    """

    out: Path
    volumes: list[SynthesizedVolume]
    catalog: str | None
    seconds: float

    def summary(self) -> str:
        """One line: volumes, objects, styles, formats, catalog, time."""
        objects = sum(v.num_objects for v in self.volumes)
        formats = sorted({f for v in self.volumes for f in v.files})
        styles = ", ".join(sorted({v.style for v in self.volumes}))
        where = f", catalog {self.catalog}" if self.catalog else ""
        return (
            f"{len(self.volumes)} volumes ({objects} objects, style {styles}) written to {self.out} as "
            f"{', '.join(formats)}{where} in {self.seconds:.1f} s"
        )


_FORMATS = ("tiff", "ome-zarr")


def synthesize_dataset(
    out: str | Path,
    *,
    num_volumes: int = 8,
    style: str | SynthStyle = "ellipsoids",
    style_params: Mapping[str, Any] | None = None,
    shape: Sequence[int] = STYLE_DEFAULT,
    spacing: Sequence[float] = (2.0, 0.5, 0.5),
    channels: int = STYLE_DEFAULT,
    num_objects: int = STYLE_DEFAULT,
    num_classes: int = STYLE_DEFAULT,
    radius_range_um: tuple[float, float] = STYLE_DEFAULT,
    aspect_range: tuple[float, float] = STYLE_DEFAULT,
    touching: float = STYLE_DEFAULT,
    brightness_range: tuple[float, float] = STYLE_DEFAULT,
    psf_sigma_um: Sequence[float] = STYLE_DEFAULT,
    background: float = STYLE_DEFAULT,
    attenuation_um: float | None = STYLE_DEFAULT,
    stripes: int = STYLE_DEFAULT,
    stripe_strength: float = STYLE_DEFAULT,
    light_sheet_axis: Literal["x", "y"] = STYLE_DEFAULT,
    photons: float = STYLE_DEFAULT,
    read_noise: float = STYLE_DEFAULT,
    offset: float = STYLE_DEFAULT,
    formats: Sequence[str] = _FORMATS,
    val_fraction: float = 0.2,
    levels: int = 1,
    catalog: str | None = SYNTH_CATALOG,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> SynthesisReport:
    """Write a synthetic dataset (TIFF pairs and/or OME-Zarr) of one style and register it in a catalog.

    Files: ``out/tiff/<name>_image.tif``, ``<name>_labels.tif``, ``<name>_classes.json`` and
    ``out/ome-zarr/<name>.ome.zarr`` (labels in ``labels/cells``), with names ``synth_000``,
    ``synth_001``, ... Each written copy is added to the catalog as ``<name>-<format>``
    (``synth_000-tiff``, ``synth_000-ome-zarr``) with grade ``"synthetic"``, its split, and
    attributes ``{"seed", "num_objects", "volume", "style", "style_params"}`` (``style_params``:
    every field of the resolved style, so ``synthesize_volume(style=..., style_params=...,
    spacing=..., seed=...)`` regenerates the volume); URIs are relative to the catalog root when
    the files lie below it.

    Args:
        out: Dataset folder (created; an existing folder is written into).
        num_volumes: Number of volumes.
        style, style_params: The style and changes to its fields, as in
            :func:`synthesize_volume`.
        shape: ``(Z, Y, X)`` per volume.
        spacing: ``(sz, sy, sx)`` in micrometres.
        channels: Image channels.
        num_objects: Objects per volume.
        num_classes: Number of object classes.
        radius_range_um, aspect_range, touching, brightness_range, psf_sigma_um, background,
            attenuation_um, stripes, stripe_strength, light_sheet_axis, photons, read_noise,
            offset: As in :func:`synthesize_volume`; ``<style default>``: the style's value, and
            a keyword the style does not use is refused.
        formats: Any of ``"tiff"``, ``"ome-zarr"``.
        val_fraction: Fraction of volumes (rounded, at least one when > 0 and there are two
            or more volumes) put in split ``"val"``; the rest are ``"train"``.
        levels: OME-Zarr multiscale levels.
        catalog: Catalog database URL; ``{out}`` is replaced by the dataset folder. None
            skips the catalog.
        seed: Dataset seed; volume ``i`` uses a seed derived from ``(seed, i)``.
        progress: Called with one line of text per written volume.

    Returns:
        A :class:`SynthesisReport`.

    Raises:
        DataError: Bad parameters, an unknown style, ``out`` is not a folder, the catalog already
            holds volumes of these names, or a catalog error (the catalog's own DataError
            subclasses). Parameters, ``out`` and the catalog URL are checked before anything is
            created.
    """
    start = time.perf_counter()
    from ls_data.io import write_ome_zarr, write_tiff_pair

    out_dir = Path(out).expanduser().absolute()
    # Every check runs before anything is created: bad input leaves no folder and no catalog.
    params, spacing_t = _resolve_volume_params(
        style,
        style_params,
        spacing=spacing,
        max_failures=2000,
        shape=shape,
        channels=channels,
        num_objects=num_objects,
        num_classes=num_classes,
        radius_range_um=radius_range_um,
        aspect_range=aspect_range,
        touching=touching,
        brightness_range=brightness_range,
        psf_sigma_um=psf_sigma_um,
        background=background,
        attenuation_um=attenuation_um,
        stripes=stripes,
        stripe_strength=stripe_strength,
        light_sheet_axis=light_sheet_axis,
        photons=photons,
        read_noise=read_noise,
        offset=offset,
    )
    formats = _check_dataset_params(formats, num_volumes, val_fraction, levels)
    url = _resolve_catalog(catalog, out_dir)
    _check_out_dir(out_dir)
    num_val = round(val_fraction * num_volumes)
    if val_fraction > 0 and num_volumes >= 2:
        num_val = max(1, min(num_val, num_volumes - 1))
    val_ids = set(np.random.default_rng(seed).permutation(num_volumes)[:num_val].tolist())
    names = [f"synth_{i:03d}" for i in range(num_volumes)]

    created_out = not out_dir.exists()
    _make_dir(out_dir)
    opened = None
    if url is not None:
        catalog_names = [f"{name}-{fmt}" for name in names for fmt in formats]
        opened = _open_catalog(url, out_dir, catalog_names, created_out=created_out)
    style_record = params.params()
    volumes: list[SynthesizedVolume] = []
    try:
        for i, name in enumerate(names):
            volume_seed = int(np.random.SeedSequence([seed, i]).generate_state(1)[0])
            vol = synthesize_volume(style=params, spacing=spacing_t, seed=volume_seed)
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
            if opened is not None:
                for fmt, (image_path, label_path) in files.items():
                    ids[fmt] = opened.add_volume(
                        name=f"{name}-{fmt}",
                        image_uri=_uri(image_path, opened.root),
                        label_uri=_uri(label_path, opened.root),
                        format=fmt,
                        shape=vol.image.shape,
                        channels=params.channels,
                        spacing=vol.spacing,
                        grade="synthetic",
                        split=split,
                        attributes={
                            "seed": volume_seed,
                            "num_objects": vol.num_objects,
                            "volume": name,
                            "style": params.name,
                            "style_params": style_record,
                        },
                    )
            volumes.append(
                SynthesizedVolume(name, split, volume_seed, vol.num_objects, files, ids, style=params.name)
            )
            if progress is not None:
                progress(
                    f"[{i + 1}/{num_volumes}] {name}: {vol.num_objects} {params.name} objects, "
                    f"split {split}, "
                    f"{', '.join(files)} ({time.perf_counter() - start:.1f} s)"
                )
    finally:
        if opened is not None:
            opened.close()
    return SynthesisReport(out=out_dir, volumes=volumes, catalog=url, seconds=time.perf_counter() - start)


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


def _resolve_catalog(catalog: str | None, out_dir: Path) -> str | None:
    """The catalog URL with ``{out}`` filled in, checked (parsed) before anything is written."""
    if catalog is None:
        return None
    from ls_data.catalog.url import parse_url

    url = catalog.replace("{out}", str(out_dir))
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
                f"({shown}); nothing written. Choose another --out (or --catalog), or remove them with "
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
