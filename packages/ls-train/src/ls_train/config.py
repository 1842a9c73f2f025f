"""Compose an experiment config with Hydra and check it before any work starts.

:func:`load_config` looks configs up, first match wins, in: every ``config_dirs`` folder given, the
repository's top-level ``configs/`` (the ``configs`` folder of the working directory, when
present), and the tree packaged with ls-train (``pkg://ls_train.configs``). So a user's folder adds
experiments or overrides a group option, and the packaged experiments work from anywhere after
``pip install``. The command lines search the same places in Hydra's order (see
:mod:`ls_train.hydra_app`).

An experiment has these top-level sections (the seed's groups plus the runner's):

- ``models``: the detector (``name`` in ``ls.detectors`` or ``_target_``) and its arguments, with
  ``models.backbones``: ``name`` in ``ls.backbones`` or ``_target_`` (any importable class or
  function, called with the other keys as keyword arguments), ``fpn`` and the body's arguments.
  ``fpn`` wraps the body in FPN3D in both cases (a ``_target_`` body must then honour the
  ls-backbones contract); with ``fpn: null`` a ``_target_`` returns the complete backbone: an
  ls-backbones contract backbone, or a module returning one ``(B, C, D, H, W)`` tensor (one
  feature level, its channels from its ``out_channels`` attribute or ``models.backbone_out_channels``;
  see :mod:`ls_detection.backbone_levels`);
- ``datasets``: ``database`` (``name`` in ``ls.datasets`` or ``_target_``) and loader keys;
- ``transforms``: ``transforms_list`` (training) and ``eval_transforms_list``;
- ``metrics``: ``metrics_list`` (``ls.metrics`` names or ``_target_``);
- ``trainer`` (:class:`TrainerConfig`), ``cluster`` (:class:`ClusterConfig`),
  ``evaluation`` (:class:`EvaluationConfig`), optional ``data`` (:class:`DataConfig`), and
  ``checkpoint`` (weights for ``ls-evaluate`` and ``ls-predict``);
- ``predict`` (:class:`ls_train.predict.PredictConfig`) with the top-level ``input``, ``output``
  and ``overwrite`` of ``ls-predict``, and ``accept_config_mismatch`` (see
  :mod:`ls_train.checkpoint_config`).

The last group are this project's own. A config written as the original system's README shows
one selects only ``models``, ``models/backbones``, ``datasets``, ``transforms`` and ``metrics``;
:func:`finish_config` (the one step every command goes through) then gives it, silently, the
packaged option of each missing section (:data:`DEFAULT_SECTIONS`): ``trainer/default``,
``evaluation/default``, ``predict/default`` and ``cluster/local``. ``local`` trains in the
command's own process on the CPU, without Ray: it runs on any machine, starts nothing and needs no
resources declared; select ``cluster: cpu`` (Ray Train on CPUs), ``gpu`` or ``slurm`` in the
defaults list for more. A section that is absent or null gets the whole option; one that is
present, even with a single key (``+trainer.epochs=3`` on the command line), is kept as given and
its other keys take the dataclass defaults, which equal the packaged options' values except
``evaluation.database`` (None: validate on the ``datasets.val_fraction`` split, where
``evaluation/default`` names the held-out Skittlez index). Keys of the original system that are
named differently here are mapped or refused first (:mod:`ls_train.config_aliases`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ls_core import Component, did_you_mean, load_object, parse_triple, signature_keywords, split_component
from ls_train.precision import AMP_CHOICES

__all__ = [
    "DEFAULT_SECTIONS",
    "PACKAGED_CONFIGS",
    "SECTIONS",
    "ClusterConfig",
    "ConfigError",
    "DataConfig",
    "EvaluationConfig",
    "TrainerConfig",
    "add_default_sections",
    "check_keywords",
    "cluster_config",
    "compose_config",
    "config_search_path",
    "data_config",
    "evaluation_config",
    "finish_config",
    "load_config",
    "load_target",
    "section_defaults",
    "trainer_config",
    "validate_config",
]

PACKAGED_CONFIGS = "pkg://ls_train.configs"

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


class ConfigError(ValueError):
    """An experiment config that cannot be composed or that names unknown keys or components."""


def _unknown_keys(keys: Iterable[str], known: Iterable[str], where: str) -> None:
    known = list(known)
    for key in keys:
        if key not in known:
            raise ConfigError(
                f"{where}.{key}: unknown key.{did_you_mean(key, known)} "
                f"Valid keys: {', '.join(sorted(known))}"
            )


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
            on GPUs, float32 on CPUs: bf16 training on the CPU lost accuracy), ``"bf16"`` or
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


def _section(cls: type, cfg: Mapping[str, Any], key: str, *, skip: Sequence[str] = ()) -> Any:
    values = cfg.get(key)
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise ConfigError(f"{key} must be a mapping, got {type(values).__name__}")
    names = [f.name for f in dataclasses.fields(cls)]
    _unknown_keys([k for k in values if k not in skip], names, key)
    try:
        return cls(**{k: v for k, v in values.items() if k not in skip})
    except TypeError as exc:
        raise ConfigError(f"{key}: {exc}") from exc


def trainer_config(cfg: Mapping[str, Any]) -> TrainerConfig:
    """The checked ``trainer`` section of a resolved config."""
    return _section(TrainerConfig, cfg, "trainer")


def cluster_config(cfg: Mapping[str, Any]) -> ClusterConfig:
    """The checked ``cluster`` section of a resolved config."""
    return _section(ClusterConfig, cfg, "cluster")


def evaluation_config(cfg: Mapping[str, Any]) -> EvaluationConfig:
    """The checked ``evaluation`` section of a resolved config."""
    return _section(EvaluationConfig, cfg, "evaluation")


def data_config(cfg: Mapping[str, Any]) -> DataConfig | None:
    """The checked ``data`` section of a resolved config, or None when absent."""
    if cfg.get("data") is None:
        return None
    data = _section(DataConfig, cfg, "data")
    if data.synthesize is not None:
        from ls_data.synth import synthesize_dataset

        if not isinstance(data.synthesize, Mapping):
            raise ConfigError(f"data.synthesize must be a mapping or null, got {data.synthesize!r}")
        check_keywords(synthesize_dataset, list(data.synthesize), "data.synthesize", given=("out",))
    return data


# -- composition -------------------------------------------------------------------------------


def config_search_path(config_dirs: Sequence[str | Path] = ()) -> list[str]:
    """The config sources in lookup order: ``config_dirs``, ``./configs`` (when present), the package."""
    sources = []
    for d in config_dirs:
        path = Path(d).expanduser().resolve()
        if not path.is_dir():
            raise ConfigError(f"--config-dir {d}: not a directory")
        sources.append(f"file://{path}")
    repo = Path.cwd() / "configs"
    if repo.is_dir() and f"file://{repo.resolve()}" not in sources:
        sources.append(f"file://{repo.resolve()}")
    sources.append(PACKAGED_CONFIGS)
    return sources


_COMPOSE_SOURCES: ContextVar[tuple[str, ...]] = ContextVar("ls_train_compose_sources", default=())


def compose_sources() -> tuple[str, ...]:
    """The config sources of the composition in progress, first wins (ls-train's search-path
    plugin puts them at the front of Hydra's search path); empty outside :func:`_hydra_compose`."""
    return _COMPOSE_SOURCES.get()


def _hydra_compose(config_name: str, overrides: Sequence[str], sources: Sequence[str]) -> DictConfig:
    """Compose through Hydra's public API with ``sources`` searched first, in order.

    Hydra's version base is 1.3, as in ls-train's commands; the caller's Hydra state is put back.
    """
    from hydra import compose, initialize

    token = _COMPOSE_SOURCES.set(tuple(sources))
    try:
        with initialize(version_base="1.3", config_path=None, job_name="ls-train"):
            return compose(config_name, overrides=list(overrides))
    finally:
        _COMPOSE_SOURCES.reset(token)


def _override_key(text: str) -> str | None:
    if "=" not in text or text[:1] in "+~":
        return None
    key = text.split("=", 1)[0].strip()
    return None if "/" in key or key.startswith("hydra") else key


def _explain_override(config_name: str, overrides: Sequence[str], sources: Sequence[str]) -> str:
    """Name the valid keys next to a misspelled override (composition without the overrides)."""
    try:
        base = _hydra_compose(config_name, [o for o in overrides if _override_key(o) is None], sources)
    except Exception:  # the base config itself fails; the original message says why
        return ""
    for text in overrides:
        key = _override_key(text)
        if key is None:
            continue
        parent_key, _, leaf = key.rpartition(".")
        parent = OmegaConf.select(base, parent_key) if parent_key else base
        if isinstance(parent, DictConfig) and leaf not in parent:
            where = parent_key or "the config"
            return (
                f"\n{key}: unknown key.{did_you_mean(leaf, parent.keys())} Valid keys of {where}: "
                f"{', '.join(sorted(map(str, parent.keys())))}"
            )
    return ""


def compose_config(
    config_name: str, overrides: Sequence[str] = (), *, config_dirs: Sequence[str | Path] = ()
) -> DictConfig:
    """Compose ``config_name`` with Hydra from the search path and apply ``overrides``.

    Args:
        config_name: Experiment name (``.yaml`` optional), e.g. ``"quickstart"``.
        overrides: Hydra command-line overrides (``trainer.epochs=2``, ``models/backbones=vitdet``).
        config_dirs: Extra config folders searched before ``./configs`` and the package.

    Returns:
        The composed config (struct mode, interpolations unresolved).

    Raises:
        ConfigError: unknown experiment or group option (Hydra lists the available ones), or an
            override of a key that does not exist (the valid keys are listed).
    """
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    if config_name.endswith(".yaml"):
        config_name = config_name[: -len(".yaml")]
    sources = config_search_path(config_dirs)
    try:
        return _hydra_compose(config_name, overrides, sources)
    except (HydraException, OmegaConfBaseException) as exc:
        message = str(exc)
        if "Could not override" in message or "not in struct" in message:
            message += _explain_override(config_name, overrides, sources)
        raise ConfigError(f"config {config_name!r} (searched {', '.join(sources)}): {message}") from exc


def _register_resolvers() -> None:
    if not OmegaConf.has_resolver("abspath"):
        OmegaConf.register_new_resolver("abspath", lambda p: str(Path(str(p)).expanduser().resolve()))


def load_config(
    config_name: str, overrides: Sequence[str] = (), *, config_dirs: Sequence[str | Path] = ()
) -> dict[str, Any]:
    """Compose, resolve and validate an experiment; the result is a plain (picklable) dict.

    Besides OmegaConf's resolvers, ``${abspath:PATH}`` makes a path absolute (against the working
    directory of the command), so Ray workers see the same files.

    ``trainer.run_name`` defaults to the config name.

    Raises:
        ConfigError: see :func:`compose_config` and :func:`validate_config`.
    """
    _register_resolvers()
    composed = compose_config(config_name, overrides, config_dirs=config_dirs)
    return finish_config(composed, config_name)


def finish_config(composed: DictConfig, config_name: str) -> dict[str, Any]:
    """A composed experiment (:func:`compose_config`, or Hydra's own command line) resolved into a
    plain dict, with the original system's keys mapped (:mod:`ls_train.config_aliases`), the
    missing ``trainer`` / ``cluster`` / ``evaluation`` / ``predict`` sections added (see
    :data:`DEFAULT_SECTIONS`), ``trainer.run_name`` defaulting to ``config_name``, and validated.

    Raises:
        ConfigError: an interpolation that does not resolve, a refused key of the original
            system, or see :func:`validate_config`.
    """
    from omegaconf.errors import OmegaConfBaseException

    from ls_train.config_aliases import apply_aliases

    _register_resolvers()
    name = config_name.removesuffix(".yaml")
    try:
        cfg = OmegaConf.to_container(composed, resolve=True, throw_on_missing=False)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"config {name!r}: {exc}") from exc
    cfg.pop("hydra", None)
    apply_aliases(cfg)
    add_default_sections(cfg)
    trainer = cfg.get("trainer")
    if isinstance(trainer, dict):
        # a name that looks like a number (run1 is fine, 2024 or nan are not) is still a name
        trainer["run_name"] = name if trainer.get("run_name") is None else str(trainer["run_name"])
    validate_config(cfg)
    return cfg


