"""Configs written as the original system's README shows them (spec/seed-readme.md) compose and train:
missing sections take the packaged defaults, backbones come by ``_target_`` (a bare-tensor one
too), and the original key names are mapped or refused with the new name."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from ls_train.config import (
    DEFAULT_SECTIONS,
    ConfigError,
    cluster_config,
    compose_config,
    evaluation_config,
    finish_config,
    load_config,
    section_defaults,
    trainer_config,
)
from ls_train.config_aliases import ALIASES, apply_aliases
from ls_train.factory import build_model
from ls_train.predict.config import predict_config
from ls_train.trainer import load_state, train

REPO = Path(__file__).resolve().parents[3]
HELPERS = Path(__file__).resolve().parent / "helpers"

# the README's "1. Select Base Configurations", as a user copies it
SKELETON = """\
defaults:
  - models:           maskrcnn_fpn
  - models/backbones: hiera_fpn
  - datasets:         skittlez
  - transforms:       transforms_skittlez
  - metrics:          metrics
  - _self_            # load this file's overrides last
"""

# the README's "2. Override Only What You Need", less its backbone swap (tested on its own below)
OVERRIDES = """
# Change batch size
datasets:
  batch_size: 4

# Adjust RPN anchor sizes
models:
  rpn_anchor_generator:
    sizes:
      - [16, 32, 64]
      - [32, 64, 128]
  backbones:
    out_features: [p2]   # p2 and the FPN's pooled p3: one level per list of sizes
"""

# what the tests shrink on the command line (heads, proposals, loader processes)
SMALL = (
    "models.backbones.fpn.out_channels=8",
    "models.mask_layers=[8]",
    "models.mask_dim_reduced=8",
    "models.box_representation_size=32",
    "models.rpn_pre_nms_top_n_train=100",
    "models.rpn_post_nms_top_n_train=50",
    "models.rpn_pre_nms_top_n_test=50",
    "models.rpn_post_nms_top_n_test=20",
    "datasets.num_workers=0",
)


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def indices(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthetic dataset and the two crop indices the packaged ``datasets: skittlez`` and
    ``evaluation: default`` read from ``$LS_INDEX_DIR`` (what ``ls-data index build`` makes)."""
    from ls_data.catalog import Selection
    from ls_data.index import CropIndexConfig, build_crop_index
    from ls_data.synth import synthesize_dataset

    root = tmp_path_factory.mktemp("seed")
    synthesize_dataset(
        root / "data", num_volumes=3, shape=(8, 32, 32), num_objects=6, num_classes=1, channels=1,
        formats=["tiff"], val_fraction=0.34,
    )  # fmt: skip
    for split in ("train", "val"):
        build_crop_index(
            index_path=root / "indices" / f"skittlez_{split}.sqlite",
            config=CropIndexConfig(crop_shape=(8, 32, 32)),
            catalog=f"sqlite:///{root / 'data' / 'catalog.sqlite'}",
            selection=Selection(splits=[split]),
        )
    return root / "indices"


