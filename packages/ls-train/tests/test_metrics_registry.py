"""Tests of the ``ls.metrics`` registry and the metric interface (update/compute/state/merge)."""

from __future__ import annotations

import math
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from ls_train.metrics.registry import MetricRegistryError, create_metric, get_metric, list_metrics


def _crop(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, dict[int, float]]:
    gt = np.zeros((4, 16, 16), dtype=np.int32)
    for k in range(1, n + 1):
        z, y, x = rng.integers(0, (3, 13, 13))
        gt[z : z + 2, y : y + 3, x : x + 3] = k
    pred = np.roll(gt, int(rng.integers(0, 2)), axis=2)
    pred[(pred > 0) & (pred % 3 == 0)] = 0
    pred[0, 0, 0:3] = 50  # a false positive
    return gt, pred, {int(i): float(rng.random()) for i in np.unique(pred) if i}


def _crops(n: int) -> list[tuple[np.ndarray, np.ndarray, dict[int, float]]]:
    rng = np.random.default_rng(5)
    return [_crop(rng, int(rng.integers(2, 7))) for _ in range(n)]


def _same(a: dict[str, float], b: dict[str, float]) -> bool:
    return a.keys() == b.keys() and all((math.isnan(a[k]) and math.isnan(b[k])) or a[k] == b[k] for k in a)


def test_builtins_are_registered() -> None:
    names = list_metrics()
    assert {"matching", "coco_ap"} <= set(names)
    assert names == sorted(names)