DEFAULT_SECTIONS: dict[str, str] = {
    "trainer": "trainer/default.yaml",
    "cluster": "cluster/local.yaml",
    "evaluation": "evaluation/default.yaml",
    "predict": "predict/default.yaml",
}
"""Section -> the packaged group option that a config without that section gets."""


def section_defaults(section: str) -> dict[str, Any]:
    """The resolved top-level keys that the packaged option of ``section`` (:data:`DEFAULT_SECTIONS`)
    gives a config: ``{section: {...}}``, and for ``predict`` (a ``_global_`` option) also
    ``input``, ``output``, ``overwrite`` and ``accept_config_mismatch``."""
    from importlib.resources import files

    _register_resolvers()
    text = files("ls_train.configs").joinpath(*DEFAULT_SECTIONS[section].split("/")).read_text()
    values = OmegaConf.to_container(OmegaConf.create(text), resolve=True)
    header = text.lstrip().splitlines()[0] if text.strip() else ""
    return values if header.startswith("# @package _global_") else {section: values}


def add_default_sections(cfg: dict[str, Any]) -> None:
    """Give a resolved config (in place) the packaged option of every section of
    :data:`DEFAULT_SECTIONS` that it lacks (absent or null); keys of such an option that the
    config already has (``input: ...`` without a ``predict`` section) are kept."""
    for section in DEFAULT_SECTIONS:
        if cfg.get(section) is not None:
            continue
        for key, value in section_defaults(section).items():
            if cfg.get(key) is None:
                cfg[key] = value


