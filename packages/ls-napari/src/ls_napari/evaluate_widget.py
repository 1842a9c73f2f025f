"""The evaluate widget: a ground-truth and a prediction Labels layer -> ``ls-evaluate``'s numbers
(ap, F1, PQ, ... at each threshold) and the layers coloured by the matching.

The work is :func:`ls_napari.evaluation.evaluate_layers`; errors become napari notifications.
"""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QComboBox,
    QFormLayout,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ls_napari.evaluation import COLOURS, SHOWN_METRICS, LayerEvaluation, evaluate_layers
from ls_napari.layer_choice import LayerChoice
from ls_napari.notify import report_error

__all__ = ["EvaluateWidget"]


def _direct_colormap(colours: dict[int, str]) -> Any:
    from napari.utils.colormaps import DirectLabelColormap

    return DirectLabelColormap(color_dict={None: "gray", 0: "transparent", **colours})


class EvaluateWidget(QWidget):
    """Score a prediction layer against a ground-truth layer.

    Signals:
        evaluated(result): the :class:`~ls_napari.evaluation.LayerEvaluation` of a finished run.
        failed(message): why a run failed.
    """

    evaluated = Signal(object)
    failed = Signal(str)

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.result: LayerEvaluation | None = None
        self.truth = LayerChoice(self.viewer, "Labels", self)
        self.prediction = LayerChoice(self.viewer, "Labels", self)
        self.threshold = QComboBox(self)
        self.threshold.currentIndexChanged.connect(self._colour)
        self.run_button = QPushButton("Evaluate", self)
        self.run_button.clicked.connect(self.run)
        self.status = QLabel("", self)
        self.status.setWordWrap(True)
        self.table = QTableWidget(0, 0, self)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        legend = ", ".join(f'<span style="color:{c}">{name}</span>' for name, c in COLOURS.items())
        form = QFormLayout()
        form.addRow("ground truth", self.truth)
        form.addRow("prediction", self.prediction)
        form.addRow("colour at", self.threshold)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.run_button)
        layout.addWidget(QLabel(f"objects: {legend}", self))
        layout.addWidget(self.status)
        layout.addWidget(self.table)

    def run(self) -> None:
        """Evaluate the chosen layers, fill the table and colour the layers."""
        try:
            gt, pred = self.truth.layer(), self.prediction.layer()
            if gt is pred:
                raise ValueError(f"choose two different layers (both are {gt.name!r})")
            result = evaluate_layers(gt, pred)
        except Exception as exc:  # any failure is reported, never raised into the viewer
            message = report_error("evaluate", exc)
            self.status.setText(message)
            self.failed.emit(message)
            return
        self.result = result
        self._fill(result)
        self.threshold.blockSignals(True)
        self.threshold.clear()
        self.threshold.addItems([f"{t:g}" for t in result.thresholds])
        self.threshold.blockSignals(False)
        self._colour()
        n_gt, n_pred = result.summary.get("n_gt", 0), result.summary.get("n_pred", 0)
        self.status.setText(
            f"{result.pred_name!r}: {int(n_pred)} objects, {result.gt_name!r}: {int(n_gt)} objects"
        )
        self.evaluated.emit(result)

    def _fill(self, result: LayerEvaluation) -> None:
        thresholds = result.thresholds
        self.table.setRowCount(len(SHOWN_METRICS))
        self.table.setColumnCount(len(thresholds))
        self.table.setHorizontalHeaderLabels([f"@{round(t * 100)}" for t in thresholds])
        self.table.setVerticalHeaderLabels(list(SHOWN_METRICS))
        for r, metric in enumerate(SHOWN_METRICS):
            for c, t in enumerate(thresholds):
                value = result.value(metric, t)
                text = f"{int(value)}" if metric in ("tp", "fp", "fn") else f"{value:.4f}"
                self.table.setItem(r, c, QTableWidgetItem(text))

    def _colour(self, _index: int = 0) -> None:
        if self.result is None or not self.threshold.currentText():
            return
        threshold = self.result.thresholds[self.threshold.currentIndex()]
        pred_colours, gt_colours = self.result.colours(threshold)
        for name, colours in ((self.result.pred_name, pred_colours), (self.result.gt_name, gt_colours)):
            if name in self.viewer.layers:
                self.viewer.layers[name].colormap = _direct_colormap(colours)
