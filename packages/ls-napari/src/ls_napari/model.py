"""The model of the segment widget: a checkpoint folder and the config it is run with.

As on ``ls-predict``'s command line: without a config name, the config the checkpoint carries
(with the widget's overrides on top); with one (an experiment that ``ls-predict --config-name``
takes, e.g. ``quickstart``), that experiment, refused when its model differs from the
checkpoint's. The checkpoint's weights are loaded by the prediction itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["experiment_names", "model_config"]


def experiment_names() -> list[str]:
    """The experiments (``--config-name`` values) that ``ls-predict`` finds: ``./configs`` and the
    configs packaged with ls-train."""
    from ls_train.hydra_app import experiments, search_path_sources

    return experiments(search_path_sources())


def model_config(
    checkpoint: str, *, config_name: str | None = None, overrides: Sequence[str] = ()
) -> dict[str, Any]:
    """The resolved config to predict with ``checkpoint``.

    Raises:
        ConfigError: no checkpoint given or no such path, a checkpoint that carries no config (and
            no ``config_name``), a config that differs from the checkpoint's, a bad override.
        CheckpointError: a checkpoint file that cannot be read.
    """
    from ls_train.checkpoint_config import check_against_checkpoint, config_from_checkpoint
    from ls_train.config import ConfigError, load_config

    if not checkpoint:
        raise ConfigError("choose a checkpoint folder (a checkpoint_* folder of an ls-train run)")
    path = Path(checkpoint).expanduser()
    if not path.exists():
        raise ConfigError(f"checkpoint {path}: no such file or folder")
    if not config_name:
        return config_from_checkpoint(str(path), list(overrides))
    cfg = load_config(config_name, list(overrides))
    cfg["checkpoint"] = str(path)
    check_against_checkpoint(cfg, str(path))
    return cfg
