"""The metric registry: the ``ls.metrics`` entry-point group.

ls-train declares its own metrics in its ``pyproject.toml`` exactly as a third-party
distribution declares a plugin::

    [project.entry-points."ls.metrics"]
    my_metric = "my_package.metrics:MyMetric"

A metric class takes keyword-only constructor arguments (the config keys) and implements
:class:`~ls_train.metrics.base.Metric`'s interface. Listing reads installed distributions'
metadata only; a metric's module is imported when that metric is looked up or created.
"""

from __future__ import annotations

import difflib
from importlib.metadata import EntryPoint, entry_points
from typing import Any

__all__ = ["GROUP", "METRIC_METHODS", "MetricRegistryError", "create_metric", "get_metric", "list_metrics"]

GROUP = "ls.metrics"
METRIC_METHODS = ("update", "compute", "reset", "state", "merge", "per_crop")


class MetricRegistryError(LookupError):
    """A metric name is unknown, declared twice, or its plugin fails to load."""


def _dist_name(ep: EntryPoint) -> str | None:
    dist = getattr(ep, "dist", None)
    return None if dist is None else dist.metadata["Name"]


def _dist_label(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "an unknown distribution"
    return f"distribution '{dist.metadata['Name']} {dist.version}'"


def _registered() -> dict[str, EntryPoint]:
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=GROUP):
        prev = found.get(ep.name)
        if prev is None:
            found[ep.name] = ep
        elif prev.value == ep.value and _dist_name(prev) == _dist_name(ep):
            continue  # the same distribution found twice on sys.path
        else:
            raise MetricRegistryError(
                f"metric name {ep.name!r} is declared twice in entry-point group {GROUP!r}: "
                f"by {_dist_label(prev)} as {prev.value!r} and by {_dist_label(ep)} as {ep.value!r}; "
                f"uninstall one of them or rename the entry point"
            )
    return found


def list_metrics() -> list[str]:
    """Sorted names in the ``ls.metrics`` entry-point group; imports no metric module."""
    return sorted(_registered())


def get_metric(name: str) -> type:
    """The metric class registered as ``name`` (imports its module).

    Raises:
        MetricRegistryError: unknown name (known names and close matches listed), a name
            declared by two distributions, or a plugin that fails to import.
    """
    registered = _registered()
    ep = registered.get(name)
    if ep is None:
        known = sorted(registered)
        close = difflib.get_close_matches(str(name), known, n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise MetricRegistryError(
            f"unknown metric {name!r} (entry-point group {GROUP!r}).{hint} "
            f"Known metrics: {', '.join(known) or '(none installed)'}"
        )
    try:
        obj = ep.load()
    except Exception as exc:
        raise MetricRegistryError(
            f"metric {name!r} from {_dist_label(ep)} ({ep.value!r}) failed to load: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if not callable(obj):
        raise MetricRegistryError(
            f"metric {name!r} from {_dist_label(ep)} points at {ep.value!r}, which is not callable"
        )
    return obj


def create_metric(name: str, **kwargs: Any) -> Any:
    """Instantiate the metric registered as ``name`` with keyword arguments ``kwargs``.

    Raises:
        MetricRegistryError: see :func:`get_metric`.
        TypeError: the class rejected ``kwargs`` (the message names the metric), or built an
            object without the metric interface (``update``, ``compute``, ``reset``, ``state``,
            ``merge``, ``per_crop``).
    """
    cls = get_metric(name)
    try:
        metric = cls(**kwargs)
    except TypeError as exc:
        raise TypeError(f"create_metric({name!r}, ...): {exc}") from exc
    missing = [m for m in METRIC_METHODS if not callable(getattr(metric, m, None))]
    if missing:
        raise TypeError(
            f"metric {name!r} built a {type(metric).__name__} without the metric interface; "
            f"missing: {', '.join(missing)}"
        )
    return metric
