"""The original system's config keys that this project names differently.

Users of the original system (``spec/seed-readme.md``; the page
``docs/migrating-from-the-original-system.md`` lists every name side by side) arrive with its
experiment configs. :func:`apply_aliases` runs on every resolved config
(:func:`ls_train.config.finish_config`, before the missing sections are added and the config is
validated) and handles each key of :data:`ALIASES` that a config has, in the table's order:

- a **mapped** key is moved, silently, to its new place; its value replaces the one the new key
  may already have (a group option of the defaults list sets the new key, only the user writes the
  old one); ``backbone_target`` also removes ``models.backbones.name`` (a ``_target_`` replaces the
  registry name; the other keys of ``models.backbones`` become the target's arguments);
- a **refused** key raises :class:`~ls_train.config.ConfigError` naming the key to use instead and
  why it does not map one to one.

Keys inside ``models`` and ``models.backbones`` are aliases only where they belong to a built-in
component (the ``maskrcnn3d`` detector, the ``vitdet3d_*``, ``hiera3d_*`` and ``resnet3d_*``
backbones), so a ``_target_`` component or a plugin keeps whatever argument names it has.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

from ls_train.config import ConfigError

__all__ = ["ALIASES", "Alias", "apply_aliases"]

_ABSENT = object()


def _backbone_name(cfg: Mapping[str, Any]) -> str:
    models = cfg.get("models")
    backbones = models.get("backbones") if isinstance(models, Mapping) else None
    name = backbones.get("name") if isinstance(backbones, Mapping) else None
    return name if isinstance(name, str) else ""


def _any(cfg: Mapping[str, Any]) -> bool:
    return True


def _maskrcnn(cfg: Mapping[str, Any]) -> bool:
    models = cfg.get("models")
    return isinstance(models, Mapping) and models.get("name") == "maskrcnn3d"


def _registry_backbone(cfg: Mapping[str, Any]) -> bool:
    return bool(_backbone_name(cfg))


def _vitdet(cfg: Mapping[str, Any]) -> bool:
    return _backbone_name(cfg).startswith("vitdet3d")


def _sfp(cfg: Mapping[str, Any]) -> bool:
    return _vitdet(cfg) and _backbone_name(cfg).endswith("_sfp")


def _hiera(cfg: Mapping[str, Any]) -> bool:
    return _backbone_name(cfg).startswith("hiera3d")


def _resnet(cfg: Mapping[str, Any]) -> bool:
    return _backbone_name(cfg).startswith("resnet3d")


@dataclass(frozen=True)
class Alias:
    """One key of the original system.

    Args:
        old: its dotted path in an original config.
        new: the dotted path of the key that takes its role here.
        scope: where it is an alias (for the docs), e.g. ``"ViTDet3D backbones"``.
        applies: whether it is an alias in a given config (see ``scope``).
        refused: None: the key maps to ``new``; else why it does not (the error message).
        removes: keys removed when it maps (the registry name a ``_target_`` replaces).
    """

    old: str
    new: str
    scope: str = "any config"
    applies: Callable[[Mapping[str, Any]], bool] = _any
    refused: str | None = None
    removes: tuple[str, ...] = ()


_MASKRCNN = "the maskrcnn3d detector (models.name)"
_RESNET_DEPTH = (
    "the depth picks blocks and layers: resnet3d_18 / resnet3d_34 (basic blocks), resnet3d_50 / "
    "resnet3d_101 / resnet3d_152 (bottleneck blocks); models.backbones.out_features picks the stages"
)
_RETURN_LAYERS = (
    "FPN3D takes a list of body outputs, e.g. [p2, p3] (models.backbones.fpn.in_features), and the "
    "body returns the stages of models.backbones.out_features"
)

ALIASES: tuple[Alias, ...] = (
    Alias("backbone_target", "models.backbones._target_", removes=("models.backbones.name",)),
    Alias("backbone_out_channels", "models.backbone_out_channels"),
    Alias("worker_batch_size", "datasets.batch_size"),
    Alias("models.backbones.image_size", "models.backbones.img_size", "ViTDet3D backbones", _vitdet),
    Alias(
        "models.backbones.pretrain_image_size",
        "models.backbones.pretrain_img_size",
        "ViTDet3D backbones",
        _vitdet,
    ),
    Alias("models.backbones.scale_factors", "models.backbones.sfp_scale_factors", "vitdet3d_*_sfp", _sfp),
    Alias(
        "models.backbones.return_intermediates",
        "models.backbones.out_features",
        "Hiera3D backbones",
        _hiera,
        refused="Hiera3D always returns its stage outputs; out_features picks which (p2 is stage 0)",
    ),
    Alias("models.backbones.block", "models.backbones.name", "ResNet3D backbones", _resnet, _RESNET_DEPTH),
    Alias("models.backbones.layers", "models.backbones.name", "ResNet3D backbones", _resnet, _RESNET_DEPTH),
    Alias(
        "models.backbones.return_layers",
        "models.backbones.fpn.in_features",
        "registered backbones",
        _registry_backbone,
        _RETURN_LAYERS,
    ),
    Alias(
        "models.backbones.fpn.return_layers",
        "models.backbones.fpn.in_features",
        "registered backbones",
        _registry_backbone,
        _RETURN_LAYERS,
    ),
    Alias("models.featmap_names", "models.roi_featmap_names", _MASKRCNN, _maskrcnn),
    Alias("models.conv_depth", "models.rpn_conv_depth", _MASKRCNN, _maskrcnn),
    Alias(
        "models.rpn_head",
        "models.rpn_conv_depth",
        _MASKRCNN,
        _maskrcnn,
        "the detector builds its RPN head; rpn_conv_depth sets its 3x3x3 convolutions",
    ),
    Alias(
        "models.box_roi_pool",
        "models.box_roi_output_size",
        _MASKRCNN,
        _maskrcnn,
        "the detector builds its RoI pooler from box_roi_output_size, box_roi_sampling_ratio and "
        "roi_featmap_names",
    ),
    Alias(
        "models.mask_roi_pool",
        "models.mask_roi_output_size",
        _MASKRCNN,
        _maskrcnn,
        "the detector builds its RoI pooler from mask_roi_output_size, mask_roi_sampling_ratio and "
        "roi_featmap_names",
    ),
    Alias(
        "models.output_size",
        "models.box_roi_output_size",
        _MASKRCNN,
        _maskrcnn,
        "each RoI head has its own: box_roi_output_size (7) and mask_roi_output_size (14)",
    ),
    Alias(
        "models.sampling_ratio",
        "models.box_roi_sampling_ratio",
        _MASKRCNN,
        _maskrcnn,
        "each RoI head has its own: box_roi_sampling_ratio and mask_roi_sampling_ratio",
    ),
)
"""Every key of the original system that this project names differently, in the order applied."""


def _get(cfg: Mapping[str, Any], path: str) -> Any:
    node: Any = cfg
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _ABSENT
        node = node[part]
    return node


def _parent(cfg: MutableMapping[str, Any], path: str, *, create: bool) -> MutableMapping[str, Any] | None:
    node: Any = cfg
    for part in path.split(".")[:-1]:
        if create and node.get(part) is None:
            node[part] = {}
        node = node.get(part)
        if not isinstance(node, MutableMapping):
            return None
    return node


def _move(cfg: MutableMapping[str, Any], alias: Alias) -> None:
    value = _parent(cfg, alias.old, create=False).pop(alias.old.rsplit(".", 1)[-1])
    target = _parent(cfg, alias.new, create=True)
    if target is None:
        where = alias.new.rsplit(".", 1)[0]
        raise ConfigError(f"{alias.old}: is {alias.new} here, but {where} is not a mapping")
    target[alias.new.rsplit(".", 1)[-1]] = value
    for path in alias.removes:
        parent = _parent(cfg, path, create=False)
        if parent is not None:
            parent.pop(path.rsplit(".", 1)[-1], None)


def apply_aliases(cfg: MutableMapping[str, Any]) -> None:
    """Map or refuse, in place, the original system's keys of a resolved config (see the module).

    Raises:
        ConfigError: a refused key, naming the key to use instead.
    """
    for alias in ALIASES:
        if _get(cfg, alias.old) is _ABSENT or not alias.applies(cfg):
            continue
        if alias.refused is not None:
            raise ConfigError(
                f"{alias.old}: a key of the original system; here use {alias.new}: {alias.refused} "
                f"(docs/migrating-from-the-original-system.md)"
            )
        _move(cfg, alias)
