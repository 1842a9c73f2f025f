"""What a detector reads of its backbone, and its output as an ordered dict of feature levels.

A backbone honouring the ls-backbones contract declares, before any forward pass, its output
levels with their channels and (z, y, x) strides (``output_shape()``) and the per-axis
``size_divisibility`` of its inputs. Any other ``nn.Module`` is accepted as a backbone of one
feature level when it returns a single ``(B, C, D, H, W)`` tensor, as torchvision's detectors
accept one:

- the level is named ``"0"`` (torchvision's name);
- its channels ``C`` come from the module's ``out_channels`` attribute (torchvision's contract)
  or, when it has none, from the detector's ``backbone_out_channels`` argument;
- its stride is inferred from the feature and image shapes at every call (powers of two per
  axis, as torchvision), and the batch is padded to the module's ``size_divisibility`` when it
  has one (else not at all).

A contract backbone with one declared level may also return a bare tensor; it is that level. A
backbone returning several levels must declare them (``output_shape()``), since the anchor
generator and the RoI poolers are built for a known number of levels.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from torch import Tensor, nn

from ls_backbones import Triple, to_triple

__all__ = ["SINGLE_LEVEL", "BackboneLevels", "backbone_label", "backbone_levels", "feature_levels"]

SINGLE_LEVEL = "0"
"""Name of the one feature level of a backbone that declares no ``output_shape()``."""


@dataclass(frozen=True)
class BackboneLevels:
    """The feature levels of a backbone as a detector wires its heads.

    Attributes:
        names: output names, finest first.
        channels: channels of every level (one number: the RPN and RoI heads are shared).
        strides: per level, the (z, y, x) stride; None when inferred from shapes at every call.
        size_divisibility: per-axis multiple the padded batch must have.
    """

    names: tuple[str, ...]
    channels: int
    strides: tuple[Triple, ...] | None
    size_divisibility: Triple


def backbone_label(backbone: nn.Module) -> str:
    """``module.Class`` of a backbone, for messages (the ``_target_`` that built it, for a class)."""
    cls = type(backbone)
    return f"{cls.__module__}.{cls.__qualname__}"


def _declared(backbone: nn.Module, name: str) -> BackboneLevels:
    shapes = backbone.output_shape()
    names = tuple(shapes)
    channels = {spec.channels for spec in shapes.values()}
    if len(channels) != 1:
        raise ValueError(
            f"backbone {name!r}: outputs {list(names)} have different channel counts "
            f"{[spec.channels for spec in shapes.values()]}; the RPN and RoI heads need one "
            f"(wrap the backbone in FPN3D with fpn={{...}} or use a *_fpn / *_sfp preset)"
        )
    divisibility = to_triple(backbone.size_divisibility, f"backbone {name!r} size_divisibility")
    strides = tuple(to_triple(spec.stride, f"backbone {name!r} stride") for spec in shapes.values())
    return BackboneLevels(names, channels.pop(), strides, divisibility)


def _single(backbone: nn.Module, name: str, out_channels: int | None) -> BackboneLevels:
    channels = getattr(backbone, "out_channels", None)
    if channels is None:
        channels = out_channels
    if channels is None:
        raise ValueError(
            f"backbone {name!r} declares no output channels: it has neither output_shape() (the "
            f"ls-backbones contract) nor an out_channels attribute; give it one, or pass the "
            f"detector's backbone_out_channels"
        )
    divisibility = getattr(backbone, "size_divisibility", 1)
    divisibility = to_triple(divisibility, f"backbone {name!r} size_divisibility")
    return BackboneLevels((SINGLE_LEVEL,), int(channels), None, divisibility)


def backbone_levels(backbone: nn.Module, *, name: str, out_channels: int | None = None) -> BackboneLevels:
    """The levels of ``backbone``: declared by ``output_shape()``, else one level ``"0"``.

    Args:
        backbone: the backbone module.
        name: how messages name it (its registry name or :func:`backbone_label`).
        out_channels: channels of a backbone that declares none; when it declares them (an
            ``output_shape()`` or an ``out_channels`` attribute), they must agree.

    Raises:
        ValueError: levels of different channel counts, channels that cannot be known, or an
            ``out_channels`` that contradicts the backbone's own.
    """
    if hasattr(backbone, "output_shape"):
        levels = _declared(backbone, name)
    else:
        levels = _single(backbone, name, out_channels)
    if out_channels is not None and int(out_channels) != levels.channels:
        raise ValueError(
            f"backbone_out_channels={out_channels} but backbone {name!r} declares "
            f"{levels.channels} output channels; drop backbone_out_channels or make them agree"
        )
    return levels


def feature_levels(
    features: Tensor | Mapping[str, Tensor], names: Sequence[str], name: str
) -> OrderedDict[str, Tensor]:
    """A backbone's output as the ordered dict the RPN and RoI heads read.

    Args:
        features: what the backbone returned: one ``(B, C, D, H, W)`` tensor or a mapping of them.
        names: the levels it declares (:attr:`BackboneLevels.names`).
        name: how messages name the backbone.

    Raises:
        TypeError: a tensor from a backbone of several levels, or anything else than a tensor
            or a mapping.
        KeyError: a mapping that lacks a declared level.
    """
    if isinstance(features, Tensor):
        if len(names) != 1:
            raise TypeError(
                f"backbone {name!r} returned one tensor of shape {tuple(features.shape)} but declares "
                f"{len(names)} levels {list(names)}; it must return an OrderedDict of them"
            )
        return OrderedDict([(names[0], features)])
    if not isinstance(features, Mapping):
        raise TypeError(
            f"backbone {name!r} returned {type(features).__name__}; a detector needs a "
            f"(B, C, D, H, W) tensor or an OrderedDict of them"
        )
    missing = [n for n in names if n not in features]
    if missing:
        raise KeyError(
            f"backbone {name!r} returned levels {list(features)} but declares {list(names)}: "
            f"{missing} missing (a backbone of several levels declares them with output_shape())"
        )
    return OrderedDict((n, features[n]) for n in names)
