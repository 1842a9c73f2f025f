"""What the evaluate widget runs, without Qt: two Labels layers scored as ``ls-evaluate pred= gt=`` does.

The layers' volumes are written to a temporary folder as TIFF label files with their spacing and
scored by :func:`ls_train.evaluate_volume.evaluate_label_volumes` -- the function behind
``ls-evaluate pred=... gt=...`` -- at the thresholds and criterion of the ``matching`` metric of
ls-train's packaged ``evaluate_volume`` config. So the numbers are ``ls-evaluate``'s.
The per-object matches colour the layers: a prediction matched or a false positive, a true object
matched or missed.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ls_napari.writer import write_label_tiff

__all__ = [
    "COLOURS",
    "SHOWN_METRICS",
    "LayerEvaluation",
    "evaluate_layers",
    "label_volume",
    "matching_settings",
]

COLOURS = {"matched": "#2ecc40", "false positive": "#ff4136", "missed": "#ff851b"}
"""Colours of the objects after an evaluation (matched in both layers)."""

SHOWN_METRICS = ("ap", "f1", "pq", "precision", "recall", "tp", "fp", "fn")
"""Rows of the widget's table (one column per threshold)."""


def matching_settings() -> tuple[list[float], str]:
    """Thresholds and criterion of the ``matching`` metric of ``ls-evaluate``'s ``evaluate_volume`` config."""
    from ls_train.config import load_config
    from ls_train.factory import build_metrics
    from ls_train.metrics import MatchingMetric

    cfg = load_config("evaluate_volume", ["pred=layer", "gt=layer"])
    matching = [m for m in build_metrics(cfg) if isinstance(m, MatchingMetric)]
    if not matching:
        return [0.5, 0.75, 0.9], "iou"
    return [float(t) for t in matching[0].thresholds], str(matching[0].criterion)


def label_volume(layer: Any) -> np.ndarray:
    """The level-0 ``(Z, Y, X)`` integer volume of a Labels layer.

    Raises:
        ValueError: not a Labels layer, or not 3-D (the message names the layer).
    """
    name = getattr(layer, "name", "?")
    if type(layer).__name__ != "Labels":
        raise ValueError(f"layer {name!r} is a {type(layer).__name__} layer; choose a Labels layer")
    data = np.asarray(layer.data[0] if layer.multiscale else layer.data)
    if data.ndim != 3:
        raise ValueError(
            f"layer {name!r} has {data.ndim} dimensions {data.shape}; evaluation needs (Z, Y, X)"
        )
    return data


def _check_pair(gt: Any, pred: Any, gt_data: np.ndarray, pred_data: np.ndarray) -> None:
    if gt_data.shape != pred_data.shape:
        raise ValueError(
            f"truth {gt.name!r} has shape {gt_data.shape} and prediction {pred.name!r} {pred_data.shape}: "
            f"they must cover the same voxels"
        )
    if not np.allclose(gt.scale[-3:], pred.scale[-3:], rtol=1e-6):
        raise ValueError(
            f"truth {gt.name!r} has voxel spacing {tuple(gt.scale[-3:])} and prediction {pred.name!r} "
            f"{tuple(pred.scale[-3:])}: they must be the same"
        )


@dataclass
class LayerEvaluation:
    """The result of :func:`evaluate_layers`: ``ls-evaluate``'s evaluation and the layers' names."""

    evaluation: Any  # ls_train.evaluate_volume.VolumeEvaluation
    gt_name: str
    pred_name: str

    @property
    def summary(self) -> dict[str, float]:
        return self.evaluation.summary

    @property
    def thresholds(self) -> list[float]:
        return [float(r.threshold) for r in self.evaluation.results]

    def value(self, metric: str, threshold: float) -> float:
        """``summary["<metric>@<threshold>"]`` (e.g. ``ap@50``)."""
        from ls_train.metrics import metric_key

        return float(self.summary[metric_key(metric, threshold)])

    def colours(self, threshold: float) -> tuple[dict[int, str], dict[int, str]]:
        """Colour per object id at ``threshold``: (prediction: matched / false positive,
        truth: matched / missed)."""
        from ls_train.metrics import metric_key

        pred, gt = self.evaluation.objects_pred, self.evaluation.objects_gt
        pred_match, gt_match = pred[metric_key("gt", threshold)], gt[metric_key("pred", threshold)]
        pred_colours = {
            int(i): COLOURS["matched"] if m else COLOURS["false positive"]
            for i, m in zip(pred["id"], pred_match, strict=True)
        }
        gt_colours = {
            int(i): COLOURS["matched"] if m else COLOURS["missed"]
            for i, m in zip(gt["id"], gt_match, strict=True)
        }
        return pred_colours, gt_colours


def evaluate_layers(gt: Any, pred: Any, *, work_dir: str | Path | None = None) -> LayerEvaluation:
    """Score the Labels layer ``pred`` against ``gt`` as ``ls-evaluate`` scores their files.

    Raises:
        ValueError: a layer that is not a 3-D Labels layer, layers of other shapes or spacings.
    """
    from ls_train.evaluate_volume import evaluate_label_volumes

    gt_data, pred_data = label_volume(gt), label_volume(pred)
    _check_pair(gt, pred, gt_data, pred_data)
    thresholds, criterion = matching_settings()
    spacing = [float(s) for s in gt.scale[-3:]]
    scratch = Path(tempfile.mkdtemp(prefix="ls-napari-evaluate-", dir=work_dir))
    try:
        gt_path = write_label_tiff(scratch / "gt_labels.tif", gt_data, spacing)
        pred_path = write_label_tiff(scratch / "pred_labels.tif", pred_data, spacing)
        evaluation = evaluate_label_volumes(pred_path, gt_path, thresholds=thresholds, criterion=criterion)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return LayerEvaluation(evaluation, gt_name=gt.name, pred_name=pred.name)