@pytest.fixture
def configs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``tmp_path/configs`` (the user's config folder), with the test backbones importable."""
    monkeypatch.syspath_prepend(str(HELPERS))
    return tmp_path / "configs"


def _sample(z: int = 8, y: int = 32, x: int = 32) -> tuple[torch.Tensor, dict]:
    masks = torch.zeros(1, z, y, x, dtype=torch.uint8)
    masks[0, 2:6, 8:20, 10:22] = 1
    target = {"boxes": torch.tensor([[2.0, 8.0, 10.0, 6.0, 20.0, 22.0]]), "labels": torch.tensor([1])}
    return torch.rand(1, z, y, x), {**target, "masks": masks}


def _train_step_and_predict(model: torch.nn.Module) -> list[dict]:
    image, target = _sample()
    losses = model([image], [target])
    assert len(losses) == 5 and all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    return model.predict([image])


# -- missing sections --------------------------------------------------------------------------


@pytest.mark.slow(seconds=8)
def test_the_seed_skeleton_composes_and_trains_one_step(
    configs: Path, indices: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The skeleton selects no trainer, cluster, evaluation or predict: they come from the
    packaged options, so it trains in this process and validates on the held-out index."""
    monkeypatch.setenv("LS_INDEX_DIR", str(indices))
    _write(configs, "seed_experiment", SKELETON + OVERRIDES)
    trainer = ("+trainer.epochs=1", "+trainer.max_steps_per_epoch=1", f"+trainer.runs_root={tmp_path}")
    cfg = load_config("seed_experiment", [*SMALL, *trainer], config_dirs=[configs])
    assert cfg["datasets"]["batch_size"] == 4
    assert cfg["models"]["rpn_anchor_generator"]["sizes"] == [[16, 32, 64], [32, 64, 128]]
    assert cfg["cluster"]["num_workers"] == 0 and cfg["trainer"]["run_name"] == "seed_experiment"
    assert cfg["evaluation"]["database"]["index_path"] == str(indices / "skittlez_val.sqlite")
    result = train(cfg)
    assert not result.stopped and result.latest_checkpoint is not None
    assert load_state(result.latest_checkpoint)["global_iter"] == 1
    assert "ap@50" in result.metrics  # validated on evaluation/default's held-out crops


def test_missing_sections_are_the_packaged_options_and_nothing_is_printed(
    configs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    explicit = SKELETON.replace(
        "  - _self_",
        "  - trainer: default\n  - cluster: local\n  - evaluation: default\n  - predict: default\n  - _self_",
    )
    _write(configs, "implicit", SKELETON + OVERRIDES)
    _write(configs, "explicit", explicit + OVERRIDES)
    implicit_cfg = load_config("implicit", config_dirs=[configs])
    assert capsys.readouterr().out == ""
    explicit_cfg = finish_config(compose_config("explicit", config_dirs=[configs]), "implicit")
    assert implicit_cfg == explicit_cfg
    for section in DEFAULT_SECTIONS:
        for key, value in section_defaults(section).items():
            expected = {**value, "run_name": "implicit"} if key == "trainer" else value
            assert implicit_cfg[key] == expected, key


def _tuples(value: object) -> object:
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def test_the_packaged_defaults_agree_with_the_dataclasses_but_for_the_held_out_database() -> None:
    """A section given in part takes the dataclass defaults for its other keys: they must not
    drift from the packaged options that a missing section gets."""
    for section, check in (
        ("trainer", trainer_config),
        ("cluster", cluster_config),
        ("evaluation", evaluation_config),
        ("predict", predict_config),
    ):
        packaged = section_defaults(section)
        if section == "evaluation":
            assert packaged["evaluation"].pop("database")["name"] == "skittlez"
        assert _tuples(dataclasses.asdict(check(packaged))) == _tuples(dataclasses.asdict(check({}))), section
    assert section_defaults("predict")["accept_config_mismatch"] is False


def test_a_section_given_is_kept(configs: Path) -> None:
    _write(configs, "cpu_seed", SKELETON.replace("  - _self_", "  - cluster: cpu\n  - _self_") + OVERRIDES)
    cfg = load_config("cpu_seed", ["+evaluation.database=null"], config_dirs=[configs])
    assert cfg["cluster"]["num_workers"] == 2
    assert cfg["evaluation"] == {"database": None}  # present: not completed from evaluation/default


# -- _target_ backbones ------------------------------------------------------------------------


def test_a_target_backbone_is_wrapped_by_the_fpn_and_trains(configs: Path) -> None:
    _write(
        configs / "models" / "backbones",
        "tiny_body",
        "_target_: seed_backbones.TinyBody\nwidth: 4\nfpn: {out_channels: 8, extra_pool: false}\n",
    )
    _write(configs, "mine", SKELETON.replace("hiera_fpn", "tiny_body") + OVERRIDES.split("  backbones:")[0])
    cfg = load_config("mine", [o for o in SMALL if "fpn" not in o], config_dirs=[configs])
    model = build_model(cfg)
    assert type(model.backbone).__name__ == "BackboneWithFPN3D"
    assert type(model.backbone.body).__name__ == "TinyBody" and model.feature_names == ("p2", "p3")
    _train_step_and_predict(model)
    with pytest.raises(ConfigError, match=r"models\.backbones\.widht: TinyBody takes no argument.*width"):
        load_config("mine", ["+models.backbones.widht=3"], config_dirs=[configs])


@pytest.mark.slow(seconds=7)
def test_the_seeds_backbone_swap_gives_a_bare_tensor_backbone_that_trains_and_predicts(configs: Path) -> None:
    """``backbone_target`` and ``backbone_out_channels`` of the README's override example, with a
    backbone that returns one tensor and declares no channels: one feature level."""
    skeleton = SKELETON.replace("  - models/backbones: hiera_fpn\n", "")
    swap = (
        "backbone_target: seed_backbones.BareTensorNet\nbackbone_out_channels: 8\n"
        "models:\n  rpn_anchor_generator:\n    sizes: [[8, 16]]\n"
    )
    _write(configs, "swap", skeleton + swap)
    cfg = load_config("swap", [o for o in SMALL if "fpn" not in o], config_dirs=[configs])
    assert cfg["models"]["backbones"] == {"_target_": "seed_backbones.BareTensorNet"}
    assert cfg["models"]["backbone_out_channels"] == 8 and "backbone_target" not in cfg
    model = build_model(cfg)
    assert model.feature_names == ("0",)
    (pred,) = _train_step_and_predict(model)
    assert pred["boxes"].shape[1] == 6 and pred["masks"].shape[-3:] == (8, 32, 32)

    _write(configs, "no_channels", skeleton + swap.replace("backbone_out_channels: 8\n", ""))
    with pytest.raises(ConfigError, match=r"seed_backbones\.BareTensorNet' declares no output channels"):
        load_config("no_channels", config_dirs=[configs])
    # declared by the module itself (torchvision's out_channels), it needs no config key
    declared = load_config("no_channels", ["+models.backbones.declare_channels=true"], config_dirs=[configs])
    assert build_model(declared).feature_names == ("0",)
    # a swap over a selected option: that option's keys are the target's arguments (Hydra's rule)
    _write(configs, "over_hiera", SKELETON + swap)
    with pytest.raises(ConfigError, match=r"models\.backbones\.\w+: BareTensorNet takes no argument"):
        load_config("over_hiera", config_dirs=[configs])


def test_the_seeds_own_class_path_is_refused_with_a_pointer(configs: Path) -> None:
    _write(configs, "literal", SKELETON + "backbone_target: segmentation.models.backbones.resnet.ResNet\n")
    with pytest.raises(ConfigError, match=r"(?s)models\.backbones\._target_: cannot import.*original system"):
        load_config("literal", config_dirs=[configs])


def test_name_and_target_together_say_where_the_name_comes_from(configs: Path) -> None:
    _write(configs, "both", SKELETON + "models:\n  backbones:\n    _target_: seed_backbones.TinyBody\n")
    with pytest.raises(ConfigError, match=r"exactly one of 'name'.*'hiera3d_t' likely comes from a group"):
        load_config("both", config_dirs=[configs])


# -- aliases -----------------------------------------------------------------------------------


def _put(cfg: dict, path: str, value: object) -> None:
    *parents, leaf = path.split(".")
    for part in parents:
        cfg = cfg.setdefault(part, {})
    cfg[leaf] = value


def _scoped_config(alias) -> dict:
    """A config in which ``alias`` applies (its detector or backbone is the built-in one)."""
    name = {
        "ViTDet3D backbones": "vitdet3d_s",
        "vitdet3d_*_sfp": "vitdet3d_s_sfp",
        "Hiera3D backbones": "hiera3d_t",
        "ResNet3D backbones": "resnet3d_50",
    }.get(alias.scope, "resnet3d_18")
    return {
        "models": {"name": "maskrcnn3d", "backbones": {"name": name, "fpn": {"out_channels": 8}}},
        "datasets": {"batch_size": 2},
    }


@pytest.mark.parametrize("alias", ALIASES, ids=lambda a: a.old)
def test_each_original_key_maps_or_is_refused_with_the_new_name(alias) -> None:
    cfg = _scoped_config(alias)
    _put(cfg, alias.old, [7])
    if alias.refused is not None:
        pattern = rf"{alias.old}: a key of the original system; here use {alias.new}"
        with pytest.raises(ConfigError, match=pattern):
            apply_aliases(cfg)
        return
    apply_aliases(cfg)
    probe = cfg
    for part in alias.new.split("."):
        probe = probe[part]
    assert probe == [7]
    parent = cfg
    for part in alias.old.split(".")[:-1]:
        parent = parent[part]
    assert alias.old.rsplit(".", 1)[-1] not in parent
    for removed in alias.removes:
        assert removed.rsplit(".", 1)[-1] not in cfg["models"]["backbones"]


def test_backbone_aliases_apply_only_to_the_built_in_backbones() -> None:
    cfg = {"models": {"name": "maskrcnn3d", "backbones": {"_target_": "my.Net", "image_size": 64}}}
    apply_aliases(cfg)  # a target keeps its own argument names
    assert cfg["models"]["backbones"] == {"_target_": "my.Net", "image_size": 64}


def test_vitdet_and_loader_names_of_the_seed_compose() -> None:
    cfg = load_config(
        "config_mrcnn_vitDet",
        [
            "+models.backbones.image_size=[16,64,64]",
            "+models.backbones.pretrain_image_size=[32,128,128]",
            "+worker_batch_size=3",
        ],
    )
    backbones = cfg["models"]["backbones"]
    assert backbones["img_size"] == [16, 64, 64] and backbones["pretrain_img_size"] == [32, 128, 128]
    assert "image_size" not in backbones and "pretrain_image_size" not in backbones
    assert cfg["datasets"]["batch_size"] == 3 and "worker_batch_size" not in cfg


def test_the_migration_page_lists_every_alias() -> None:
    page = (REPO / "docs" / "migrating-from-the-original-system.md").read_text()
    for alias in ALIASES:
        assert f"`{alias.old}`" in page and f"`{alias.new}`" in page, alias.old
    for link in (REPO / "README.md", REPO / "packages" / "ls-train" / "README.md"):
        assert "migrating-from-the-original-system.md" in link.read_text(), link
