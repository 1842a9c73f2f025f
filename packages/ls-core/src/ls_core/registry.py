"""A registry of named plugins declared in one ``importlib.metadata`` entry-point group.

A distribution declares its plugins in its ``pyproject.toml``; built-in components are declared
exactly as a third-party plugin is::

    [project.entry-points."ls.backbones"]
    my_unet3d = "my_package.backbones:build_my_unet3d"

Listing reads installed distributions' metadata only; a plugin's module is imported when that
plugin is loaded.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from importlib.metadata import EntryPoint, entry_points
from typing import Any

__all__ = ["EntryPointRegistry", "did_you_mean"]


def did_you_mean(name: Any, known: Iterable[str]) -> str:
    """``" Did you mean 'a', 'b'?"`` for up to three close matches of ``name``, else ``""``."""
    close = difflib.get_close_matches(str(name), list(known), n=3)
    return f" Did you mean {', '.join(map(repr, close))}?" if close else ""


def _dist_label(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "an unknown distribution"
    return f"distribution '{dist.metadata['Name']} {dist.version}'"


def _dist_name(ep: EntryPoint) -> str | None:
    dist = getattr(ep, "dist", None)
    return None if dist is None else dist.metadata["Name"]


class EntryPointRegistry:
    """Named plugins declared in one ``importlib.metadata`` entry-point group.

    The group is read afresh on every call, so distributions installed (or put on ``sys.path``)
    later are seen. Listing reads metadata only; a plugin's module is imported by :meth:`load`.

    Example::

        registry = EntryPointRegistry(group="ls.backbones", kind="backbone", error=MyError)
        registry.names()             # sorted names, imports no plugin module
        builder = registry.load("resnet3d_18")
        model = registry.create("resnet3d_18", in_channels=2)

    Args:
        group: the entry-point group, e.g. ``"ls.backbones"``.
        kind: the singular noun used in error messages, e.g. ``"backbone"``.
        error: the ``LookupError`` subclass raised for an unknown name, a name declared by two
            distributions, a plugin that fails to import, or one that is not callable.
    """

    def __init__(self, *, group: str, kind: str, error: type[LookupError]) -> None:
        self.group = group
        self.kind = kind
        self.error = error

    def entries(self) -> dict[str, EntryPoint]:
        """Name -> entry point for the whole group; raises ``error`` on a name declared twice."""
        found: dict[str, EntryPoint] = {}
        for ep in entry_points(group=self.group):
            prev = found.get(ep.name)
            if prev is None:
                found[ep.name] = ep
            elif prev.value == ep.value and _dist_name(prev) == _dist_name(ep):
                continue  # the same distribution seen twice on sys.path
            else:
                raise self.error(
                    f"{self.kind} name {ep.name!r} is declared twice in entry-point group {self.group!r}: "
                    f"by {_dist_label(prev)} as {prev.value!r} and by {_dist_label(ep)} as {ep.value!r}; "
                    f"uninstall one of them or rename the entry point"
                )
        return found

    def names(self) -> list[str]:
        """Sorted names in the group; imports no plugin module."""
        return sorted(self.entries())

    did_you_mean = staticmethod(did_you_mean)

    def unknown_message(self, name: str, known: list[str]) -> str:
        """The error text for an unknown ``name``; ``known`` is the sorted list of valid names."""
        return (
            f"unknown {self.kind} {name!r} (entry-point group {self.group!r}).{did_you_mean(name, known)} "
            f"Known {self.kind}s: {', '.join(known) or '(none installed)'}"
        )

    def load(self, name: str) -> Any:
        """The callable registered under ``name``; imports its module.

        Raises:
            LookupError: (the ``error`` class) unknown name (close matches and the known names
                are listed), a name declared twice, a plugin that fails to import (its
                distribution is named), or an entry point that is not callable.
        """
        registered = self.entries()
        ep = registered.get(name)
        if ep is None:
            raise self.error(self.unknown_message(name, sorted(registered)))
        try:
            obj = ep.load()
        except Exception as exc:
            raise self.error(
                f"{self.kind} {name!r} from {_dist_label(ep)} ({ep.value!r}) failed to load: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        if not callable(obj):
            raise self.error(
                f"{self.kind} {name!r} from {_dist_label(ep)} points at {ep.value!r}, which is not callable"
            )
        return obj

    def create(self, name: str, /, **kwargs: Any) -> Any:
        """Call the plugin registered as ``name`` with ``kwargs``.

        Raises:
            LookupError: (the ``error`` class) see :meth:`load`.
            TypeError: the plugin rejected ``kwargs``; the message starts ``create_<kind>(name, ...)``.
        """
        factory = self.load(name)
        try:
            return factory(**kwargs)
        except TypeError as exc:
            raise TypeError(f"create_{self.kind}({name!r}, ...): {exc}") from exc