# -- validation --------------------------------------------------------------------------------


def check_keywords(
    factory: Callable[..., Any], kwargs: Iterable[str], where: str, *, given: Sequence[str] = ()
) -> None:
    """Raise :class:`ConfigError` when ``factory`` takes none of some ``kwargs`` (the valid ones listed).

    A factory with ``**kwargs`` accepts any key; it reports bad ones itself when called.

    Args:
        factory: Class or function.
        kwargs: The config keys that will be passed as keyword arguments.
        where: Config path of the section, for the message.
        given: Keyword arguments the runner passes itself (not valid as config keys).
    """
    keywords = signature_keywords(factory)
    unknown = [] if keywords is None else keywords.unknown(kwargs, given=given)
    if unknown:
        key, valid = unknown[0], keywords.valid(given=given)
        label = getattr(factory, "__qualname__", repr(factory))
        raise ConfigError(
            f"{where}.{key}: {label} takes no argument {key!r}.{did_you_mean(key, valid)} "
            f"Valid keys: {', '.join(valid)}"
        )


def load_target(path: Any, where: str) -> Callable[..., Any]:
    """The callable a ``_target_`` names (:func:`ls_core.load_object`); ConfigError naming ``where``."""
    try:
        obj = load_object(str(path))
    except Exception as exc:
        hint = (
            " (a class of the original system: see docs/migrating-from-the-original-system.md)"
            if str(path).startswith("segmentation.")
            else ""
        )
        raise ConfigError(f"{where}._target_: cannot import {path!r}: {exc}{hint}") from exc
    if not callable(obj):
        raise ConfigError(f"{where}._target_: {path!r} is not callable")
    return obj


