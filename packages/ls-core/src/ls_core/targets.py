"""Import the object a Hydra-style ``_target_`` dotted path names."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

__all__ = ["load_object"]


def load_object(path: str, *, error: type[Exception] = LookupError) -> Any:
    """Import the object at a dotted path, Hydra ``_target_`` style.

    Args:
        path: ``"package.module.Name"`` or ``"package.module:Name"`` (nested attributes allowed,
            e.g. ``"pkg.mod.Class.from_config"``).
        error: The exception class raised; its message starts ``_target_ '<path>'``.

    Raises:
        error: the path is malformed, no prefix of it is an importable module, importing the
            module fails, or the attribute is missing.
    """
    if not isinstance(path, str) or not path.strip() or path.startswith(".") or path.endswith("."):
        raise error(f"_target_ must be a dotted path such as 'package.module.Class', got {path!r}")
    if ":" in path:
        module_name, _, attr_path = path.partition(":")
        module, attrs = _import(module_name, path, error), attr_path.split(".")
    else:
        module, attrs = _longest_module(path, error)
    obj: Any = module
    for i, attr in enumerate(attrs):
        try:
            obj = getattr(obj, attr)
        except AttributeError:
            owner = ".".join([module.__name__, *attrs[:i]])
            raise error(f"_target_ {path!r}: {owner!r} has no attribute {attr!r}") from None
    return obj


def _longest_module(path: str, error: type[Exception]) -> tuple[ModuleType, list[str]]:
    """The longest importable module prefix of ``path`` and the attribute names after it."""
    parts = path.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:cut])
        try:
            return importlib.import_module(module_name), parts[cut:]
        except ModuleNotFoundError as exc:
            missing = exc.name or ""
            if missing and (module_name == missing or module_name.startswith(missing + ".")):
                continue  # this prefix is not a module; try a shorter one
            raise error(f"_target_ {path!r}: importing {module_name!r} failed: {exc}") from exc
        except Exception as exc:
            raise error(
                f"_target_ {path!r}: importing {module_name!r} failed: {type(exc).__name__}: {exc}"
            ) from exc
    raise error(f"_target_ {path!r}: no importable module in this path")


def _import(module_name: str, path: str, error: type[Exception]) -> ModuleType:
    try:
        return importlib.import_module(module_name)
    except Exception as exc:
        raise error(
            f"_target_ {path!r}: importing {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