@pytest.mark.slow(seconds=8)
def test_listing_imports_no_metric_module() -> None:
    code = textwrap.dedent(
        """
        import sys
        from ls_train.metrics import list_metrics
        assert {"matching", "coco_ap"} <= set(list_metrics())
        loaded = sorted(m for m in sys.modules if m.startswith("ls_train.metrics."))
        print(loaded)
        assert loaded == ["ls_train.metrics.registry"], loaded
        assert "scipy" not in sys.modules
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_package_exports_resolve() -> None:
    import ls_train.evaluation
    import ls_train.metrics

    for pkg in (ls_train.metrics, ls_train.evaluation):
        for name in pkg.__all__:
            assert getattr(pkg, name) is not None, name
        with pytest.raises(AttributeError, match="has no attribute 'nope'"):
            _ = pkg.nope


def test_unknown_name_lists_known_and_close_matches() -> None:
    with pytest.raises(
        MetricRegistryError, match=r"unknown metric 'matchng'.*Did you mean 'matching'.*coco_ap"
    ):
        get_metric("matchng")


def test_bad_constructor_arguments() -> None:
    with pytest.raises(TypeError, match=r"create_metric\('matching', \.\.\.\)"):
        create_metric("matching", threshold=0.5)
    with pytest.raises(ValueError, match=r"thresholds must be a non-empty list in \(0, 1\]"):
        create_metric("matching", thresholds=[0.5, 1.5])
    with pytest.raises(ValueError, match="iou_type must be one of"):
        create_metric("coco_ap", iou_type="segm")


def _write_plugin(root: Path, dist: str, module: str, entries: str) -> None:
    info = root / f"{dist}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[ls.metrics]\n{entries}\n")
    (root / f"{module}.py").write_text(
        textwrap.dedent(
            """
            from ls_train.metrics.matching_metric import MatchingMetric

            class Half(MatchingMetric):
                def __init__(self, *, criterion="iou"):
                    super().__init__(thresholds=[0.5], criterion=criterion)

            NOT_CALLABLE = 3
            """
        )
    )


def test_third_party_plugin_is_used_like_a_builtin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_plugin(
        tmp_path,
        "fake_metric_plugin",
        "fake_metric_mod",
        "half = fake_metric_mod:Half\nbroken = fake_metric_mod:NOT_CALLABLE\nmissing = nope_mod:X",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert {"half", "broken", "missing"} <= set(list_metrics())
    m = create_metric("half", criterion="iot")
    gt, pred, _ = _crops(1)[0]
    m.update(gt, pred)
    assert "ap@50" in m.compute()
    with pytest.raises(MetricRegistryError, match="not callable"):
        get_metric("broken")
    with pytest.raises(
        MetricRegistryError, match=r"'missing' from distribution 'fake_metric_plugin 0.1'.*failed to load"
    ):
        get_metric("missing")


def test_name_declared_twice_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_plugin(tmp_path, "fake_dup_plugin", "fake_dup_mod", "matching = fake_dup_mod:Half")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(MetricRegistryError, match=r"'matching' is declared twice.*fake_dup_plugin"):
        list_metrics()


# arguments that exercise more of a metric than its defaults (every registered metric is tested)
METRIC_ARGUMENTS = {"matching": {"thresholds": [0.3, 0.5, 0.75]}, "coco_ap": {"iou_type": "both"}}


@pytest.mark.parametrize("name", list_metrics())
def test_merge_of_worker_states_equals_one_process(name: str) -> None:
    kwargs = METRIC_ARGUMENTS.get(name, {})
    crops = _crops(7)
    single = create_metric(name, **kwargs)
    for i, (gt, pred, scores) in enumerate(crops):
        single.update(gt, pred, scores, {"crop_id": f"c{i}"})
    workers = [create_metric(name, **kwargs) for _ in range(3)]
    for i, (gt, pred, scores) in enumerate(crops):
        workers[(i * 5) % 3].update(gt, pred, scores, {"crop_id": f"c{i}"})
    driver = create_metric(name, **kwargs)
    driver.merge([pickle.loads(pickle.dumps(w.state())) for w in reversed(workers)])
    assert _same(driver.compute(), single.compute())
    assert sorted(r["crop_id"] for r in driver.per_crop()) == [f"c{i}" for i in range(7)]
    driver.reset()
    driver.update(*crops[0])
    assert len(driver.per_crop()) == 1
    other = create_metric("matching", thresholds=[0.5])  # another metric, or other thresholds
    with pytest.raises(ValueError, match=r"comes from metric|differs from"):
        driver.merge([other.state()])


def test_matching_metric_averaged_vs_pooled_and_empty_crops() -> None:
    a_gt = np.zeros((1, 2, 10), dtype=np.int32)
    a_gt[0, 0, :4], a_gt[0, 1, :4] = 1, 2
    a_pred = a_gt.copy()  # perfect: accuracy 1
    b_gt = np.zeros_like(a_gt)
    b_gt[0, 0, :4] = 1
    b_pred = np.zeros_like(a_gt)
    b_pred[0, 1, 5:9] = 1  # one FN and one FP: accuracy 0
    empty = np.zeros_like(a_gt)
    m = create_metric("matching", thresholds=[0.5, 0.9])
    m.update(a_gt, a_pred, meta={"crop_id": "a"})
    m.update(b_gt, b_pred, meta={"crop_id": "b"})
    m.update(empty, empty, meta={"crop_id": "empty"})
    out = m.compute()
    assert out["ap@50"] == pytest.approx(0.5)
    assert out["ap@50_pooled"] == pytest.approx(2 / 4)
    assert out["precision@50"] == pytest.approx(0.5)
    assert out["precision@50_pooled"] == pytest.approx(2 / 3)
    assert out["pq@90"] == pytest.approx(0.5)
    assert out["mean_iou@50"] == pytest.approx(0.5)
    assert (out["tp@50"], out["fp@50"], out["fn@50"]) == (2.0, 1.0, 1.0)
    assert (out["n_crops"], out["n_crops_averaged"], out["n_gt"], out["n_pred"]) == (3.0, 2.0, 3.0, 3.0)
    rows = {r["crop_id"]: r for r in m.per_crop()}
    assert rows["empty"]["ap@50"] == 0.0 and rows["a"]["ap@50"] == 1.0
    keep = create_metric("matching", thresholds=[0.5], skip_empty_crops=False)
    for g, p in ((a_gt, a_pred), (b_gt, b_pred), (empty, empty)):
        keep.update(g, p)
    assert keep.compute()["ap@50"] == pytest.approx(1 / 3)
    assert math.isnan(create_metric("matching").compute()["ap@50"])


def test_coco_metric_needs_scores() -> None:
    gt, pred, scores = _crops(1)[0]
    m = create_metric("coco_ap", iou_type="mask")
    with pytest.raises(ValueError, match="needs pred_scores"):
        m.update(gt, pred)
    with pytest.raises(ValueError, match=r"no score for label id\(s\) \[50\]"):
        m.update(gt, pred, {k: v for k, v in scores.items() if k != 50}, {"crop_id": 7})
    m.update(gt, pred, scores)
    assert set(m.compute()) == {"coco_mask_ap", "coco_mask_ap50", "coco_mask_ap75", "coco_mask_ar"}
