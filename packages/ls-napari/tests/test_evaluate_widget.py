"""The evaluate widget: ls-evaluate's numbers, the layers coloured by the matching, errors notified."""

from __future__ import annotations

import json

import numpy as np
import pytest
from napari.utils.notifications import notification_manager

from ls_data.io import write_tiff_pair
from ls_data.synth import synthesize_volume
from ls_napari.evaluate_widget import EvaluateWidget
from ls_napari.evaluation import COLOURS
from ls_train.cli import evaluate_main

SPACING = (2.0, 0.5, 0.5)


@pytest.fixture(scope="module")
def pair():
    """A truth and a prediction: one object missed, one false positive, one shrunk (IoU < 0.9)."""
    vol = synthesize_volume(
        shape=(16, 64, 64), spacing=SPACING, channels=1, num_objects=12, num_classes=1, seed=7
    )
    truth = vol.labels.astype(np.int32)
    pred = truth.copy()
    pred[pred == 2] = 0  # missed
    pred[0:3, 0:6, 0:6] = np.where(truth[0:3, 0:6, 0:6] == 0, 50, pred[0:3, 0:6, 0:6])  # false positive
    zs, ys, xs = np.nonzero(pred == 5)
    pred[zs[: len(zs) // 4], ys[: len(zs) // 4], xs[: len(zs) // 4]] = 0  # shrunk
    return truth, pred


def _widget(viewer, qtbot, truth, pred):
    viewer.add_labels(truth, name="truth", scale=SPACING)
    viewer.add_labels(pred, name="prediction", scale=SPACING)
    widget = EvaluateWidget(viewer)
    qtbot.addWidget(widget)
    widget.truth.choose("truth")
    widget.prediction.choose("prediction")
    return widget


def test_numbers_equal_ls_evaluate_and_layers_are_coloured(viewer, qtbot, pair, tmp_path):
    truth, pred = pair
    widget = _widget(viewer, qtbot, truth, pred)
    with qtbot.waitSignal(widget.evaluated, timeout=60_000) as blocker:
        widget.run_button.click()
    result = blocker.args[0]

    gt_tif = write_tiff_pair(
        tmp_path, "truth", truth[None].astype(np.uint16), truth.astype(np.uint16), SPACING
    )[1]
    pred_tif = write_tiff_pair(
        tmp_path, "pred", pred[None].astype(np.uint16), pred.astype(np.uint16), SPACING
    )[1]
    out = tmp_path / "ls-evaluate"
    assert evaluate_main([f"pred={pred_tif}", f"gt={gt_tif}", f"evaluation.output_dir={out}"]) == 0
    expected = json.loads((out / "metrics.json").read_text())["summary"]
    assert result.summary == expected
    assert 0 < expected["ap@50"] < 1 and expected["fn@50"] >= 1 and expected["fp@50"] >= 1
    headers = [widget.table.horizontalHeaderItem(c).text() for c in range(widget.table.columnCount())]
    assert headers == ["@50", "@75", "@90"]
    for row, metric in enumerate(["ap", "f1", "pq"]):
        for col, t in enumerate(["50", "75", "90"]):
            assert widget.table.item(row, col).text() == f"{expected[f'{metric}@{t}']:.4f}"

    def colour(layer_name: str, label: int) -> str:
        rgba = viewer.layers[layer_name].colormap.color_dict[label]
        return "#" + "".join(f"{round(float(v) * 255):02x}" for v in rgba[:3])

    assert colour("prediction", 50) == COLOURS["false positive"]
    assert colour("truth", 2) == COLOURS["missed"]
    assert colour("truth", 1) == colour("prediction", 1) == COLOURS["matched"]
    widget.threshold.setCurrentIndex(2)  # at 0.9 the shrunk object no longer matches
    assert colour("prediction", 5) == COLOURS["false positive"] and colour("truth", 5) == COLOURS["missed"]


def test_errors_are_notifications(viewer, qtbot, pair):
    truth, pred = pair
    widget = _widget(viewer, qtbot, truth, pred)
    messages = []
    widget.failed.connect(messages.append)
    widget.prediction.choose("truth")
    widget.run_button.click()
    assert messages[-1] == "evaluate: choose two different layers (both are 'truth')"
    viewer.add_labels(pred[:, :32], name="cropped", scale=SPACING)
    widget.prediction.choose("cropped")
    widget.run_button.click()
    assert "prediction 'cropped' (16, 32, 64)" in messages[-1] and "truth 'truth'" in messages[-1]
    assert str(notification_manager.records[-1].message) == messages[-1]
    viewer.add_labels(pred, name="coarse", scale=(2.0, 1.0, 1.0))
    widget.prediction.choose("coarse")
    widget.run_button.click()
    assert "voxel spacing" in messages[-1] and widget.result is None
