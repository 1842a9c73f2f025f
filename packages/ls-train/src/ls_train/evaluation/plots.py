"""PNG pictures of an evaluation: metric-vs-threshold curves and maximum-intensity projections.

Figures are drawn on matplotlib's Agg canvas (``FigureCanvasAgg``) directly, never through
``pyplot``: nothing opens a display and the process-wide backend is left alone. A PNG is
``figsize * dpi`` pixels.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ls_train.metrics.keys import parse_metric_key
from ls_train.metrics.labels import as_label_volume

__all__ = [
    "CURVE_METRICS",
    "PROJECTIONS",
    "label_outlines",
    "label_projection",
    "plot_crop_projections",
    "plot_metrics_vs_threshold",
    "plot_region_grid",
    "threshold_curves",
]

CURVE_METRICS: dict[str, str] = {
    "ap": "accuracy (ap)",
    "precision": "precision",
    "recall": "recall",
    "f1": "F1",
    "pq": "panoptic quality",
}
# Projection name -> the axis of (Z, Y, X) it collapses.
PROJECTIONS: dict[str, int] = {"zy": 2, "zx": 1, "yx": 0}


def _save(fig: Figure, path: str | os.PathLike[str]) -> Path:
    out = Path(path)
    if out.suffix.lower() != ".png":
        raise ValueError(f"plot path must end in .png, got {out}")
    out.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(out, format="png")
    return out


def threshold_curves(
    summary: Mapping[str, float], *, metrics: Sequence[str] = tuple(CURVE_METRICS), pooled: bool = False
) -> dict[str, dict[float, float]]:
    """The thresholded values of a summary: metric name -> {IoU threshold: value} (empty when
    ``summary`` has none of ``metrics`` at thresholds, e.g. a ``coco_ap``-only evaluation)."""
    curves: dict[str, dict[float, float]] = {}
    for key, value in summary.items():
        parsed = parse_metric_key(key)
        if parsed is not None and parsed[0] in metrics and parsed[2] == pooled:
            curves.setdefault(parsed[0], {})[parsed[1]] = float(value)
    return curves


def plot_metrics_vs_threshold(
    summary: Mapping[str, float],
    path: str | os.PathLike[str],
    *,
    metrics: Sequence[str] = tuple(CURVE_METRICS),
    pooled: bool = False,
    title: str | None = None,
    figsize: tuple[float, float] = (6.0, 4.0),
    dpi: int = 100,
) -> Path:
    """Plot thresholded metrics (``ap@t``, ``f1@t``, ...) of a summary against the IoU threshold.

    Args:
        summary: ``compute()`` of a ``matching`` metric, ideally with many thresholds
            (e.g. 0.1, 0.15, ..., 0.95).
        path: the ``.png`` to write.
        metrics: key names to draw (default accuracy, precision, recall, F1, PQ).
        pooled: draw the ``_pooled`` values instead of the per-crop means.
        title: figure title.
        figsize: inches; the PNG is ``figsize * dpi`` pixels.
        dpi: dots per inch.

    Raises:
        ValueError: none of ``metrics`` has a thresholded key in ``summary``.
    """
    curves = threshold_curves(summary, metrics=metrics, pooled=pooled)
    if not curves:
        raise ValueError(
            f"summary has no thresholded values of {list(metrics)} (pooled={pooled}); "
            f"keys present: {sorted(summary)[:20]}"
        )
    fig = Figure(figsize=figsize, dpi=dpi)
    ax = fig.add_subplot()
    for name in metrics:
        if name in curves:
            ts = sorted(curves[name])
            ax.plot(ts, [curves[name][t] for t in ts], marker="o", ms=3, label=CURVE_METRICS.get(name, name))
    ax.set_xlabel("IoU threshold")
    ax.set_ylabel("value")
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize="small")
    ax.set_title(title or ("pooled over crops" if pooled else "mean over crops"))
    fig.tight_layout()
    return _save(fig, path)


def plot_region_grid(
    regions: Sequence[Mapping[str, Any]],
    path: str | os.PathLike[str],
    *,
    threshold: float = 0.5,
    metric: str = "f1",
    dpi: int = 100,
) -> Path:
    """Where a whole-volume evaluation fails: one panel per z-layer of regions, each region a
    cell coloured by ``<metric>@<threshold>`` and labelled with it and its ground-truth count
    (grey: no object).

    Args:
        regions: rows of the per-region table (``z0``, ``z1``, ``y0``, ..., ``n_gt``, ``n_pred``
            and the metric keys), as :func:`ls_train.evaluate_volume.evaluate_label_volumes`
            gives them.
        path: the ``.png`` to write.
    """
    import matplotlib

    from ls_train.metrics.keys import metric_key

    key = metric_key(metric, threshold)
    cmap = matplotlib.colormaps["RdYlGn"].with_extremes(bad="0.85")
    if not regions:
        raise ValueError("plot_region_grid: no regions")
    zs = sorted({int(r["z0"]) for r in regions})
    ys = sorted({int(r["y0"]) for r in regions})
    xs = sorted({int(r["x0"]) for r in regions})
    cols = min(len(zs), 4)
    rows = -(-len(zs) // cols)
    fig = Figure(figsize=(3.2 * cols + 0.8, 3.0 * rows + 0.4), dpi=dpi)
    axes = fig.subplots(rows, cols, squeeze=False)
    image = None
    for k, z0 in enumerate(zs):
        ax = axes[k // cols][k % cols]
        grid = np.full((len(ys), len(xs)), np.nan)
        layer = [r for r in regions if int(r["z0"]) == z0]
        for r in layer:
            iy, ix = ys.index(int(r["y0"])), xs.index(int(r["x0"]))
            if r["n_gt"] or r["n_pred"]:
                grid[iy, ix] = float(r[key])
            text = "-" if np.isnan(grid[iy, ix]) else f"{grid[iy, ix]:.2f}"
            ax.text(ix, iy, f"{text}\n{int(r['n_gt'])}", ha="center", va="center", fontsize=7)
        image = ax.imshow(np.ma.masked_invalid(grid), vmin=0.0, vmax=1.0, cmap=cmap)
        z1 = max(int(r["z1"]) for r in layer)
        ax.set_title(f"z {z0}:{z1}", fontsize=9)
        ax.set_xticks(range(len(xs)), [str(x) for x in xs], fontsize=6)
        ax.set_yticks(range(len(ys)), [str(y) for y in ys], fontsize=6)
        ax.set_xlabel("x", fontsize=8)
        ax.set_ylabel("y", fontsize=8)
    for k in range(len(zs), rows * cols):
        axes[k // cols][k % cols].set_axis_off()
    if image is not None:
        fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8, label=key)
    fig.suptitle(f"{key} per region (cell: value, ground-truth objects)", fontsize=10)
    return _save(fig, path)


def label_projection(labels: Any, axis: int, image: Any | None = None) -> np.ndarray:
    """Project a ``(Z, Y, X)`` label volume along ``axis``.

    Each ray gets the label of its first foreground voxel, or with ``image`` (a ``(Z, Y, X)``
    intensity volume) the label of its brightest foreground voxel, matching what a
    maximum-intensity projection shows. Rays without foreground are 0.
    """
    lab = as_label_volume(labels, "labels")
    if axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0, 1 or 2, got {axis}")
    fg = lab > 0
    if image is None:
        idx = np.argmax(fg, axis=axis)
    else:
        img = np.asarray(image, dtype=np.float64)
        if img.shape != lab.shape:
            raise ValueError(f"image has shape {img.shape} but labels have shape {lab.shape}")
        idx = np.argmax(np.where(fg, img, -np.inf), axis=axis)
    picked = np.take_along_axis(lab, np.expand_dims(idx, axis), axis=axis).squeeze(axis)
    return np.where(fg.any(axis=axis), picked, 0)


def label_outlines(labels2d: Any) -> np.ndarray:
    """Boolean ``(H, W)`` map of foreground pixels with a 4-neighbour of another label (or the border)."""
    lab = np.asarray(labels2d)
    if lab.ndim != 2:
        raise ValueError(f"label_outlines expects a 2-D label image, got shape {lab.shape}")
    pad = np.pad(lab, 1)  # outside the image counts as background: outlines close at the border
    edge = np.zeros(pad.shape, dtype=bool)
    dy = pad[1:, :] != pad[:-1, :]
    dx = pad[:, 1:] != pad[:, :-1]
    edge[1:, :] |= dy
    edge[:-1, :] |= dy
    edge[:, 1:] |= dx
    edge[:, :-1] |= dx
    return edge[1:-1, 1:-1] & (lab > 0)


def _label_colours(labels2d: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` colour per label id, stable across pictures (hash of the id)."""
    ids = np.unique(labels2d)
    lut = np.zeros((ids.size, 3))
    for k, i in enumerate(ids.tolist()):
        h = zlib.crc32(int(i).to_bytes(8, "little", signed=False))
        lut[k] = [0.3 + 0.7 * ((h >> s) & 255) / 255 for s in (0, 8, 16)]
    return lut[np.searchsorted(ids, labels2d)]


