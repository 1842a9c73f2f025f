"""The detector registry: the ``ls.detectors`` entry-point group.

Built-in detectors are declared in ls-detection's own ``pyproject.toml`` exactly as a third-party
distribution declares a plugin::

    [project.entry-points."ls.detectors"]
    my_detector = "my_package.detectors:build_my_detector"

Listing reads installed distributions' metadata only; a detector's module is imported when that
detector is created.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from torch import nn

GROUP = "ls.detectors"

__all__ = ["GROUP", "DetectorRegistryError", "create_detector", "get_detector_builder", "list_detectors"]


class DetectorRegistryError(LookupError):
    """A detector name is unknown, declared twice, or its plugin fails to load."""


def _dist_label(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "an unknown distribution"
    return f"distribution '{dist.metadata['Name']} {dist.version}'"


def _registered() -> dict[str, EntryPoint]:
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=GROUP):
        prev = found.get(ep.name)
        if prev is None or (prev.value == ep.value and _dist_label(prev) == _dist_label(ep)):
            found[ep.name] = ep
        else:
            raise DetectorRegistryError(
                f"detector name {ep.name!r} is declared twice in entry-point group {GROUP!r}: "
                f"by {_dist_label(prev)} as {prev.value!r} and by {_dist_label(ep)} as {ep.value!r}; "
                f"uninstall one of them or rename the entry point"
            )
    return found


def list_detectors() -> list[str]:
    """Sorted names of every detector in the ``ls.detectors`` group; imports no detector module."""
    return sorted(_registered())


def get_detector_builder(name: str) -> Callable[..., nn.Module]:
    """The builder registered under ``name``; imports its module."""
    registered = _registered()
    ep = registered.get(name)
    if ep is None:
        known = sorted(registered)
        close = difflib.get_close_matches(name, known, n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise DetectorRegistryError(f"unknown detector {name!r}.{hint} Known detectors: {', '.join(known)}")
    try:
        builder = ep.load()
    except Exception as exc:
        raise DetectorRegistryError(
            f"detector {name!r} from {_dist_label(ep)} ({ep.value!r}) failed to load: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if not callable(builder):
        raise DetectorRegistryError(
            f"detector {name!r} from {_dist_label(ep)} points at {ep.value!r}, which is not callable"
        )
    return builder


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
    builder = get_detector_builder(name)
    try:
        return builder(**kwargs)
    except TypeError as exc:
        raise TypeError(f"create_detector({name!r}, ...): {exc}") from exc
