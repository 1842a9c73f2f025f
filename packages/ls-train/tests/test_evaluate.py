"""The Evaluator (predictions -> label volumes -> metrics) and the ls-evaluate driver."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from ls_train.config import load_config
from ls_train.evaluation import Evaluator, gt_label_volume, label_scores, run_evaluation
from ls_train.factory import build_metrics, build_model
from ls_train.trainer.checkpoint import model_state_dict, save_state
from ls_train.trainer.run import prepare_data


def _target(boxes: list[tuple[int, ...]], shape=(6, 16, 16)) -> dict:
    masks = torch.zeros(len(boxes), *shape, dtype=torch.uint8)
    for k, (z1, y1, x1, z2, y2, x2) in enumerate(boxes):
        masks[k, z1:z2, y1:y2, x1:x2] = 1
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 6),
        "labels": torch.ones(len(boxes), dtype=torch.int64),
        "masks": masks,
    }


class Oracle(nn.Module):
    """Predicts the ground truth of the crop (looked up by the image's first voxel)."""

    def __init__(self, targets: list[dict], drop: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.targets, self.drop = targets, drop

    def forward(self, images: list[torch.Tensor]) -> list[dict]:
        out = []
        for im in images:
            t = self.targets[int(im[0, 0, 0, 0])]
            n = 0 if self.drop else len(t["labels"])
            out.append(
                {
                    "boxes": t["boxes"][:n],
                    "labels": t["labels"][:n],
                    "scores": torch.linspace(0.9, 0.6, len(t["labels"]))[:n],
                    "masks": t["masks"][:n, None].float(),
                }
            )
        return out


def _dataset(targets: list[dict]) -> list[tuple]:
    return [
        (torch.full((1, 6, 16, 16), float(i)), t, {"volume_name": "v", "origin": (0, 0, 16 * i)})
        for i, t in enumerate(targets)
    ]


def test_ground_truth_and_prediction_labels() -> None:
    labels, classes = gt_label_volume(_target([(0, 0, 0, 2, 4, 4), (2, 4, 4, 6, 8, 8)]))
    assert labels.dtype == np.int32 and labels.max() == 2 and classes == {1: 1, 2: 1}
    assert (labels == 2).sum() == 4 * 4 * 4
    # two overlapping detections: the better score wins the overlap and takes label 1
    masks = torch.zeros(3, 1, 4, 8, 8)
    masks[0, 0, :, :4, :4] = 0.9
    masks[1, 0, :, 2:6, 2:6] = 0.8
    masks[2, 0, :, 6:, 6:] = 0.7
    pred = {
        "masks": masks,
        "scores": torch.tensor([0.6, 0.95, 0.1]),
        "labels": torch.tensor([1, 2, 1]),
        "boxes": torch.zeros(3, 6),
    }
    from ls_detection import predictions_to_label_volume

    volume = predictions_to_label_volume(pred, mask_threshold=0.5, score_threshold=0.5).numpy()
    scores, classes = label_scores(pred, volume, mask_threshold=0.5, score_threshold=0.5)
    assert scores == pytest.approx({1: 0.95, 2: 0.6}) and classes == {1: 2, 2: 1}
    assert volume[0, 3, 3] == 1 and volume[0, 0, 0] == 2 and volume[0, 7, 7] == 0


def test_min_visible_fraction_drops_a_duplicate_and_keeps_scores_right() -> None:
    """A second, lower-scored detection of the first object keeps a sliver as a third object
    without the rule; with ``min_visible_fraction=0.5`` it is dropped, and the neighbour under it
    keeps its own score and class (not the dropped detection's)."""
    from ls_detection import predictions_to_label_volume

    masks = torch.zeros(3, 1, 4, 8, 8)
    masks[0, 0, :, :4, :4] = 0.9  # the object
    masks[1, 0, :, :4, 1:5] = 0.9  # its duplicate, one voxel off: 1/4 of it is free
    masks[2, 0, :, :4, 4:8] = 0.9  # the neighbour, under the duplicate's free part
    pred = {"masks": masks, "scores": torch.tensor([0.9, 0.8, 0.7]), "labels": torch.tensor([1, 2, 3])}
    plain = predictions_to_label_volume(pred).numpy()
    assert plain.max() == 3 and (plain == 2).sum() == 4 * 4  # the duplicate's sliver
    fused = predictions_to_label_volume(pred, min_visible_fraction=0.5).numpy()
    assert fused.max() == 2 and (fused == 2).sum() == 4 * 4 * 4
    options = {"mask_threshold": 0.5, "score_threshold": 0.5, "min_visible_fraction": 0.5}
    scores, classes = label_scores(pred, fused, **options)
    assert scores == pytest.approx({1: 0.9, 2: 0.7}) and classes == {1: 1, 2: 3}


def test_a_perfect_model_scores_one_and_an_empty_one_zero() -> None:
    cfg = load_config("quickstart")
    targets = [_target([(0, 0, 0, 3, 5, 5), (3, 8, 8, 6, 14, 14)]), _target([(1, 2, 2, 5, 9, 9)])]
    perfect = Evaluator(metrics=build_metrics(cfg), score_threshold=0.5)
    summary = perfect.evaluate(Oracle(targets), _dataset(targets), num_examples=1)
    assert summary.summary["ap@50"] == pytest.approx(1.0) and summary.summary["ap@90"] == pytest.approx(1.0)
    assert summary.summary["coco_mask_ap"] == pytest.approx(1.0) and summary.summary["n_crops"] == 2
    assert len(summary.per_crop) == 2 and summary.examples[0][0] == "v@(0, 0, 0)"
    empty = Evaluator(metrics=build_metrics(cfg)).evaluate(Oracle(targets, drop=True), _dataset(targets))
    assert empty.summary["ap@50"] == 0.0 and empty.summary["fn@50"] == 3


def test_states_from_shards_merge_to_the_whole() -> None:
    cfg = load_config("quickstart")
    targets = [
        _target([(0, 0, 0, 3, 5, 5)]),
        _target([(1, 2, 2, 5, 9, 9), (0, 10, 10, 2, 12, 12)]),
        _target([(2, 0, 0, 6, 16, 16)]),
    ]
    whole = Evaluator(metrics=build_metrics(cfg))
    full = whole.evaluate(Oracle(targets, drop=False), _dataset(targets)).summary
    a, b = Evaluator(metrics=build_metrics(cfg)), Evaluator(metrics=build_metrics(cfg))
    a.evaluate(Oracle(targets), _dataset(targets), indices=[0, 2])
    b.evaluate(Oracle(targets), _dataset(targets), indices=[1])
    merged = Evaluator(metrics=build_metrics(cfg))
    merged.merge([a.states(), b.states()])
    assert merged.result().summary == pytest.approx(full)


# on top of the shared tiny run: smaller evaluation crops, every detection kept
EVAL_EXTRA = (
    "evaluation.database.crop_shape=[8,16,16]",
    "models.box_score_thresh=0.0",
    "evaluation.score_threshold=0.0",
    "evaluation.num_mip_crops=2",
    "cluster=local",
)


@pytest.mark.slow(seconds=42)
def test_run_evaluation_writes_reports_and_pictures_locally_and_on_ray_tasks(
    tmp_path: Path, capsys, tiny_overrides
) -> None:
    base = tiny_overrides(tmp_path, *EVAL_EXTRA)
    cfg = load_config("quickstart", base)
    prepare_data(cfg)
    torch.manual_seed(0)
    checkpoint = save_state(tmp_path / "ck", {"model": model_state_dict(build_model(cfg))}).parent
    summary, out = run_evaluation(cfg, str(checkpoint))
    printed = capsys.readouterr().out
    assert out == tmp_path / "runs" / "quickstart" / "evaluation"
    names = sorted(p.name for p in out.iterdir())
    assert {"metrics.json", "metrics_summary.csv", "metrics_per_crop.csv", "metrics_vs_iou.png"} <= set(names)
    assert len([n for n in names if n.startswith("mip_")]) == 2
    assert summary["n_crops"] == 4 and "ap@50" in summary
    assert "metric" in printed and "@50" in printed and f"results in {out}" in printed
    from ls_train.precision import autocast_dtype, precision_name

    precision = precision_name(autocast_dtype("auto", "cpu"))  # evaluation.amp: auto
    assert f"({precision}); results in" in printed
    assert json.loads((out / "metrics.json").read_text())["meta"]["precision"] == precision

    ray_cfg = load_config(
        "quickstart",
        [
            *base,
            "evaluation.ray_min_crops=2",
            "evaluation.ray_num_tasks=2",
            "cluster.num_cpus=2",
            f"evaluation.output_dir={tmp_path / 'ray_eval'}",
        ],
    )
    ray_summary, ray_out = run_evaluation(ray_cfg, str(checkpoint))
    assert "in 2 Ray tasks" in capsys.readouterr().out
    assert ray_out == tmp_path / "ray_eval" and (ray_out / "metrics.json").exists()
    assert list((ray_out / "logs").glob("ray-*/*.log"))  # the local Ray instance's logs are kept
    assert ray_summary == pytest.approx(summary, nan_ok=True)

    # COCO AP alone, per class: no curve against the IoU threshold, the table and pictures still
    coco_cfg = load_config("quickstart", [*base, "metrics.metrics_list=[{name: coco_ap, class_aware: true}]",
                                          f"evaluation.output_dir={tmp_path / 'coco_eval'}"])
    coco_summary, coco_out = run_evaluation(coco_cfg, str(checkpoint))
    names = {p.name for p in coco_out.iterdir()}
    assert "metrics_vs_iou.png" not in names and len([n for n in names if n.startswith("mip_")]) == 2
    assert "coco_box_ap" in coco_summary and f"results in {coco_out}" in capsys.readouterr().out


def test_coco_ap_per_class_of_a_perfect_model() -> None:
    cfg = load_config("quickstart", ["metrics.metrics_list=[{name: coco_ap, class_aware: true}]"])
    targets = [_target([(0, 0, 0, 3, 5, 5), (3, 8, 8, 6, 14, 14)]), _target([(1, 2, 2, 5, 9, 9)])]
    targets[0]["labels"] = torch.tensor([1, 2])
    evaluator = Evaluator(metrics=build_metrics(cfg), score_threshold=0.5)
    result = evaluator.evaluate(Oracle(targets), _dataset(targets))
    assert result.summary["coco_mask_ap"] == pytest.approx(1.0)
    assert result.summary["coco_box_ap"] == pytest.approx(1.0)


@pytest.mark.parametrize("fraction", [0.0, 0.5])
def test_the_evaluator_reads_each_label_s_score_where_it_was_painted(fraction: float) -> None:
    """The Evaluator takes each label's score and class from the painting itself
    (``paint_instances``); they equal ``label_scores``' reading of the painted volume, on random
    overlapping detections."""
    from ls_detection import paint_instances, predictions_to_label_volume
    from ls_train.evaluation.evaluator import _painted_scores

    gen = torch.Generator().manual_seed(3)
    for _ in range(20):
        n = int(torch.randint(1, 12, (1,), generator=gen))
        masks = torch.zeros(n, 1, 6, 12, 12)
        for k in range(n):
            z, y, x = (int(v) for v in torch.randint(0, 6, (3,), generator=gen))
            masks[k, 0, z // 2 : z // 2 + 3, y : y + 6, x : x + 6] = torch.rand(1, generator=gen) * 0.5 + 0.5
        classes = torch.randint(1, 4, (n,), generator=gen)
        pred = {"masks": masks, "scores": torch.rand(n, generator=gen), "labels": classes}
        options = {"mask_threshold": 0.6, "score_threshold": 0.3, "min_visible_fraction": fraction}
        painted, which = paint_instances(pred, **options)
        assert torch.equal(painted, predictions_to_label_volume(pred, **options))
        assert which.numel() == int(painted.max())
        expected = label_scores(pred, painted.numpy(), **options)
        assert _painted_scores(pred, which) == expected
