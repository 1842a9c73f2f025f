"""Names of thresholded metric values: ``"ap@50"``, ``"f1@75_pooled"``, ``"ap@12.5"``.

The threshold is written in percent, without trailing zeros; ``_pooled`` marks a value pooled
over the dataset instead of averaged per crop.
"""

from __future__ import annotations

import re

__all__ = ["POOLED_SUFFIX", "metric_key", "parse_metric_key", "threshold_tag"]

POOLED_SUFFIX = "_pooled"
_KEY = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)@(?P<pct>\d+(?:\.\d+)?)(?P<pooled>_pooled)?$")


def threshold_tag(threshold: float) -> str:
    """A threshold in percent as used in keys: 0.5 -> ``"50"``, 0.125 -> ``"12.5"``."""
    pct = round(float(threshold) * 100.0, 6)
    return f"{pct:.6f}".rstrip("0").rstrip(".")


def metric_key(name: str, threshold: float, *, pooled: bool = False) -> str:
    """The key of metric ``name`` at ``threshold``, e.g. ``metric_key("ap", 0.5) == "ap@50"``."""
    return f"{name}@{threshold_tag(threshold)}{POOLED_SUFFIX if pooled else ''}"


def parse_metric_key(key: str) -> tuple[str, float, bool] | None:
    """``(name, threshold, pooled)`` of a thresholded key, or ``None`` for any other key."""
    m = _KEY.match(key)
    if m is None:
        return None
    return m["name"], float(m["pct"]) / 100.0, m["pooled"] is not None
