"""Tests of ls_train.evaluation.plots: PNG curves and maximum-intensity projections."""

from __future__ import annotations

import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from ls_train.evaluation.plots import (
    label_outlines,
    label_projection,
    plot_crop_projections,
    plot_metrics_vs_threshold,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert data.endswith(b"IEND\xaeB`\x82")
    return width, height


def _read_rgb(path: Path) -> np.ndarray:
    from matplotlib import image as mpimg

    return mpimg.imread(path)[..., :3]


def _summary() -> dict[str, float]:
    out: dict[str, float] = {}
    for t in np.round(np.arange(0.1, 0.96, 0.05), 2):
        for name in ("ap", "precision", "recall", "f1", "pq"):
            out[f"{name}@{t * 100:g}"] = float(1.0 - t)
            out[f"{name}@{t * 100:g}_pooled"] = float(1.0 - t) / 2
    out["coco_mask_ap"] = 0.4
    return out


def test_metric_curves_png(tmp_path: Path) -> None:
    path = plot_metrics_vs_threshold(_summary(), tmp_path / "sub" / "curves.png", figsize=(4, 3), dpi=50)
    assert _png_size(path) == (200, 150)
    pooled = plot_metrics_vs_threshold(_summary(), tmp_path / "pooled.png", pooled=True)
    assert _png_size(pooled) == (600, 400)
    with pytest.raises(ValueError, match="no thresholded values"):
        plot_metrics_vs_threshold({"coco_mask_ap": 0.1}, tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"must end in \.png"):
        plot_metrics_vs_threshold(_summary(), tmp_path / "x.jpg")


def test_label_projection_first_hit_and_intensity_guided() -> None:
    lab = np.zeros((3, 2, 2), dtype=np.int32)
    lab[0, 0, 0] = 4
    lab[2, 0, 0] = 7
    lab[2, 1, 1] = 9
    img = np.zeros(lab.shape)
    img[2, 0, 0] = 5.0
    img[0, 0, 0] = 1.0
    img[1, 0, 0] = 100.0  # brightest voxel of the ray is background: ignored
    np.testing.assert_array_equal(label_projection(lab, 0), [[4, 0], [0, 9]])
    np.testing.assert_array_equal(label_projection(lab, 0, img), [[7, 0], [0, 9]])
    np.testing.assert_array_equal(label_projection(lab, 2), [[4, 0], [0, 0], [7, 9]])
    with pytest.raises(ValueError, match="axis must be"):
        label_projection(lab, 3)


def test_label_outlines() -> None:
    lab = np.zeros((5, 6), dtype=np.int32)
    lab[1:4, 0:3] = 1
    lab[1:4, 3:5] = 2
    edge = label_outlines(lab)
    expected = np.zeros_like(edge)
    expected[1:4, 0:5] = True
    expected[2, 1] = False  # the only pixel of label 1 with all 4 neighbours inside label 1
    # label 1 touches the left border at column 0: its outline closes there
    np.testing.assert_array_equal(edge, expected)
    assert not edge[lab == 0].any()


def test_crop_projection_grid_png(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    gt = np.zeros((6, 20, 24), dtype=np.int32)
    gt[1:4, 2:9, 3:10] = 1
    gt[2:6, 10:18, 12:22] = 2
    pred = np.roll(gt, 2, axis=2)
    image = rng.random((2, *gt.shape)).astype(np.float32) + 3.0 * (gt > 0)
    path = plot_crop_projections(
        image, gt, pred, tmp_path / "crop.png", figsize=(6, 5), dpi=40, title="crop 0"
    )
    assert _png_size(path) == (240, 200)
    rgb = plot_crop_projections(
        image,
        gt,
        pred,
        tmp_path / "rgb.png",
        channels=[0, 1],
        spacing=(2.0, 0.5, 0.5),
        label_guide="first",
        figsize=(6, 5),
        dpi=40,
    )
    assert _png_size(rgb) == (240, 200)
    pixels = _read_rgb(path)
    # Label colours are saturated; a pure grey picture would have r == g == b everywhere.
    assert (np.ptp(pixels, axis=2) > 0.2).any()
    with pytest.raises(ValueError, match=r"image must be \(C, Z, Y, X\) or \(Z, Y, X\)"):
        plot_crop_projections(image[:, :3], gt, pred, tmp_path / "bad.png")
    with pytest.raises(ValueError, match="channels must be 1 to 3 indices"):
        plot_crop_projections(image, gt, pred, tmp_path / "bad.png", channels=[0, 1, 2])
    with pytest.raises(ValueError, match="label_guide must be"):
        plot_crop_projections(image, gt, pred, tmp_path / "bad.png", label_guide="max")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="pred_labels has shape"):
        plot_crop_projections(image, gt, pred[:3], tmp_path / "bad.png")


def test_plotting_leaves_the_matplotlib_backend_alone(tmp_path: Path) -> None:
    code = textwrap.dedent(
        f"""
        import sys
        import matplotlib
        matplotlib.use("svg")
        from ls_train.evaluation.plots import plot_metrics_vs_threshold
        plot_metrics_vs_threshold({{"ap@50": 0.5, "ap@75": 0.3}}, {str(tmp_path / "c.png")!r})
        assert matplotlib.get_backend() == "svg", matplotlib.get_backend()
        assert "matplotlib.pyplot" not in sys.modules
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    assert _png_size(tmp_path / "c.png") == (600, 400)
