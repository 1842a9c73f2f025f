"""Registries of datasets and transforms: the ``ls.datasets`` and ``ls.transforms`` entry points.

ls-data declares its own datasets and transforms in its ``pyproject.toml`` exactly as a
third-party distribution declares a plugin::

    [project.entry-points."ls.transforms"]
    my_elastic = "my_package.transforms:RandomElastic3D"

    [project.entry-points."ls.datasets"]
    my_lab = "my_package.data:MyLabDataset"

Listing reads the installed distributions' metadata only; the module behind a name is imported
when that name is looked up (``get_*``) or created (``create_*``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from ls_core import EntryPointRegistry, signature_keywords, split_component
from ls_core import load_object as _load_object
from ls_data.errors import DataError

__all__ = [
    "DATASETS_GROUP",
    "TRANSFORMS_GROUP",
    "RegistryError",
    "create_dataset",
    "create_transform",
    "get_dataset",
    "get_transform",
    "instantiate",
    "list_datasets",
    "list_transforms",
    "load_object",
]

DATASETS_GROUP = "ls.datasets"
TRANSFORMS_GROUP = "ls.transforms"


class RegistryError(DataError, LookupError):
    """A name is unknown, declared by two distributions, or its plugin fails to import."""


_DATASETS = EntryPointRegistry(group=DATASETS_GROUP, kind="dataset", error=RegistryError)
_TRANSFORMS = EntryPointRegistry(group=TRANSFORMS_GROUP, kind="transform", error=RegistryError)


def list_datasets() -> list[str]:
    """Sorted names in the ``ls.datasets`` entry-point group; imports no dataset module."""
    return _DATASETS.names()


def get_dataset(name: str) -> type:
    """The dataset class registered as ``name`` (imports its module).

    Raises:
        RegistryError: unknown name (known names and close matches listed), a name declared by
            two distributions, or a plugin that fails to import (its distribution named).
    """
    return _DATASETS.load(name)


def create_dataset(name: str, **kwargs: Any) -> Any:
    """Instantiate the dataset registered as ``name`` with ``kwargs``.

    Raises:
        RegistryError: see :func:`get_dataset`.
        TypeError: the class rejected ``kwargs`` (the message names the dataset).
    """
    return _DATASETS.create(name, **kwargs)


def list_transforms() -> list[str]:
    """Sorted names in the ``ls.transforms`` entry-point group; imports no transform module."""
    return _TRANSFORMS.names()


def get_transform(name: str) -> type:
    """The transform class registered as ``name`` (imports its module).

    Raises:
        RegistryError: see :func:`get_dataset`.
    """
    return _TRANSFORMS.load(name)


def create_transform(name: str, **kwargs: Any) -> Any:
    """Instantiate the transform registered as ``name`` with ``kwargs``.

    Raises:
        RegistryError: see :func:`get_dataset`.
        TypeError: the class rejected ``kwargs`` (the message names the transform).
    """
    return _TRANSFORMS.create(name, **kwargs)


def load_object(path: str) -> Any:
    """Import the object at a dotted path, Hydra ``_target_`` style (see :func:`ls_core.load_object`).

    Args:
        path: ``"package.module.Name"`` or ``"package.module:Name"`` (nested attributes allowed,
            e.g. ``"pkg.mod.Class.from_config"``).

    Raises:
        RegistryError: the path is malformed, no prefix of it is an importable module, or the
            attribute is missing.
    """
    return _load_object(path, error=RegistryError)


def _plain(value: Any) -> Any:
    """Config containers (e.g. OmegaConf DictConfig / ListConfig) as plain dicts and lists."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return [_plain(v) for v in value]
    return value


def _check_keywords(factory: Any, kwargs: Mapping[str, Any], label: str) -> None:
    """Raise DataError naming the first keyword ``factory`` does not accept or requires but lacks."""
    keywords = signature_keywords(factory)
    if keywords is None:
        return  # no introspectable signature (some builtins); the call itself will tell
    unknown = keywords.unknown(kwargs)
    if unknown:
        accepted = ", ".join(keywords.accepted) or "(none)"
        raise DataError(f"{label}: unknown key {unknown[0]!r}; accepted keys: {accepted}")
    missing = keywords.missing(kwargs)
    if missing:
        raise DataError(f"{label}: missing required key {missing[0]!r}")


def instantiate(
    config: Mapping[str, Any],
    *,
    kind: Literal["transform", "dataset"],
    where: str,
    extra: Mapping[str, Any] | None = None,
) -> Any:
    """Build an object from a config entry.

    The entry is ``{"name": <registered name>, **kwargs}`` (looked up in ``ls.transforms`` or
    ``ls.datasets`` according to ``kind``) or Hydra-style ``{"_target_": "pkg.mod.Class",
    **kwargs}`` (read by :func:`ls_core.split_component`). Nested config containers are converted
    to plain dicts and lists first, so an OmegaConf ``DictConfig`` works like a dict. Other Hydra
    keys (``_partial_``, ...) are rejected.

    Args:
        config: The entry.
        kind: ``"transform"`` or ``"dataset"``.
        where: Where the entry sits in the config, for messages (e.g. ``"transforms_list[2]"``).
        extra: Keyword arguments added by the caller (e.g. ``transforms`` for a dataset).

    Raises:
        RegistryError: an unknown name (known names and close matches listed) or a bad ``_target_``.
        DataError: a malformed entry, an unknown or missing key, or a value the class rejects
            (with ``TypeError`` or ``ValueError``); the message names ``where`` and the key.
    """
    entry = _plain(config) if isinstance(config, Mapping) else config
    component = split_component(entry, where, kind=kind, error=DataError)
    registry = _TRANSFORMS if kind == "transform" else _DATASETS
    try:
        factory = component.factory(registry.load, error=RegistryError)
    except RegistryError as exc:
        raise RegistryError(f"{where}: {exc}") from exc
    label = f"{where} ({component.ident})"
    kwargs = dict(component.kwargs)
    for key in extra or {}:
        if key in kwargs:
            raise DataError(f"{label}: key {key!r} is set by the caller and must not appear in the config")
    kwargs.update(extra or {})
    _check_keywords(factory, kwargs, label)
    try:
        return factory(**kwargs)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{label}: {type(exc).__name__}: {exc}") from exc
