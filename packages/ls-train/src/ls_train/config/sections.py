"""The typed sections of an experiment config: ``trainer``, ``cluster``, ``evaluation`` and ``data``.

Each section is a frozen dataclass whose ``__post_init__`` checks its values; the accessors
(:func:`trainer_config`, ...) read one from a resolved config (a plain mapping), refusing keys the
dataclass does not have. A section that is absent or null takes the dataclass defaults. The
``predict`` section is :class:`ls_train.predict.PredictConfig`, read the same way
(:func:`read_section`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ls_core import parse_triple
from ls_train.config.components import check_keywords
from ls_train.config.errors import ConfigError, unknown_keys
from ls_train.precision import AMP_CHOICES

__all__ = [
    "MODEL_RUNTIME_KEYS",
    "SECTIONS",
    "ClusterConfig",
    "DataConfig",
    "EvaluationConfig",
    "TrainerConfig",
    "cluster_config",
    "data_config",
    "evaluation_config",
    "read_section",
    "trainer_config",
]

SECTIONS = (
    "models",
    "datasets",
    "transforms",
    "metrics",
    "trainer",
    "cluster",
    "evaluation",
    "data",
    "checkpoint",
    "predict",
    "input",
    "output",
    "overwrite",
    "accept_config_mismatch",
    "pred",
    "gt",
)
"""Top-level keys an experiment config may have."""

MODEL_RUNTIME_KEYS = ("channels_last",)
"""Keys of ``models`` that say how the model runs, not what it is: not arguments of its builder."""


@dataclass(frozen=True, kw_only=True)
class TrainerConfig:
    """The training loop's settings (the ``trainer`` section).

    Args:
        run_name: Name of the run; re-running with the same name resumes it (None: the config name).
        runs_root: Folder of all runs (Ray's ``storage_path``); the run lives in ``runs_root/run_name``.
        epochs: Passes over the training loader.
        max_steps_per_epoch: Cap on iterations per epoch (None: the whole loader).
        lr: Peak learning rate of AdamW.
        weight_decay: AdamW weight decay.
        betas: AdamW betas.
        warmup_iters: Optimizer steps of linear warm-up from 0 to ``lr``.
        min_lr_ratio: The cosine decay ends at ``lr * min_lr_ratio``.
        grad_clip_norm: Clip the global gradient norm to this (None: no clipping).
        grad_accum_steps: Iterations whose gradients are summed before one optimizer step.
        amp: Precision of the forward pass in training and validation: ``"auto"`` (bf16 autocast
            on GPUs, float32 on CPUs; see :mod:`ls_train.precision` for bf16 training on CPUs), ``"bf16"`` or
            ``"none"`` (float32); see :mod:`ls_train.precision`.
        val_every_epochs: Run the evaluator every this many epochs (and after the last one).
        max_bad_steps: Non-finite losses in a row after which the run stops.
        log_every_steps: Progress line, TensorBoard and report interval in iterations.
        seed: Seed of torch's RNG on every worker (offset by the worker rank).
        num_to_keep: Checkpoints kept (the best by the score, plus always the latest).
        checkpoint_score_attribute: Validation metric ranking checkpoints (the seed's ``ap@50``).
        checkpoint_score_order: ``"max"`` or ``"min"``.
        max_failures: Restarts from the last checkpoint after a worker crash (Ray mode).
        verbose: Ray mode: forward every worker's and Ray's own output to the console (default:
            only the run's progress, validation and result lines; Ray's logs are copied into
            ``<run folder>/logs/``).
    """

    run_name: str | None = None
    runs_root: str = "runs"
    epochs: int = 20
    max_steps_per_epoch: int | None = None
    lr: float = 1e-4
    weight_decay: float = 0.05
    betas: Sequence[float] = (0.9, 0.999)
    warmup_iters: int = 200
    min_lr_ratio: float = 0.01
    grad_clip_norm: float | None = 1.0
    grad_accum_steps: int = 1
    amp: str = "auto"
    val_every_epochs: int = 1
    max_bad_steps: int = 10
    log_every_steps: int = 10
    seed: int = 0
    num_to_keep: int = 3
    checkpoint_score_attribute: str = "ap@50"
    checkpoint_score_order: str = "max"
    max_failures: int = 2
    verbose: bool = False

    def __post_init__(self) -> None:
        positive = {
            "epochs": self.epochs,
            "grad_accum_steps": self.grad_accum_steps,
            "val_every_epochs": self.val_every_epochs,
            "max_bad_steps": self.max_bad_steps,
            "log_every_steps": self.log_every_steps,
            "num_to_keep": self.num_to_keep,
        }
        for key, value in positive.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"trainer.{key} must be an int >= 1, got {value!r}")
        if self.max_steps_per_epoch is not None and self.max_steps_per_epoch < 1:
            raise ConfigError(
                f"trainer.max_steps_per_epoch must be >= 1 or null, got {self.max_steps_per_epoch}"
            )
        if not self.lr > 0:
            raise ConfigError(f"trainer.lr must be > 0, got {self.lr!r}")
        if not self.weight_decay >= 0:
            raise ConfigError(f"trainer.weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.warmup_iters < 0:
            raise ConfigError(f"trainer.warmup_iters must be >= 0, got {self.warmup_iters}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError(f"trainer.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.grad_clip_norm is not None and not self.grad_clip_norm > 0:
            raise ConfigError(f"trainer.grad_clip_norm must be > 0 or null, got {self.grad_clip_norm}")
        if self.amp not in AMP_CHOICES:
            raise ConfigError(f"trainer.amp must be one of {', '.join(AMP_CHOICES)}; got {self.amp!r}")
        if self.checkpoint_score_order not in ("max", "min"):
            raise ConfigError(
                f"trainer.checkpoint_score_order must be 'max' or 'min', got {self.checkpoint_score_order!r}"
            )
        if len(self.betas) != 2:
            raise ConfigError(f"trainer.betas must be two numbers, got {list(self.betas)!r}")
        if self.max_failures < -1:
            raise ConfigError(f"trainer.max_failures must be >= -1 (-1: unlimited), got {self.max_failures}")


@dataclass(frozen=True, kw_only=True)
class ClusterConfig:
    """Where training runs (the ``cluster`` section).

    Args:
        num_workers: Ray Train workers; 0 runs the loop in this process without Ray (debugging).
        use_gpu: One GPU per worker (nccl); otherwise CPU workers with gloo.
        resources_per_worker: Ray resources of each worker, e.g. ``{CPU: 2, GPU: 1}``.
        address: Ray cluster to join (``"auto"``: the running one); None starts a local instance.
        num_cpus: CPUs of a locally started Ray instance (None: all of the machine's).
    """

    num_workers: int = 0
    use_gpu: bool = False
    resources_per_worker: Mapping[str, float] | None = None
    address: str | None = None
    num_cpus: int | None = None

    def __post_init__(self) -> None:
        if (
            isinstance(self.num_workers, bool)
            or not isinstance(self.num_workers, int)
            or self.num_workers < 0
        ):
            raise ConfigError(f"cluster.num_workers must be an int >= 0, got {self.num_workers!r}")
        if self.num_workers == 0 and self.resources_per_worker:
            raise ConfigError(
                "cluster.resources_per_worker is set but cluster.num_workers=0 runs in-process without Ray; "
                "set num_workers >= 1 or resources_per_worker=null"
            )


@dataclass(frozen=True, kw_only=True)
class EvaluationConfig:
    """The evaluator (the ``evaluation`` section).

    Args:
        database: The held-out dataset (``name`` or ``_target_`` plus arguments), transformed by
            ``transforms.eval_transforms_list``; None validates on the ``datasets.val_fraction`` split.
        batch_size: Crops per forward pass.
        mask_threshold: Mask probability above which a voxel belongs to an instance.
        score_threshold: Detections below this score are dropped before the label volume is made.
        min_visible_fraction: A detection is painted only when at least this fraction of its mask
            is not taken by better-scored ones (0: every detection; 0.5: Panoptic FPN's rule, which
            drops second detections of an object instead of keeping their slivers).
        output_dir: Where ``ls-evaluate`` writes results (None: ``<runs_root>/<run_name>/evaluation``).
        num_mip_crops: Crops drawn as maximum-intensity projections.
        ray_min_crops: ``ls-evaluate`` spreads the crops over Ray tasks from this many crops on.
        ray_num_tasks: Number of Ray tasks then.
        run_after_training: ``ls-train`` evaluates the best (else the latest) checkpoint when done.
        pred_level: Whole-volume evaluation (``ls-evaluate pred=... gt=...``): multiscale level
            of an OME-Zarr ``pred`` (TIFF: 0).
        gt_level: Multiscale level of an OME-Zarr ``gt`` (TIFF: 0).
        block_shape: Voxels ``(z, y, x)`` read per step (an int: the same on every axis);
            memory grows with it, not with the volume.
        region_grid: Regions ``(z, y, x)`` the volume is cut into for the per-region metrics.
        check_spacing: Refuse volumes whose voxel spacings differ (false: for a file that carries
            no spacing, which reads as 1 µm).
        num_workers: Ray tasks sharing the block pass (1: in this process).
        amp: Precision of ``ls-evaluate``'s forward pass (validation follows ``trainer.amp``):
            ``auto``, ``bf16`` or ``none`` (float32); see :mod:`ls_train.precision`.
    """

    database: Mapping[str, Any] | None = None
    batch_size: int = 1
    mask_threshold: float = 0.5
    score_threshold: float = 0.5
    min_visible_fraction: float = 0.5
    output_dir: str | None = None
    num_mip_crops: int = 3
    ray_min_crops: int = 64
    ray_num_tasks: int = 4
    run_after_training: bool = False
    pred_level: int = 0
    gt_level: int = 0
    block_shape: Sequence[int] | int = (32, 512, 512)
    region_grid: Sequence[int] | int = (2, 4, 4)
    check_spacing: bool = True
    num_workers: int = 1
    amp: str = "auto"

    def __post_init__(self) -> None:
        if self.amp not in AMP_CHOICES:
            raise ConfigError(f"evaluation.amp must be one of {', '.join(AMP_CHOICES)}; got {self.amp!r}")
        for key in ("block_shape", "region_grid"):
            value = parse_triple(getattr(self, key), f"evaluation.{key}", minimum=1, error=ConfigError)
            object.__setattr__(self, key, value)
        for key in ("pred_level", "gt_level"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"evaluation.{key} must be an int >= 0, got {value!r}")
        if not isinstance(self.check_spacing, bool):
            raise ConfigError(f"evaluation.check_spacing must be true or false, got {self.check_spacing!r}")
        if self.num_workers < 1:
            raise ConfigError(f"evaluation.num_workers must be >= 1, got {self.num_workers}")
        if self.batch_size < 1:
            raise ConfigError(f"evaluation.batch_size must be >= 1, got {self.batch_size}")
        for key in ("mask_threshold", "score_threshold", "min_visible_fraction"):
            value = getattr(self, key)
            if not 0 <= value <= 1:
                raise ConfigError(f"evaluation.{key} must be in [0, 1], got {value}")
        for key in ("num_mip_crops", "ray_min_crops"):
            if getattr(self, key) < 0:
                raise ConfigError(f"evaluation.{key} must be >= 0, got {getattr(self, key)}")
        if self.ray_num_tasks < 1:
            raise ConfigError(f"evaluation.ray_num_tasks must be >= 1, got {self.ray_num_tasks}")


@dataclass(frozen=True, kw_only=True)
class DataConfig:
    """Data preparation before training (the optional ``data`` section, used by the quickstart).

    The crop indices themselves are built (or reused) by the datasets when ``datasets.database``
    / ``evaluation.database`` name a ``catalog``; ``ls-train`` opens both datasets once on the
    driver before starting the workers, so a bad index fails before any training.

    Args:
        root: Folder of the data.
        synthesize: Arguments of :func:`ls_data.synth.synthesize_dataset` (besides ``out``); the
            synthetic dataset is generated into ``root`` when that folder is missing or empty
            (None: never).
    """

    root: str = "data"
    synthesize: Mapping[str, Any] | None = None


def read_section(cls: type, cfg: Mapping[str, Any], key: str, *, skip: Sequence[str] = ()) -> Any:
    """The dataclass ``cls`` made from ``cfg[key]`` (absent or null: its defaults), the keys of
    ``skip`` left out.

    Raises:
        ConfigError: the section is not a mapping, has a key ``cls`` lacks, or a bad value.
    """
    values = cfg.get(key)
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise ConfigError(f"{key} must be a mapping, got {type(values).__name__}")
    names = [f.name for f in dataclasses.fields(cls)]
    unknown_keys([k for k in values if k not in skip], names, key)
    try:
        return cls(**{k: v for k, v in values.items() if k not in skip})
    except TypeError as exc:
        raise ConfigError(f"{key}: {exc}") from exc


def trainer_config(cfg: Mapping[str, Any]) -> TrainerConfig:
    """The checked ``trainer`` section of a resolved config."""
    return read_section(TrainerConfig, cfg, "trainer")


def cluster_config(cfg: Mapping[str, Any]) -> ClusterConfig:
    """The checked ``cluster`` section of a resolved config."""
    return read_section(ClusterConfig, cfg, "cluster")


def evaluation_config(cfg: Mapping[str, Any]) -> EvaluationConfig:
    """The checked ``evaluation`` section of a resolved config."""
    return read_section(EvaluationConfig, cfg, "evaluation")


def data_config(cfg: Mapping[str, Any]) -> DataConfig | None:
    """The checked ``data`` section of a resolved config, or None when absent."""
    if cfg.get("data") is None:
        return None
    data = read_section(DataConfig, cfg, "data")
    if data.synthesize is not None:
        from ls_data.synth import synthesize_dataset  # half a second to import: only when asked for

        if not isinstance(data.synthesize, Mapping):
            raise ConfigError(f"data.synthesize must be a mapping or null, got {data.synthesize!r}")
        check_keywords(synthesize_dataset, list(data.synthesize), "data.synthesize", given=("out",))
    return data
