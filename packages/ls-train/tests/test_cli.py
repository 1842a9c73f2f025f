"""ls-train / ls-evaluate command lines: errors, --cfg, train-then-evaluate, mismatched weights."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import zarr

from ls_train.cli import evaluate_main, main, predict_main, train_main


@pytest.mark.slow(seconds=6)
def test_a_misspelled_key_exits_2_listing_the_valid_keys(capsys) -> None:
    assert train_main(["--config-name=quickstart", "trainer.epcohs=1"]) == 2
    err = capsys.readouterr().err
    assert "ls-train: error:" in err and "Did you mean 'epochs'" in err and "max_bad_steps" in err


def test_an_unknown_backbone_exits_2_listing_the_known_ones(capsys) -> None:
    assert (
        evaluate_main(
            [
                "--config-name",
                "skittlez_evaluation_resnet",
                "models.backbones.name=resnet3d_51",
                "checkpoint=x",
            ]
        )
        == 2
    )
    assert "unknown backbone 'resnet3d_51'" in capsys.readouterr().err


def test_cfg_job_prints_the_resolved_yaml(capsys) -> None:
    assert train_main(["-cn", "config_mrcnn_vitDet", "--cfg", "job", "--resolve", "trainer.epochs=4"]) == 0
    out = capsys.readouterr().out
    assert "name: vitdet3d_s_sfp" in out and "epochs: 4" in out and "run_name: mrcnn_vitDet" in out


@pytest.mark.slow(seconds=5)
def test_evaluate_needs_a_checkpoint(capsys) -> None:
    assert evaluate_main(["--config-name=skittlez_evaluation_hiera"]) == 2
    assert "checkpoint=PATH" in capsys.readouterr().err
    assert evaluate_main(["--config-name=skittlez_evaluation_hiera", "checkpoint=/nonexistent/state.pt"]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main([]) == 2


TINY_RUN = ("trainer.epochs=1", "trainer.warmup_iters=1", "cluster=local")


@pytest.mark.slow(seconds=51)
def test_train_then_evaluate_end_to_end(
    tmp_path: Path, tiny_overrides: Callable[..., list[str]], capsys
) -> None:
    common = tiny_overrides(tmp_path, *TINY_RUN)
    run = subprocess.run(
        [sys.executable, "-m", "ls_train.cli", "train", "--config-name=quickstart", *common],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = run.stdout
    assert "generating the synthetic dataset" in out and "epoch 1/1 [" in out
    assert "evaluating" in out and "ap " in out and "results in" in out
    evaluation = tmp_path / "runs" / "quickstart" / "evaluation"
    assert (evaluation / "metrics.json").exists() and (evaluation / "metrics_vs_iou.png").exists()
    hydra_dir = tmp_path / "runs" / "quickstart" / ".hydra"  # Hydra's record of the run
    assert "trainer.epochs=1" in (hydra_dir / "overrides.yaml").read_text()
    assert "epochs: 1" in (hydra_dir / "config.yaml").read_text()
    result = json.loads((tmp_path / "runs" / "quickstart" / "result.json").read_text())
    assert result["status"] == 0 and "ap@50" in result["metrics"]
    checkpoint = next((tmp_path / "runs" / "quickstart" / "checkpoints").glob("checkpoint_*"))

    assert (
        evaluate_main(
            [
                "--config-name=quickstart",
                *common,
                f"checkpoint={checkpoint}",
                f"evaluation.output_dir={tmp_path / 'eval'}",
            ]
        )
        == 0
    )
    assert (tmp_path / "eval" / "metrics_summary.csv").exists()

    # the checkpoint carries its config: no --config-name, same metrics; a differing one is refused
    assert evaluate_main([f"checkpoint={checkpoint}", f"evaluation.output_dir={tmp_path / 'eval2'}"]) == 0
    first, second = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("eval", "eval2"))
    assert first["summary"] == second["summary"]
    wrong = ["--config-name=quickstart", *common, f"checkpoint={checkpoint}", "models.box_score_thresh=0.3"]
    assert evaluate_main(wrong) == 2
    err = capsys.readouterr().err
    assert "differs from the one that trained" in err and "models.box_score_thresh: given 0.3" in err
    accepted = [*wrong, "accept_config_mismatch=true", f"evaluation.output_dir={tmp_path / 'eval3'}"]
    assert evaluate_main(accepted) == 0

    # ls-predict from the checkpoint alone labels a volume as with the right --config-name
    volume = next((tmp_path / "data" / "tiff").glob("*_image.tif"))
    outputs = {}
    for name, extra in (("with", ["--config-name=quickstart", *common]), ("without", [])):
        out = tmp_path / f"{name}.ome.zarr"
        args = [*extra, f"checkpoint={checkpoint}", f"input={volume}", f"output={out}"]
        assert predict_main([*args, "predict.tile_shape=[8,32,32]", "predict.overlap=[2,8,8]"]) == 0
        outputs[name] = zarr.open_group(str(out), mode="r")["labels/instances/0"][:]
    assert (outputs["with"] == outputs["without"]).all()


def test_weights_of_another_model_config_are_refused(
    tmp_path: Path, tiny_overrides: Callable[..., list[str]], capsys
) -> None:
    import torch

    from ls_train.config import load_config
    from ls_train.factory import build_model
    from ls_train.trainer.checkpoint import model_state_dict, save_state

    common = tiny_overrides(tmp_path, *TINY_RUN)
    torch.manual_seed(0)
    other = build_model(load_config("quickstart", [*common, "models.backbones.fpn.out_channels=16"]))
    path = save_state(tmp_path / "other", {"model": model_state_dict(other)})
    assert evaluate_main(["--config-name=quickstart", *common, f"checkpoint={path}"]) == 2
    err = capsys.readouterr().err
    assert "does not fit the model" in err and "shape mismatch" in err and "backbone.fpn" in err


@pytest.mark.parametrize("script", ["ls-train", "ls-evaluate"])
@pytest.mark.slow(seconds=12)
def test_console_scripts_are_installed_and_answer(script: str) -> None:
    exe = Path(sys.executable).parent / script
    assert exe.exists(), f"{script} is not installed next to {sys.executable}: a packaging break"
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "--config-name" in out.stdout


def test_a_gpu_config_without_a_gpu_fails_at_once(capsys) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert train_main(["--config-name=config_mrcnn_resnet"]) == 2
    assert "cluster.use_gpu=true but this machine has no CUDA device" in capsys.readouterr().err
