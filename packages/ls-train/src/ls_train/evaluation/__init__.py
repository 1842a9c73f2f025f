"""Evaluation: the Evaluator, ``ls-evaluate``'s run over a checkpoint, and its outputs (JSON / CSV
reports, printed tables and PNG pictures).

- :mod:`~ls_train.evaluation.evaluator`: model -> predictions -> label volumes -> metrics
  (also the validation during training);
- :mod:`~ls_train.evaluation.run`: ``ls-evaluate checkpoint=...``: the held-out dataset, in this
  process or in Ray tasks, and the reports;
- :mod:`~ls_train.evaluation.report` and :mod:`~ls_train.evaluation.plots`: the files written.

Names are imported lazily (torch loads only when the Evaluator or the run is used, matplotlib only
when a plot function is).
"""

from __future__ import annotations

from ls_core import lazy_exports

_EXPORTS = {
    "EvaluationResult": "evaluator",
    "Evaluator": "evaluator",
    "gt_label_volume": "evaluator",
    "label_scores": "evaluator",
    "sample_spacings": "evaluator",
    "spacing_kwargs": "evaluator",
    "evaluator_from_config": "run",
    "model_from_checkpoint": "run",
    "run_evaluation": "run",
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
