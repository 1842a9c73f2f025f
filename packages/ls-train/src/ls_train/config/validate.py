"""Check a resolved experiment config before any work starts.

:func:`validate_config` checks the top-level keys, the typed sections
(:mod:`ls_train.config.sections`, :class:`ls_train.predict.PredictConfig`), every component
(detector, backbone, datasets, transforms, metrics: :func:`~ls_train.config.components.check_component`)
and finally builds the metrics and the model on the meta device (:mod:`ls_train.factory`), so that a
value only the builder can judge fails here too. :func:`check_score_attribute` is the check that
only training needs.

The builders depend on the sections and components of this package, never on this module, so
importing them here closes no cycle. The model registries (ls_detection, ls_backbones) are imported
only where a config has a model to check, so that composing a model-free config (``ls-evaluate
pred=... gt=...``, which ls-napari does in napari's process) loads no torchvision.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from ls_core import did_you_mean
from ls_data import DataError, SkittlezDataset, parse_dataset_entry
from ls_data import registry as data_registry
from ls_data.loader import LOADER_KEYS, loader_options
from ls_data.transforms import build_transforms
from ls_train.config.components import check_component
from ls_train.config.errors import ConfigError, unknown_keys
from ls_train.config.sections import (
    MODEL_RUNTIME_KEYS,
    SECTIONS,
    EvaluationConfig,
    cluster_config,
    data_config,
    evaluation_config,
    trainer_config,
)
from ls_train.factory import build_metrics, build_model
from ls_train.metrics import registry as metric_registry
from ls_train.predict.config import predict_config

__all__ = ["check_score_attribute", "validate_config"]


def validate_config(cfg: Mapping[str, Any]) -> None:
    """Check a resolved experiment config before any work starts.

    Checks the top-level sections, the keys of ``trainer``/``cluster``/``evaluation``/``data``,
    the registry names (detector, backbone, dataset, transforms, metrics) and the builder
    arguments of every component (against the builder's signature).

    Raises:
        ConfigError: naming the key and listing the valid keys or names.
    """
    unknown_keys(list(cfg), SECTIONS, "config")
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
        predict_config(cfg)
    if not scores_volumes:
        _check_model_and_data(cfg, evaluation)
    _check_transforms(cfg)
    _check_metrics(cfg)
    _check_builds(cfg)


def _check_model_and_data(cfg: Mapping[str, Any], evaluation: EvaluationConfig) -> None:
    """The ``models`` and ``datasets`` sections and ``evaluation.database`` (see :func:`validate_config`)."""
    # the registries are imported here, not with this module: a process that only composes configs
    # without a model (napari's, through ls_napari) must not load ls_detection and torchvision
    import ls_backbones
    import ls_detection

    models = cfg["models"]
    check_component(
        models,
        "models",
        kind="detector",
        list_names=ls_detection.list_detectors,
        get_builder=ls_detection.get_detector_builder,
        reserved=("backbones", *MODEL_RUNTIME_KEYS),
        given=("backbone", "backbone_kwargs", "fpn"),
    )
    backbones = models.get("backbones") if isinstance(models, Mapping) else None
    check_component(
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
    unknown_keys(list(datasets), ["database", *LOADER_KEYS], "datasets")
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
        check_component(
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
    if not (isinstance(builder, type) and issubclass(builder, SkittlezDataset)):
        return False
    try:
        parse_dataset_entry(section, where)
    except DataError as exc:
        raise ConfigError(str(exc)) from exc
    return True


def _check_transforms(cfg: Mapping[str, Any]) -> None:
    """``transforms.transforms_list`` and ``eval_transforms_list``: each entry a registered
    transform with its arguments, and each list buildable."""
    transforms = cfg.get("transforms") or {}
    if not isinstance(transforms, Mapping):
        raise ConfigError(f"transforms must be a mapping, got {type(transforms).__name__}")
    unknown_keys(list(transforms), ["transforms_list", "eval_transforms_list"], "transforms")
    for key in ("transforms_list", "eval_transforms_list"):
        for i, entry in enumerate(transforms.get(key) or []):
            check_component(
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


def _check_metrics(cfg: Mapping[str, Any]) -> None:
    """``metrics.metrics_list``: each entry a registered metric (``ls.metrics``) with its arguments."""
    metrics = cfg.get("metrics") or {}
    if not isinstance(metrics, Mapping):
        raise ConfigError(f"metrics must be a mapping with 'metrics_list', got {type(metrics).__name__}")
    unknown_keys(list(metrics), ["metrics_list"], "metrics")
    for i, entry in enumerate(metrics.get("metrics_list") or []):
        check_component(
            entry,
            f"metrics.metrics_list[{i}]",
            kind="metric",
            list_names=metric_registry.list_metrics,
            get_builder=metric_registry.get_metric,
        )


def _check_builds(cfg: Mapping[str, Any]) -> None:
    """Build the metrics and the model (on the meta device: no memory, no weights) so that a bad
    value (not only a bad key: ``criterion: iuo``, a misspelled backbone or FPN argument that a
    ``**kwargs`` builder passes on) fails here, not in a worker after data preparation."""
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
