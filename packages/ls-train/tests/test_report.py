"""Tests of ls_train.evaluation.report: JSON, CSV and the printed table."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from ls_train.evaluation.report import format_table, join_per_crop, read_json, write_csv, write_report
from ls_train.metrics.matching_metric import MatchingMetric


def _summary() -> dict[str, float]:
    return {
        "ap@50": 0.75,
        "ap@75": 0.5,
        "ap@50_pooled": 0.7,
        "ap@75_pooled": 0.45,
        "f1@50": 0.8571428,
        "tp@50": 12.0,
        "coco_mask_ap": float("nan"),
        "n_crops": 3.0,
    }


def test_write_report_json_and_csv(tmp_path: Path) -> None:
    rows = [
        {"crop_id": "a", "ap@50": 1.0, "tp@50": np.int64(2)},
        {"crop_id": "b", "ap@50": np.float32(0.5), "coco_mask_ap": float("nan")},
    ]
    paths = write_report(tmp_path / "out", _summary(), rows, {"checkpoint": tmp_path / "ck.pt", "n": 2})
    assert sorted(paths) == ["json", "per_crop_csv", "summary_csv"]
    doc = json.loads(paths["json"].read_text())
    assert doc["summary"]["ap@50"] == 0.75
    assert doc["summary"]["coco_mask_ap"] is None  # NaN is written as null
    assert doc["per_crop"][0] == {"crop_id": "a", "ap@50": 1.0, "tp@50": 2}
    assert doc["meta"] == {"checkpoint": str(tmp_path / "ck.pt"), "n": 2}
    back = read_json(paths["json"])
    assert math.isnan(back["summary"]["coco_mask_ap"])
    with paths["per_crop_csv"].open() as f:
        got = list(csv.DictReader(f))
    assert list(got[0]) == ["crop_id", "ap@50", "tp@50", "coco_mask_ap"]
    assert got[0] == {"crop_id": "a", "ap@50": "1.0", "tp@50": "2", "coco_mask_ap": ""}
    assert got[1]["ap@50"] == "0.5" and got[1]["tp@50"] == ""
    with paths["summary_csv"].open() as f:
        summary_rows = list(csv.DictReader(f))
    assert [r["metric"] for r in summary_rows] == list(_summary())
    assert summary_rows[0]["value"] == "0.75" and summary_rows[6]["value"] == ""
    assert not list(tmp_path.joinpath("out").glob(".*"))  # no temporary files left behind


def test_report_from_a_metric(tmp_path: Path) -> None:
    gt = np.zeros((1, 2, 6), dtype=np.int32)
    gt[0, 0, :3] = 1
    m = MatchingMetric(thresholds=[0.5])
    m.update(gt, gt, meta={"crop_id": 17})
    path = write_report(tmp_path, m.compute(), m.per_crop(), stem="val")["json"]
    assert path.name == "val.json"
    doc = json.loads(path.read_text())
    assert doc["per_crop"][0]["crop_id"] == "17" and doc["per_crop"][0]["ap@50"] == 1.0
    assert doc["summary"]["ap@50_pooled"] == 1.0


def test_unwritable_value_is_named(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="cannot write a value of type object"):
        write_csv(tmp_path / "x.csv", [{"crop_id": "a", "v": object()}])


def test_join_per_crop() -> None:
    a = [{"crop_id": "1", "ap@50": 1.0}, {"crop_id": "2", "ap@50": 0.0}]
    b = [{"crop_id": "2", "coco_mask_ap": 0.3}, {"crop_id": "3", "coco_mask_ap": 0.1}]
    joined = join_per_crop(a, b)
    assert joined == [
        {"crop_id": "1", "ap@50": 1.0},
        {"crop_id": "2", "ap@50": 0.0, "coco_mask_ap": 0.3},
        {"crop_id": "3", "coco_mask_ap": 0.1},
    ]
    with pytest.raises(ValueError, match=r"crop '1': column 'ap@50'"):
        join_per_crop(a, [{"crop_id": "1", "ap@50": 0.5}])
    # Two crops under one id stay two rows, joined occurrence by occurrence.
    dup = join_per_crop([{"crop_id": "x", "a": 1}, {"crop_id": "x", "a": 2}], [{"crop_id": "x", "b": 3}])
    assert dup == [{"crop_id": "x", "a": 1, "b": 3}, {"crop_id": "x", "a": 2}]


def test_format_table_grid_and_scalars() -> None:
    text = format_table(_summary())
    lines = text.splitlines()
    assert lines[0].split() == ["metric", "@50", "@75"]
    assert lines[1].split() == ["ap", "0.7500", "0.5000"]
    assert lines[2].split() == ["f1", "0.8571", "-"]
    assert lines[3].split() == ["tp", "12", "-"]
    assert lines[4].split() == ["ap", "(pooled)", "0.7000", "0.4500"]
    assert lines[5] == ""
    assert lines[6].split() == ["coco_mask_ap", "-"]
    assert lines[7].split() == ["n_crops", "3"]
    # Columns are aligned: every grid row has the same width.
    assert len({len(line) for line in lines[:5]}) == 1
    assert format_table({"coco_box_ap": 0.123456}, digits=2) == "coco_box_ap  0.12"
