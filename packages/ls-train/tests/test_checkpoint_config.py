"""The config a checkpoint carries: overrides on top of it, and an explicit config checked against it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from ls_train.checkpoint_config import (
    CONFIG_KEY,
    check_against_checkpoint,
    config_differences,
    config_from_checkpoint,
    saved_config,
)
from ls_train.config import ConfigError, load_config
from ls_train.trainer.checkpoint import save_state


@pytest.fixture()
def cfg(tmp_path: Path, tiny_overrides: Callable[..., list[str]]) -> dict:
    return load_config("quickstart", tiny_overrides(tmp_path, "cluster=local"))


def test_a_checkpoint_without_a_config_asks_for_config_name(tmp_path: Path) -> None:
    folder = tmp_path / "old"
    save_state(folder, {"model": {}})
    assert saved_config(folder) is None
    with pytest.raises(ConfigError, match=r"carries no experiment config .* --config-name=NAME"):
        config_from_checkpoint(str(folder), [])
    check_against_checkpoint({"models": {}}, str(folder))  # nothing to compare with: accepted


def test_overrides_apply_on_top_of_the_checkpoint_config(tmp_path: Path, cfg: dict) -> None:
    folder = tmp_path / "ckpt"
    save_state(folder, {"model": {}, CONFIG_KEY: json.dumps(cfg)})
    assert saved_config(folder) == cfg
    out = config_from_checkpoint(
        str(folder), [f"checkpoint={folder}", "evaluation.score_threshold=0.3", "+input=/x.tif", "~data"]
    )
    assert out["evaluation"]["score_threshold"] == 0.3 and out["input"] == "/x.tif" and "data" not in out
    assert out["models"] == cfg["models"] and out["checkpoint"] == str(folder)
    with pytest.raises(ConfigError, match=r"has no key 'evaluation.score_tresh'"):
        config_from_checkpoint(str(folder), ["evaluation.score_tresh=0.3"])
    with pytest.raises(ConfigError, match=r"only key=value overrides .* give --config-name"):
        config_from_checkpoint(str(folder), ["models/backbones=resnet50_fpn"])
    with pytest.raises(ConfigError, match=r"evaluation.score_threshold must be in \[0, 1\]"):
        config_from_checkpoint(str(folder), ["evaluation.score_threshold=3"])


def test_an_explicit_config_that_differs_is_refused_with_the_keys(tmp_path: Path, cfg: dict) -> None:
    folder = tmp_path / "ckpt"
    save_state(folder, {"model": {}, CONFIG_KEY: json.dumps(cfg)})
    check_against_checkpoint(cfg, str(folder))  # the same config: fine
    other = json.loads(json.dumps(cfg))
    other["models"]["box_score_thresh"] = 0.9
    other["transforms"]["eval_transforms_list"][0]["mode"] = "minmax"
    before = cfg["models"].get("box_score_thresh", "<absent>")
    assert config_differences(other, cfg) == [
        f"models.box_score_thresh: given 0.9, checkpoint {before!r}",
        "transforms.eval_transforms_list: given [{'name': 'normalize_intensity', 'mode': 'minmax'}], "
        "checkpoint [{'name': 'normalize_intensity', 'mode': 'percentile'}]",
    ]
    with pytest.raises(ConfigError, match=r"(?s)differs from the one that trained .*models.box_score_thresh.*"
                       r"accept_config_mismatch=true"):
        check_against_checkpoint(other, str(folder))
    check_against_checkpoint({**other, "accept_config_mismatch": True}, str(folder))


def test_how_the_weights_run_is_not_a_difference(tmp_path: Path, cfg: dict) -> None:
    """``models.channels_last`` (a runtime key) may differ from the checkpoint's, or be absent from
    the config of a checkpoint written before it existed."""
    older = json.loads(json.dumps(cfg))
    del older["models"]["channels_last"]
    folder = tmp_path / "ckpt"
    save_state(folder, {"model": {}, CONFIG_KEY: json.dumps(older)})
    check_against_checkpoint(cfg, str(folder))
    other = json.loads(json.dumps(cfg))
    other["models"]["channels_last"] = not cfg["models"]["channels_last"]
    assert config_differences(other, cfg) == []


def _written_before(cfg: dict, *keys: str) -> dict:
    """``cfg`` as a checkpoint written before the settings ``keys`` (``section.key``) existed."""
    old = json.loads(json.dumps(cfg))
    for key in keys:
        section, leaf = key.split(".")
        del old[section][leaf]
    return old


def test_settings_newer_than_the_checkpoint_take_todays_defaults_and_are_named(
    tmp_path: Path, cfg: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "ckpt"
    new = ("evaluation.min_visible_fraction", "predict.min_visible_fraction")
    save_state(folder, {"model": {}, CONFIG_KEY: json.dumps(_written_before(cfg, *new))})
    assert "min_visible_fraction" not in saved_config(folder)["evaluation"]  # as stored
    assert capsys.readouterr().err == ""
    out = config_from_checkpoint(str(folder), ["evaluation.min_visible_fraction=0"])  # no + needed
    assert out["evaluation"]["min_visible_fraction"] == 0
    assert out["predict"]["min_visible_fraction"] == cfg["predict"]["min_visible_fraction"] == 0.5
    err = capsys.readouterr().err
    assert str(folder) in err and all(f"{key}=0.5" in err for key in new)
    # a current checkpoint: nothing to fill, nothing said
    save_state(folder, {"model": {}, CONFIG_KEY: json.dumps(cfg)})
    assert config_from_checkpoint(str(folder), [])["evaluation"] == cfg["evaluation"]
    assert capsys.readouterr().err == ""
