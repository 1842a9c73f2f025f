"""The error of a bad experiment config, and the message of an unknown key.

The bottom of :mod:`ls_train.config`: every other module of the package, the builders of
:mod:`ls_train.factory` and :mod:`ls_train.predict.config` raise :class:`ConfigError`.
"""

from __future__ import annotations

from collections.abc import Iterable

from ls_core import did_you_mean

__all__ = ["ConfigError", "unknown_keys"]


class ConfigError(ValueError):
    """An experiment config that cannot be composed or that names unknown keys or components."""


def unknown_keys(keys: Iterable[str], known: Iterable[str], where: str) -> None:
    """Raise :class:`ConfigError` for the first of ``keys`` not in ``known``, naming ``where.key``,
    the closest known key and all of them."""
    known = list(known)
    for key in keys:
        if key not in known:
            raise ConfigError(
                f"{where}.{key}: unknown key.{did_you_mean(key, known)} "
                f"Valid keys: {', '.join(sorted(known))}"
            )
