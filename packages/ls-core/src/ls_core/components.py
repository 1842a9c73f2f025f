"""A config entry naming a component: ``{name: <registered>, **kw}`` or ``{_target_: path, **kw}``.

One reading of such an entry for every package: exactly one of ``name`` (looked up in an
entry-point registry) and ``_target_`` (an importable dotted path, Hydra style); the other keys
are the component's keyword arguments. Hydra's other special keys (``_partial_``, ``_args_``,
...) are not interpreted, so they are refused rather than passed on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ls_core.targets import load_object

__all__ = ["Component", "split_component"]


@dataclass(frozen=True)
class Component:
    """A checked ``name`` / ``_target_`` entry.

    Args:
        name: The registered name, or None for a ``_target_`` entry.
        target: The dotted path, or None for a ``name`` entry.
        kwargs: The entry's other keys.
    """

    name: Any = None
    target: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def ident(self) -> str:
        """``'resnet3d_18'`` or ``_target_ 'pkg.mod.Class'``, for messages."""
        return f"_target_ {self.target!r}" if self.target is not None else repr(self.name)

    def factory(self, lookup: Callable[[Any], Any], *, error: type[Exception] = LookupError) -> Any:
        """The callable: ``lookup(name)`` (a registry) or the object ``_target_`` names."""
        if self.target is not None:
            return load_object(self.target, error=error)
        return lookup(self.name)


def split_component(
    entry: Any, where: str, *, kind: str, error: type[Exception] = ValueError
) -> Component:
    """Check a ``{name: ...}`` / ``{_target_: ...}`` entry and split it into name, target and kwargs.

    Args:
        entry: The config entry (any mapping).
        where: Its place in the config, for messages (e.g. ``"transforms_list[2]"``).
        kind: The kind of component, for messages (e.g. ``"transform"``).
        error: The exception class raised.

    Raises:
        error: ``entry`` is not a mapping, has neither or both of ``name`` and ``_target_``, or
            has other Hydra keys (``_partial_``, ...); the message starts with ``where``.
    """
    if not isinstance(entry, Mapping):
        raise error(f"{where} must be a mapping with 'name' or '_target_', got {entry!r}")
    if ("name" in entry) == ("_target_" in entry):
        raise error(
            f"{where} must have exactly one of 'name' (a registered {kind}) or '_target_' (a dotted path); "
            f"got keys {sorted(map(str, entry))}"
        )
    kwargs = {str(k): v for k, v in entry.items() if k not in ("name", "_target_")}
    hydra_keys = sorted(k for k in kwargs if len(k) > 1 and k.startswith("_") and k.endswith("_"))
    if hydra_keys:
        raise error(f"{where}: Hydra keys {hydra_keys} are not supported here; only '_target_' is")
    if "_target_" in entry:
        return Component(target=entry["_target_"], kwargs=kwargs)
    return Component(name=entry["name"], kwargs=kwargs)
