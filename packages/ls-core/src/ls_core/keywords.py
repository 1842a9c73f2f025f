"""Which keyword arguments a factory (class or function) accepts and requires, from its signature."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["Keywords", "signature_keywords"]

_NAMED = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


@dataclass(frozen=True)
class Keywords:
    """The keyword parameters of a factory.

    Args:
        accepted: Names that may be passed as keywords, in signature order.
        required: Those of ``accepted`` without a default.
        open: The factory takes ``**kwargs`` (then any key is accepted; it checks them itself).
    """

    accepted: tuple[str, ...]
    required: tuple[str, ...]
    open: bool

    def unknown(self, keys: Iterable[str], *, given: Iterable[str] = ()) -> list[str]:
        """``keys`` the factory does not accept, in order; ``given`` (set by the caller) count as unknown."""
        if self.open:
            return []
        valid = set(self.valid(given=given))
        return [k for k in keys if k not in valid]

    def valid(self, *, given: Iterable[str] = ()) -> list[str]:
        """The accepted names a config may set: ``accepted`` without ``given``."""
        given = set(given)
        return [n for n in self.accepted if n not in given]

    def missing(self, keys: Iterable[str]) -> list[str]:
        """Required names not in ``keys``, in signature order."""
        keys = set(keys)
        return [n for n in self.required if n not in keys]


def signature_keywords(factory: Callable[..., Any]) -> Keywords | None:
    """The keyword parameters of ``factory``, or None when it has no introspectable signature."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return None  # some builtins; calling the factory will tell
    accepted = tuple(n for n, p in params.items() if p.kind in _NAMED)
    required = tuple(n for n in accepted if params[n].default is inspect.Parameter.empty)
    open_ = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    return Keywords(accepted=accepted, required=required, open=open_)
