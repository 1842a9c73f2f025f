"""The backbone registry: the ``ls.backbones`` entry-point group.

Built-in backbones are declared in ls-backbones' own ``pyproject.toml`` exactly as a
third-party distribution declares a plugin::

    [project.entry-points."ls.backbones"]
    my_unet3d = "my_package.backbones:build_my_unet3d"

Listing reads installed distributions' metadata only; a backbone's module is imported
when that backbone is created.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from torch import nn

GROUP = "ls.backbones"

__all__ = ["GROUP", "BackboneRegistryError", "create_backbone", "get_backbone_builder", "list_backbones"]


class BackboneRegistryError(LookupError):
    """A backbone name is unknown, declared twice, or its plugin fails to load."""


def _dist_label(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "an unknown distribution"
    return f"distribution '{dist.metadata['Name']} {dist.version}'"


def _dist_name(ep: EntryPoint) -> str | None:
    dist = getattr(ep, "dist", None)
    return None if dist is None else dist.metadata["Name"]


def _registered() -> dict[str, EntryPoint]:
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=GROUP):
        prev = found.get(ep.name)
        if prev is None:
            found[ep.name] = ep
        elif prev.value == ep.value and _dist_name(prev) == _dist_name(ep):
            continue  # the same distribution seen twice on sys.path
        else:
            raise BackboneRegistryError(
                f"backbone name {ep.name!r} is declared twice in entry-point group {GROUP!r}: "
                f"by {_dist_label(prev)} as {prev.value!r} and by {_dist_label(ep)} as {ep.value!r}; "
                f"uninstall one of them or rename the entry point"
            )
    return found


def list_backbones() -> list[str]:
    """Sorted names of every backbone in the ``ls.backbones`` entry-point group.

    Imports no backbone module.
    """
    return sorted(_registered())


def get_backbone_builder(name: str) -> Callable[..., nn.Module]:
    """The builder (class or function) registered under ``name``; imports its module."""
    registered = _registered()
    ep = registered.get(name)
    if ep is None:
        known = sorted(registered)
        close = difflib.get_close_matches(name, known, n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise BackboneRegistryError(
            f"unknown backbone {name!r}.{hint} Known backbones: {', '.join(known)}"
        )
    try:
        builder = ep.load()
    except Exception as exc:
        raise BackboneRegistryError(
            f"backbone {name!r} from {_dist_label(ep)} ({ep.value!r}) failed to load: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if not callable(builder):
        raise BackboneRegistryError(
            f"backbone {name!r} from {_dist_label(ep)} points at {ep.value!r}, which is not callable"
        )
    return builder


def create_backbone(name: str, **kwargs: Any) -> nn.Module:
    """Build the backbone registered as ``name`` with keyword arguments ``kwargs``.

    The result honours the backbone contract (:class:`ls_backbones.Backbone3D`):
    ``output_shape()``, ``size_divisibility`` and ``forward(x) -> OrderedDict``.

    Raises:
        BackboneRegistryError: unknown name (the known ones are listed), a name declared by
            two distributions, or a plugin that fails to import.
        TypeError: the builder rejected ``kwargs`` or returned something that is not a backbone.
    """
    builder = get_backbone_builder(name)
    try:
        model = builder(**kwargs)
    except TypeError as exc:
        raise TypeError(f"create_backbone({name!r}, ...): {exc}") from exc
    missing = [a for a in ("output_shape", "size_divisibility", "forward") if not hasattr(model, a)]
    if not isinstance(model, nn.Module) or missing:
        raise TypeError(
            f"backbone {name!r} built a {type(model).__name__}, which does not honour the backbone "
            f"contract (an nn.Module with output_shape(), size_divisibility and forward); "
            f"missing: {', '.join(missing) or 'nn.Module base'}"
        )
    return model
