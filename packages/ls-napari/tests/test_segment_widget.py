"""The segment widget on the sample data with a tiny trained checkpoint: the labels of ls-predict."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from napari.layers import Layer
from napari.utils.notifications import notification_manager

from ls_data.io import open_labels, write_tiff_pair
from ls_napari.sample_data import synthetic_sample
from ls_napari.segment_widget import SegmentWidget
from ls_train.cli import predict_main

TILES = ("16,64,64", "4,16,16")


def _add_sample(viewer, shape=(16, 96, 96)):
    for data, meta, kind in synthetic_sample(shape, seed=5):
        viewer.add_layer(Layer.create(data, meta, kind))
    return viewer.layers["synthetic image"]


def _widget(viewer, qtbot, checkpoint: Path) -> SegmentWidget:
    widget = SegmentWidget(viewer)
    qtbot.addWidget(widget, before_close_func=lambda w: w.stop())
    widget.checkpoint.setText(str(checkpoint))
    widget.image.choose("synthetic image")
    widget.tile_shape.setText(TILES[0])
    widget.overlap.setText(TILES[1])
    return widget


def _run(widget: SegmentWidget, qtbot, signal: str = "finished"):
    with qtbot.waitSignal(getattr(widget, signal), timeout=900_000) as blocker:
        widget.run_button.click()
    qtbot.waitUntil(lambda: widget.run_button.isEnabled(), timeout=10_000)
    return blocker.args[0]


def _ls_predict(checkpoint: Path, tif: Path) -> tuple[np.ndarray, Path]:
    """The reference: the ls-predict command on the same volume, with the same tiles."""
    out = tif.parent / "sample.ome.zarr"
    args = [f"checkpoint={checkpoint}", f"input={tif}", f"output={out}"]
    tiles = [f"predict.tile_shape=[{TILES[0]}]", f"predict.overlap=[{TILES[1]}]"]
    assert predict_main([*args, *tiles]) == 0
    return open_labels(out / "labels" / "instances").read(), tif.parent / "sample_instances.csv"


@pytest.mark.slow(seconds=27)
def test_segment_gives_the_labels_and_table_of_ls_predict(
    qt_works, make_napari_viewer, qtbot, tiny_checkpoint, tmp_path, artifacts
):
    viewer = make_napari_viewer(show=True)  # shown: the screenshot renders the canvas
    image_layer = _add_sample(viewer)
    widget = _widget(viewer, qtbot, tiny_checkpoint)
    viewer.window.add_dock_widget(widget, name="Segment (ls-predict)")
    layer = _run(widget, qtbot)

    image, spacing = image_layer.data, tuple(image_layer.scale)
    tif, _ = write_tiff_pair(tmp_path, "sample", image[None], np.zeros(image.shape, np.uint16), spacing)
    expected, table = _ls_predict(tiny_checkpoint, tif)
    assert expected.max() > 0, "the tiny checkpoint should label some objects"
    np.testing.assert_array_equal(layer.data, expected)
    assert layer.name == "synthetic image labels"
    np.testing.assert_allclose(layer.scale, image_layer.scale)
    with table.open() as f:
        rows = list(csv.DictReader(f))
    features = layer.features
    assert list(features["index"]) == [int(r["id"]) for r in rows]
    np.testing.assert_allclose(features["score"], [float(r["score"]) for r in rows], atol=1e-4)
    assert list(features["voxels"]) == [int(r["voxels"]) for r in rows]
    np.testing.assert_allclose(features["volume_um3"], features["voxels"] * np.prod(spacing))
    centroids = [float(r["centroid_z_um"]) for r in rows]
    np.testing.assert_allclose(features["centroid_z_um"], centroids, atol=1e-3)
    assert widget.progress.maximum() > 0 and widget.progress.format().startswith("write")

    # a row of the table selects its object and shows it alone, at its z
    row = len(features) - 1
    widget.table.table.cellClicked.emit(row, 0)
    assert layer.selected_label == features["index"].iloc[row] and layer.show_selected_label
    z_world = layer.data_to_world([features["centroid_z"].iloc[row], 0, 0])[0]
    assert viewer.dims.point[0] == pytest.approx(z_world, abs=layer.scale[0])
    widget.table.show_all.click()
    assert not layer.show_selected_label

    # the screenshot: the sample with its labels, the widget and the table
    shot = viewer.screenshot(path=str(artifacts / "ls-napari-segment.png"), canvas_only=False, flash=False)
    canvas = viewer.screenshot(canvas_only=True, flash=False)
    colours = {tuple(c) for c in canvas[..., :3].reshape(-1, 3)[::7].tolist()}
    assert shot.shape[0] > 300 and len(colours) > 50, "the canvas should show the image and the labels"

    # the file behind a layer opened from it: the same labels
    viewer.open(str(tif), plugin="ls-napari")
    widget.image.choose("sample_image")
    widget.from_file.setChecked(True)
    from_file = _run(widget, qtbot)
    assert from_file.name == "sample_image labels"
    np.testing.assert_array_equal(from_file.data, expected)


def _last_error() -> str:
    return str(notification_manager.records[-1].message)


def test_errors_are_notifications_naming_the_problem(viewer, qtbot, tiny_checkpoint, tmp_path):
    _add_sample(viewer, (8, 32, 32))
    viewer.add_image(np.zeros((32, 32), np.float32), name="flat")
    widget = _widget(viewer, qtbot, tiny_checkpoint)

    widget.channels.setText("3")
    message = _run(widget, qtbot, "failed")
    assert "channel(s) [3] do not exist" in message and "synthetic image" in message
    assert "channel(s) [3] do not exist" in _last_error()

    widget.channels.setText("all")
    widget.image.choose("flat")
    message = _run(widget, qtbot, "failed")
    assert "'flat' has 2 dimensions" in message and "3-D volumes" in _last_error()

    broken = tmp_path / "checkpoint_broken"
    broken.mkdir()
    (broken / "state.pt").write_bytes(b"not a checkpoint")
    widget.image.choose("synthetic image")
    widget.checkpoint.setText(str(broken))
    message = _run(widget, qtbot, "failed")
    assert message.startswith("segment: ") and "checkpoint_broken" in message, message

    widget.checkpoint.setText(str(tmp_path / "missing"))
    assert "no such file or folder" in _run(widget, qtbot, "failed")

    widget.checkpoint.setText(str(tiny_checkpoint))
    widget.tile_shape.setText("16,64")
    assert "tile shape: '16,64': give 3 non-negative integers" in _run(widget, qtbot, "failed")
    assert widget.viewer.layers[-1].name == "flat", "no layer is added by a failed run"


def test_cancel_stops_the_run(viewer, qtbot, tiny_checkpoint):
    _add_sample(viewer)
    widget = _widget(viewer, qtbot, tiny_checkpoint)
    with qtbot.waitSignal(widget.failed, timeout=60_000) as blocker:
        widget.run_button.click()
        assert widget.cancel_button.isEnabled() and not widget.run_button.isEnabled()
        widget.cancel_button.click()
    assert blocker.args[0] == "segment: cancelled"
    assert str(notification_manager.records[-1].message) == "segment: cancelled"
    qtbot.waitUntil(widget.run_button.isEnabled, timeout=10_000)
    assert "synthetic image labels" not in viewer.layers
