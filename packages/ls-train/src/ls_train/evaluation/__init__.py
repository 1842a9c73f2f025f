"""Evaluation outputs: JSON / CSV reports, printed tables and PNG pictures.

Names are imported lazily (matplotlib loads only when a plot function is used).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "format_table": "report",
    "join_per_crop": "report",
    "read_json": "report",
    "write_columns_csv": "report",
    "write_csv": "report",
    "write_json": "report",
    "write_report": "report",
    "label_outlines": "plots",
    "label_projection": "plots",
    "plot_crop_projections": "plots",
    "plot_metrics_vs_threshold": "plots",
    "plot_region_grid": "plots",
    "threshold_curves": "plots",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ls_train.evaluation' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"ls_train.evaluation.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
