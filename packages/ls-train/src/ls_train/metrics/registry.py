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

from typing import Any

from ls_core import EntryPointRegistry

__all__ = ["GROUP", "METRIC_METHODS", "MetricRegistryError", "create_metric", "get_metric", "list_metrics"]

GROUP = "ls.metrics"
METRIC_METHODS = ("update", "compute", "reset", "state", "merge", "per_crop")


class MetricRegistryError(LookupError):
    """A metric name is unknown, declared twice, or its plugin fails to load."""


_REGISTRY = EntryPointRegistry(group=GROUP, kind="metric", error=MetricRegistryError)


def list_metrics() -> list[str]:
    """Sorted names in the ``ls.metrics`` entry-point group; imports no metric module."""
    return _REGISTRY.names()


def get_metric(name: str) -> type:
    """The metric class registered as ``name`` (imports its module).

    Raises:
        MetricRegistryError: unknown name (known names and close matches listed), a name
            declared by two distributions, or a plugin that fails to import.
    """
    return _REGISTRY.load(name)


def create_metric(name: str, **kwargs: Any) -> Any:
    """Instantiate the metric registered as ``name`` with keyword arguments ``kwargs``.

    Raises:
        MetricRegistryError: see :func:`get_metric`.
        TypeError: the class rejected ``kwargs`` (the message names the metric), or built an
            object without the metric interface (``update``, ``compute``, ``reset``, ``state``,
            ``merge``, ``per_crop``).
    """
    metric = _REGISTRY.create(name, **kwargs)
    missing = [m for m in METRIC_METHODS if not callable(getattr(metric, m, None))]
    if missing:
        raise TypeError(
            f"metric {name!r} built a {type(metric).__name__} without the metric interface; "
            f"missing: {', '.join(missing)}"
        )
    return metric