def _split(section: Any, where: str, kind: str) -> Component:
    """:func:`ls_core.split_component`, with a hint when a group option's ``name`` meets a ``_target_``."""
    try:
        return split_component(section, where, kind=kind, error=ConfigError)
    except ConfigError as exc:
        both = isinstance(section, Mapping) and "name" in section and "_target_" in section
        if not both:
            raise
        raise ConfigError(
            f"{exc} (both given: name {section['name']!r} likely comes from a group option of the "
            f"defaults list; select your own option for a _target_ {kind})"
        ) from None


def _component(
    section: Any,
    where: str,
    *,
    kind: str,
    list_names: Callable[[], list[str]],
    get_builder: Callable[[str], Callable[..., Any]],
    reserved: Sequence[str] = (),
    given: Sequence[str] = (),
    check: Callable[[Callable[..., Any], Mapping[str, Any], str], bool] | None = None,
) -> None:
    """Check one ``{name: ..., **kwargs}`` / ``{_target_: ..., **kwargs}`` section.

    ``check(builder, section, where)``, when given, checks the keys and values itself and says
    so by returning True; else they are checked against the builder's signature."""
    component = _split(section, where, kind)
    if component.target is not None:
        builder = load_target(component.target, where)
    else:
        name = component.name
        known = list_names()
        if name not in known:
            raise ConfigError(
                f"{where}.name: unknown {kind} {name!r}.{did_you_mean(name, known)} "
                f"Known {kind}s: {', '.join(known)}"
            )
        try:
            builder = get_builder(name)
        except Exception as exc:
            raise ConfigError(f"{where}.name: {kind} {name!r} cannot be loaded: {exc}") from exc
    if check is not None and check(builder, section, where):
        return
    keys = [k for k in component.kwargs if k not in reserved]
    check_keywords(builder, keys, where, given=given)
    check_arguments = getattr(builder, "check_arguments", None)
    if callable(check_arguments):  # a component's own checks of values that need no file
        try:
            check_arguments(**{k: component.kwargs[k] for k in keys})
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from exc


