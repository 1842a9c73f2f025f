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

import difflib
import importlib
import inspect
from collections.abc import Mapping, Sequence
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Literal

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


def _dist_name(ep: EntryPoint) -> str | None:
    dist = getattr(ep, "dist", None)
    return None if dist is None else dist.metadata["Name"]


def _dist_label(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "an unknown distribution"
    return f"distribution '{dist.metadata['Name']} {dist.version}'"


def _registered(group: str, kind: str) -> dict[str, EntryPoint]:
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=group):
        prev = found.get(ep.name)
        if prev is None:
            found[ep.name] = ep
        elif prev.value == ep.value and _dist_name(prev) == _dist_name(ep):
            continue  # the same distribution found twice on sys.path
        else:
            raise RegistryError(
                f"{kind} name {ep.name!r} is declared twice in entry-point group {group!r}: "
                f"by {_dist_label(prev)} as {prev.value!r} and by {_dist_label(ep)} as {ep.value!r}; "
                f"uninstall one of them or rename the entry point"
            )
    return found


def _lookup(group: str, kind: str, name: str) -> Any:
    registered = _registered(group, kind)
    ep = registered.get(name)
    if ep is None:
        known = sorted(registered)
        close = difflib.get_close_matches(str(name), known, n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise RegistryError(
            f"unknown {kind} {name!r} (entry-point group {group!r}).{hint} "
            f"Known {kind}s: {', '.join(known) or '(none installed)'}"
        )
    try:
        obj = ep.load()
    except Exception as exc:
        raise RegistryError(
            f"{kind} {name!r} from {_dist_label(ep)} ({ep.value!r}) failed to load: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if not callable(obj):
        raise RegistryError(
            f"{kind} {name!r} from {_dist_label(ep)} points at {ep.value!r}, which is not callable"
        )
    return obj


def _create(kind: str, name: str, factory: Any, kwargs: dict[str, Any]) -> Any:
    try:
        return factory(**kwargs)
    except TypeError as exc:
        raise TypeError(f"create_{kind}({name!r}, ...): {exc}") from exc


def list_datasets() -> list[str]:
    """Sorted names in the ``ls.datasets`` entry-point group; imports no dataset module."""
    return sorted(_registered(DATASETS_GROUP, "dataset"))


def get_dataset(name: str) -> type:
    """The dataset class registered as ``name`` (imports its module).

    Raises:
        RegistryError: unknown name (known names and close matches listed), a name declared by
            two distributions, or a plugin that fails to import (its distribution named).
    """
    return _lookup(DATASETS_GROUP, "dataset", name)


def create_dataset(name: str, **kwargs: Any) -> Any:
    """Instantiate the dataset registered as ``name`` with ``kwargs``.

    Raises:
        RegistryError: see :func:`get_dataset`.
        TypeError: the class rejected ``kwargs`` (the message names the dataset).
    """
    return _create("dataset", name, get_dataset(name), kwargs)


def list_transforms() -> list[str]:
    """Sorted names in the ``ls.transforms`` entry-point group; imports no transform module."""
    return sorted(_registered(TRANSFORMS_GROUP, "transform"))


def get_transform(name: str) -> type:
    """The transform class registered as ``name`` (imports its module).

    Raises:
        RegistryError: see :func:`get_dataset`.
    """
    return _lookup(TRANSFORMS_GROUP, "transform", name)


def create_transform(name: str, **kwargs: Any) -> Any:
    """Instantiate the transform registered as ``name`` with ``kwargs``.

    Raises:
        RegistryError: see :func:`get_dataset`.
        TypeError: the class rejected ``kwargs`` (the message names the transform).
    """
    return _create("transform", name, get_transform(name), kwargs)


def load_object(path: str) -> Any:
    """Import the object at a dotted path, Hydra ``_target_`` style.

    Args:
        path: ``"package.module.Name"`` or ``"package.module:Name"`` (nested attributes allowed,
            e.g. ``"pkg.mod.Class.from_config"``).

    Raises:
        RegistryError: the path is malformed, no prefix of it is an importable module, or the
            attribute is missing.
    """
    if not isinstance(path, str) or not path.strip() or path.startswith(".") or path.endswith("."):
        raise RegistryError(f"_target_ must be a dotted path such as 'package.module.Class', got {path!r}")
    if ":" in path:
        module_name, _, attr_path = path.partition(":")
        attrs = attr_path.split(".")
        module = _import(module_name, path)
    else:
        parts = path.split(".")
        module = None
        for cut in range(len(parts) - 1, 0, -1):
            module_name = ".".join(parts[:cut])
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError as exc:
                missing = exc.name or ""
                if missing and (module_name == missing or module_name.startswith(missing + ".")):
                    continue  # this prefix is not a module; try a shorter one
                raise RegistryError(f"_target_ {path!r}: importing {module_name!r} failed: {exc}") from exc
            except Exception as exc:
                raise RegistryError(
                    f"_target_ {path!r}: importing {module_name!r} failed: {type(exc).__name__}: {exc}"
                ) from exc
            attrs = parts[cut:]
            break
        if module is None:
            raise RegistryError(f"_target_ {path!r}: no importable module in this path")
    obj: Any = module
    for i, attr in enumerate(attrs):
        try:
            obj = getattr(obj, attr)
        except AttributeError:
            owner = ".".join([module.__name__, *attrs[:i]])
            raise RegistryError(f"_target_ {path!r}: {owner!r} has no attribute {attr!r}") from None
    return obj


def _import(module_name: str, path: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except Exception as exc:
        raise RegistryError(
            f"_target_ {path!r}: importing {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from exc


def _plain(value: Any) -> Any:
    """Config containers (e.g. OmegaConf DictConfig / ListConfig) as plain dicts and lists."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return [_plain(v) for v in value]
    return value


def _check_keywords(factory: Any, kwargs: Mapping[str, Any], label: str) -> None:
    """Raise DataError naming the first keyword ``factory`` does not accept or requires but lacks."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return  # no introspectable signature (some builtins); the call itself will tell
    kinds = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    params = signature.parameters
    accepted = [n for n, p in params.items() if p.kind in kinds]
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        unknown = [k for k in kwargs if k not in accepted]
        if unknown:
            raise DataError(
                f"{label}: unknown key {unknown[0]!r}; accepted keys: {', '.join(accepted) or '(none)'}"
            )
    missing = [n for n in accepted if n not in kwargs and params[n].default is inspect.Parameter.empty]
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
    **kwargs}``. Nested config containers are converted to plain dicts and lists first, so an
    OmegaConf ``DictConfig`` works like a dict. Other Hydra keys (``_partial_``, ...) are rejected.

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
    if not isinstance(config, Mapping):
        raise DataError(f"{where} must be a mapping with 'name' or '_target_', got {type(config).__name__}")
    entry = _plain(config)
    if ("name" in entry) == ("_target_" in entry):
        raise DataError(
            f"{where} must have exactly one of 'name' (a registered {kind}) or '_target_'; "
            f"got keys {sorted(entry)}"
        )
    kwargs = {k: v for k, v in entry.items() if k not in ("name", "_target_")}
    hydra_keys = sorted(k for k in kwargs if k.startswith("_") and k.endswith("_"))
    if hydra_keys:
        raise DataError(f"{where}: Hydra keys {hydra_keys} are not supported here; only '_target_' is")
    try:
        if "name" in entry:
            ident = repr(entry["name"])
            factory = get_transform(entry["name"]) if kind == "transform" else get_dataset(entry["name"])
        else:
            ident = f"_target_ {entry['_target_']!r}"
            factory = load_object(entry["_target_"])
    except RegistryError as exc:
        raise RegistryError(f"{where}: {exc}") from exc
    label = f"{where} ({ident})"
    for key in extra or {}:
        if key in kwargs:
            raise DataError(f"{label}: key {key!r} is set by the caller and must not appear in the config")
    kwargs.update(extra or {})
    _check_keywords(factory, kwargs, label)
    try:
        return factory(**kwargs)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{label}: {type(exc).__name__}: {exc}") from exc
