"""What the segment widget runs, without Qt: an Image layer in, a Labels layer's data out.

:func:`segment_layer` checks the layer (a 3-D volume, ``(Z, Y, X)`` or ``(C, Z, Y, X)``, and the
chosen channels), builds the config (:func:`ls_napari.model.model_config`) and runs ``ls-predict``
(:func:`ls_train.predict.predict_array` on the layer's data, or
:func:`ls_train.predict.predict_file` on the file behind it) in a process of its own
(:mod:`ls_napari.predict_process`). The labels come back scaled and
placed like the image, with the per-object table as features (:mod:`ls_napari.features`).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ls_napari.features import features_from_table
from ls_napari.predict_process import run_request

__all__ = [
    "LayerError",
    "SegmentCancelled",
    "SegmentResult",
    "SegmentSettings",
    "layer_volume",
    "parse_ints",
    "segment_layer",
]


class LayerError(ValueError):
    """A layer (or a checkpoint) that cannot be segmented with (the message names it)."""


class SegmentCancelled(Exception):
    """The run was cancelled."""


@dataclass
class SegmentSettings:
    """The segment widget's choices.

    Attributes:
        checkpoint: A checkpoint folder (or its ``state.pt``).
        config_name: An experiment name; None: the config the checkpoint carries.
        channels: Channel indices of the image fed to the model; None: all.
        tile_shape, overlap: ``predict.tile_shape`` / ``predict.overlap``; None: the config's.
        from_file: Predict on the file the layer was opened from instead of its data.
        overrides: Further ``key=value`` overrides (as on ``ls-predict``'s command line).
    """

    checkpoint: str
    config_name: str | None = None
    channels: list[int] | None = None
    tile_shape: tuple[int, int, int] | None = None
    overlap: tuple[int, int, int] | None = None
    from_file: bool = False
    overrides: Sequence[str] = field(default_factory=tuple)

    def all_overrides(self) -> list[str]:
        """The overrides ``ls-predict`` would be given for these settings."""
        out = []
        if self.channels is not None:
            out.append(f"predict.channels=[{','.join(str(c) for c in self.channels)}]")
        if self.tile_shape is not None:
            out.append(f"predict.tile_shape=[{','.join(str(t) for t in self.tile_shape)}]")
        if self.overlap is not None:
            out.append(f"predict.overlap=[{','.join(str(o) for o in self.overlap)}]")
        return [*out, *self.overrides]


@dataclass
class SegmentResult:
    """A prediction ready to become a Labels layer."""

    labels: np.ndarray
    features: pd.DataFrame
    name: str
    scale: tuple[float, ...]
    translate: tuple[float, ...]
    seconds: float

    def layer_data(self) -> tuple[np.ndarray, dict[str, Any], str]:
        """napari's ``(data, meta, "labels")``."""
        meta = {
            "name": self.name,
            "scale": self.scale,
            "translate": self.translate,
            "features": self.features,
        }
        return self.labels, meta, "labels"


def parse_ints(text: str, what: str, *, count: int | None = None) -> list[int] | None:
    """``"0, 2"`` -> ``[0, 2]``; an empty text (or ``all``) -> None.

    Raises:
        ValueError: not non-negative integers, or not ``count`` of them (the message names ``what``).
    """
    text = text.strip()
    if not text or text.lower() == "all":
        return None
    try:
        values = [int(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise ValueError(f"{what}: {text!r} is not a list of integers") from None
    if any(v < 0 for v in values) or (count is not None and len(values) != count):
        need = f"{count} " if count is not None else ""
        raise ValueError(f"{what}: {text!r}: give {need}non-negative integers")
    return values


def layer_volume(layer: Any, channels: Sequence[int] | None) -> tuple[np.ndarray, tuple[float, float, float]]:
    """The level-0 data of an Image layer as ``(Z, Y, X)`` / ``(C, Z, Y, X)`` and its spacing.

    Raises:
        LayerError: not an Image layer, RGB, not 3-D or 4-D, or a channel it does not have.
    """
    name = getattr(layer, "name", "?")
    if type(layer).__name__ != "Image":
        raise LayerError(f"layer {name!r} is a {type(layer).__name__} layer; choose an Image layer")
    data = layer.data[0] if layer.multiscale else layer.data
    if layer.rgb or data.ndim not in (3, 4):
        raise LayerError(
            f"layer {name!r} has {data.ndim} dimensions {tuple(data.shape)}"
            f"{' (RGB)' if layer.rgb else ''}; the model segments 3-D volumes (Z, Y, X) or (C, Z, Y, X)"
        )
    num_channels = data.shape[0] if data.ndim == 4 else 1
    bad = [c for c in channels or [] if c >= num_channels]
    if bad:
        raise LayerError(
            f"layer {name!r} has {num_channels} channel(s) (0..{num_channels - 1}); "
            f"channel(s) {bad} do not exist"
        )
    spacing = tuple(float(s) for s in layer.scale[-3:])
    return data, spacing  # type: ignore[return-value]


def _source_path(layer: Any) -> Path:
    path = getattr(layer.source, "path", None)
    if not path:
        raise LayerError(
            f"layer {layer.name!r} was not opened from a file; untick 'predict on the file' to use its data"
        )
    return Path(path)


def _request(layer: Any, settings: SegmentSettings, folder: Path) -> dict[str, Any]:
    """The prediction process's request (see :func:`ls_napari.predict_process.run_request`)."""
    # on the file, ls-predict checks the channels against the file (a layer may show one of them)
    data, spacing = layer_volume(layer, None if settings.from_file else settings.channels)
    request: dict[str, Any] = {
        "folder": str(folder),
        "checkpoint": settings.checkpoint,
        "config_name": settings.config_name,
        "overrides": settings.all_overrides(),
    }
    if settings.from_file:
        return dict(request, file=str(_source_path(layer)))
    np.save(folder / "image.npy", np.asarray(data))
    return dict(request, array=str(folder / "image.npy"), spacing=list(spacing))


def segment_layer(
    layer: Any,
    settings: SegmentSettings,
    *,
    progress: Callable[[str, int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> SegmentResult:
    """Run ``ls-predict`` with ``settings`` on an Image layer, in a process of its own (see
    :mod:`ls_napari.predict_process`).

    Raises:
        LayerError: a layer that cannot be segmented (before anything runs).
        ConfigError: no checkpoint given, or none at that path (before anything runs).
        PredictionProcessError: ``ls-predict``'s error (a checkpoint that does not load, a bad
            setting or input), or how the process died.
        SegmentCancelled: ``cancel()`` answered True.
    """
    start = time.monotonic()
    if not settings.checkpoint or not Path(settings.checkpoint).expanduser().exists():
        what = f"checkpoint {settings.checkpoint}: no such file or folder" if settings.checkpoint else ""
        raise LayerError(what or "choose a checkpoint folder (a checkpoint_* folder of an ls-train run)")
    with tempfile.TemporaryDirectory(prefix="ls-napari-segment-") as tmp:
        request = _request(layer, settings, Path(tmp))
        answer = run_request(request, progress=progress, cancel=cancel)
    if answer is None:
        raise SegmentCancelled(f"segmenting {layer.name!r} was cancelled")
    labels, table, spacing = answer
    return SegmentResult(
        labels=labels,
        features=features_from_table(table, spacing),
        name=f"{layer.name} labels",
        scale=tuple(float(s) for s in layer.scale[-3:]),
        translate=tuple(float(t) for t in layer.translate[-3:]),
        seconds=time.monotonic() - start,
    )
