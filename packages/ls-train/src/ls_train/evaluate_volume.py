"""Whole-volume evaluation: a predicted label volume scored against a ground-truth one.

::

    ls-evaluate pred=out.ome.zarr/labels/instances gt=volume_labels.tif
    ls-evaluate pred=out.ome.zarr gt=truth.ome.zarr/labels/cells evaluation.gt_level=1 \\
        evaluation.pred_level=1 evaluation.output_dir=eval/

Both volumes (OME-Zarr labels via TensorStore, or TIFF) are read block by block
(``evaluation.block_shape``; the next block is read while one is counted), and
:class:`~ls_train.metrics.blocks.PairAccumulator` keeps only the per-object tables and the
overlapping pairs: memory is one block plus the objects, whatever the volume's size. The pairs
are matched exactly (:func:`~ls_train.metrics.matching.match_pairs`: the same numbers as
``match`` on the whole arrays) at the thresholds of the ``matching`` entry of
``metrics.metrics_list``. With ``evaluation.num_workers > 1`` the blocks are shared among Ray
tasks whose counts merge exactly: the result is the same.

Outputs (``evaluation.output_dir``, default ``<pred name>_evaluation`` next to the prediction):

- ``metrics.json`` (summary, per-region rows, meta), ``metrics_summary.csv``: the keys of the
  crop evaluation's ``matching`` metric (``ap@50``, ``f1@50``, ``tp@50``, ..., ``n_gt``,
  ``n_pred``) for the whole volume;
- ``metrics_per_region.csv``: the volume cut into ``evaluation.region_grid`` boxes; a matched
  pair and a missed object count in the region of the ground-truth object's centroid, a false
  positive in that of the predicted object, so the regions' counts add up to the volume's;
- ``objects_gt.csv`` / ``objects_pred.csv``: one row per object: id, voxels, centroid
  ``(z, y, x)`` in voxels, region, its best-overlapping partner and that overlap, and its
  matched partner at each threshold (``pred@50``: 0 = missed; ``gt@50``: 0 = false positive);
- ``metrics_vs_iou.png`` and ``regions.png`` (the per-region F1 / accuracy at the first threshold).

COCO mask AP (``coco_mask_ap``, ``coco_mask_ap50``, ``coco_mask_ap75``, ``coco_mask_ar``, class
agnostic: the truth has no classes) joins the summary when ``coco_ap`` is in
``metrics.metrics_list`` and the prediction carries the scores ``ls-predict`` stores with its
labels (:func:`prediction_scores`): the label image's NGFF properties, else ``ls-predict``'s
per-object table at its default place next to the output. It is computed from the overlapping
pairs (:func:`~ls_train.metrics.coco_pairs.evaluate_pairs`: the numbers of
:func:`~ls_train.metrics.coco.evaluate_masks` on the whole arrays); without scores the run says
why it is not computed.

Bad input -- a missing path, label arrays that are not integers, volumes of different shapes or
voxel spacings, a pyramid level of one that does not fit the other -- raises
:class:`~ls_data.errors.DataError` naming the files (and the level that fits, when there is
one) before anything is written.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ls_data.errors import DataError
from ls_train.metrics.blocks import PairAccumulator
from ls_train.metrics.matching import MatchResult, match_pairs
from ls_train.metrics.pairs import OverlapPairs

__all__ = [
    "LabelVolume",
    "VolumeEvaluation",
    "accumulate_blocks",
    "block_windows",
    "check_same_grid",
    "default_output_dir",
    "evaluate_label_volumes",
    "open_label_volume",
    "prediction_scores",
    "region_bounds",
    "run_volume_evaluation",
]

Window = tuple[slice, slice, slice]
_SPACING_RTOL = 1e-6


@dataclass
class LabelVolume:
    """An opened label volume: the argument that named it (``pred`` / ``gt``), as given, its
    level and ``ls_data`` :class:`~ls_data.io.LabelReader`."""

    arg: str
    uri: str
    level: int
    reader: Any

    @property
    def path(self) -> Path:
        return Path(self.reader.path)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.reader.shape)  # type: ignore[return-value]

    @property
    def spacing(self) -> tuple[float, float, float]:
        return tuple(float(s) for s in self.reader.spacing)  # type: ignore[return-value]

    @property
    def name(self) -> str:
        """``pred=out.ome.zarr/labels/instances`` (level 1): how messages name it."""
        return f"{self.arg}={self.uri}" + (f" (level {self.level})" if self.level else "")


def open_label_volume(uri: str | Path, *, level: int = 0, arg: str = "pred") -> LabelVolume:
    """Open a label volume for block reads: an OME-Zarr label group (or an image group with
    labels) at ``level``, or a TIFF.

    Raises:
        DataError: no such path, not a readable label volume, a missing level, a non-integer
            dtype (the message starts with ``arg=uri``).
    """
    from ls_data.io import open_labels

    path = Path(uri).expanduser()
    if not path.exists():
        raise DataError(f"{arg}={uri}: no such file or folder")
    try:
        reader = open_labels(path.resolve(), level=level)
    except DataError as exc:
        raise DataError(f"{arg}={uri}: {exc}") from exc
    return LabelVolume(arg=arg, uri=str(uri), level=int(level), reader=reader)


def _table_next_to_output(label_group: Path) -> Path:
    """Where ``ls-predict`` writes its table by default for the label group ``<image>/labels/<name>``:
    ``<image name without .ome.zarr>_<name>.csv`` beside the image."""
    image = label_group.parent.parent
    stem = image.name.removesuffix(".zarr").removesuffix(".ome")
    return image.parent / f"{stem}_{label_group.name}.csv"


def _scores_from_table(path: Path) -> dict[int, float]:
    import csv

    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if not {"id", "score"} <= set(reader.fieldnames or ()):
            raise DataError(
                f"{path}: an ls-predict table needs the columns id and score, has {reader.fieldnames}"
            )
        try:
            return {int(row["id"]): float(row["score"]) for row in reader}
        except (TypeError, ValueError) as exc:
            raise DataError(f"{path}: unreadable id or score ({exc})") from exc


def prediction_scores(volume: LabelVolume) -> tuple[dict[int, float] | None, str]:
    """The score of each object of a predicted label volume, as ``ls-predict`` stores them.

    Looked up, in order: the label image's NGFF ``image-label`` properties (``label-value`` with
    ``score``; ``ls-predict`` writes them up to 100 000 objects), then ``ls-predict``'s table at
    its default place (``out.ome.zarr/labels/instances`` -> ``out_instances.csv`` beside
    ``out.ome.zarr``).

    Returns:
        ``(scores, source)``: the scores by label id and where they came from, or ``(None, why)``.

    Raises:
        DataError: a property or table entry whose score is not a number (naming the file).
    """
    from ls_data.io.omezarr import group_attributes

    if volume.reader.format != "ome-zarr":
        return None, f"{volume.name} is a TIFF: ls-predict stores scores only with OME-Zarr labels"
    group = volume.path
    props = (group_attributes(group)[0].get("image-label") or {}).get("properties") or []
    scored = [e for e in props if isinstance(e, dict) and "score" in e]
    if scored:
        try:
            scores = {int(e["label-value"]): float(e["score"]) for e in scored}
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(
                f"{group}: an image-label property has no numeric label-value or score ({exc})"
            ) from exc
        return scores, f"{group} (image-label properties)"
    table = _table_next_to_output(group)
    if table.is_file():
        return _scores_from_table(table), str(table)
    return None, (
        f"{volume.name} has no scores: neither image-label properties with a score nor the ls-predict "
        f"table {table}"
    )


def _score_array(ids: np.ndarray, scores: dict[int, float], volume: LabelVolume, source: str) -> np.ndarray:
    """Scores in the order of ``ids``; ids without a score raise DataError naming both files."""
    missing = [int(i) for i in ids if int(i) not in scores]
    if missing:
        raise DataError(
            f"{volume.name}: {len(missing)} object(s) have no score in {source} (ids "
            f"{missing[:10]}{', ...' if len(missing) > 10 else ''}); are the labels and the scores of one "
            f"run?"
        )
    return np.array([scores[int(i)] for i in ids], dtype=np.float64)


def _coco_summary(
    pairs: OverlapPairs, pred: LabelVolume, max_detections: int | None
) -> tuple[dict[str, float], dict[str, Any]]:
    """COCO mask AP keys for the summary and what the meta says of them (source or reason)."""
    from ls_train.metrics.coco import accumulate, summarize
    from ls_train.metrics.coco_pairs import evaluate_pairs

    scores, source = prediction_scores(pred)
    if scores is None:
        return {}, {"coco_not_computed": source}
    ordered = _score_array(pairs.ids_pred, scores, pred, source)
    ev = evaluate_pairs(pairs, ordered, max_detections=max_detections)
    values = summarize([accumulate([ev])])
    return {f"coco_mask_{k}": float(v) for k, v in values.items()}, {"scores": source}


def _levels(volume: LabelVolume) -> list[tuple[int, tuple[int, ...], tuple[float, ...]]]:
    """``(level, shape, spacing)`` of every other pyramid level of an OME-Zarr volume."""
    from ls_data.io import open_labels
    from ls_data.io.omezarr import group_attributes

    if volume.reader.format != "ome-zarr":
        return []
    try:
        multiscales = group_attributes(volume.path)[0].get("multiscales") or [{}]
        n = len(multiscales[0].get("datasets") or [])
    except DataError:
        return []
    out = []
    for level in range(n):
        if level == volume.level:
            continue
        try:
            r = open_labels(volume.path, level=level)
        except DataError:
            continue
        out.append((level, tuple(int(s) for s in r.shape), tuple(float(s) for s in r.spacing)))
    return out


def _same_spacing(a: Sequence[float], b: Sequence[float]) -> bool:
    return all(math.isclose(x, y, rel_tol=_SPACING_RTOL) for x, y in zip(a, b, strict=True))


def check_same_grid(pred: LabelVolume, gt: LabelVolume, *, check_spacing: bool = True) -> None:
    """The two volumes must have one shape and (with ``check_spacing``) one voxel spacing.

    Raises:
        DataError: naming both files, their levels, shapes and spacings, and the level of one
            that would fit the other (``evaluation.pred_level=1``) when there is one.
    """
    same_shape = pred.shape == gt.shape
    same_spacing = _same_spacing(pred.spacing, gt.spacing)
    if same_shape and (same_spacing or not check_spacing):
        return
    what = "shapes" if not same_shape else "voxel spacings"
    hints = []
    for this, other in ((pred, gt), (gt, pred)):
        for level, shape, spacing in _levels(this):
            if shape == other.shape and (not check_spacing or _same_spacing(spacing, other.spacing)):
                hints.append(
                    f"level {level} of {this.arg}={this.uri} has the shape and spacing of {other.name}: "
                    f"pass evaluation.{this.arg}_level={level}"
                )
    if not hints and same_shape:
        hints.append(
            "if one of the files carries no voxel spacing (read as 1 µm), pass evaluation.check_spacing=false"
        )
    raise DataError(
        f"{pred.name} ({pred.path}) has shape (Z, Y, X)={pred.shape} and spacing {pred.spacing} µm, but "
        f"{gt.name} ({gt.path}) has shape {gt.shape} and spacing {gt.spacing} µm: the {what} differ"
        + "".join(f"; {h}" for h in hints)
    )


def block_windows(shape: Sequence[int], block_shape: Sequence[int]) -> list[Window]:
    """The boxes of a ``block_shape`` grid over a volume of ``shape`` (the last ones clipped),
    in z, y, x order."""
    starts = [range(0, s, b) for s, b in zip(shape, block_shape, strict=True)]
    return [
        (slice(z, min(z + block_shape[0], shape[0])),
         slice(y, min(y + block_shape[1], shape[1])),
         slice(x, min(x + block_shape[2], shape[2])))
        for z in starts[0]
        for y in starts[1]
        for x in starts[2]
    ]  # fmt: skip


def accumulate_blocks(
    gt_reader: Any,
    pred_reader: Any,
    windows: Sequence[Window],
    *,
    names: tuple[str, str] = ("gt_labels", "pred_labels"),
    progress: Callable[[int], None] | None = None,
) -> PairAccumulator:
    """Read ``windows`` of both volumes (the next pair while one is counted) into a
    :class:`~ls_train.metrics.blocks.PairAccumulator`; ``progress(k)`` after each ``k``-th block."""
    acc = PairAccumulator(names)
    if not windows:
        return acc

    def read(w: Window) -> tuple[np.ndarray, np.ndarray]:
        return gt_reader.read(w), pred_reader.read(w)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ls-evaluate-read") as pool:
        pending = pool.submit(read, windows[0])
        for k, w in enumerate(windows):
            g, p = pending.result()
            if k + 1 < len(windows):
                pending = pool.submit(read, windows[k + 1])
            acc.add(g, p, origin=(w[0].start, w[1].start, w[2].start))
            del g, p
            if progress is not None:
                progress(k + 1)
    return acc


def _accumulate_shard(
    gt_reader: Any, pred_reader: Any, windows: Sequence[Window], names: tuple[str, str]
) -> PairAccumulator:
    """One Ray task: its share of the blocks."""
    return accumulate_blocks(gt_reader, pred_reader, windows, names=names)


def _accumulate_with_ray(
    cfg: Mapping[str, Any],
    gt: LabelVolume,
    pred: LabelVolume,
    windows: Sequence[Window],
    num_tasks: int,
    names: tuple[str, str],
    logs_dir: Path,
    print_fn: Callable[[str], None],
) -> PairAccumulator:
    import ray

    from ls_train.ray_session import ray_session

    shards = [list(s) for s in np.array_split(np.arange(len(windows)), num_tasks) if s.size]
    print_fn(f"reading {len(windows)} blocks in {len(shards)} Ray tasks")
    with ray_session(cfg, logs_dir=logs_dir):
        task = ray.remote(num_cpus=1)(_accumulate_shard)
        refs = [task.remote(gt.reader, pred.reader, [windows[i] for i in s], names) for s in shards]
        parts = ray.get(refs)
    acc = PairAccumulator(names)
    for part in parts:  # integer counts: the merge order does not change the result
        acc.merge(part)
    return acc


def region_bounds(shape: Sequence[int], grid: Sequence[int]) -> list[np.ndarray]:
    """Per axis, the ``grid + 1`` voxel edges of the regions (a grid larger than an axis is
    clipped to one region per voxel)."""
    return [
        np.unique(np.round(np.linspace(0, s, min(int(g), max(int(s), 1)) + 1)).astype(np.int64))
        for s, g in zip(shape, grid, strict=True)
    ]


def _region_of(centroids: np.ndarray, edges: list[np.ndarray]) -> np.ndarray:
    """Flat region index (z-major) of the voxel that holds each ``(n, 3)`` centroid."""
    index = np.zeros(centroids.shape[0], dtype=np.int64)
    for axis, e in enumerate(edges):
        voxel = np.floor(centroids[:, axis] + 0.5)
        k = np.clip(np.searchsorted(e[1:-1], voxel, side="right"), 0, e.size - 2)
        index = index * (e.size - 1) + k
    return index


@dataclass
class VolumeEvaluation:
    """What :func:`evaluate_label_volumes` returns.

    Attributes:
        summary: the ``matching`` metric's keys for the whole volume (``ap@50``, ``tp@50``, ...).
        regions: one row per region: bounds, ``n_gt``, ``n_pred`` and the metrics per threshold.
        objects_gt: columns of the per-object table of the ground truth (``id``, ``voxels``,
            ``z``, ``y``, ``x``, ``region``, ``best_pred``, ``best_<criterion>``, ``pred@50``, ...).
        objects_pred: the same for the prediction (``best_gt``, ``gt@50``, ...).
        results: one :class:`~ls_train.metrics.matching.MatchResult` per threshold.
        pairs: the overlapping pairs.
        meta: volumes, levels, shape, spacing, block shape, timings.
    """

    summary: dict[str, float]
    regions: list[dict[str, Any]]
    objects_gt: dict[str, np.ndarray]
    objects_pred: dict[str, np.ndarray]
    results: list[MatchResult]
    pairs: OverlapPairs
    meta: dict[str, Any] = field(default_factory=dict)


def _best_partner(
    owner: np.ndarray, partner: np.ndarray, overlap: np.ndarray, n: int, partner_ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per object ``0..n-1``: the id of its partner of largest overlap (first on ties; 0 = none)
    and that overlap."""
    best_id = np.zeros(n, dtype=np.int64)
    best = np.zeros(n, dtype=np.float64)
    if owner.size:
        order = np.lexsort((partner, -overlap, owner))
        o = owner[order]
        first = order[np.concatenate(([True], o[1:] != o[:-1]))]
        best_id[owner[first]] = partner_ids[partner[first]]
        best[owner[first]] = overlap[first]
    return best_id, best


