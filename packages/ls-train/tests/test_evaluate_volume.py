"""Whole-volume ``ls-evaluate pred=... gt=...`` (ls_train.evaluate_volume): small volumes read in
small blocks give the in-memory matching's numbers; bad input exits 2 naming the files and
writes nothing."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

from ls_data.io import write_ome_zarr, write_tiff_pair
from ls_train.cli import evaluate_main
from ls_train.evaluate_volume import default_output_dir, evaluate_label_volumes
from ls_train.metrics.keys import metric_key
from ls_train.metrics.matching import match

SHAPE = (16, 64, 64)
SPACING = (2.0, 0.5, 0.5)
THRESHOLDS = (0.5, 0.75, 0.9)
SMALL = ["evaluation.block_shape=[5,20,30]", "evaluation.region_grid=[2,2,2]"]


def _truth() -> np.ndarray:
    rng = np.random.default_rng(0)
    lab = np.zeros(SHAPE, dtype=np.uint32)
    k = 0
    for z in range(0, SHAPE[0] - 3, 4):
        for y in range(0, SHAPE[1] - 4, 6):
            for x in range(0, SHAPE[2] - 4, 6):
                k += 1
                d = rng.integers(2, 5, size=3)
                lab[z : z + d[0], y : y + d[1], x : x + d[2]] = 1000 + 7 * k  # sparse ids
    return lab


@pytest.fixture(scope="module")
def volumes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A truth (TIFF) and a prediction (OME-Zarr, 2 levels): the truth shifted by one voxel in x,
    every object in x >= 40 missed, objects merged pairwise in one corner, and extra objects."""
    root = tmp_path_factory.mktemp("volumes")
    gt = _truth()
    pred = np.roll(gt, 1, axis=2).astype(np.uint32)
    pred[:, :, 40:] = 0
    corner = pred[:8, :24, :24]
    corner[corner > 0] = 5  # merges
    pred[10:13, 50:56, 50:60] = 99  # a false positive
    image = np.zeros((1, *SHAPE), dtype=np.uint8)
    write_ome_zarr(root / "pred.ome.zarr", image, SPACING, labels=pred, label_name="instances", levels=2,
                   chunks=(8, 32, 32))  # fmt: skip
    _, gt_path = write_tiff_pair(root, "vol", image, gt, SPACING)
    pred_path = root / "pred.ome.zarr/labels/instances"
    return {"root": root, "gt": gt, "pred": pred, "gt_path": gt_path, "pred_path": pred_path}


