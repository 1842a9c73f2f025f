"""Compose an experiment with Hydra, resolve it into a plain dict, complete and validate it.

:func:`load_config` = :func:`compose_config` (Hydra's compose API over
:func:`~ls_train.config.search_path.config_search_path`) + :func:`finish_config` (resolve, map
the original system's keys, add the missing sections, validate). ``ls-train``, ``ls-evaluate``
and ``ls-predict`` compose with Hydra's own command line and then call :func:`finish_config`
too. A config without ``trainer``, ``cluster``, ``evaluation`` or ``predict`` gets the packaged
option of that group (:data:`DEFAULT_SECTIONS`, :func:`add_default_sections`).
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path
from typing import Any

import hydra
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ls_core import did_you_mean
from ls_train.config.errors import ConfigError
from ls_train.config.search_path import config_search_path, searched_first
from ls_train.config.validate import validate_config
from ls_train.config_aliases import apply_aliases

__all__ = [
    "DEFAULT_SECTIONS",
    "add_default_sections",
    "compose_config",
    "explain_override",
    "finish_config",
    "load_config",
    "register_resolvers",
    "section_defaults",
]


def register_resolvers() -> None:
    """Register ls-train's OmegaConf resolvers (once): ``${abspath:PATH}``."""
    if not OmegaConf.has_resolver("abspath"):
        OmegaConf.register_new_resolver("abspath", lambda p: str(Path(str(p)).expanduser().resolve()))


def _hydra_compose(config_name: str, overrides: Sequence[str], sources: Sequence[str]) -> DictConfig:
    """Compose through Hydra's public API with ``sources`` searched first, in order.

    Hydra's version base is 1.3, as in ls-train's commands; the caller's Hydra state is put back.
    """
    with searched_first(sources), hydra.initialize(version_base="1.3", config_path=None, job_name="ls-train"):
        return hydra.compose(config_name, overrides=list(overrides))


def _override_key(text: str) -> str | None:
    if "=" not in text or text[:1] in "+~":
        return None
    key = text.split("=", 1)[0].strip()
    return None if "/" in key or key.startswith("hydra") else key


def explain_override(config_name: str, overrides: Sequence[str], sources: Sequence[str]) -> str:
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
    if config_name.endswith(".yaml"):
        config_name = config_name[: -len(".yaml")]
    sources = config_search_path(config_dirs)
    try:
        return _hydra_compose(config_name, overrides, sources)
    except (HydraException, OmegaConfBaseException) as exc:
        message = str(exc)
        if "Could not override" in message or "not in struct" in message:
            message += explain_override(config_name, overrides, sources)
        raise ConfigError(f"config {config_name!r} (searched {', '.join(sources)}): {message}") from exc


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
    register_resolvers()
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
    register_resolvers()
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
    register_resolvers()
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
