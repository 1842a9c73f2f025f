"""2-D -> 3-D weight inflation: start a 3-D network from 2-D (e.g. ImageNet) weights.

A 2-D kernel ``(O, I, kh, kw)`` becomes a 3-D kernel ``(O, I, kd, kh, kw)`` either in the centre
z slice (``"centre"``: the 3-D network then reproduces the 2-D one exactly on a depth-1 input,
or on a volume constant along z when its z strides are 1) or repeated along z and divided by
``kd`` (``"mean"``, I3D's bootstrapping: the 3-D network reproduces the 2-D one on a volume
constant along z, away from the z borders).

:func:`inflate_resnet` loads a torchvision ``ResNet`` (or its state dict) into a
:class:`~ls_backbones.resnet.ResNet3D`, :func:`inflate_fpn` a torchvision
``FeaturePyramidNetwork`` or ``BackboneWithFPN`` into an :class:`~ls_backbones.fpn.FPN3D` or
:class:`~ls_backbones.fpn.BackboneWithFPN3D`. Both check every key and shape before touching the
target and raise a ``ValueError`` naming the key and shapes otherwise: never a partial load.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import TypeVar

import torch
from torch import Tensor, nn

from ls_backbones.fpn import FPN3D, BackboneWithFPN3D
from ls_backbones.resnet import ResNet3D

__all__ = ["INFLATE_MODES", "INPUT_CHANNEL_MODES", "inflate_conv_weight", "inflate_fpn", "inflate_resnet"]

#: modes of :func:`inflate_conv_weight` (``"center"`` is accepted as an alias of ``"centre"``)
INFLATE_MODES = ("centre", "mean")
#: what :func:`inflate_resnet` does when the stem's input channels differ from the source's
INPUT_CHANNEL_MODES = ("error", "sum", "mean", "repeat")

StateDict = Mapping[str, Tensor]
FPNTarget = TypeVar("FPNTarget", FPN3D, BackboneWithFPN3D)


def _check_mode(mode: str) -> str:
    if mode == "center":
        return "centre"
    if mode not in INFLATE_MODES:
        raise ValueError(f"unknown inflation mode {mode!r}; choose one of {', '.join(INFLATE_MODES)}")
    return mode


def _check_input_channels(input_channels: str) -> None:
    if input_channels not in INPUT_CHANNEL_MODES:
        raise ValueError(
            f"unknown input_channels mode {input_channels!r}; choose one of "
            f"{', '.join(INPUT_CHANNEL_MODES)}"
        )


def inflate_conv_weight(weight_2d: Tensor, depth: int, mode: str = "centre") -> Tensor:
    """Inflate a 2-D convolution kernel ``(O, I, kh, kw)`` to 3-D ``(O, I, depth, kh, kw)``.

    Args:
        weight_2d: the 2-D kernel, shape ``(O, I, kh, kw)``.
        depth: z size ``kd`` of the 3-D kernel (>= 1).
        mode: ``"centre"`` puts the 2-D kernel in z slice ``depth // 2`` and zeros elsewhere. For
            an even depth that is the later of the two middle slices, the one a convolution
            with ``padding = depth // 2`` aligns with the output voxel. ``"mean"`` (I3D) repeats
            the kernel along z and divides it by ``depth``, so a z-constant input gives the 2-D
            response.

    Returns:
        A new tensor of the same dtype and device.

    Raises:
        ValueError: ``weight_2d`` is not 4-D, ``depth < 1``, or an unknown mode (modes listed).
    """
    mode = _check_mode(mode)
    if weight_2d.dim() != 4:
        raise ValueError(
            f"inflate_conv_weight expects a 2-D convolution kernel (O, I, kh, kw), got shape "
            f"{tuple(weight_2d.shape)}"
        )
    if depth < 1:
        raise ValueError(f"inflate_conv_weight: depth must be >= 1, got {depth}")
    if mode == "mean":
        return weight_2d.unsqueeze(2).repeat(1, 1, depth, 1, 1) / depth
    out = weight_2d.new_zeros(weight_2d.shape[0], weight_2d.shape[1], depth, *weight_2d.shape[2:])
    out[:, :, depth // 2] = weight_2d
    return out


def _adapt_input_channels(weight: Tensor, channels: int, input_channels: str, key: str,
                          target_shape: tuple[int, ...]) -> Tensor:
    """Map a kernel ``(O, S, kh, kw)`` with S source input channels to ``channels`` inputs."""
    src = weight.shape[1]
    if input_channels == "error":
        raise ValueError(
            f"{key}: the source kernel has {src} input channels (shape {tuple(weight.shape)}) but the "
            f"target expects {channels} (shape {target_shape}); pass input_channels='sum' "
            f"(1-channel data), 'mean' or 'repeat' to adapt it"
        )
    if input_channels == "sum":
        if channels != 1:
            raise ValueError(
                f"{key}: input_channels='sum' folds the source's {src} input channels into one, but "
                f"the target expects {channels} (shape {target_shape}); use 'mean' or 'repeat'"
            )
        return weight.sum(dim=1, keepdim=True)
    if input_channels == "mean":
        return weight.mean(dim=1, keepdim=True).repeat(1, channels, 1, 1)
    # "repeat": cycle the source channels; each copy of a source channel gets 1 / (its number of
    # copies), so an input of tiled source channels gives the 2-D response (for any channel count)
    index = torch.arange(channels, device=weight.device) % src
    copies = torch.bincount(index, minlength=src).to(weight.dtype)
    return weight[:, index] / copies[index].view(1, -1, *([1] * (weight.dim() - 2)))


def _as_state_dict(source: nn.Module | StateDict, what: str) -> dict[str, Tensor]:
    if isinstance(source, nn.Module):
        return dict(source.state_dict())
    if isinstance(source, Mapping):
        return dict(source)
    raise TypeError(f"{what}: source must be an nn.Module or a state dict, got {type(source).__name__}")


def _convert(
    source: dict[str, Tensor],
    target: nn.Module,
    *,
    mode: str,
    what: str,
    prefix: str = "",
    skip: Callable[[str], bool] = lambda key: False,
    stem_key: str | None = None,
    input_channels: str = "error",
) -> dict[str, Tensor]:
    """The complete state dict of ``target`` built from ``source`` (keys without ``prefix``).

    Every target entry must come from the source (``num_batches_tracked`` may be missing there:
    the target keeps its own); every source entry must be used or accepted by ``skip``.
    ``prefix`` is only used in messages.
    """
    pending: dict[str, tuple[Tensor, Tensor]] = {}
    used: set[str] = set()
    for key, t in target.state_dict().items():
        s = source.get(key)
        if s is None:
            if key.endswith("num_batches_tracked"):
                pending[key] = (t, t)
                continue
            raise ValueError(
                f"{what}: target key {prefix + key!r} (shape {tuple(t.shape)}) is missing from the "
                f"source state dict (shape: missing)"
            )
        used.add(key)
        if t.dim() == 5 and s.dim() == 4:
            if key == stem_key and s.shape[1] != t.shape[1]:
                s = _adapt_input_channels(s, t.shape[1], input_channels, prefix + key, tuple(t.shape))
            if tuple(s.shape) != (t.shape[0], t.shape[1], t.shape[3], t.shape[4]):
                raise ValueError(
                    f"{what}: key {prefix + key!r}: the source kernel of shape {tuple(s.shape)} does not "
                    f"inflate to the target kernel of shape {tuple(t.shape)}"
                )
            s = inflate_conv_weight(s, t.shape[2], mode)
        elif tuple(s.shape) != tuple(t.shape):
            raise ValueError(
                f"{what}: key {prefix + key!r} has shape {tuple(s.shape)} in the source but "
                f"{tuple(t.shape)} in the target"
            )
        pending[key] = (s, t)
    unused = [k for k in source if k not in used and not skip(k)]
    if unused:
        shown = ", ".join(f"{prefix + k!r} {tuple(source[k].shape)}" for k in unused[:8])
        more = f" and {len(unused) - 8} more" if len(unused) > 8 else ""
        raise ValueError(
            f"{what}: {len(unused)} source key(s) have no counterpart in the target "
            f"{type(target).__name__}: {shown}{more} (different depth, block count, norm or levels?)"
        )
    # every key checked: only now touch any data (a meta-device source fails here, not earlier);
    # no clone needed, load_state_dict copies into the target's own tensors
    return {k: s.detach().to(device=t.device, dtype=t.dtype) for k, (s, t) in pending.items()}


_LAYER_KEY = re.compile(r"^layer(\d+)\.")


def _resnet_state(source: dict[str, Tensor], target: ResNet3D, mode: str, input_channels: str,
                  what: str, prefix: str = "") -> dict[str, Tensor]:
    target_keys = set(target.state_dict())

    def skip(key: str) -> bool:
        if key.startswith("fc."):
            return True
        if key.endswith("num_batches_tracked") and key not in target_keys:
            return True  # e.g. BatchNorm2d source into a FrozenBatchNorm3d target
        match = _LAYER_KEY.match(key)
        return match is not None and int(match.group(1)) > target.num_stages

    return _convert(source, target, mode=mode, what=what, prefix=prefix, skip=skip,
                    stem_key="conv1.weight", input_channels=input_channels)


_LEGACY_FPN_KEY = re.compile(r"^(inner_blocks|layer_blocks)\.(\d+)\.(weight|bias)$")


def _fpn_state(source: dict[str, Tensor], target: FPN3D, mode: str, what: str,
               prefix: str = "") -> dict[str, Tensor]:
    # torchvision < 0.13 FPN checkpoints have "inner_blocks.0.weight" for "inner_blocks.0.0.weight"
    source = {
        (f"{m.group(1)}.{m.group(2)}.0.{m.group(3)}" if (m := _LEGACY_FPN_KEY.match(k)) else k): v
        for k, v in source.items()
    }
    return _convert(source, target, mode=mode, what=what, prefix=prefix)


def inflate_resnet(
    source: nn.Module | StateDict,
    target: ResNet3D,
    mode: str = "centre",
    input_channels: str = "error",
) -> ResNet3D:
    """Load a 2-D torchvision ``ResNet`` (module or state dict) into ``target``, inflating kernels.

    Every convolution kernel ``(O, I, kh, kw)`` is inflated to the target kernel's z depth
    (:func:`inflate_conv_weight`; the stem may have z kernel 7, 3 or 1), norm parameters and
    running statistics are copied, ``fc.*`` is skipped, and so are the source stages the target
    did not build (``out_features`` without ``p5`` builds no layer4).

    Args:
        source: a torchvision ``ResNet`` / ``IntermediateLayerGetter`` or its state dict.
        target: the 3-D network, built with the same depth, groups and widths.
        mode: ``"centre"`` or ``"mean"`` (see :func:`inflate_conv_weight`).
        input_channels: what to do when ``target.conv1`` has ``C`` input channels and the source
            stem has ``S`` (3 for RGB): ``"error"`` raises; ``"sum"`` sums over the source channels
            (``C == 1``: a grey volume then gives the response of the RGB net to the grey image
            in all three channels); ``"mean"`` gives every target channel the channel-mean
            kernel; ``"repeat"`` cycles the source channels to ``C`` and divides each copy by
            the number of copies of its source channel (for ``C >= S``, an input of cycled
            channels gives the 2-D response; for ``C < S``, the last ``S - C`` are dropped).

    Returns:
        ``target``, loaded.

    Raises:
        ValueError: unknown mode; a target key missing from the source or of a shape that does not
            inflate (the key and both shapes are named); a source key that the target lacks and
            that is not skipped (e.g. a deeper source); mismatched input channels with
            ``input_channels="error"``. The target is unchanged when an error is raised.
    """
    mode = _check_mode(mode)
    _check_input_channels(input_channels)
    if not isinstance(target, ResNet3D):
        raise TypeError(f"inflate_resnet: target must be a ResNet3D, got {type(target).__name__}")
    state = _resnet_state(_as_state_dict(source, "inflate_resnet"), target, mode, input_channels,
                          "inflate_resnet")
    target.load_state_dict(state, strict=True)
    return target


def inflate_fpn(
    source: nn.Module | StateDict,
    target: FPNTarget,
    mode: str = "centre",
    input_channels: str = "error",
) -> FPNTarget:
    """Load a torchvision ``FeaturePyramidNetwork`` or ``BackboneWithFPN`` into a 3-D target.

    For an :class:`FPN3D` target the source is a ``FeaturePyramidNetwork`` (keys
    ``inner_blocks.*``, ``layer_blocks.*``; the same number of levels and channels). For a
    :class:`BackboneWithFPN3D` target the source is a ``BackboneWithFPN``: its ``body.*`` goes to
    the target's :class:`ResNet3D` body as in :func:`inflate_resnet` and its ``fpn.*`` to the
    target's FPN.

    Args:
        source: the 2-D module or its state dict.
        target: :class:`FPN3D` or :class:`BackboneWithFPN3D` (whose body is a :class:`ResNet3D`).
        mode: ``"centre"`` or ``"mean"`` (see :func:`inflate_conv_weight`).
        input_channels: how to adapt the body's stem input channels (see :func:`inflate_resnet`).

    Returns:
        ``target``, loaded.

    Raises:
        ValueError: as :func:`inflate_resnet`, for either part; source keys outside ``body.`` and
            ``fpn.`` for a BackboneWithFPN3D target. The target is unchanged on error.
        TypeError: a target of another type, or a BackboneWithFPN3D whose body is not a ResNet3D.
    """
    mode = _check_mode(mode)
    _check_input_channels(input_channels)
    sd = _as_state_dict(source, "inflate_fpn")
    if isinstance(target, FPN3D):
        state = _fpn_state(sd, target, mode, "inflate_fpn")
    elif isinstance(target, BackboneWithFPN3D):
        if not isinstance(target.body, ResNet3D):
            raise TypeError(
                f"inflate_fpn: the BackboneWithFPN3D body must be a ResNet3D to inflate a torchvision "
                f"BackboneWithFPN, got {type(target.body).__name__}"
            )
        other = [k for k in sd if not k.startswith(("body.", "fpn."))]
        if other:
            raise ValueError(
                f"inflate_fpn: a BackboneWithFPN3D target takes a BackboneWithFPN state dict with "
                f"'body.*' and 'fpn.*' keys; got also {other[:8]}"
            )
        body = {k[len("body."):]: v for k, v in sd.items() if k.startswith("body.")}
        fpn = {k[len("fpn."):]: v for k, v in sd.items() if k.startswith("fpn.")}
        body_state = _resnet_state(body, target.body, mode, input_channels, "inflate_fpn", "body.")
        fpn_state = _fpn_state(fpn, target.fpn, mode, "inflate_fpn", "fpn.")
        state = {f"body.{k}": v for k, v in body_state.items()}
        state.update({f"fpn.{k}": v for k, v in fpn_state.items()})
    else:
        raise TypeError(
            f"inflate_fpn: target must be an FPN3D or a BackboneWithFPN3D, got {type(target).__name__}"
        )
    target.load_state_dict(state, strict=True)
    return target
