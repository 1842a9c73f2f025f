"""The backbone registry: the ``ls.backbones`` entry-point group.

Built-in backbones are declared in ls-backbones' own ``pyproject.toml`` exactly as a
third-party distribution declares a plugin::

    [project.entry-points."ls.backbones"]
    my_unet3d = "my_package.backbones:build_my_unet3d"

Listing reads installed distributions' metadata only; a backbone's module is imported
when that backbone is created.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from ls_core import EntryPointRegistry

GROUP = "ls.backbones"

__all__ = [
    "GROUP",
    "BackboneRegistryError",
    "EntryPointRegistry",
    "create_backbone",
    "get_backbone_builder",
    "list_backbones",
]


class BackboneRegistryError(LookupError):
    """A backbone name is unknown, declared twice, or its plugin fails to load."""


_REGISTRY = EntryPointRegistry(group=GROUP, kind="backbone", error=BackboneRegistryError)


def list_backbones() -> list[str]:
    """Sorted names of every backbone in the ``ls.backbones`` entry-point group.

    Imports no backbone module.
    """
    return _REGISTRY.names()


def get_backbone_builder(name: str) -> Callable[..., nn.Module]:
    """The builder (class or function) registered under ``name``; imports its module."""
    return _REGISTRY.load(name)


def create_backbone(name: str, **kwargs: Any) -> nn.Module:
    """Build the backbone registered as ``name`` with keyword arguments ``kwargs``.

    The result honours the backbone contract (:class:`ls_backbones.Backbone3D`):
    ``output_shape()``, ``size_divisibility`` and ``forward(x) -> OrderedDict``.

    Raises:
        BackboneRegistryError: unknown name (the known ones are listed), a name declared by
            two distributions, or a plugin that fails to import.
        TypeError: the builder rejected ``kwargs`` or returned something that is not a backbone.
    """
    model = _REGISTRY.create(name, **kwargs)
    missing = [a for a in ("output_shape", "size_divisibility", "forward") if not hasattr(model, a)]
    if not isinstance(model, nn.Module) or missing:
        raise TypeError(
            f"backbone {name!r} built a {type(model).__name__}, which does not honour the backbone "
            f"contract (an nn.Module with output_shape(), size_divisibility and forward); "
            f"missing: {', '.join(missing) or 'nn.Module base'}"
        )
    return model
