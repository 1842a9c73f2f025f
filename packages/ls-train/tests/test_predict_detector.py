"""ls-predict with a Mask R-CNN checkpoint: Ray workers, checkpoint checks, the command line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ls_data.io import open_labels, write_ome_zarr
from ls_train.cli import predict_main
from ls_train.config import load_config
from ls_train.factory import build_model
from ls_train.predict import run_prediction
from ls_train.trainer import CheckpointError


def _cfg(tmp_path: Path, tiny_model, *extra: str) -> dict:
    return load_config(
        "quickstart",
        [
            f"data.root={tmp_path / 'data'}",
            *tiny_model,
            "models.rpn_post_nms_top_n_test=30",
            "models.box_score_thresh=0.0",
            "predict.score_threshold=0.0",
            "predict.mask_threshold=0.45",
            "predict.tile_shape=[8,32,32]",
            "predict.overlap=[2,8,8]",
            "predict.chunks=[8,16,16]",
            "predict.progress=false",
            *extra,
        ],
    )


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_model):
    """A volume and the weights of an untrained (seeded) tiny model: deterministic predictions."""
    from ls_data.synth import synthesize_volume

    root = tmp_path_factory.mktemp("predict_det")
    vol = synthesize_volume(shape=(8, 48, 56), channels=1, num_objects=12, num_classes=1, seed=3)
    path = write_ome_zarr(root / "vol.ome.zarr", vol.image, vol.spacing)
    torch.manual_seed(0)
    model = build_model(_cfg(root, tiny_model))
    ckpt = root / "weights.pt"
    torch.save({"model": model.state_dict()}, ckpt)
    return root, path, ckpt


@pytest.mark.slow(seconds=104)
def test_two_ray_workers_give_the_same_labels_as_one(tmp_path, setup, tiny_model):
    root, path, ckpt = setup
    outs = {}
    for name, extra in {
        "local": ("predict.threads_per_worker=1",),
        "ray1": ("predict.executor=ray", "predict.num_workers=1", "predict.threads_per_worker=1"),
        "ray2": (
            "predict.executor=ray",
            "predict.num_workers=2",
            "predict.threads_per_worker=1",
            "cluster.num_cpus=2",
        ),
    }.items():
        out = tmp_path / f"{name}.ome.zarr"
        result = run_prediction(
            _cfg(root, tiny_model, *extra),
            input=path,
            output=out,
            checkpoint=str(ckpt),
            print_fn=lambda s: None,
        )
        assert result.tiles == 4
        outs[name] = open_labels(out / "labels" / "instances").read()
    assert outs["local"].any(), "the seeded model should predict some objects"
    np.testing.assert_array_equal(outs["ray1"], outs["ray2"])
    np.testing.assert_array_equal(outs["local"], outs["ray2"])


def test_checkpoint_of_another_model_is_refused_before_any_work(tmp_path, setup, tiny_model):
    root, path, ckpt = setup
    cfg = _cfg(root, tiny_model, "models.mask_layers=[16]")
    out = tmp_path / "x.ome.zarr"
    with pytest.raises(CheckpointError, match="does not fit the model"):
        run_prediction(cfg, input=path, output=out, checkpoint=str(ckpt), print_fn=lambda s: None)
    assert not out.exists() and not (tmp_path / "x.ome.zarr.ls-predict").exists()


@pytest.mark.slow(seconds=6)
def test_command_line(tmp_path, setup, tiny_model, capsys):
    root, path, ckpt = setup
    out = tmp_path / "cli.ome.zarr"
    args = [
        "--config-name=quickstart",
        f"data.root={root / 'data'}",
        *tiny_model,
        "predict.tile_shape=[8,32,32]",
        "predict.overlap=[2,8,8]",
        "predict.progress=false",
        f"checkpoint={ckpt}",
        f"input={path}",
        f"output={out}",
    ]
    assert predict_main(args) == 0
    assert (out / "labels" / "instances").is_dir() and (tmp_path / "cli_instances.csv").is_file()
    assert predict_main(args) == 2
    assert "exists; pass overwrite=true" in capsys.readouterr().err
    assert predict_main([*args, "overwrite=true"]) == 0
    assert predict_main([a for a in args if not a.startswith("input=")]) == 2
    assert predict_main([*args[:-3], f"input={path}", f"output={tmp_path / 'y.ome.zarr'}"]) == 2
    assert "checkpoint=PATH" in capsys.readouterr().err


def test_per_tile_normalization_and_unsupported_eval_transforms(tmp_path, setup, tiny_model):
    from ls_train.config import ConfigError

    root, path, ckpt = setup
    out = tmp_path / "tile.ome.zarr"
    cfg = _cfg(root, tiny_model, "predict.normalization=tile")
    result = run_prediction(cfg, input=path, output=out, checkpoint=str(ckpt), print_fn=lambda s: None)
    assert result.tiles == 4 and (out / "labels" / "instances").is_dir()
    flip = _cfg(root, tiny_model, "transforms.eval_transforms_list=[{name: random_flip}]")
    with pytest.raises(ConfigError, match="random_flip"):
        run_prediction(
            flip, input=path, output=tmp_path / "f.ome.zarr", checkpoint=str(ckpt), print_fn=lambda s: None
        )


def test_a_detector_with_a_target_spacing_gets_the_volume_spacing(tmp_path, setup, tiny_model):
    """models.target_spacing: every tile is resized by the input's spacing (from its OME-Zarr
    scale) and the labels come back on the input grid."""
    root, path, ckpt = setup
    out = tmp_path / "spaced.ome.zarr"
    cfg = _cfg(root, tiny_model, "models.target_spacing=[2.0,1.0,1.0]")
    result = run_prediction(cfg, input=path, output=out, checkpoint=str(ckpt), print_fn=lambda s: None)
    assert result.tiles == 4 and open_labels(out / "labels" / "instances").shape == (8, 48, 56)


def _model_and_tile(setup, tiny_model) -> tuple[torch.nn.Module, np.ndarray]:
    """The setup's tiny model with its weights, and a standardised 8x32x32 tile of a synthetic volume."""
    from ls_data.synth import synthesize_volume

    root, _path, ckpt = setup
    model = build_model(_cfg(root, tiny_model))
    model.load_state_dict(torch.load(ckpt)["model"])
    image = synthesize_volume(shape=(8, 48, 56), channels=1, num_objects=12, num_classes=1, seed=3).image
    tile = np.ascontiguousarray(image[:, :, :32, :32], dtype=np.float32)
    return model, (tile - tile.mean()) / tile.std()


