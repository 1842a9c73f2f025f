from __future__ import annotations

from pathlib import Path

import pytest

from ls_train.config import (
    ConfigError,
    check_score_attribute,
    compose_config,
    config_search_path,
    load_config,
)
from ls_train.trainer import train

EXPERIMENTS = [
    "config_mrcnn_resnet",
    "config_mrcnn_vitDet",
    "config_mrcnn_hiera",
    "skittlez_evaluation_resnet",
    "skittlez_evaluation_vitDet",
    "skittlez_evaluation_hiera",
    "quickstart",
]


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_packaged_experiment_composes_and_validates(name: str) -> None:
    cfg = load_config(name)
    assert cfg["models"]["name"] == "maskrcnn3d"
    # the seed's experiments rank checkpoints by ap@50; the quickstart by COCO mask AP (0.5:0.95)
    expected = "coco_mask_ap" if name == "quickstart" else "ap@50"
    assert cfg["trainer"]["checkpoint_score_attribute"] == expected
    assert cfg["trainer"]["run_name"]
    assert set(cfg) <= {
        "models",
        "datasets",
        "transforms",
        "metrics",
        "trainer",
        "cluster",
        "evaluation",
        "data",
        "checkpoint",
        "predict",
        "input",
        "output",
        "overwrite",
        "accept_config_mismatch",
        "pred",
        "gt",
    }
    assert cfg["predict"]["segmenter"] == "detector" and cfg["input"] is None
    assert cfg["accept_config_mismatch"] is False and cfg["trainer"]["verbose"] is False


def test_the_seed_defaults_list_picks_the_backbone_group() -> None:
    assert load_config("config_mrcnn_hiera")["models"]["backbones"]["name"] == "hiera3d_t"
    assert load_config("config_mrcnn_vitDet")["models"]["backbones"]["name"] == "vitdet3d_s_sfp"
    swapped = load_config("config_mrcnn_hiera", ["models/backbones=resnet_fpn", "cluster=cpu"])
    assert swapped["models"]["backbones"]["name"] == "resnet3d_50"
    assert swapped["cluster"]["num_workers"] == 2


@pytest.mark.parametrize("option", ["quickstart", "quickstart_lightsheet"])
def test_the_quickstart_transforms_options_build(option: str) -> None:
    """``transforms=quickstart_lightsheet`` replaces the quickstart's augmentation (the group option
    is not overridden by the experiment), and every entry builds."""
    from ls_train.factory import build_transforms

    cfg = load_config("quickstart", [f"transforms={option}"])
    names = [entry["name"] for entry in cfg["transforms"]["transforms_list"]]
    assert names[:3] == ["normalize_intensity", "random_flip", "random_rot90_yx"]
    extra = ["random_zoom", "random_blur", "random_intensity_scale"]
    assert names[3:] == (extra if option == "quickstart_lightsheet" else [])
    assert len(build_transforms(cfg, train=True).transforms) == len(names)


def test_overrides_replace_scalars_and_lists() -> None:
    cfg = load_config("quickstart", ["trainer.epochs=3", "models.rpn_anchor_generator.sizes=[[4],[8],[16]]"])
    assert cfg["trainer"]["epochs"] == 3
    assert cfg["models"]["rpn_anchor_generator"]["sizes"] == [[4], [8], [16]]


def test_a_misspelled_override_lists_the_valid_keys() -> None:
    with pytest.raises(
        ConfigError, match=r"trainer\.epcohs: unknown key\. Did you mean 'epochs'\?.*max_bad_steps"
    ):
        compose_config("quickstart", ["trainer.epcohs=3"])


def test_an_unknown_group_option_lists_the_options() -> None:
    with pytest.raises(ConfigError, match=r"(?s)hiera_fnp.*Available options.*hiera_fpn.*resnet_fpn.*vitdet"):
        compose_config("config_mrcnn_hiera", ["models/backbones=hiera_fnp"])


def test_an_unknown_experiment_is_an_error() -> None:
    with pytest.raises(ConfigError, match="quickstrat"):
        compose_config("quickstrat")


