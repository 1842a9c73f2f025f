"""A combo box of the viewer's layers of one type, kept current as layers are added, removed or renamed."""

from __future__ import annotations

from typing import Any

from qtpy.QtWidgets import QComboBox, QWidget

__all__ = ["LayerChoice"]


class LayerChoice(QComboBox):
    """The names of the viewer's layers of ``layer_type`` (``"Image"``, ``"Labels"``).

    Args:
        viewer: The napari viewer.
        layer_type: Class name of the layers listed.
        parent: Qt parent.
    """

    def __init__(self, viewer: Any, layer_type: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.layer_type = layer_type
        for event in (viewer.layers.events.inserted, viewer.layers.events.removed):
            event.connect(self._on_layers_changed)
        for layer in viewer.layers:
            layer.events.name.connect(self.refresh)
        self.refresh()

    def _on_layers_changed(self, event: Any = None) -> None:
        layer = getattr(event, "value", None)
        if layer is not None and event.type == "inserted":
            layer.events.name.connect(self.refresh)
        self.refresh()

    def refresh(self, event: Any = None) -> None:
        """List the layers again, keeping the chosen one when it is still there."""
        current = self.currentText()
        names = [layer.name for layer in self.viewer.layers if type(layer).__name__ == self.layer_type]
        self.blockSignals(True)
        self.clear()
        self.addItems(names)
        if current in names:
            self.setCurrentText(current)
        self.blockSignals(False)

    def layer(self) -> Any:
        """The chosen layer.

        Raises:
            ValueError: none is chosen (there is no layer of the type).
        """
        name = self.currentText()
        if not name or name not in self.viewer.layers:
            raise ValueError(f"no {self.layer_type} layer chosen: open or add one first")
        return self.viewer.layers[name]

    def choose(self, name: str) -> None:
        """Choose the layer ``name``."""
        self.setCurrentText(name)
