"""The ``predict`` section of an experiment config and the run's top-level keys.

``ls-predict --config-name=NAME checkpoint=... input=... output=... [overrides]`` takes the
experiment ``NAME`` (its model, evaluation transforms and cluster) plus these keys:

- ``input``: a TIFF file or an OME-Zarr image group;
- ``output``: the OME-Zarr to write. The input's own path writes the labels into the input
  (``<input>/labels/<predict.label_name>``); any other path creates a new OME-Zarr holding a copy
  of the predicted image (selected channels, predicted level) and the labels;
- ``overwrite``: replace an existing output (and a work folder left by another run);
- ``checkpoint``: the trained weights.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ls_core import parse_triple
from ls_train.config.errors import ConfigError
from ls_train.config.sections import read_section
from ls_train.precision import AMP_CHOICES

__all__ = ["PredictConfig", "predict_config"]

_NORMALIZATION = ("volume", "tile")
_EXECUTORS = ("local", "ray")


@dataclass(frozen=True, kw_only=True)
class PredictConfig:
    """Whole-volume prediction (the ``predict`` section).

    Args:
        level: Multiscale level of an OME-Zarr input to predict on (TIFF: 0).
        channels: Channel indices fed to the model, in order (None: all).
        tile_shape: Tile size ``(z, y, x)`` in voxels of that level (clipped to the volume).
        overlap: Overlap of neighbouring tiles per axis; objects up to this size are never split.
        batch_size: Tiles per forward pass.
        mask_threshold: Mask probability above which a voxel belongs to an instance.
        score_threshold: Detections below this score are dropped.
        min_visible_fraction: A detection is painted into a tile only when at least this fraction
            of its mask is not taken by better-scored ones (0: every one; see ``evaluation``).
        segmenter: ``detector`` (the trained model) or ``threshold`` (classical baseline, no
            checkpoint: ``threshold_segmenter``).
        threshold_segmenter: ``{threshold: T, channel: 0, min_voxels: 1}`` of
            :class:`~ls_train.predict.segmenters.ThresholdSegmenter` (``threshold`` required then).
        normalization: ``volume``: intensity statistics of ``normalize_intensity`` in
            ``transforms.eval_transforms_list`` are computed once from a sample of the whole
            volume and applied to every tile (tiles then agree with each other); ``tile``: the
            evaluation transforms run on each tile, as in evaluation.
        normalization_sample_voxels: Voxels sampled (evenly spread blocks) for the volume statistics.
        merge_criterion: ``iou`` or ``overlap`` (intersection over the smaller part), on the region
            two tiles share.
        merge_threshold: Instances of neighbouring tiles are one object from this value on.
        border_margin: Instances closer than this (voxels) to a cut tile face are fragments.
        label_name: Name of the label image under ``labels/``.
        table: Per-instance table path (``.csv`` or ``.parquet``); None: next to the output,
            ``<output name>_<label_name>.csv``.
        chunks: Chunk shape ``(z, y, x)`` of the written arrays.
        pyramid_levels: Levels of the label pyramid (None: until y and x drop below 32 voxels, at most 6).
        work_dir: Folder of finished tiles, kept until the run completes so that a stopped run
            resumes (None: ``<output>.ls-predict`` next to the output).
        keep_work_dir: Keep the work folder after success.
        executor: ``local`` (this process) or ``ray`` (``num_workers`` Ray actors, on the cluster of
            ``cluster.address`` or a local Ray instance).
        num_workers: Ray actors (one per GPU or per CPU group).
        threads_per_worker: Torch threads per worker (None: torch's default locally; the CPUs
            given to each actor with Ray).
        gpus_per_worker: GPUs per Ray actor (0: CPU).
        device: ``cpu``, ``cuda`` or ``auto`` (CUDA when available).
        amp: ``auto`` (bf16 autocast where it is fast: CUDA, CPUs whose oneDNN has bf16 kernels,
            AVX-512 BF16 or AMX; float32 elsewhere), ``bf16`` (also on other CPUs, where it is
            many times slower) or ``none`` (float32, the reference). Boxes and scores stay float32
            either way; see :mod:`ls_train.precision`.
        trim_memory: Give the memory the model freed back to the system after each tile: a lower
            peak (about 1.6 instead of 2.0 GB with the quickstart model) for about 13 % more time.
        progress: Print a progress line.
    """

    level: int = 0
    channels: list[int] | None = None
    tile_shape: tuple[int, int, int] = (32, 128, 128)
    overlap: tuple[int, int, int] = (8, 32, 32)
    batch_size: int = 1
    mask_threshold: float = 0.5
    score_threshold: float = 0.5
    min_visible_fraction: float = 0.5
    segmenter: str = "detector"
    threshold_segmenter: Mapping[str, Any] = field(
        default_factory=lambda: {"threshold": None, "channel": 0, "min_voxels": 1}
    )
    normalization: str = "volume"
    normalization_sample_voxels: int = 16_777_216
    merge_criterion: str = "iou"
    merge_threshold: float = 0.5
    border_margin: int = 1
    label_name: str = "instances"
    table: str | None = None
    chunks: tuple[int, int, int] = (32, 128, 128)
    pyramid_levels: int | None = None
    work_dir: str | None = None
    keep_work_dir: bool = False
    executor: str = "local"
    num_workers: int = 1
    threads_per_worker: int | None = None
    gpus_per_worker: float = 0
    device: str = "cpu"
    amp: str = "auto"
    trim_memory: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        for key, minimum in (("tile_shape", 1), ("overlap", 0), ("chunks", 1)):
            value = parse_triple(getattr(self, key), f"predict.{key}", minimum=minimum, error=ConfigError)
            set_(self, key, value)
        for axis, t, o in zip("zyx", self.tile_shape, self.overlap, strict=True):
            if o >= t:
                raise ConfigError(
                    f"predict.overlap ({list(self.overlap)}) must be smaller than "
                    f"predict.tile_shape ({list(self.tile_shape)}) on every axis (axis {axis})"
                )
        if self.level < 0:
            raise ConfigError(f"predict.level must be >= 0, got {self.level}")
        if self.channels is not None:
            if (
                not isinstance(self.channels, Sequence)
                or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in self.channels)
                or not self.channels
            ):
                raise ConfigError(
                    f"predict.channels must be null or a non-empty list of channel indices, "
                    f"got {self.channels!r}"
                )
            set_(self, "channels", [int(c) for c in self.channels])
        for key in ("mask_threshold", "score_threshold", "min_visible_fraction", "merge_threshold"):
            if not 0 <= float(getattr(self, key)) <= 1:
                raise ConfigError(f"predict.{key} must be in [0, 1], got {getattr(self, key)}")
        if self.merge_threshold <= 0:
            raise ConfigError("predict.merge_threshold must be > 0 (0 would merge any two touching objects)")
        if self.normalization not in _NORMALIZATION:
            raise ConfigError(
                f"predict.normalization must be one of {_NORMALIZATION}, got {self.normalization!r}"
            )
        if self.merge_criterion not in ("iou", "overlap"):
            raise ConfigError(
                f"predict.merge_criterion must be 'iou' or 'overlap', got {self.merge_criterion!r}"
            )
        if self.executor not in _EXECUTORS:
            raise ConfigError(f"predict.executor must be one of {_EXECUTORS}, got {self.executor!r}")
        for key, low in (
            ("batch_size", 1),
            ("num_workers", 1),
            ("border_margin", 1),  # 0 would count every piece of a cut object as whole
            ("normalization_sample_voxels", 1),
        ):
            if int(getattr(self, key)) < low:
                raise ConfigError(f"predict.{key} must be >= {low}, got {getattr(self, key)}")
        if self.threads_per_worker is not None and self.threads_per_worker < 1:
            raise ConfigError(
                f"predict.threads_per_worker must be null or >= 1, got {self.threads_per_worker}"
            )
        if self.pyramid_levels is not None and self.pyramid_levels < 1:
            raise ConfigError(f"predict.pyramid_levels must be null or >= 1, got {self.pyramid_levels}")
        if self.device not in ("cpu", "cuda", "auto"):
            raise ConfigError(f"predict.device must be cpu, cuda or auto, got {self.device!r}")
        if self.amp not in AMP_CHOICES:
            raise ConfigError(f"predict.amp must be one of {', '.join(AMP_CHOICES)}; got {self.amp!r}")
        if not self.label_name or "/" in self.label_name or self.label_name.startswith("."):
            raise ConfigError(f"predict.label_name must be a plain name, got {self.label_name!r}")
        if self.segmenter not in ("detector", "threshold"):
            raise ConfigError(f"predict.segmenter must be 'detector' or 'threshold', got {self.segmenter!r}")
        seg = self.threshold_segmenter
        if not isinstance(seg, Mapping) or set(seg) - {"threshold", "channel", "min_voxels"}:
            raise ConfigError(
                f"predict.threshold_segmenter takes threshold, channel and min_voxels, got {seg!r}"
            )
        if self.segmenter == "threshold" and seg.get("threshold") is None:
            raise ConfigError("predict.segmenter=threshold needs predict.threshold_segmenter.threshold")
        for key, low in (("channel", 0), ("min_voxels", 1)):
            value = seg.get(key, low)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ConfigError(f"predict.threshold_segmenter.{key} must be an int >= {low}, got {value!r}")
        if self.gpus_per_worker < 0:
            raise ConfigError(f"predict.gpus_per_worker must be >= 0, got {self.gpus_per_worker}")
        if self.table is not None and Path(str(self.table)).suffix not in (".csv", ".parquet"):
            raise ConfigError(f"predict.table must end in .csv or .parquet, got {self.table!r}")


def predict_config(cfg: Mapping[str, Any]) -> PredictConfig:
    """The checked ``predict`` section of a resolved config."""
    return read_section(PredictConfig, cfg, "predict")
