"""The styles of the synthetic light-sheet generator: one frozen dataclass of defaults per style.

A *style* is one distribution of synthetic volumes (object shapes, packing, intensities, PSF,
noise). Training on one style and evaluating on the others measures generalisation rather than
tuning. Each style's parameters, with their defaults, are the fields of its dataclass below;
:func:`ls_data.synth.synthesize_volume` renders them.

``"ellipsoids"`` (:class:`EllipsoidsStyle`, the default)
    Three-channel, three-class ellipsoids (longest semi-axis 3.5-7 um) placed by rejection
    sampling; where neighbours overlap the earlier object keeps the voxels. Depth attenuation,
    strong light-sheet stripes along x, a Gaussian PSF, Poisson + read noise.
``"blobs"`` (:class:`BlobsStyle`)
    Single-channel irregular objects, each the union of 2-4 overlapping spheres of different
    radii (3-6 um), 30 in a 24x96x96 volume, touching neighbours; a voxel inside several
    objects belongs to the one whose centre is nearest. Smooth texture inside the objects, a
    PSF broader along z with a wide tail (two Gaussians), weak stripes along y, no attenuation,
    fewer photons, Poisson + Gaussian noise.
``"dense"`` (:class:`DenseStyle`)
    Single-channel, densely packed small nuclei (600 slightly ellipsoidal objects, longest
    semi-axis 2.8-3.8 um, in a 24x96x96 volume), tightly touching (nearest centre owns shared
    voxels), brightness log-uniform over a 33x range so that the dimmest objects sit near the
    noise floor, a PSF narrow along z and wide in y-x, strong attenuation, no stripes, high
    background and read noise.

All styles share the voxel grid conventions (``shape`` ``(Z, Y, X)`` voxels at the spacing
given to the generator, 2.0 x 0.5 x 0.5 um by default) and the camera model (background,
Poisson photon noise, Gaussian read noise, offset, ``uint16``). ``num_objects`` is a count for
the style's default ``shape``: scale it with the volume when changing ``shape``.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from ls_core import parse_triple
from ls_data.errors import DataError

__all__ = [
    "STYLES",
    "STYLE_DEFAULT",
    "BlobsStyle",
    "DenseStyle",
    "EllipsoidsStyle",
    "SynthStyle",
    "resolve_style",
]


class _StyleDefault:
    """Marker default of a generator keyword: take the value from the chosen style."""

    _instance: _StyleDefault | None = None

    def __new__(cls) -> _StyleDefault:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "<style default>"

    def __reduce__(self) -> str:
        return "STYLE_DEFAULT"


#: Default of the keywords of ``synthesize_volume`` / ``synthesize_dataset`` that a style sets.
STYLE_DEFAULT: Final[Any] = _StyleDefault()


@dataclass(frozen=True)
class SynthStyle:
    """Base of the style dataclasses: checks and normalises the fields on construction.

    Use :func:`dataclasses.replace` (or :func:`resolve_style`) to change a field; the result is
    checked again. :meth:`params` gives the fields as a JSON-serialisable dict.
    """

    name: ClassVar[str] = ""

    def __post_init__(self) -> None:
        if not self.name:
            raise TypeError("SynthStyle is the base class; use one of the styles in STYLES")
        _check_style(self)

    def params(self) -> dict[str, Any]:
        """The style's fields as a dict (tuples become lists: JSON-serialisable)."""
        return {
            f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v
            for f in dataclasses.fields(self)
        }


@dataclass(frozen=True)
class EllipsoidsStyle(SynthStyle):
    """``"ellipsoids"``: the original generator (bit-identical output for the same arguments).

    Attributes:
        shape: ``(Z, Y, X)`` voxels.
        channels: Image channels ``C``.
        num_objects: Objects to place (fewer when the volume is full).
        num_classes: Classes ``1..num_classes``, drawn uniformly; the class fixes the colour.
        radius_range_um: Range of the longest semi-axis, micrometres.
        aspect_range: The two other semi-axes as fractions of the longest.
        touching: Minimum centre distance as a multiple of the sum of the two mean semi-axes;
            below 1 neighbours may overlap (the earlier object keeps the shared voxels).
        brightness_range: Object brightness factor, uniform.
        psf_sigma_um: Gaussian PSF sigma ``(z, y, x)``, micrometres.
        background: Background photons per voxel.
        attenuation_um: Depth attenuation length (``exp(-z / L)``); None or 0: none.
        stripes: Number of illumination streaks (0: none).
        stripe_strength: Maximum relative intensity loss in a streak, ``[0, 1)``.
        light_sheet_axis: In-plane axis the light sheet travels along (streaks run along it).
        photons: Photons per voxel of a brightness-1 object at full illumination.
        read_noise: Gaussian read noise sigma, counts.
        offset: Camera offset, counts.
    """

    name: ClassVar[str] = "ellipsoids"

    shape: tuple[int, int, int] = (32, 128, 128)
    channels: int = 3
    num_objects: int = 150
    num_classes: int = 3
    radius_range_um: tuple[float, float] = (3.5, 7.0)
    aspect_range: tuple[float, float] = (0.6, 1.0)
    touching: float = 0.8
    brightness_range: tuple[float, float] = (0.6, 1.4)
    psf_sigma_um: tuple[float, float, float] = (1.5, 0.35, 0.35)
    background: float = 20.0
    attenuation_um: float | None = 200.0
    stripes: int = 10
    stripe_strength: float = 0.5
    light_sheet_axis: str = "x"
    photons: float = 300.0
    read_noise: float = 2.0
    offset: float = 100.0