def test_cli_scores_a_predicted_volume_block_by_block(volumes, tmp_path: Path, capsys) -> None:
    args = [f"pred={volumes['pred_path']}", f"gt={volumes['gt_path']}", *SMALL]
    assert evaluate_main(args) == 0, capsys.readouterr().err
    out = volumes["root"] / "pred_instances_evaluation"  # the default: next to the prediction
    assert sorted(p.name for p in out.iterdir()) == [
        "metrics.json", "metrics_per_region.csv", "metrics_summary.csv", "metrics_vs_iou.png",
        "objects_gt.csv", "objects_pred.csv", "regions.png",
    ]  # fmt: skip
    printed = capsys.readouterr().out
    assert "ap" in printed and "worst region" in printed and str(out) in printed
    doc = json.loads((out / "metrics.json").read_text())
    summary, regions = doc["summary"], doc["per_region"]
    expected = match(volumes["gt"], volumes["pred"], THRESHOLDS)
    assert doc["meta"]["blocks"] == 4 * 4 * 3 and doc["meta"]["shape"] == list(SHAPE)
    assert summary["n_gt"] == expected[0].n_true and summary["n_pred"] == expected[0].n_pred
    for r in expected:
        t = r.threshold
        assert summary[metric_key("tp", t)] == r.tp and summary[metric_key("fn", t)] == r.fn
        assert summary[metric_key("ap", t)] == r.accuracy
        assert summary[metric_key("pq", t)] == r.panoptic_quality
        for key in ("tp", "fp", "fn"):  # the regions add up to the volume
            assert sum(row[metric_key(key, t)] for row in regions) == summary[metric_key(key, t)]
    assert len(regions) == 8 and {row["z0"] for row in regions} == {0, 8}
    with open(out / "objects_gt.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == expected[0].n_true
    matched = {(int(r["id"]), int(r["pred@50"])) for r in rows if r["pred@50"] != "0"}
    assert matched == {tuple(p) for p in expected[0].pairs.tolist()}
    with open(out / "objects_pred.csv") as f:
        rows = {int(r["id"]): r for r in csv.DictReader(f)}
    assert rows[99]["gt@50"] == "0" and float(rows[99]["best_iou"]) < 0.5  # the false positive
    assert float(rows[5]["best_iou"]) < 0.5  # a merge


def test_block_shape_and_level_do_not_change_the_result(volumes) -> None:
    kwargs = {"region_grid": (1, 3, 3)}
    whole = evaluate_label_volumes(volumes["pred_path"], volumes["gt_path"], block_shape=SHAPE, **kwargs)
    small = evaluate_label_volumes(volumes["pred_path"], volumes["gt_path"], block_shape=(3, 7, 11), **kwargs)
    assert whole.summary == small.summary and whole.regions == small.regions
    for a, b in ((whole.objects_gt, small.objects_gt), (whole.objects_pred, small.objects_pred)):
        assert list(a) == list(b) and all(np.array_equal(a[k], b[k]) for k in a)
    # level 1 of the prediction against level 1 of itself: all objects matched
    p = volumes["pred_path"]
    same = evaluate_label_volumes(p, p, pred_level=1, gt_level=1, block_shape=(4, 8, 8))
    assert same.summary["ap@50"] == 1.0 and same.meta["shape"] == [16, 32, 32]


def test_default_output_dir(tmp_path: Path) -> None:
    labels = tmp_path / "out.ome.zarr/labels/instances"
    assert default_output_dir(labels) == tmp_path / "out_instances_evaluation"
    assert default_output_dir(tmp_path / "out.ome.zarr") == tmp_path / "out_evaluation"
    assert default_output_dir(tmp_path / "a/x_labels.tif") == tmp_path / "a/x_labels_evaluation"


def _bad_gt(root: Path, kind: str) -> Path:
    image = np.zeros((1, *SHAPE), dtype=np.uint8)
    if kind == "float":
        path = root / "float_labels.tif"
        tifffile.imwrite(path, np.zeros(SHAPE, dtype=np.float32))
        return path
    if kind == "shape":
        return write_tiff_pair(root, "narrow", image[..., :60], _truth()[..., :60], SPACING)[1]
    if kind == "spacing":
        return write_tiff_pair(root, "spaced", image, _truth(), (1.0, 0.5, 0.5))[1]
    # half resolution in y, x: what level 1 of the prediction is
    return write_tiff_pair(root, "half", image[:, :, ::2, ::2], _truth()[:, ::2, ::2], (2.0, 1.0, 1.0))[1]


@pytest.mark.parametrize(
    ("kind", "extra", "message"),
    [
        ("missing", [], r"pred=.*nope.ome.zarr: no such file or folder"),
        ("float", [], r"gt=.*float_labels.tif: .*label volume must have an integer dtype, got float32"),
        ("shape", [], r"has shape \(Z, Y, X\)=\(16, 64, 64\) .* gt=.*narrow_labels.tif .* \(16, 64, 60\) .*"
                      r"the shapes differ$"),
        ("spacing", [], r"the voxel spacings differ; .*pass evaluation.check_spacing=false"),
        ("level", ["evaluation.pred_level=1"], r"pred=.*instances \(level 1\) .* shapes differ; level 0 of "
                                               r"pred=.* pass evaluation.pred_level=0"),
        ("half", [], r"half_labels.tif .* shapes differ; level 1 of pred=.* pass evaluation.pred_level=1"),
        ("no_gt", [], r"give gt=PATH"),
    ],
)  # fmt: skip
def test_bad_input_exits_2_naming_the_files_and_writes_nothing(
    volumes, tmp_path: Path, capsys, kind: str, extra: list[str], message: str
) -> None:
    import re

    pred = tmp_path / "nope.ome.zarr" if kind == "missing" else volumes["pred_path"]
    gt = volumes["gt_path"] if kind in ("missing", "level", "no_gt") else _bad_gt(tmp_path, kind)
    out = tmp_path / "eval"
    given_gt = [] if kind == "no_gt" else [f"gt={gt}"]
    args = [f"pred={pred}", *given_gt, f"evaluation.output_dir={out}", *extra]
    assert evaluate_main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("ls-evaluate: error: ") and re.search(message, err), err
    assert not out.exists()


def test_the_packaged_config_needs_no_model_and_checks_its_keys() -> None:
    from ls_train.config import ConfigError, evaluation_config, load_config

    cfg = load_config("evaluate_volume", ["pred=a.ome.zarr", "gt=b.tif", "evaluation.region_grid=3"])
    assert "models" not in cfg and evaluation_config(cfg).region_grid == (3, 3, 3)
    shape_message = (
        r"evaluation.block_shape must be an integer or a 3-tuple \(z, y, x\) of integers, got \[1, 2\]"
    )
    with pytest.raises(ConfigError, match=shape_message):
        load_config("evaluate_volume", ["pred=a", "gt=b", "evaluation.block_shape=[1,2]"])
    with pytest.raises(ConfigError, match=r"the 'models' section is missing"):  # a training needs one
        load_config("evaluate_volume", ["pred=null", "gt=b"])


@pytest.mark.slow(seconds=14)
def test_ray_tasks_give_the_same_files(volumes, tmp_path: Path) -> None:
    from ls_train.config import load_config
    from ls_train.evaluate_volume import run_volume_evaluation

    outs = {}
    for workers in (1, 2):
        cfg = load_config(
            "evaluate_volume",
            ["pred=p", "gt=g", *SMALL, f"evaluation.num_workers={workers}", "cluster.num_cpus=2"],
        )
        _, outs[workers] = run_volume_evaluation(
            cfg, str(volumes["pred_path"]), str(volumes["gt_path"]), out_dir=tmp_path / f"w{workers}",
            print_fn=lambda line: None, progress_stream=None,
        )  # fmt: skip
    for name in ("metrics_summary.csv", "metrics_per_region.csv", "objects_gt.csv", "objects_pred.csv"):
        assert (outs[1] / name).read_bytes() == (outs[2] / name).read_bytes(), name
    assert list((outs[2] / "logs").glob("ray-*/*.log"))  # the local Ray instance's logs are kept
