"""Evaluation outputs: JSON / CSV reports, printed tables and PNG pictures.

Names are imported lazily (matplotlib loads only when a plot function is used).
"""

from __future__ import annotations

from ls_core import lazy_exports

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


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)