@pytest.mark.parametrize(
    ("override", "pattern"),
    [
        (
            "models.backbones.name=resnet3d_5O",
            r"models\.backbones\.name: unknown backbone 'resnet3d_5O'.*resnet3d_50",
        ),
        (
            "models.name=maskrcnn2d",
            r"models\.name: unknown detector 'maskrcnn2d'.*Known detectors: .*maskrcnn3d",
        ),
        ("datasets.database.name=skitlez", r"datasets\.database\.name: unknown dataset 'skitlez'.*skittlez"),
        (
            "transforms.transforms_list.1.name=random_flp",
            r"transforms_list\[1\]\.name: unknown transform.*random_flip",
        ),
        (
            "metrics.metrics_list.0.name=matchin",
            r"metrics_list\[0\]\.name: unknown metric 'matchin'.*coco_ap.*matching",
        ),
        ("+models.box_score_tresh=0.1", r"models\.box_score_tresh: .*Did you mean 'box_score_thresh'"),
        ("+datasets.database.crop_shap=[1,2,3]", r"datasets\.database\.crop_shap:.*crop_shape"),
        ("+metrics.metrics_list.0.threshold=0.5", r"metrics_list\[0\]\.threshold:.*thresholds"),
        ("+transforms.transforms_list.0.mod=x", r"transforms_list\[0\]\.mod:.*mode"),
        ("+cluster.num_worker=2", r"cluster\.num_worker: unknown key.*num_workers"),
        ("trainer.amp=fp8", r"trainer\.amp must be one of auto, bf16, none"),
        ("+foo=1", r"config\.foo: unknown key"),
        # bad values and keys that only the builders can judge: built once (the model on the meta device)
        ("metrics.metrics_list=[{name: matching, criterion: iuo}]", r"list\[0\]: matching: criterion"),
        ("+models.backbones.depthh=3", r"backbone 'resnet3d_18'.*depthh"),
        ("+models.backbones.fpn.out_chanels=8", r"fpn3d.*out_chanels"),
        ("+data.synthesize.num_volume=3", r"data\.synthesize\.num_volume:.*num_volumes"),
        ("evaluation.num_mip_crops=-1", r"evaluation\.num_mip_crops must be >= 0"),
        ("evaluation.min_visible_fraction=1.5", r"evaluation\.min_visible_fraction must be in \[0, 1\]"),
        ("predict.min_visible_fraction=-0.5", r"predict\.min_visible_fraction must be in \[0, 1\]"),
        ("predict.border_margin=0", r"predict\.border_margin must be >= 1"),
        ("predict.threshold_segmenter.channel=-1", r"threshold_segmenter\.channel must be an int >= 0"),
        ("predict.gpus_per_worker=-1", r"predict\.gpus_per_worker must be >= 0"),
        ("predict.table=objects.xlsx", r"predict\.table must end in \.csv or \.parquet"),
        # values the data package judges, checked before Ray starts or an index is built
        ("datasets.batch_size=0", r"datasets\.batch_size must be an int >= 1, got 0"),
        ("datasets.num_workers=-1", r"datasets\.num_workers must be an int >= 0"),
        ("datasets.val_fraction=1.5", r"datasets\.val_fraction must be a number in \[0, 1\)"),
        ("trainer.weight_decay=-1", r"trainer\.weight_decay must be >= 0"),
        ("transforms.transforms_list.1.p=7", r"transforms_list\[1\].*RandomFlip: p must be a probability"),
        ("datasets.database.crop_shape=[0,64,64]", r"datasets\.database: crop_shape must be >= 1"),
        ("+evaluation.database.stride=[8,-1,8]", r"evaluation\.database: stride must be >= 1"),
    ],
)
def test_bad_names_and_keys_fail_before_any_work(override: str, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        load_config("quickstart", [override])


@pytest.mark.slow(seconds=7)
def test_the_checkpoint_score_is_a_loss_or_a_metric_key() -> None:
    for score in ("loss", "loss_mask", "coco_mask_ap", "f1@75_pooled"):
        check_score_attribute(load_config("quickstart", [f"trainer.checkpoint_score_attribute={score}"]))
    cfg = load_config("quickstart", ["trainer.checkpoint_score_attribute=ap50"])  # ls-evaluate takes it
    with pytest.raises(ConfigError, match=r"score_attribute: 'ap50' is not reported.*ap@50"):
        check_score_attribute(cfg)
    with pytest.raises(ConfigError, match="ap50"):
        train(cfg)  # before any work


def test_a_misspelled_key_in_a_yaml_file_is_caught(tmp_path: Path) -> None:
    (tmp_path / "mine.yaml").write_text("defaults:\n  - quickstart\n  - _self_\n\ntrainer:\n  epcohs: 3\n")
    with pytest.raises(ConfigError, match=r"trainer\.epcohs: unknown key\. Did you mean 'epochs'"):
        load_config("mine", config_dirs=[tmp_path])


def test_config_dirs_add_and_override_packaged_configs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = tmp_path / "user"
    (user / "trainer").mkdir(parents=True)
    (user / "trainer" / "default.yaml").write_text("max_failures: 7\n")
    (user / "mine.yaml").write_text("defaults:\n  - quickstart\n  - _self_\n\ntrainer:\n  lr: 0.5\n")
    cfg = load_config("mine", config_dirs=[user])
    assert cfg["trainer"]["max_failures"] == 7 and cfg["trainer"]["lr"] == 0.5
    # the repository's ./configs is searched after --config-dir and before the package
    repo = tmp_path / "repo"
    (repo / "configs" / "cluster").mkdir(parents=True)
    (repo / "configs" / "cluster" / "cpu.yaml").write_text("num_workers: 1\nuse_gpu: false\n")
    monkeypatch.chdir(repo)
    assert config_search_path()[-2:] == [f"file://{(repo / 'configs').resolve()}", "pkg://ls_train.configs"]
    assert load_config("quickstart")["cluster"]["num_workers"] == 1
    with pytest.raises(ConfigError, match="not a directory"):
        config_search_path([tmp_path / "absent"])
