"""The detector's defaults live in its builder: ``models/maskrcnn_fpn.yaml`` repeats them only so that
command lines can override them without ``+``, and every repeated value must be the builder's.

The packaged model configs build the modules they built before ``maskrcnn3d`` took modules:
``data/model_structure.json`` holds, per config, a digest of its state_dict's names and shapes
(regenerate with ``python packages/ls-train/tests/test_model_defaults.py`` after a deliberate change).
"""

from __future__ import annotations

import hashlib
import inspect
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from omegaconf import OmegaConf

import ls_train.configs
from ls_detection import builder
from ls_train.config import load_config
from ls_train.factory import build_model

CONFIGS = Path(ls_train.configs.__file__).resolve().parent
STRUCTURE = Path(__file__).resolve().parent / "data" / "model_structure.json"
# every models/* option: maskrcnn_fpn over each backbone option (the quickstart's is resnet18_fpn_small)
MODEL_CONFIGS = ("quickstart", "config_mrcnn_resnet", "config_mrcnn_hiera", "config_mrcnn_vitDet")
# keys of the YAML that are no arguments of the builder, or have no default there
NOT_DEFAULTS = ("name", "channels_last", "num_classes")
# the builder's arguments the YAML leaves out: the backbone section's, modules, and settings rarely
# changed (given as +models.key=value; the YAML's header names them)
LEFT_OUT = {
    "backbone", "backbone_kwargs", "fpn", "backbone_out_channels",
    "rpn_head", "box_roi_pool", "box_head", "box_predictor", "mask_roi_pool", "mask_head", "mask_predictor",
    "rpn_score_thresh", "box_fg_iou_thresh", "box_bg_iou_thresh", "bbox_reg_weights", "mask_dilation",
}


def _same(value: Any, default: Any) -> bool:
    if isinstance(value, (list, tuple)) and isinstance(default, (list, tuple)):
        return len(value) == len(default) and all(map(_same, value, default))
    return value == default


def test_the_yaml_repeats_the_builders_defaults() -> None:
    yaml = OmegaConf.to_container(OmegaConf.load(CONFIGS / "models" / "maskrcnn_fpn.yaml"))
    defaults = {k: p.default for k, p in inspect.signature(builder.maskrcnn3d).parameters.items()}
    assert set(defaults) - set(yaml) == LEFT_OUT, "a new maskrcnn3d argument: add it to the YAML or LEFT_OUT"
    anchors = yaml.pop("rpn_anchor_generator")
    assert set(anchors) == set(builder.ANCHOR_DEFAULTS)
    wrong = {f"rpn_anchor_generator.{k}": (v, builder.ANCHOR_DEFAULTS[k])
             for k, v in anchors.items() if not _same(v, builder.ANCHOR_DEFAULTS[k])}
    wrong |= {k: (v, defaults.get(k, "no such argument")) for k, v in yaml.items()
              if k not in NOT_DEFAULTS and not _same(v, defaults.get(k, inspect.Parameter.empty))}
    assert not wrong, f"maskrcnn_fpn.yaml values differ from maskrcnn3d's defaults (yaml, builder): {wrong}"


def _structure(name: str) -> dict[str, Any]:
    with torch.device("meta"):
        state = build_model(load_config(name)).state_dict()
    lines = "\n".join(f"{key} {tuple(value.shape)}" for key, value in state.items())
    return {"entries": len(state), "parameters": sum(v.numel() for v in state.values()),
            "sha256": hashlib.sha256(lines.encode()).hexdigest()}


@pytest.mark.parametrize("name", MODEL_CONFIGS)
def test_each_model_config_builds_the_recorded_modules(name: str) -> None:
    assert _structure(name) == json.loads(STRUCTURE.read_text())[name]


if __name__ == "__main__":
    STRUCTURE.write_text(json.dumps({name: _structure(name) for name in MODEL_CONFIGS}, indent=2) + "\n")
