from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from ls_train.config import ConfigError, load_config
from ls_train.factory import build_metrics, build_model, build_transforms, model_kwargs

REPO = Path(__file__).resolve().parents[3]
PLUGIN = REPO / "tests" / "plugins" / "ls-toy-backbone"


def _sample(z: int = 8, y: int = 32, x: int = 32) -> tuple[torch.Tensor, dict]:
    masks = torch.zeros(1, z, y, x, dtype=torch.uint8)
    masks[0, 2:6, 8:20, 10:22] = 1
    target = {
        "boxes": torch.tensor([[2.0, 8.0, 10.0, 6.0, 20.0, 22.0]]),
        "labels": torch.tensor([1]),
        "masks": masks,
    }
    return torch.rand(1, z, y, x), target


def test_backbone_section_maps_to_the_detector_arguments() -> None:
    kwargs = model_kwargs(load_config("quickstart"))
    assert kwargs["backbone"] == "resnet3d_18"
    assert kwargs["fpn"] == {"out_channels": 32, "extra_pool": True}
    assert kwargs["backbone_kwargs"]["stem_stride"] == [1, 2, 2] and "name" not in kwargs["backbone_kwargs"]
    assert kwargs["num_classes"] == 2 and "backbones" not in kwargs


def test_the_quickstart_model_trains_one_step(tiny_model: list[str]) -> None:
    model = build_model(load_config("quickstart", tiny_model))
    image, target = _sample()
    losses = model([image], [target])
    assert set(losses) == {
        "loss_objectness",
        "loss_rpn_box_reg",
        "loss_classifier",
        "loss_box_reg",
        "loss_mask",
    }
    sum(losses.values()).backward()


def test_a_detector_by_target_path(tiny_model: list[str]) -> None:
    cfg = load_config(
        "quickstart", [*tiny_model, "~models.name", "+models._target_=ls_detection.builder.maskrcnn3d"]
    )
    assert type(build_model(cfg)).__name__ == "MaskRCNN3D"


def test_builder_errors_name_the_section(tiny_model: list[str]) -> None:
    """A value the builder rejects fails in load_config already (the model is built on the meta
    device there) and in build_model with the same message."""
    overrides = [*tiny_model, "models.rpn_anchor_generator.sizes=[[8],[16],[32],[64]]"]
    with pytest.raises(ConfigError, match=r"models \(backbone 'resnet3d_18'\).*sizes"):
        load_config("quickstart", overrides)
    cfg = load_config("quickstart", tiny_model)
    cfg["models"]["rpn_anchor_generator"]["sizes"] = [[8], [16], [32], [64]]
    with pytest.raises(ConfigError, match=r"models \(backbone 'resnet3d_18'\).*sizes"):
        build_model(cfg)


def test_metrics_and_transforms_come_from_their_registries() -> None:
    cfg = load_config("quickstart")
    assert [type(m).__name__ for m in build_metrics(cfg)] == ["MatchingMetric", "CocoAPMetric"]
    assert len(build_transforms(cfg, train=True)) == 3 and len(build_transforms(cfg, train=False)) == 1


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("plugin-site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            "--no-build-isolation",
            "--target",
            str(target),
            str(PLUGIN),
        ],
        check=True,
    )
    return target


@pytest.mark.slow(seconds=9)
def test_a_third_party_backbone_is_selected_by_an_override(plugin_site: Path, tmp_path: Path) -> None:
    (tmp_path / "models" / "backbones").mkdir(parents=True)
    (tmp_path / "models" / "backbones" / "toy.yaml").write_text(
        "name: toy3d\nfpn:\n  out_channels: 8\nin_channels: 1\nwidth: 4\n"
    )
    code = f"""
        import sys, torch
        from ls_train.config import ConfigError, load_config
        from ls_train.factory import build_model
        cfg = load_config("quickstart", ["models/backbones=toy", "models.rpn_anchor_generator.sizes=null",
                                         "models.mask_layers=[8]", "models.box_representation_size=32"],
                          config_dirs=[{str(tmp_path)!r}])
        model = build_model(cfg)
        assert type(model.backbone.body).__module__ == "ls_toy_backbone", type(model.backbone.body)
        masks = torch.zeros(1, 8, 32, 32, dtype=torch.uint8); masks[0, 2:6, 8:20, 10:22] = 1
        target = {{"boxes": torch.tensor([[2.0, 8.0, 10.0, 6.0, 20.0, 22.0]]), "labels": torch.tensor([1]),
                   "masks": masks}}
        losses = model([torch.rand(1, 8, 32, 32)], [target])
        sum(losses.values()).backward()
        try:
            load_config("quickstart", ["models/backbones=toy", "+models.backbones.depth=3"],
                        config_dirs=[{str(tmp_path)!r}])
        except ConfigError as exc:
            assert "depth" in str(exc) and "width" in str(exc), exc
        else:
            raise SystemExit("a bad plugin argument was accepted")
        print("ok")
    """
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(plugin_site), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("ok")