def _metric_registry() -> tuple[Callable[[], list[str]], Callable[[str], Any]]:
    from ls_train.metrics import registry

    return registry.list_metrics, registry.get_metric


MODEL_RUNTIME_KEYS = ("channels_last",)
"""Keys of ``models`` that say how the model runs, not what it is: not arguments of its builder."""


def _check_model_and_data(cfg: Mapping[str, Any], evaluation: EvaluationConfig) -> None:
    """The ``models`` and ``datasets`` sections and ``evaluation.database`` (see :func:`validate_config`)."""
    import ls_backbones
    import ls_detection
    from ls_data import registry as data_registry
    from ls_data.loader import LOADER_KEYS, loader_options

    models = cfg["models"]
    _component(
        models,
        "models",
        kind="detector",
        list_names=ls_detection.list_detectors,
        get_builder=ls_detection.get_detector_builder,
        reserved=("backbones", *MODEL_RUNTIME_KEYS),
        given=("backbone", "backbone_kwargs", "fpn"),
    )
    backbones = models.get("backbones") if isinstance(models, Mapping) else None
    _component(
        backbones,
        "models.backbones",
        kind="backbone",
        list_names=ls_backbones.list_backbones,
        get_builder=ls_backbones.get_backbone_builder,
        reserved=("fpn",),
    )

    datasets = cfg["datasets"]
    if not isinstance(datasets, Mapping) or "database" not in datasets:
        raise ConfigError("datasets must be a mapping with a 'database' entry")
    _unknown_keys(list(datasets), ["database", *LOADER_KEYS], "datasets")
    try:
        loader_options(datasets)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    for where, database in (
        ("datasets.database", datasets["database"]),
        ("evaluation.database", evaluation.database),
    ):
        if database is None:
            continue
        _component(
            database,
            where,
            kind="dataset",
            list_names=data_registry.list_datasets,
            get_builder=data_registry.get_dataset,
            given=("transforms",),
            check=_check_crop_dataset,
        )


def _check_crop_dataset(builder: Callable[..., Any], section: Mapping[str, Any], where: str) -> bool:
    """A crop dataset entry (``SkittlezDataset`` or a subclass): its keys are the dataset's, the
    crop index's and where the index comes from, checked by ls-data without opening a file."""
    from ls_data import DataError, SkittlezDataset, parse_dataset_entry

    if not (isinstance(builder, type) and issubclass(builder, SkittlezDataset)):
        return False
    try:
        parse_dataset_entry(section, where)
    except DataError as exc:
        raise ConfigError(str(exc)) from exc
    return True