def _object_tables(
    pairs: OverlapPairs,
    results: Sequence[MatchResult],
    centroids: tuple[np.ndarray, np.ndarray],
    regions: tuple[np.ndarray, np.ndarray],
    criterion: str,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    from ls_train.metrics.keys import metric_key

    overlap = pairs.overlap(criterion)  # type: ignore[arg-type]
    tables = []
    sides = (
        ("pred", pairs.ids_gt, pairs.size_gt, pairs.gt, pairs.pred, pairs.ids_pred),
        ("gt", pairs.ids_pred, pairs.size_pred, pairs.pred, pairs.gt, pairs.ids_gt),
    )
    for col, (other, ids, sizes, owner, partner, partner_ids) in enumerate(sides):
        c, r = centroids[col], regions[col]
        best_id, best = _best_partner(owner, partner, overlap, ids.size, partner_ids)
        table = {
            "id": ids,
            "voxels": sizes,
            "z": np.round(c[:, 0], 3),
            "y": np.round(c[:, 1], 3),
            "x": np.round(c[:, 2], 3),
            "region": r,
            f"best_{other}": best_id,
            f"best_{criterion}": best,
        }
        for res in results:
            matched = np.zeros(ids.size, dtype=np.int64)
            if res.tp:
                matched[np.searchsorted(ids, res.pairs[:, col])] = res.pairs[:, 1 - col]
            table[metric_key(other, res.threshold)] = matched
        tables.append(table)
    return tables[0], tables[1]


def _region_rows(
    pairs: OverlapPairs,
    results: Sequence[MatchResult],
    regions: tuple[np.ndarray, np.ndarray],
    edges: list[np.ndarray],
) -> list[dict[str, Any]]:
    """Per region: matched pairs and misses in the region of the ground-truth object, false
    positives in that of the predicted one."""
    from ls_train.metrics.keys import metric_key

    counts = [e.size - 1 for e in edges]
    n_regions = int(np.prod(counts))
    reg_gt, reg_pred = regions
    n_gt = np.bincount(reg_gt, minlength=n_regions)
    n_pred = np.bincount(reg_pred, minlength=n_regions)
    rows: list[dict[str, Any]] = []
    for k in range(n_regions):
        iz, rest = divmod(k, counts[1] * counts[2])
        iy, ix = divmod(rest, counts[2])
        rows.append(
            {
                "region": k,
                "z0": int(edges[0][iz]), "z1": int(edges[0][iz + 1]),
                "y0": int(edges[1][iy]), "y1": int(edges[1][iy + 1]),
                "x0": int(edges[2][ix]), "x1": int(edges[2][ix + 1]),
                "n_gt": int(n_gt[k]),
                "n_pred": int(n_pred[k]),
            }
        )  # fmt: skip
    names = {"accuracy": "ap", "precision": "precision", "recall": "recall", "f1": "f1"}
    names |= {"mean_matched_iou": "mean_iou", "panoptic_quality": "pq"}
    for res in results:
        t = res.threshold
        tp_region = np.zeros(0, dtype=np.int64)
        matched_pred = np.zeros(pairs.n_pred, dtype=bool)
        if res.tp:
            gi = np.searchsorted(pairs.ids_gt, res.pairs[:, 0])
            matched_pred[np.searchsorted(pairs.ids_pred, res.pairs[:, 1])] = True
            tp_region = reg_gt[gi]
        tp = np.bincount(tp_region, minlength=n_regions)
        fn = n_gt - tp
        fp = np.bincount(reg_pred[~matched_pred], minlength=n_regions)
        order = np.argsort(tp_region, kind="stable")
        ious = np.split(res.pair_ious[order], np.cumsum(tp)[:-1]) if res.tp else [[]] * n_regions
        for k, row in enumerate(rows):
            r = MatchResult.from_counts(
                threshold=t,
                criterion=res.criterion,
                tp=int(tp[k]),
                n_true=int(tp[k] + fn[k]),
                n_pred=int(tp[k] + fp[k]),
                sum_matched_iou=math.fsum(np.asarray(ious[k]).tolist()),
            )
            for attr, short in names.items():
                row[metric_key(short, t)] = float(getattr(r, attr))
            row[metric_key("tp", t)] = r.tp
            row[metric_key("fp", t)] = r.fp
            row[metric_key("fn", t)] = r.fn
    return rows


def _summary(results: Sequence[MatchResult], thresholds: Sequence[float], criterion: str) -> dict[str, float]:
    """The ``matching`` metric's keys for one volume (the per-crop mean and the pooled value
    coincide: only the former is kept, and no crop counts)."""
    from ls_train.metrics.keys import parse_metric_key
    from ls_train.metrics.matching_metric import MatchingMetric

    metric = MatchingMetric(thresholds=thresholds, criterion=criterion, skip_empty_crops=False)  # type: ignore[arg-type]
    metric.add_results(results, "volume")
    out = {}
    for key, value in metric.compute().items():
        parsed = parse_metric_key(key)
        if (parsed is not None and parsed[2]) or key.startswith("n_crops"):
            continue
        out[key] = float(value)
    return out


def evaluate_label_volumes(
    pred: str | Path,
    gt: str | Path,
    *,
    thresholds: Sequence[float] = (0.5, 0.75, 0.9),
    criterion: str = "iou",
    pred_level: int = 0,
    gt_level: int = 0,
    block_shape: Sequence[int] = (32, 512, 512),
    region_grid: Sequence[int] = (2, 4, 4),
    check_spacing: bool = True,
    accumulate: Callable[[LabelVolume, LabelVolume, list[Window], tuple[str, str]], PairAccumulator]
    | None = None,
    progress_stream: Any = None,
    coco: bool = False,
    coco_max_detections: int | None = None,
) -> VolumeEvaluation:
    """Score the label volume ``pred`` against ``gt``, reading both block by block.

    Args:
        pred, gt: OME-Zarr label groups (or image groups with labels) or TIFF label files.
        thresholds: overlap thresholds in ``(0, 1]``.
        criterion: ``"iou"``, ``"iot"`` or ``"ios"``.
        pred_level, gt_level: multiscale levels (OME-Zarr).
        block_shape: voxels ``(z, y, x)`` read per step.
        region_grid: regions ``(z, y, x)`` of the per-region metrics.
        check_spacing: refuse volumes whose voxel spacings differ.
        accumulate: how the block pass runs (default: :func:`accumulate_blocks` in this process).
        progress_stream: where a progress line goes (None: nowhere).
        coco: also COCO mask AP, from the scores stored with ``pred`` (:func:`prediction_scores`);
            without them ``meta["coco_not_computed"]`` says why.
        coco_max_detections: keep the top-scoring detections (None: all).

    Raises:
        DataError: see the module doc; nothing is read before the volumes are checked. With
            ``coco``, also objects of ``pred`` without a score.
    """
    from ls_train.predict.progress import Progress

    start = time.monotonic()
    p = open_label_volume(pred, level=pred_level, arg="pred")
    g = open_label_volume(gt, level=gt_level, arg="gt")
    check_same_grid(p, g, check_spacing=check_spacing)
    windows = block_windows(g.shape, block_shape)
    names = (g.name, p.name)
    if accumulate is None:
        bar = Progress(
            "blocks",
            len(windows),
            voxels_per_item=int(np.prod(g.shape, dtype=np.int64)) / max(len(windows), 1),
            stream=progress_stream,
        )
        acc = accumulate_blocks(g.reader, p.reader, windows, names=names, progress=lambda k: bar.update())
    else:
        acc = accumulate(g, p, windows, names)
    read_seconds = time.monotonic() - start
    pairs = acc.pairs()
    results = match_pairs(pairs, thresholds, criterion)  # type: ignore[arg-type]
    centroids = acc.centroids()
    edges = region_bounds(g.shape, region_grid)
    regions = (_region_of(centroids[0], edges), _region_of(centroids[1], edges))
    objects_gt, objects_pred = _object_tables(pairs, results, centroids, regions, criterion)
    coco_values, coco_meta = _coco_summary(pairs, p, coco_max_detections) if coco else ({}, {})
    meta = {
        "pred": str(pred),
        "gt": str(gt),
        "pred_path": str(p.path),
        "gt_path": str(g.path),
        "pred_level": p.level,
        "gt_level": g.level,
        "shape": list(g.shape),
        "spacing": list(g.spacing),
        "pred_spacing": list(p.spacing),
        "criterion": criterion,
        "thresholds": [float(t) for t in thresholds],
        "block_shape": [int(b) for b in block_shape],
        "blocks": len(windows),
        "region_grid": [e.size - 1 for e in edges],
        "n_pairs": pairs.n_pairs,
        **coco_meta,
        "read_seconds": round(read_seconds, 2),
        "seconds": round(time.monotonic() - start, 2),
    }
    return VolumeEvaluation(
        summary=_summary(results, thresholds, criterion) | coco_values,
        regions=_region_rows(pairs, results, regions, edges),
        objects_gt=objects_gt,
        objects_pred=objects_pred,
        results=results,
        pairs=pairs,
        meta=meta,
    )


def default_output_dir(pred: str | Path) -> Path:
    """``<name>_evaluation`` next to the prediction: ``out.ome.zarr/labels/instances`` ->
    ``out_instances_evaluation`` beside ``out.ome.zarr``; ``x_labels.tif`` -> ``x_labels_evaluation``."""
    path = Path(pred).expanduser().resolve()
    parts = path.parts
    for i in range(len(parts) - 1, -1, -1):
        if parts[i].lower().endswith(".zarr"):
            stem = parts[i]
            for suffix in (".ome.zarr", ".zarr"):
                if stem.lower().endswith(suffix):
                    stem = stem[: -len(suffix)]
                    break
            inner = [q for q in parts[i + 1 :] if q != "labels"]
            return Path(*parts[:i]) / "_".join([stem, *inner, "evaluation"])
    return path.parent / f"{path.stem}_evaluation"


def _matching_settings(cfg: Mapping[str, Any]) -> tuple[list[float], str, list[str]]:
    """Thresholds and criterion of the ``matching`` metric of ``metrics.metrics_list`` (default
    0.5, 0.75, 0.9 / IoU), and the names of the other metrics (not computed on volumes)."""
    from ls_train.factory import build_metrics
    from ls_train.metrics.matching_metric import MatchingMetric

    metrics = build_metrics(cfg) if (cfg.get("metrics") or {}).get("metrics_list") else []
    matching = [m for m in metrics if isinstance(m, MatchingMetric)]
    others = [str(getattr(m, "name", type(m).__name__)) for m in metrics if not isinstance(m, MatchingMetric)]
    if matching:
        return list(matching[0].thresholds), matching[0].criterion, others
    return [0.5, 0.75, 0.9], "iou", others


def _coco_settings(cfg: Mapping[str, Any]) -> tuple[bool, int | None]:
    """Whether ``coco_ap`` is in ``metrics.metrics_list``, and its ``max_detections``."""
    from ls_train.factory import build_metrics
    from ls_train.metrics.coco_metric import CocoAPMetric

    metrics = build_metrics(cfg) if (cfg.get("metrics") or {}).get("metrics_list") else []
    coco = [m for m in metrics if isinstance(m, CocoAPMetric)]
    return bool(coco), (coco[0].max_detections if coco else None)


def run_volume_evaluation(
    cfg: Mapping[str, Any],
    pred: str,
    gt: str,
    *,
    out_dir: str | Path | None = None,
    print_fn: Callable[[str], None] = print,
    progress_stream: Any = "stderr",
) -> tuple[dict[str, float], Path]:
    """``ls-evaluate pred=... gt=...``: evaluate and write the reports (see the module doc).

    Returns:
        ``(summary, output folder)``.

    Raises:
        ConfigError: bad ``evaluation`` / ``metrics`` settings.
        DataError: bad volumes (nothing is written).
    """
    import sys

    from ls_train.config import evaluation_config
    from ls_train.evaluation.plots import plot_metrics_vs_threshold, plot_region_grid
    from ls_train.evaluation.report import format_table, write_columns_csv, write_csv, write_json
    from ls_train.metrics.keys import metric_key

    ev = evaluation_config(cfg)
    thresholds, criterion, others = _matching_settings(cfg)
    coco, coco_max_detections = _coco_settings(cfg)
    out = Path(out_dir or ev.output_dir or default_output_dir(pred)).expanduser().resolve()
    stream = sys.stderr if progress_stream == "stderr" else progress_stream
    accumulate = None
    if ev.num_workers > 1:

        def accumulate(g: LabelVolume, p: LabelVolume, windows: list[Window], names: tuple[str, str]):
            return _accumulate_with_ray(cfg, g, p, windows, ev.num_workers, names, out, print_fn)

    result = evaluate_label_volumes(
        pred,
        gt,
        thresholds=thresholds,
        criterion=criterion,
        pred_level=ev.pred_level,
        gt_level=ev.gt_level,
        block_shape=ev.block_shape,  # type: ignore[arg-type]
        region_grid=ev.region_grid,  # type: ignore[arg-type]
        check_spacing=ev.check_spacing,
        accumulate=accumulate,
        progress_stream=stream,
        coco=coco,
        coco_max_detections=coco_max_detections,
    )
    if coco and "coco_not_computed" not in result.meta:
        others = [name for name in others if name != "coco_ap"]
    meta = dict(result.meta, not_computed=others) if others else result.meta
    json_path = write_json(out / "metrics.json", result.summary, result.regions, meta, rows_key="per_region")
    write_csv(out / "metrics_summary.csv", [{"metric": k, "value": v} for k, v in result.summary.items()])
    write_csv(out / "metrics_per_region.csv", result.regions)
    write_columns_csv(out / "objects_gt.csv", result.objects_gt)
    write_columns_csv(out / "objects_pred.csv", result.objects_pred)
    pictures = [
        plot_metrics_vs_threshold(result.summary, out / "metrics_vs_iou.png", title=Path(str(pred)).name),
        plot_region_grid(result.regions, out / "regions.png", threshold=thresholds[0]),
    ]
    print_fn(format_table(result.summary))
    if "coco_not_computed" in result.meta:
        print_fn(f"coco_ap not computed: {result.meta['coco_not_computed']}")
        others = [name for name in others if name != "coco_ap"]
    if others:
        print_fn(f"not computed on label volumes (they need detection scores): {', '.join(others)}")
    key = metric_key("f1", thresholds[0])
    scored = [r for r in result.regions if r["n_gt"] or r["n_pred"]]
    worst = min(scored, key=lambda r: r[key], default=None)
    if worst is not None and len(result.regions) > 1:
        print_fn(
            f"worst region: {worst['region']} (z {worst['z0']}:{worst['z1']}, y {worst['y0']}:{worst['y1']}, "
            f"x {worst['x0']}:{worst['x1']}) {key}={worst[key]:.4f}, {worst['n_gt']} objects"
        )
    print_fn(
        f"evaluated {pred} against {gt}: {result.pairs.n_pred} predicted and {result.pairs.n_true} true "
        f"objects, {result.meta['blocks']} blocks in {result.meta['seconds']:.1f} s; results in {out}"
    )
    print_fn(
        f"  {json_path.name}, metrics_summary.csv, metrics_per_region.csv, objects_gt.csv, objects_pred.csv, "
        f"{', '.join(p.name for p in pictures)}"
    )
    return result.summary, out
