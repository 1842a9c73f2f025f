"""COCO mask AP in whole-volume ``ls-evaluate``, from the scores ``ls-predict`` stores with its
labels: the numbers of ``evaluate_masks`` on the whole arrays."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from ls_data.errors import DataError
from ls_data.io import write_ome_zarr, write_tiff_pair
from ls_train.cli import evaluate_main
from ls_train.config import load_config
from ls_train.evaluate_volume import evaluate_label_volumes, run_volume_evaluation
from ls_train.metrics.coco import accumulate, evaluate_masks, summarize

SHAPE = (8, 40, 48)
SPACING = (2.0, 0.5, 0.5)
SMALL = ["evaluation.block_shape=[5,20,30]", "evaluation.region_grid=[1,2,2]"]
WITH_COCO = "metrics.metrics_list=[{name:matching,thresholds:[0.5,0.75,0.9]},{name:coco_ap}]"


def _truth() -> np.ndarray:
    """Boxes of random sizes on a lattice, one free voxel around each, ids sparse."""
    rng = np.random.default_rng(1)
    lab = np.zeros(SHAPE, np.uint32)
    k = 0
    for z in range(0, SHAPE[0] - 3, 4):
        for y in range(0, SHAPE[1] - 5, 7):
            for x in range(0, SHAPE[2] - 5, 7):
                k += 1
                d = rng.integers(2, 4, size=3)
                lab[z : z + d[0], y : y + d[1], x : x + d[2]] = 10 * k
    return lab


def _prediction(gt: np.ndarray) -> np.ndarray:
    """The truth shifted by one voxel along x, some objects missed, a false positive."""
    pred = np.roll(gt, 1, axis=2)
    pred[:, :, 30:] = 0
    pred[1:3, 37:39, 40:44] = 7
    return pred


def _expected(gt: np.ndarray, pred: np.ndarray, scores: dict[int, float]) -> dict[str, float]:
    ev = evaluate_masks(gt, pred, scores)
    return {f"coco_mask_{k}": v for k, v in summarize([accumulate([ev])]).items()}


def _write_table(path: Path, scores: dict[int, float]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "score", "class"])
        writer.writerows([i, s, 1] for i, s in sorted(scores.items()))


@pytest.fixture()
def volumes(tmp_path: Path) -> dict[str, object]:
    gt = _truth()
    pred = _prediction(gt)
    image = np.zeros((1, *SHAPE), np.uint8)
    write_ome_zarr(tmp_path / "out.ome.zarr", image, SPACING, labels=pred, label_name="instances")
    _, gt_path = write_tiff_pair(tmp_path, "vol", image, gt, SPACING)
    rng = np.random.default_rng(2)
    scores = {int(i): float(rng.choice([0.55, 0.7, 0.95])) for i in np.unique(pred[pred > 0])}
    return {
        "gt": gt,
        "pred": pred,
        "scores": scores,
        "gt_path": gt_path,
        "pred_path": tmp_path / "out.ome.zarr" / "labels" / "instances",
        "table": tmp_path / "out_instances.csv",  # where ls-predict puts it by default
    }


def _evaluate(volumes, tmp_path: Path, *extra: str) -> tuple[dict[str, float], Path, list[str]]:
    cfg = load_config("evaluate_volume", ["pred=p", "gt=g", *SMALL, WITH_COCO, *extra])
    lines: list[str] = []
    summary, out = run_volume_evaluation(
        cfg, str(volumes["pred_path"]), str(volumes["gt_path"]), out_dir=tmp_path / "eval",
        print_fn=lines.append, progress_stream=None,
    )  # fmt: skip
    return summary, out, lines


def test_coco_ap_from_the_table_next_to_the_prediction(volumes, tmp_path: Path) -> None:
    _write_table(volumes["table"], volumes["scores"])
    summary, out, lines = _evaluate(volumes, tmp_path)
    expected = _expected(volumes["gt"], volumes["pred"], volumes["scores"])
    assert {k: summary[k] for k in expected} == expected
    assert 0 < expected["coco_mask_ap50"] < 1
    meta = json.loads((out / "metrics.json").read_text())["meta"]
    assert meta["scores"] == str(volumes["table"])
    assert not any("not computed" in line for line in lines), lines


def test_without_scores_the_run_says_why(volumes, tmp_path: Path) -> None:
    summary, out, lines = _evaluate(volumes, tmp_path)
    assert not any(k.startswith("coco_") for k in summary)
    assert any(line.startswith("coco_ap not computed:") and "has no scores" in line for line in lines), lines
    meta = json.loads((out / "metrics.json").read_text())["meta"]
    assert str(volumes["table"]) in meta["coco_not_computed"]
    # a TIFF prediction: said as such
    tif = tmp_path / "pred_labels.tif"
    import tifffile

    tifffile.imwrite(tif, volumes["pred"])
    result = evaluate_label_volumes(tif, volumes["gt_path"], coco=True, check_spacing=False)
    assert "TIFF" in result.meta["coco_not_computed"]


def test_an_object_without_a_score_is_refused_naming_the_files(volumes, tmp_path: Path, capsys) -> None:
    scores = dict(volumes["scores"])
    del scores[7]
    _write_table(volumes["table"], scores)
    with pytest.raises(DataError, match=r"pred=.*: 1 object\(s\) have no score in .*out_instances.csv"):
        evaluate_label_volumes(volumes["pred_path"], volumes["gt_path"], coco=True)
    out = tmp_path / "eval"
    args = [f"pred={volumes['pred_path']}", f"gt={volumes['gt_path']}", f"evaluation.output_dir={out}"]
    args.append(WITH_COCO)
    assert evaluate_main(args) == 2
    assert "ids [7]" in capsys.readouterr().err and not out.exists()


def test_ls_predict_output_is_scored_from_its_label_properties(tmp_path: Path) -> None:
    """ls-predict (threshold segmenter) then ls-evaluate: the scores come from the label image."""
    from ls_train.predict import run_prediction

    gt = _truth()
    image = (100 + 1000 * (_prediction(gt) > 0)).astype(np.uint16)[None]
    tif, gt_path = write_tiff_pair(tmp_path, "vol", image, gt, SPACING)
    cfg = load_config(
        "quickstart",
        [
            f"data.root={tmp_path}",
            "predict.segmenter=threshold",
            "+predict.threshold_segmenter.threshold=500",
            "predict.tile_shape=[8,24,24]",
            "predict.overlap=[0,8,8]",
            "predict.progress=false",
        ],
    )
    result = run_prediction(cfg, input=tif, output=tmp_path / "out.ome.zarr", print_fn=lambda _: None)
    result.table.unlink()  # the properties alone must do
    volumes = {"pred_path": result.labels, "gt_path": gt_path}
    summary, out, _ = _evaluate(volumes, tmp_path)
    from ls_data.io import open_labels

    pred = np.asarray(open_labels(result.labels).read())
    expected = _expected(gt, pred, {int(i): 1.0 for i in np.unique(pred[pred > 0])})
    assert {k: summary[k] for k in expected} == expected
    meta = json.loads((out / "metrics.json").read_text())["meta"]
    assert meta["scores"].endswith("(image-label properties)")