def validate_config(cfg: Mapping[str, Any]) -> None:
    """Check a resolved experiment config before any work starts.

    Checks the top-level sections, the keys of ``trainer``/``cluster``/``evaluation``/``data``,
    the registry names (detector, backbone, dataset, transforms, metrics) and the builder
    arguments of every component (against the builder's signature).

    Raises:
        ConfigError: naming the key and listing the valid keys or names.
    """
    from ls_data import registry as data_registry
    from ls_data.transforms import build_transforms

    _unknown_keys(list(cfg), SECTIONS, "config")
    # a whole-volume evaluation (ls-evaluate pred=... gt=..., the packaged evaluate_volume config)
    # scores label volumes: it needs no model and no dataset
    scores_volumes = cfg.get("models") is None and cfg.get("pred") is not None
    required = ("trainer", "cluster") if scores_volumes else ("models", "datasets", "trainer", "cluster")
    for required_key in required:
        if cfg.get(required_key) is None:
            raise ConfigError(f"config: the {required_key!r} section is missing")
    accept = cfg.get("accept_config_mismatch", False)
    if not isinstance(accept, bool):
        raise ConfigError(f"accept_config_mismatch must be true or false, got {accept!r}")
    trainer_config(cfg)
    cluster_config(cfg)
    evaluation = evaluation_config(cfg)
    data_config(cfg)
    if cfg.get("predict") is not None:
        from ls_train.predict.config import predict_config

        predict_config(cfg)

    if not scores_volumes:
        _check_model_and_data(cfg, evaluation)

    transforms = cfg.get("transforms") or {}
    if not isinstance(transforms, Mapping):
        raise ConfigError(f"transforms must be a mapping, got {type(transforms).__name__}")
    _unknown_keys(list(transforms), ["transforms_list", "eval_transforms_list"], "transforms")
    for key in ("transforms_list", "eval_transforms_list"):
        for i, entry in enumerate(transforms.get(key) or []):
            _component(
                entry,
                f"transforms.{key}[{i}]",
                kind="transform",
                list_names=data_registry.list_transforms,
                get_builder=data_registry.get_transform,
            )
        try:  # transforms are cheap to build: their constructors check the values (p, ranges)
            build_transforms(transforms.get(key), where=f"transforms.{key}")
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc

    metrics = cfg.get("metrics") or {}
    if not isinstance(metrics, Mapping):
        raise ConfigError(f"metrics must be a mapping with 'metrics_list', got {type(metrics).__name__}")
    _unknown_keys(list(metrics), ["metrics_list"], "metrics")
    if metrics.get("metrics_list"):
        list_metrics, get_metric = _metric_registry()
        for i, entry in enumerate(metrics["metrics_list"]):
            _component(
                entry,
                f"metrics.metrics_list[{i}]",
                kind="metric",
                list_names=list_metrics,
                get_builder=get_metric,
            )
    _check_builds(cfg)


def _check_builds(cfg: Mapping[str, Any]) -> None:
    """Build the metrics and the model (on the meta device: no memory, no weights) so that a bad
    value (not only a bad key: ``criterion: iuo``, a misspelled backbone or FPN argument that a
    ``**kwargs`` builder passes on) fails here, not in a worker after data preparation."""
    import torch

    from ls_train.factory import build_metrics, build_model

    if (cfg.get("metrics") or {}).get("metrics_list"):
        build_metrics(cfg)
    if cfg.get("models") is None:  # a whole-volume evaluation: no model
        return
    try:
        with torch.device("meta"):
            build_model(cfg)  # raises ConfigError naming the rejected argument
    except (RuntimeError, NotImplementedError):
        pass  # a (plugin) module that needs real tensors to build: the workers' build checks it


def check_score_attribute(cfg: Mapping[str, Any]) -> None:
    """Before training: ``trainer.checkpoint_score_attribute`` must be a key the validation
    reports, a metric's (``compute()`` of a fresh metric lists them) or a training loss
    (``loss...``). (``ls-evaluate`` ranks no checkpoints, so ``load_config`` does not ask this.)

    Raises:
        ConfigError: listing the metric keys.
    """
    from ls_train.factory import build_metrics

    if not (cfg.get("metrics") or {}).get("metrics_list"):
        return
    metrics = build_metrics(cfg)
    score = trainer_config(cfg).checkpoint_score_attribute
    keys: set[str] = set()
    for metric in metrics:
        try:
            keys.update(metric.compute())
        except Exception:  # a (plugin) metric that cannot summarise nothing: its keys are unknown
            return
    if score in keys or score.startswith("loss"):
        return
    known = sorted(k for k in keys if not k.endswith("_pooled"))
    raise ConfigError(
        f"trainer.checkpoint_score_attribute: {score!r} is not reported by the validation "
        f"metrics, so no checkpoint would ever be ranked.{did_you_mean(score, sorted(keys))} "
        f"Metric keys: {', '.join(known)} (and their _pooled forms), or a loss"
    )
