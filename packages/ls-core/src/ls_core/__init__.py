"""ls-core: the helpers every ls-* distribution shares (standard library only).

- :class:`EntryPointRegistry`, :func:`did_you_mean`: named plugins of an entry-point group.
- :func:`load_object`: the object a Hydra-style ``_target_`` dotted path names.
- :func:`split_component`, :class:`Component`: a ``{name: ...}`` / ``{_target_: ...}`` config entry.
- :func:`signature_keywords`, :class:`Keywords`: the keyword arguments a factory takes.
- :func:`parse_triple`: a per-axis ``(z, y, x)`` value; one number means the same on every axis.
- :func:`resampled_size`: the voxels of an axis resampled to another spacing (round, halves up).
- :func:`lazy_exports`: the lazy ``__getattr__`` / ``__dir__`` of a package's ``__init__``.
- :func:`pid_alive`: whether a process still runs (owners of temporary files).
- :mod:`ls_core.faults`: ``fault_point``, where the fault-injection tests stop a command.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from ls_core.components import Component, split_component
from ls_core.keywords import Keywords, signature_keywords
from ls_core.lazy import lazy_exports
from ls_core.processes import pid_alive
from ls_core.registry import EntryPointRegistry, did_you_mean
from ls_core.resampling import resampled_size
from ls_core.targets import load_object
from ls_core.triples import parse_triple

__all__ = [
    "Component",
    "EntryPointRegistry",
    "Keywords",
    "did_you_mean",
    "lazy_exports",
    "load_object",
    "parse_triple",
    "pid_alive",
    "resampled_size",
    "signature_keywords",
    "split_component",
]

try:
    __version__ = version("ls-core")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
