"""The segment widget: checkpoint, config, image layer, channels and tiles -> ``ls-predict`` in a worker
thread (progress bar, cancel) -> a Labels layer with the per-object table.

The work is :func:`ls_napari.segment.segment_layer`; errors (a checkpoint that does not load, a
layer that is not a volume, a channel that does not exist) become napari notifications.
"""

from __future__ import annotations

import threading
from typing import Any

from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ls_napari.layer_choice import LayerChoice
from ls_napari.notify import report_error, report_info
from ls_napari.segment import SegmentCancelled, SegmentResult, SegmentSettings, parse_ints, segment_layer
from ls_napari.table_widget import FeaturesTable

__all__ = ["OWN_CONFIG", "SegmentWidget"]

OWN_CONFIG = "the checkpoint's own config"
"""The config choice that uses the config stored in the checkpoint."""


class SegmentWidget(QWidget):
    """Segment an Image layer with an ls-train checkpoint.

    Signals:
        finished(layer): the Labels layer of a finished run.
        failed(message): a run that did not start, failed or was cancelled, and why.
    """

    finished = Signal(object)
    failed = Signal(str)
    _progressed = Signal(str, int, int)

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self._cancel = threading.Event()
        self._worker: Any = None
        self._build()
        self._progressed.connect(self._on_progress)

    def _build(self) -> None:
        from ls_napari.model import experiment_names

        self.checkpoint = QLineEdit(self)
        self.checkpoint.setPlaceholderText("runs/<run>/checkpoints/checkpoint_...")
        browse = QPushButton("Browse...", self)
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.checkpoint)
        row.addWidget(browse)
        self.config = QComboBox(self)
        self.config.addItems([OWN_CONFIG, *experiment_names()])
        self.image = LayerChoice(self.viewer, "Image", self)
        self.channels = QLineEdit("all", self)
        self.tile_shape = QLineEdit(self)
        self.tile_shape.setPlaceholderText("the config's (z, y, x)")
        self.overlap = QLineEdit(self)
        self.overlap.setPlaceholderText("the config's (z, y, x)")
        self.from_file = QCheckBox("predict on the file behind the layer", self)
        self.run_button = QPushButton("Segment", self)
        self.run_button.clicked.connect(self.run)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.progress = QProgressBar(self)
        self.status = QLabel("", self)
        self.status.setWordWrap(True)
        self.table = FeaturesTable(self.viewer, self)
        form = QFormLayout()
        for label, widget in (("checkpoint", row), ("config", self.config), ("image", self.image),
                              ("channels", self.channels), ("tile shape", self.tile_shape),
                              ("tile overlap", self.overlap)):  # fmt: skip
            form.addRow(label, widget)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        for item in (form, self.from_file, buttons, self.progress, self.status, self.table):
            layout.addLayout(item) if isinstance(item, QFormLayout | QHBoxLayout) else layout.addWidget(item)

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Checkpoint folder")
        if folder:
            self.checkpoint.setText(folder)

    def settings(self) -> SegmentSettings:
        """The settings as chosen.

        Raises:
            ValueError: channels, tile shape or overlap that are not integers (named).
        """
        tile = parse_ints(self.tile_shape.text(), "tile shape", count=3)
        overlap = parse_ints(self.overlap.text(), "tile overlap", count=3)
        config = self.config.currentText()
        return SegmentSettings(
            checkpoint=self.checkpoint.text().strip(),
            config_name=None if config == OWN_CONFIG else config,
            channels=parse_ints(self.channels.text(), "channels"),
            tile_shape=None if tile is None else tuple(tile),  # type: ignore[arg-type]
            overlap=None if overlap is None else tuple(overlap),  # type: ignore[arg-type]
            from_file=self.from_file.isChecked(),
        )

    def run(self) -> None:
        """Start a run in a worker thread (nothing happens while one is running)."""
        from napari.qt.threading import create_worker

        if self._worker is not None:
            return
        try:
            layer, settings = self.image.layer(), self.settings()
        except ValueError as exc:
            self._fail(report_error("segment", exc))
            return
        self._cancel.clear()
        # errors go to _on_error only (napari's default would re-raise them in the viewer)
        worker = create_worker(
            segment_layer,
            layer,
            settings,
            progress=self._progressed.emit,
            cancel=self._cancel.is_set,
            _start_thread=False,
            _connect={"returned": self._on_result, "errored": self._on_error, "finished": self._on_finished},
        )
        self._worker = worker
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setRange(0, 0)
        self.status.setText(f"segmenting {layer.name!r} ...")
        worker.start()

    def cancel(self) -> None:
        """Stop the running prediction (its process is ended)."""
        self._cancel.set()
        self.status.setText("cancelling ...")

    def stop(self, msecs: int = 30_000) -> None:
        """Cancel a running prediction and wait for its thread (before the widget goes away)."""
        if self._worker is not None:
            self._cancel.set()
            self._worker.await_workers(msecs)

    def closeEvent(self, event: Any) -> None:
        self.stop()
        super().closeEvent(event)

    def _on_progress(self, stage: str, done: int, total: int) -> None:
        self.progress.setRange(0, total)
        self.progress.setValue(done)
        self.progress.setFormat(f"{stage} %v/%m")

    def _on_result(self, result: SegmentResult) -> None:
        data, meta, _ = result.layer_data()
        if meta["name"] in self.viewer.layers:
            self.viewer.layers.remove(meta["name"])
        layer = self.viewer.add_labels(data, **meta)
        self.table.show_layer(layer)
        self.status.setText(f"{len(result.features)} objects in {result.seconds:.1f} s")
        self.finished.emit(layer)

    def _on_error(self, exc: BaseException) -> None:
        if isinstance(exc, SegmentCancelled):
            self._fail(report_info("segment: cancelled"))
        else:
            self._fail(report_error("segment", exc))

    def _fail(self, message: str) -> None:
        self.status.setText(message)
        self.failed.emit(message)

    def _on_finished(self) -> None:
        self._worker = None
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.progress.setRange(0, 1)
