"""The experiment config that a checkpoint carries, and the checks of a config against it.

Every training checkpoint stores the resolved experiment config that trained it (``state.pt``,
key ``config``, as JSON text, which ``torch.load(weights_only=True)`` reads). So a shared
checkpoint folder is enough to predict or evaluate: ``ls-predict checkpoint=DIR input=...
output=...`` rebuilds the model, its evaluation transforms, thresholds, target spacing and class
names from it, with the command line's overrides on top. Given an explicit ``--config-name`` as
well, the model and evaluation-transform sections must agree with the checkpoint's (the
differing keys are listed), unless ``accept_config_mismatch=true``.

A checkpoint written before a setting existed (say ``evaluation.min_visible_fraction``) carries
no value for it: the config to run (:func:`config_from_checkpoint`, ``checkpoint=DIR`` on the
command line) fills such keys of the sections that have packaged defaults
(``trainer``, ``cluster``, ``evaluation``, ``predict``) with those defaults, as a config composed
today would have them, and names them once on stderr, so that ``key=value`` overrides them
without ``+`` and the user knows which values did not come from the checkpoint.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ls_train.config import (
    DEFAULT_SECTIONS,
    MODEL_RUNTIME_KEYS,
    ConfigError,
    section_defaults,
    validate_config,
)
from ls_train.trainer.checkpoint import CONFIG_KEY, load_state

__all__ = [
    "COMPARED_SECTIONS",
    "CONFIG_KEY",
    "check_against_checkpoint",
    "config_differences",
    "config_from_checkpoint",
    "fill_new_defaults",
    "saved_config",
]

COMPARED_SECTIONS = ("models", "transforms.eval_transforms_list")
"""What must agree between an explicit config and the checkpoint's: the model (its architecture,
detection thresholds, target spacing, classes) and the transforms the evaluation applies."""


def saved_config(checkpoint: str | Path, *, complete: bool = False) -> dict[str, Any] | None:
    """The experiment config stored in ``checkpoint`` (a folder or its ``state.pt``), or None for a
    checkpoint written before checkpoints carried one (or a bare weights file). With ``complete``,
    keys added to the packaged sections since it was written get today's defaults
    (:func:`fill_new_defaults`), named on stderr: the config to run, not to compare with.

    Raises:
        CheckpointError: the checkpoint cannot be read.
    """
    text = load_state(checkpoint).get(CONFIG_KEY)
    if text is None:
        return None
    cfg = json.loads(text)
    added = fill_new_defaults(cfg) if complete else []
    if added:
        print(
            f"checkpoint={checkpoint} was written before these settings existed; they take today's "
            f"defaults: {', '.join(added)}",
            file=sys.stderr,
        )
    return cfg


def fill_new_defaults(cfg: dict[str, Any]) -> list[str]:
    """Give ``cfg`` (in place) the top-level keys of its packaged sections (:data:`DEFAULT_SECTIONS`)
    that it lacks, with the packaged defaults. Nested values (a dataset spec) are never completed:
    their keys depend on what they build. A section it lacks altogether is left to
    :func:`ls_train.config.add_default_sections`. Returns ``section.key=value`` for each key added."""
    added = []
    for section in DEFAULT_SECTIONS:
        target = cfg.get(section)
        if not isinstance(target, dict):
            continue
        for key, value in section_defaults(section)[section].items():
            if key not in target:
                target[key] = value
                added.append(f"{section}.{key}={json.dumps(value)}")
    return added


def _apply_overrides(cfg: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """``key=value`` / ``+key=value`` / ``~key`` overrides on a plain config (values parsed as YAML,
    as Hydra does); config-group overrides (``group/option``) need ``--config-name``."""
    from omegaconf import OmegaConf

    conf = OmegaConf.create(cfg)
    for text in overrides:
        key, sep, value = text.partition("=")
        if key.startswith("~"):
            path, _, leaf = key[1:].rpartition(".")
            parent = OmegaConf.select(conf, path) if path else conf
            if parent is None or leaf not in parent:
                raise ConfigError(f"override {text!r}: the checkpoint's config has no key {key[1:]!r}")
            parent.pop(leaf)
            continue
        if not sep or "/" in key:
            raise ConfigError(
                f"override {text!r}: without --config-name only key=value overrides apply to the "
                f"checkpoint's config; give --config-name to select config groups"
            )
        plain = key.removeprefix("+")
        if not key.startswith("+") and OmegaConf.select(conf, plain, default="__missing__") == "__missing__":
            raise ConfigError(
                f"override {text!r}: the checkpoint's config has no key {plain!r} "
                f"(use +{plain}=... to add one)"
            )
        conf = OmegaConf.merge(conf, OmegaConf.from_dotlist([f"{plain}={value}"]))
    return OmegaConf.to_container(conf, resolve=True)


def config_from_checkpoint(checkpoint: str, overrides: Sequence[str]) -> dict[str, Any]:
    """The checkpoint's experiment config with ``overrides`` applied, validated.

    Raises:
        ConfigError: the checkpoint carries no config (written before they did: pass
            ``--config-name``), or a bad override or value.
    """
    if not Path(checkpoint).exists():
        raise ConfigError(f"checkpoint={checkpoint}: no such file or folder")
    cfg = saved_config(checkpoint, complete=True)
    if cfg is None:
        raise ConfigError(
            f"checkpoint={checkpoint} carries no experiment config (it was written before checkpoints "
            f"did, or is a bare weights file): give the config that trained it, --config-name=NAME"
        )
    cfg = _apply_overrides(cfg, [o for o in overrides if not o.startswith("checkpoint=")])
    cfg["checkpoint"] = checkpoint
    validate_config(cfg)
    return cfg


def _leaves(value: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    if isinstance(value, Mapping):
        for k, v in value.items():
            yield from _leaves(v, f"{prefix}.{k}" if prefix else str(k))
    else:
        yield prefix, value


def _section(cfg: Mapping[str, Any], dotted: str) -> Any:
    value: Any = cfg
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def config_differences(cfg: Mapping[str, Any], saved: Mapping[str, Any]) -> list[str]:
    """``key: given X, checkpoint Y`` for every leaf of :data:`COMPARED_SECTIONS` that differs
    (except ``models``' runtime keys, e.g. ``channels_last``: how the weights run, not what they are)."""
    runtime = {f"models.{k}" for k in MODEL_RUNTIME_KEYS}
    lines = []
    for section in COMPARED_SECTIONS:
        given = dict(_leaves(_section(cfg, section), section))
        stored = dict(_leaves(_section(saved, section), section))
        for key in sorted((set(given) | set(stored)) - runtime):
            mine, theirs = given.get(key, "<absent>"), stored.get(key, "<absent>")
            if mine != theirs:
                lines.append(f"{key}: given {mine!r}, checkpoint {theirs!r}")
    return lines


def check_against_checkpoint(cfg: Mapping[str, Any], checkpoint: str) -> None:
    """Refuse an explicit config whose model or evaluation transforms differ from the checkpoint's.

    Nothing is checked for a checkpoint without a config, or with ``accept_config_mismatch=true``.

    Raises:
        ConfigError: listing the differing keys.
    """
    if cfg.get("accept_config_mismatch") or not Path(checkpoint).exists():
        return
    saved = saved_config(checkpoint)
    if saved is None:
        return
    differences = config_differences(cfg, saved)
    if differences:
        more = f"\n  ... ({len(differences)} in all)" if len(differences) > 20 else ""
        shown = "\n  ".join(differences[:20]) + more
        raise ConfigError(
            f"the config differs from the one that trained checkpoint={checkpoint}:\n  {shown}\n"
            f"Leave out --config-name to use the checkpoint's own config (with overrides on top), or "
            f"add accept_config_mismatch=true to use this one anyway"
        )