def _normalise(x: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(x, (1.0, 99.8)) if x.size else (0.0, 1.0)
    if hi <= lo:
        hi = lo + 1.0
    return np.clip((x - lo) / (hi - lo), 0.0, 1.0)


def _as_image(image: Any, shape: tuple[int, ...], channels: int | Sequence[int]) -> np.ndarray:
    """``(K, Z, Y, X)`` float channels to show (K = 1 grey, 2-3 RGB)."""
    img = np.asarray(image, dtype=np.float64)
    if img.ndim == 3:
        img = img[None]
    if img.ndim != 4 or img.shape[1:] != shape:
        raise ValueError(f"image must be (C, Z, Y, X) or (Z, Y, X) matching labels {shape}, got {img.shape}")
    chans = [channels] if isinstance(channels, int) else list(channels)
    if not 1 <= len(chans) <= 3 or any(not 0 <= c < img.shape[0] for c in chans):
        raise ValueError(f"channels must be 1 to 3 indices below C={img.shape[0]}, got {channels!r}")
    return img[chans]


def _panel(ax: Any, mip: np.ndarray, labels2d: np.ndarray | None, aspect: float) -> None:
    if mip.shape[0] == 1:
        rgb = np.repeat(_normalise(mip[0])[..., None], 3, axis=2)
    else:
        rgb = np.zeros((*mip.shape[1:], 3))
        for k in range(mip.shape[0]):
            rgb[..., k] = _normalise(mip[k])
    if labels2d is not None:
        colours = _label_colours(labels2d)
        fg = (labels2d > 0)[..., None]
        rgb = np.where(fg, 0.65 * rgb + 0.35 * colours, rgb)
        edge = label_outlines(labels2d)[..., None]
        rgb = np.where(edge, colours, rgb)
    ax.imshow(rgb, interpolation="nearest", aspect=aspect)
    ax.set_xticks([])
    ax.set_yticks([])


def plot_crop_projections(
    image: Any,
    gt_labels: Any,
    pred_labels: Any,
    path: str | os.PathLike[str],
    *,
    channels: int | Sequence[int] = 0,
    spacing: Sequence[float] | None = None,
    label_guide: Literal["intensity", "first"] = "intensity",
    title: str | None = None,
    figsize: tuple[float, float] = (12.0, 10.0),
    dpi: int = 100,
) -> Path:
    """A 3 × 3 grid of maximum-intensity projections: rows image / ground truth / prediction,
    columns zy, zx, yx, with instance fills and outlines on the label rows.

    Labels are projected with :func:`label_projection`: by default each ray shows the label of
    its brightest foreground voxel in the first shown channel, so outlines follow what the
    intensity projection shows; ``label_guide="first"`` shows the first foreground voxel.

    Args:
        image: ``(C, Z, Y, X)`` or ``(Z, Y, X)`` intensities.
        gt_labels: ``(Z, Y, X)`` ground-truth label volume.
        pred_labels: ``(Z, Y, X)`` predicted label volume.
        path: the ``.png`` to write.
        channels: one channel index (grey) or up to 3 (RGB).
        spacing: ``(sz, sy, sx)`` voxel size; projections are drawn with true aspect.
        label_guide: ``"intensity"`` or ``"first"`` (see above).
        title: figure title.
        figsize: inches; the PNG is ``figsize * dpi`` pixels.
        dpi: dots per inch.
    """
    gt = as_label_volume(gt_labels, "gt_labels")
    pred = as_label_volume(pred_labels, "pred_labels")
    if gt.shape != pred.shape:
        raise ValueError(f"gt_labels has shape {gt.shape} but pred_labels has shape {pred.shape}")
    img = _as_image(image, gt.shape, channels)
    if label_guide not in ("intensity", "first"):
        raise ValueError(f"label_guide must be 'intensity' or 'first', got {label_guide!r}")
    sz, sy, sx = (1.0, 1.0, 1.0) if spacing is None else (float(s) for s in spacing)
    # imshow aspect = (height of a pixel) / (width of a pixel) for each projection.
    aspects = {"zy": sz / sy, "zx": sz / sx, "yx": sy / sx}
    fig = Figure(figsize=figsize, dpi=dpi)
    axes = fig.subplots(3, 3, squeeze=False)
    for col, (name, axis) in enumerate(PROJECTIONS.items()):
        mip = img.max(axis=axis + 1)
        guide = img[0] if label_guide == "intensity" else None
        rows = [("image", None), ("ground truth", gt), ("prediction", pred)]
        for r, (row_name, lab) in enumerate(rows):
            lab2d = None if lab is None else label_projection(lab, axis, guide)
            _panel(axes[r][col], mip, lab2d, aspects[name])
            if r == 0:
                axes[r][col].set_title(name)
            if col == 0:
                axes[r][col].set_ylabel(row_name)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)
