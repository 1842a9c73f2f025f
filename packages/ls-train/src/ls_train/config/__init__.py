"""Compose an experiment config with Hydra and check it before any work starts.

:func:`load_config` looks configs up, first match wins, in: every ``config_dirs`` folder given, the
repository's top-level ``configs/`` (the ``configs`` folder of the working directory, when
present), and the tree packaged with ls-train (``pkg://ls_train.configs``). So a user's folder adds
experiments or overrides a group option, and the packaged experiments work from anywhere after
``pip install``. The command lines search the same places in Hydra's order (see
:mod:`ls_train.hydra_app`).

The modules, each depending only on those above it:

- :mod:`~ls_train.config.errors`: :class:`ConfigError` and the unknown-key message;
- :mod:`~ls_train.config.components`: sections that name a builder (``name`` or ``_target_``)
  and its arguments: :func:`load_target`, :func:`check_keywords`;
- :mod:`~ls_train.config.sections`: the typed sections and their accessors;
- :mod:`~ls_train.config.search_path`: where configs are looked up;
- :mod:`~ls_train.config.validate`: :func:`validate_config`, which also builds the model and
  the metrics with :mod:`ls_train.factory` (itself built on ``errors``, ``components`` and
  ``sections``) and reads ``predict`` with :mod:`ls_train.predict.config`;
- :mod:`~ls_train.config.compose`: Hydra composition, :func:`load_config`, :func:`finish_config`
  and the packaged defaults of missing sections.

Names are imported lazily from these modules, so ``from ls_train.config import ConfigError``
loads neither Hydra nor the builders, and :mod:`ls_train.factory` and
:mod:`ls_train.predict.config` import the modules they build on without importing the validation.

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

from ls_core import lazy_exports

_EXPORTS = {
    "ConfigError": "errors",
    "check_keywords": "components",
    "load_target": "components",
    "MODEL_RUNTIME_KEYS": "sections",
    "SECTIONS": "sections",
    "ClusterConfig": "sections",
    "DataConfig": "sections",
    "EvaluationConfig": "sections",
    "TrainerConfig": "sections",
    "cluster_config": "sections",
    "data_config": "sections",
    "evaluation_config": "sections",
    "trainer_config": "sections",
    "PACKAGED_CONFIGS": "search_path",
    "compose_sources": "search_path",
    "config_search_path": "search_path",
    "check_score_attribute": "validate",
    "validate_config": "validate",
    "DEFAULT_SECTIONS": "compose",
    "add_default_sections": "compose",
    "compose_config": "compose",
    "finish_config": "compose",
    "load_config": "compose",
    "section_defaults": "compose",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)
