"""The per-object table of a Labels layer: its features, one row per object; clicking a row selects
that object (shown alone) and moves the view to its centroid."""

from __future__ import annotations

from typing import Any

import numpy as np
from qtpy.QtWidgets import QPushButton, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget

__all__ = ["FeaturesTable"]


def _text(value: Any) -> str:
    if isinstance(value, float | np.floating):
        return f"{float(value):.4g}"
    return str(value)


class FeaturesTable(QWidget):
    """A table of ``layer.features`` bound to one Labels layer at a time.

    Args:
        viewer: The napari viewer (its dims and camera follow the selected object).
        parent: Qt parent.
    """

    def __init__(self, viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.layer: Any = None
        self.table = QTableWidget(0, 0, self)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.cellClicked.connect(self.select_row)
        self.show_all = QPushButton("Show all objects", self)
        self.show_all.clicked.connect(self._show_all)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.table)
        layout.addWidget(self.show_all)

    def show_layer(self, layer: Any) -> None:
        """Fill the table with the features of ``layer`` (a Labels layer)."""
        self.layer = layer
        features = layer.features
        self.table.clearContents()
        self.table.setColumnCount(len(features.columns))
        self.table.setRowCount(len(features))
        self.table.setHorizontalHeaderLabels([str(c) for c in features.columns])
        for r, row in enumerate(features.itertuples(index=False)):
            for c, value in enumerate(row):
                self.table.setItem(r, c, QTableWidgetItem(_text(value)))

    def label_of_row(self, row: int) -> int:
        """The label value of a row (the ``index`` column, else the row's position + 1)."""
        features = self.layer.features
        if "index" in features.columns:
            return int(features["index"].iloc[row])
        return row + 1

    def select_row(self, row: int, column: int = 0) -> None:
        """Select the object of ``row``: shown alone, the view centred on its centroid."""
        if self.layer is None or not 0 <= row < len(self.layer.features):
            return
        label = self.label_of_row(row)
        self.layer.selected_label = label
        self.layer.show_selected_label = True
        self._go_to(row)

    def _go_to(self, row: int) -> None:
        features = self.layer.features
        if not {"centroid_z", "centroid_y", "centroid_x"} <= set(features.columns):
            return
        centroid = [float(features[f"centroid_{a}"].iloc[row]) for a in "zyx"]
        world = np.asarray(self.layer.data_to_world(centroid), dtype=float)
        self.viewer.dims.set_point(self.viewer.dims.ndim - 3, float(world[-3]))
        camera = getattr(self.viewer, "scene", self.viewer).camera  # napari 0.9 moved it to the scene
        camera.center = tuple(world[-2:]) if self.viewer.dims.ndisplay == 2 else tuple(world[-3:])

    def _show_all(self) -> None:
        if self.layer is not None:
            self.layer.show_selected_label = False
