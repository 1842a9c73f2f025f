"""Build the model, the datasets, the loaders and the metrics of a resolved experiment config.

Every builder takes the whole config (a plain mapping, see :func:`ls_train.config.load_config`)
and hands each component exactly its own section's keys; no config object goes deeper. This is
the only reader of the dataset sections: the driver builds each crop index once
(:func:`prepare_dataset`), the workers only open them (:func:`build_train_loaders`,
:func:`build_eval_dataset`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ls_train.config.components import load_target
from ls_train.config.errors import ConfigError
from ls_train.config.sections import MODEL_RUNTIME_KEYS, evaluation_config

__all__ = [
    "build_eval_dataset",
    "build_metrics",
    "build_model",
    "build_train_loaders",
    "build_transforms",
    "dataset_sections",
    "model_kwargs",
    "prepare_dataset",
]


def model_kwargs(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The detector builder's keyword arguments from ``models`` and ``models.backbones``.

    ``models.backbones.name`` becomes ``backbone``, ``models.backbones.fpn`` becomes ``fpn`` and
    the backbone's other keys become ``backbone_kwargs``; ``models``' own keys (except ``name``,
    ``_target_``, ``backbones`` and :data:`~ls_train.config.MODEL_RUNTIME_KEYS`) are passed as they
    are. With ``models.backbones._target_`` instead of a name, ``backbone`` is the module that the
    target returns when called with the backbone's other keys (except ``fpn``, which then wraps
    that module), as Hydra's ``instantiate`` calls it.

    Raises:
        ConfigError: the backbone's target cannot be imported or rejects its arguments.
    """
    models = dict(cfg["models"])
    backbones = dict(models.pop("backbones"))
    kwargs = {k: v for k, v in models.items() if k not in ("name", "_target_", *MODEL_RUNTIME_KEYS)}
    kwargs["fpn"] = backbones.pop("fpn", None)
    if "_target_" in backbones:
        kwargs["backbone"] = _target_backbone(backbones)
        kwargs["backbone_kwargs"] = {}
    else:
        kwargs["backbone"] = backbones.pop("name")
        kwargs["backbone_kwargs"] = backbones
    return kwargs


def _target_backbone(backbones: Mapping[str, Any]) -> nn.Module:
    target = backbones["_target_"]
    build = load_target(target, "models.backbones")
    try:
        backbone = build(**{k: v for k, v in backbones.items() if k != "_target_"})
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"models.backbones._target_ {target!r}: {exc}") from exc
    if not isinstance(backbone, nn.Module):
        raise ConfigError(
            f"models.backbones._target_ {target!r} returned {type(backbone).__name__}, not a torch.nn.Module"
        )
    return backbone


def build_model(cfg: Mapping[str, Any]) -> nn.Module:
    """The detector of ``cfg["models"]`` (registry ``name`` or ``_target_``) over its backbone.

    With ``models.channels_last`` (default true) its weights are in the channels-last 3-D memory
    format (see :func:`torch.Tensor.to`); ``false`` keeps PyTorch's default layout, the reference.

    Raises:
        ConfigError: the builder rejects an argument (its message names it).
    """
    import ls_detection

    models = cfg["models"]
    backbones = models["backbones"]
    label = backbones.get("name", backbones.get("_target_"))
    kwargs = model_kwargs(cfg)
    try:
        if "_target_" in models:
            model = load_target(models["_target_"], "models")(**kwargs)
        else:
            model = ls_detection.create_detector(models["name"], **kwargs)
    except (TypeError, ValueError, LookupError) as exc:
        raise ConfigError(f"models (backbone {label!r}): {exc}") from exc
    channels_last = models.get("channels_last", True)
    if not isinstance(channels_last, bool):
        raise ConfigError(f"models.channels_last must be true or false, got {channels_last!r}")
    if channels_last:
        # the 5-D weights in (O, Z, Y, X, I) order: oneDNN then runs every conv3d channels-last (its
        # outputs too), 1.3-2.6x faster per conv on CPU for the few-channel 3-D convolutions of
        # the heads (benchmarks/throughput.py); the same arithmetic as the default layout
        model = model.to(memory_format=torch.channels_last_3d)
    return model


def build_transforms(cfg: Mapping[str, Any], *, train: bool) -> Any:
    """The training (``transforms_list``) or evaluation (``eval_transforms_list``) pipeline."""
    from ls_data.transforms import build_transforms as build

    key = "transforms_list" if train else "eval_transforms_list"
    section = cfg.get("transforms") or {}
    return build(section.get(key), where=f"transforms.{key}")