@dataclass(frozen=True)
class BlobsStyle(SynthStyle):
    """``"blobs"``: touching irregular objects, each the union of a few overlapping spheres.

    Attributes:
        shape, channels, num_objects, num_classes: As in :class:`EllipsoidsStyle`.
        radius_range_um: Radius range of each sphere, micrometres (drawn per sphere).
        lobes: ``(min, max)`` spheres per object, inclusive.
        lobe_offset: Distance of each further sphere's centre from the largest sphere's centre,
            as a fraction of that radius (``< 1``: every sphere overlaps the largest one).
        touching: Minimum distance of two object centres (volume-weighted mean of their sphere
            centres) as a multiple of the sum of their outer radii; below 1 neighbours overlap
            and each shared voxel goes to the object with the nearest centre.
        brightness_range: Object brightness factor.
        brightness_distribution: ``"uniform"`` or ``"log-uniform"`` over ``brightness_range``.
        texture: Relative standard deviation of a smooth multiplicative texture inside the
            objects (0: flat objects).
        texture_scale_um: Correlation length (Gaussian sigma) of the texture, micrometres.
        psf_sigma_um: Sigma ``(z, y, x)`` of the PSF's core Gaussian, micrometres.
        psf_tail_weight: Fraction of the light in the PSF's wide second Gaussian, ``[0, 1)``.
        psf_tail_sigma_um: Sigma ``(z, y, x)`` of that second Gaussian, micrometres.
        background, attenuation_um, stripes, stripe_strength, light_sheet_axis, photons,
            read_noise, offset: As in :class:`EllipsoidsStyle`.
    """

    name: ClassVar[str] = "blobs"

    shape: tuple[int, int, int] = (24, 96, 96)
    channels: int = 1
    num_objects: int = 30
    num_classes: int = 1
    radius_range_um: tuple[float, float] = (3.0, 6.0)
    lobes: tuple[int, int] = (2, 4)
    lobe_offset: tuple[float, float] = (0.5, 0.9)
    touching: float = 0.5
    brightness_range: tuple[float, float] = (0.6, 1.6)
    brightness_distribution: str = "uniform"
    texture: float = 0.25
    texture_scale_um: float = 1.0
    psf_sigma_um: tuple[float, float, float] = (2.4, 0.45, 0.45)
    psf_tail_weight: float = 0.25
    psf_tail_sigma_um: tuple[float, float, float] = (5.0, 1.0, 1.0)
    background: float = 8.0
    attenuation_um: float | None = None
    stripes: int = 3
    stripe_strength: float = 0.15
    light_sheet_axis: str = "y"
    photons: float = 200.0
    read_noise: float = 3.0
    offset: float = 100.0


@dataclass(frozen=True)
class DenseStyle(SynthStyle):
    """``"dense"``: densely packed, tightly touching small nuclei of widely varying brightness.

    Attributes:
        shape, channels, num_objects, num_classes: As in :class:`EllipsoidsStyle`.
        radius_range_um: Range of the longest semi-axis, micrometres.
        aspect_range: The two other semi-axes as fractions of the longest.
        touching: Minimum centre distance as a multiple of the sum of the two mean semi-axes;
            each shared voxel goes to the object with the nearest centre.
        brightness_range, brightness_distribution, texture, texture_scale_um, psf_sigma_um,
            psf_tail_weight, psf_tail_sigma_um: As in :class:`BlobsStyle`.
        background, attenuation_um, stripes, stripe_strength, light_sheet_axis, photons,
            read_noise, offset: As in :class:`EllipsoidsStyle`.
    """

    name: ClassVar[str] = "dense"

    shape: tuple[int, int, int] = (24, 96, 96)
    channels: int = 1
    num_objects: int = 600
    num_classes: int = 1
    radius_range_um: tuple[float, float] = (2.8, 3.8)
    aspect_range: tuple[float, float] = (0.8, 1.0)
    touching: float = 0.7
    brightness_range: tuple[float, float] = (0.06, 2.0)
    brightness_distribution: str = "log-uniform"
    texture: float = 0.1
    texture_scale_um: float = 0.6
    psf_sigma_um: tuple[float, float, float] = (1.0, 0.55, 0.55)
    psf_tail_weight: float = 0.0
    psf_tail_sigma_um: tuple[float, float, float] = (3.0, 1.5, 1.5)
    background: float = 30.0
    attenuation_um: float | None = 120.0
    stripes: int = 0
    stripe_strength: float = 0.3
    light_sheet_axis: str = "x"
    photons: float = 180.0
    read_noise: float = 5.0
    offset: float = 100.0


