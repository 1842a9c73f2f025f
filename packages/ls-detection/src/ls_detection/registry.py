"""The detector registry: the ``ls.detectors`` entry-point group.

Built-in detectors are declared in ls-detection's own ``pyproject.toml`` exactly as a third-party
distribution declares a plugin::

    [project.entry-points."ls.detectors"]
    my_detector = "my_package.detectors:build_my_detector"

Listing reads installed distributions' metadata only; a detector's module is imported when that
detector is created.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from ls_core import EntryPointRegistry

GROUP = "ls.detectors"

__all__ = ["GROUP", "DetectorRegistryError", "create_detector", "get_detector_builder", "list_detectors"]


class DetectorRegistryError(LookupError):
    """A detector name is unknown, declared twice, or its plugin fails to load."""


_REGISTRY = EntryPointRegistry(group=GROUP, kind="detector", error=DetectorRegistryError)


def list_detectors() -> list[str]:
    """Sorted names of every detector in the ``ls.detectors`` group; imports no detector module."""
    return _REGISTRY.names()


def get_detector_builder(name: str) -> Callable[..., nn.Module]:
    """The builder registered under ``name``; imports its module."""
    return _REGISTRY.load(name)


def create_detector(name: str, **kwargs: Any) -> nn.Module:
    """Build the detector registered as ``name`` with keyword arguments ``kwargs``.

    Example::

        model = create_detector("maskrcnn3d", backbone="resnet3d_18_fpn", num_classes=2,
                                backbone_kwargs={"in_channels": 1})

    Raises:
        DetectorRegistryError: unknown name (the known ones are listed), a name declared by two
            distributions, or a plugin that fails to import.
        TypeError: the builder rejected ``kwargs``.
    """
    return _REGISTRY.create(name, **kwargs)