def dataset_sections(cfg: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """The dataset entries of a config by where they sit: ``datasets.database`` and, when set,
    ``evaluation.database``."""
    sections = {"datasets.database": cfg["datasets"]["database"]}
    evaluation = evaluation_config(cfg)
    if evaluation.database is not None:
        sections["evaluation.database"] = evaluation.database
    return sections


def prepare_dataset(section: Mapping[str, Any], where: str) -> tuple[Dataset, str | None]:
    """Build (or reuse) the crop index of a dataset entry that names a ``catalog``, then open the
    dataset (no transforms). The driver calls this once per entry before any worker starts; in a
    distributed run ``build_crop_index`` lets rank 0 build while the other ranks wait.

    Returns:
        The dataset and its index's fingerprint (None when the entry builds no index), which the
        workers pass to :func:`build_train_loaders` / :func:`build_eval_dataset`.

    Raises:
        DataError: the entry is malformed (the key named), or its index or dataset cannot be built.
    """
    from ls_data import parse_dataset_entry

    entry = parse_dataset_entry(section, where)
    fingerprint = entry.index.build().fingerprint if entry.index is not None else None
    return entry.open(fingerprint=fingerprint), fingerprint


def _open_dataset(
    section: Mapping[str, Any], where: str, transforms: Any, fingerprints: Mapping[str, str] | None
) -> Dataset:
    """Open the dataset of an entry (a worker: never builds an index; with the fingerprint that
    :func:`prepare_dataset` returned, a stale index is an error)."""
    from ls_data import parse_dataset_entry

    fingerprint = (fingerprints or {}).get(where)
    return parse_dataset_entry(section, where).open(transforms, fingerprint=fingerprint)


def build_train_loaders(
    cfg: Mapping[str, Any], fingerprints: Mapping[str, str] | None = None
) -> dict[str, DataLoader]:
    """``{"train": loader}`` plus ``"val"`` when ``datasets.val_fraction > 0``.

    Opens ``datasets.database`` (its index must exist: :func:`prepare_dataset` builds it) with the
    training transforms and the loader keys of ``datasets`` (:func:`ls_data.loader_options`; the
    original system's ``worker_batch_size`` arrives as ``datasets.batch_size``, see
    :mod:`ls_train.config_aliases`). Uses a DistributedSampler when torch.distributed is initialised
    (Ray workers).

    Args:
        cfg: The experiment config.
        fingerprints: ``{where: fingerprint}`` from :func:`prepare_dataset`; an index that does
            not carry its fingerprint is stale (an error).
    """
    from ls_data import build_dataloaders, loader_options

    section = cfg["datasets"]
    options = loader_options(section)
    options.pop("return_dataloaders")
    transforms = build_transforms(cfg, train=True)
    dataset = _open_dataset(section["database"], "datasets.database", transforms, fingerprints)
    return build_dataloaders(dataset, **options)


def build_eval_dataset(
    cfg: Mapping[str, Any], fingerprints: Mapping[str, str] | None = None
) -> Dataset | None:
    """The held-out dataset of ``evaluation.database`` with the evaluation transforms, or None.

    Its index must exist (:func:`prepare_dataset` builds it); ``fingerprints`` as in
    :func:`build_train_loaders`.
    """
    evaluation = evaluation_config(cfg)
    if evaluation.database is None:
        return None
    transforms = build_transforms(cfg, train=False)
    return _open_dataset(evaluation.database, "evaluation.database", transforms, fingerprints)


def build_metrics(cfg: Mapping[str, Any]) -> list[Any]:
    """The metric objects of ``metrics.metrics_list`` (``ls.metrics`` names or ``_target_``)."""
    from ls_train.metrics import registry

    metrics = []
    for i, entry in enumerate((cfg.get("metrics") or {}).get("metrics_list") or []):
        where = f"metrics.metrics_list[{i}]"
        kwargs = {k: v for k, v in entry.items() if k not in ("name", "_target_")}
        try:
            if "_target_" in entry:
                metrics.append(load_target(entry["_target_"], where)(**kwargs))
            else:
                metrics.append(registry.create_metric(entry["name"], **kwargs))
        except (TypeError, ValueError, LookupError) as exc:
            raise ConfigError(f"{where}: {exc}") from exc
    if not metrics:
        raise ConfigError("metrics.metrics_list is empty: the evaluator needs at least one metric")
    return metrics