#: Style name -> style dataclass.
STYLES: Final[Mapping[str, type[SynthStyle]]] = {
    cls.name: cls for cls in (EllipsoidsStyle, BlobsStyle, DenseStyle)
}


def resolve_style(
    style: str | SynthStyle = "ellipsoids",
    style_params: Mapping[str, Any] | None = None,
    **overrides: Any,
) -> SynthStyle:
    """The checked style instance: ``style`` with ``style_params`` and ``overrides`` applied.

    Args:
        style: A style name (a key of :data:`STYLES`) or an instance of one of their classes.
        style_params: Fields of the style to change (any field of its dataclass).
        overrides: Keyword arguments of the generator; those equal to :data:`STYLE_DEFAULT` are
            skipped, the others must be fields of the style.

    Raises:
        DataError: Unknown style (the message lists the known ones), a parameter the style does
            not use (naming the parameter, the style and its parameters), a parameter given twice,
            or a value out of range.
    """
    if isinstance(style, tuple(STYLES.values())):
        base = style
    elif isinstance(style, str) and style in STYLES:
        base = STYLES[style]()
    else:
        raise DataError(f"unknown synth style {style!r}; known styles: {', '.join(STYLES)}")
    if style_params is None:
        style_params = {}
    if not isinstance(style_params, Mapping):
        raise DataError(f"synth parameter style_params must be a mapping, got {style_params!r}")
    given = {k: v for k, v in overrides.items() if v is not STYLE_DEFAULT}
    twice = sorted(set(given) & set(style_params))
    if twice:
        raise DataError(f"synth parameter {twice[0]} is given both as a keyword and in style_params")
    fields = [f.name for f in dataclasses.fields(base)]
    for key in (*given, *style_params):
        if key not in fields:
            users = [name for name, cls in STYLES.items() if key in {f.name for f in dataclasses.fields(cls)}]
            used_by = f"; it is a parameter of style {', '.join(map(repr, users))}" if users else ""
            raise DataError(
                f"synth parameter {key} is not used by style {base.name!r}{used_by}. "
                f"Style {base.name!r} takes: {', '.join(fields)}"
            )
    if not given and not style_params:
        return base
    return dataclasses.replace(base, **given, **dict(style_params))


# -- checks ------------------------------------------------------------------------------------


def _check_triple(name: str, value: Sequence[float], *, positive: bool, integer: bool = False) -> tuple:
    """``value`` as a checked 3-tuple (ints when ``integer``; finite, ``> 0`` when ``positive``, else
    ``>= 0``); DataError naming the synth parameter ``name`` otherwise."""
    bound = {"positive": True} if positive else {"minimum": 0}
    where = f"synth parameter {name}"
    return parse_triple(value, where, integer=integer, scalar=False, error=DataError, **bound)


def _pair(name: str, value: Any, *, integer: bool = False) -> tuple:
    try:
        values = tuple(value)
        if len(values) != 2:
            raise ValueError
        if integer and any(isinstance(v, bool) or int(v) != v for v in values):
            raise ValueError
        return tuple(int(v) for v in values) if integer else tuple(float(v) for v in values)
    except (TypeError, ValueError):
        kind = "integers" if integer else "numbers"
        raise DataError(f"synth parameter {name} must be two {kind} (min, max), got {value!r}") from None


