"""Lazy exports of a package: a name's submodule is imported when the name is first used.

Usage in a package's ``__init__.py``::

    _LAZY = {"ResNet3D": "resnet", "FPN3D": "fpn"}     # public name -> submodule
    __getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)

``import package`` then stays cheap, ``package.ResNet3D`` imports ``package.resnet`` once and
keeps the value in the package's namespace, and ``dir(package)`` lists the public names.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, exports: Mapping[str, str], public: Iterable[str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module-level ``__getattr__`` and ``__dir__`` of ``package`` (PEP 562).

    Args:
        package: The package's ``__name__``.
        exports: Public name -> submodule (relative to ``package``) that defines it.
        public: The package's ``__all__``; ``dir()`` lists these and what is already loaded.

    Returns:
        ``(__getattr__, __dir__)``; ``__getattr__`` raises ``AttributeError`` naming the package
        for a name that is not in ``exports``.
    """
    public = list(public)

    def __getattr__(name: str) -> Any:
        submodule = exports.get(name)
        if submodule is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{submodule}"), name)
        setattr(sys.modules[package], name, value)  # later lookups skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(public))

    return __getattr__, __dir__