def test_the_segmenter_masks_only_detections_above_the_score_threshold(setup, tiny_model):
    """The score threshold reaches the model as ``min_score`` (no mask for a detection that would
    not be painted), and the labels are those of thresholding after the model."""
    from ls_detection import paste_masks_into_label_volume
    from ls_train.predict.segmenters import DetectorSegmenter

    model, tile = _model_and_tile(setup, tiny_model)
    with torch.no_grad():
        full = model.predict([torch.from_numpy(tile)], paste_masks=False)[0]
    threshold = float(full["scores"].sort(descending=True).values[len(full["scores"]) // 2 - 1])
    assert 0 < int((full["scores"] >= threshold).sum()) < full["scores"].shape[0]
    expected, _ = paste_masks_into_label_volume(
        full["masks"], full["boxes"], full["scores"], tile.shape[1:], mask_threshold=0.45,
        score_threshold=threshold,
    )
    calls = []
    predict = model.predict
    model.predict = lambda *a, **k: calls.append(k["min_score"]) or predict(*a, **k)
    segmenter = DetectorSegmenter(model, mask_threshold=0.45, score_threshold=threshold, amp="none")
    (result,) = segmenter([tile])
    assert calls == [threshold]
    np.testing.assert_array_equal(result.labels, expected.numpy())
    assert len(result.scores) == int((full["scores"] >= threshold).sum())


def test_amp_bf16_predicts_the_float32_objects_and_auto_is_bf16_only_where_fast(setup, tiny_model):
    """``predict.amp``: ``auto`` is bf16 on a CPU with bf16 kernels, float32 on others; ``bf16`` runs
    the detector under bf16 autocast and finds the float32 run's objects (boxes and scores in float32)."""
    from ls_train.precision import cpu_has_fast_bf16
    from ls_train.predict.segmenters import DetectorSegmenter

    model, tile = _model_and_tile(setup, tiny_model)
    segmenters = {amp: DetectorSegmenter(model, mask_threshold=0.45, score_threshold=0.0, amp=amp)
                  for amp in ("auto", "none", "bf16")}
    assert segmenters["auto"].autocast_dtype == (torch.bfloat16 if cpu_has_fast_bf16() else None)
    assert segmenters["none"].autocast_dtype is None
    assert segmenters["bf16"].autocast_dtype == torch.bfloat16
    reference, bf16 = segmenters["none"]([tile])[0], segmenters["bf16"]([tile])[0]
    assert bf16.scores.dtype == np.float32 and len(bf16.scores) > 0
    # every float32 object has a bf16 object of IoU >= 0.5 (bf16 rounds the features, not the boxes)
    for label in range(1, int(reference.labels.max()) + 1):
        mask = reference.labels == label
        if not mask.any():
            continue
        ids, counts = np.unique(bf16.labels[mask], return_counts=True)
        ious = [c / (mask.sum() + (bf16.labels == i).sum() - c)
                for i, c in zip(ids, counts, strict=True) if i]
        best = max(ious, default=0)
        assert best >= 0.5, f"float32 object {label} has no bf16 match (best IoU {best:.2f})"
    with pytest.raises(ValueError, match="amp"):
        DetectorSegmenter(model, amp="fp16")


def test_predict_amp_is_checked(tmp_path, tiny_model):
    from ls_train.predict.config import predict_config

    assert predict_config(_cfg(tmp_path, tiny_model)).amp == "auto"
    with pytest.raises(Exception, match=r"predict\.amp"):
        predict_config(_cfg(tmp_path, tiny_model, "predict.amp=float16"))