def _integer(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or int(value) != value:
        raise DataError(f"synth parameter {name} must be an integer, got {value!r}")
    return int(value)


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise DataError(f"synth parameter {name} must be a finite number, got {value!r}")
    return float(value)


def _check_style(style: SynthStyle) -> None:
    """Normalise (tuples, ints, floats) and check the fields of ``style`` in place.

    The messages of the fields the original generator had are unchanged; each names the field.
    """
    try:
        _check_fields(style)
    except DataError as exc:
        raise DataError(f"{exc} (style {style.name!r})") from None


def _check_fields(style: SynthStyle) -> None:
    names = {f.name for f in dataclasses.fields(style)}
    v = {n: getattr(style, n) for n in names}

    def put(name: str, value: Any) -> None:
        object.__setattr__(style, name, value)
        v[name] = value

    put("shape", _check_triple("shape", v["shape"], positive=True, integer=True))
    for name in ("channels", "num_classes", "num_objects", "stripes"):
        put(name, _integer(name, v[name]))
    if v["channels"] < 1 or v["num_classes"] < 1 or v["num_objects"] < 0:
        raise DataError(
            f"synth parameters need channels >= 1, num_classes >= 1, num_objects >= 0; got "
            f"channels={v['channels']}, num_classes={v['num_classes']}, num_objects={v['num_objects']}"
        )
    if v["stripes"] < 0:
        raise DataError(f"synth parameter stripes must be >= 0, got {v['stripes']}")
    put("radius_range_um", _pair("radius_range_um", v["radius_range_um"]))
    rmin, rmax = v["radius_range_um"]
    if not 0 < rmin <= rmax:
        raise DataError(
            f"synth parameter radius_range_um must satisfy 0 < min <= max, got {v['radius_range_um']}"
        )
    if "aspect_range" in names:
        put("aspect_range", _pair("aspect_range", v["aspect_range"]))
        amin, amax = v["aspect_range"]
        if not 0 < amin <= amax <= 1:
            raise DataError(
                f"synth parameter aspect_range must satisfy 0 < min <= max <= 1, got {v['aspect_range']}"
            )
    if "lobes" in names:
        put("lobes", _pair("lobes", v["lobes"], integer=True))
        if not 1 <= v["lobes"][0] <= v["lobes"][1]:
            raise DataError(f"synth parameter lobes must satisfy 1 <= min <= max, got {v['lobes']}")
    if "lobe_offset" in names:
        put("lobe_offset", _pair("lobe_offset", v["lobe_offset"]))
        if not 0 <= v["lobe_offset"][0] <= v["lobe_offset"][1] < 1:
            raise DataError(
                f"synth parameter lobe_offset must satisfy 0 <= min <= max < 1, got {v['lobe_offset']}"
            )
    put("touching", _number("touching", v["touching"]))
    if v["touching"] <= 0:
        raise DataError(f"synth parameter touching must be > 0, got {v['touching']}")
    put("brightness_range", _pair("brightness_range", v["brightness_range"]))
    bmin, bmax = v["brightness_range"]
    if not 0 <= bmin <= bmax:
        raise DataError(
            f"synth parameter brightness_range must satisfy 0 <= min <= max, got {v['brightness_range']}"
        )
    if "brightness_distribution" in names:
        if v["brightness_distribution"] not in ("uniform", "log-uniform"):
            raise DataError(
                "synth parameter brightness_distribution must be 'uniform' or 'log-uniform', got "
                f"{v['brightness_distribution']!r}"
            )
        if v["brightness_distribution"] == "log-uniform" and bmin <= 0:
            raise DataError(
                f"synth parameter brightness_range must be > 0 for a log-uniform brightness, got "
                f"{v['brightness_range']}"
            )
    for name in ("texture", "texture_scale_um", "psf_tail_weight"):
        if name in names:
            put(name, _number(name, v[name]))
            if v[name] < 0:
                raise DataError(f"synth parameter {name} must be >= 0, got {v[name]}")
    if "psf_tail_weight" in names and not v["psf_tail_weight"] < 1:
        raise DataError(f"synth parameter psf_tail_weight must be in [0, 1), got {v['psf_tail_weight']}")
    put("psf_sigma_um", _check_triple("psf_sigma_um", v["psf_sigma_um"], positive=False))
    if "psf_tail_sigma_um" in names:
        put("psf_tail_sigma_um", _check_triple("psf_tail_sigma_um", v["psf_tail_sigma_um"], positive=False))
    for name in ("background", "photons", "read_noise", "offset", "stripe_strength"):
        put(name, _number(name, v[name]))
    if v["attenuation_um"] is not None:
        put("attenuation_um", _number("attenuation_um", v["attenuation_um"]))
        if v["attenuation_um"] < 0:
            raise DataError(
                f"synth parameter attenuation_um must be > 0 (None or 0: no attenuation), "
                f"got {v['attenuation_um']}"
            )
    if not 0 <= v["stripe_strength"] < 1:
        raise DataError(f"synth parameter stripe_strength must be in [0, 1), got {v['stripe_strength']}")
    if v["light_sheet_axis"] not in ("x", "y"):
        raise DataError(f"synth parameter light_sheet_axis must be 'x' or 'y', got {v['light_sheet_axis']!r}")
    if v["photons"] <= 0 or v["background"] < 0 or v["read_noise"] < 0 or v["offset"] < 0:
        raise DataError(
            "synth parameters need photons > 0 and background, read_noise, offset >= 0; got "
            f"photons={v['photons']}, background={v['background']}, read_noise={v['read_noise']}, "
            f"offset={v['offset']}"
        )
