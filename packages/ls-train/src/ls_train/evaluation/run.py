"""``ls-evaluate`` with a checkpoint: evaluate its weights on ``evaluation.database`` and write the
reports and pictures.

The crops run through an :class:`~ls_train.evaluation.evaluator.Evaluator` in this process, or,
from ``evaluation.ray_min_crops`` crops on, in ``evaluation.ray_num_tasks`` Ray tasks whose
metric states merge exactly. :func:`model_from_checkpoint` (the config's model with the
checkpoint's weights) is also how ``ls-predict`` loads its detector. Whole-volume evaluation
(``ls-evaluate pred=... gt=...``) is :mod:`ls_train.evaluate_volume`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ls_train.config import ConfigError, evaluation_config, trainer_config
from ls_train.evaluation.evaluator import EvaluationResult, Evaluator
from ls_train.evaluation.report import format_table, write_report
from ls_train.factory import build_eval_dataset, build_metrics, build_model, prepare_dataset
from ls_train.precision import autocast_dtype, precision_name
from ls_train.ray_session import ray_session
from ls_train.trainer.checkpoint import load_model_weights, load_state

__all__ = ["evaluator_from_config", "model_from_checkpoint", "run_evaluation"]


def evaluator_from_config(
    cfg: Mapping[str, Any], device: torch.device | None = None, *, training_amp: str | None = None
) -> Evaluator:
    """The Evaluator of the ``evaluation`` section with the metrics of ``metrics.metrics_list``, in
    the precision of ``evaluation.amp``, or for a training run's validations of ``training_amp``
    (``trainer.amp``, see :func:`ls_train.precision.autocast_dtype`)."""
    ev = evaluation_config(cfg)
    where = device or "cpu"
    if training_amp is None:
        dtype = autocast_dtype(ev.amp, where, key="evaluation.amp")
    else:
        dtype = autocast_dtype(training_amp, where, key="trainer.amp", training=True)
    return Evaluator(
        metrics=build_metrics(cfg),
        mask_threshold=ev.mask_threshold,
        score_threshold=ev.score_threshold,
        min_visible_fraction=ev.min_visible_fraction,
        batch_size=ev.batch_size,
        device=device,
        autocast_dtype=dtype,
    )


def model_from_checkpoint(cfg: Mapping[str, Any], checkpoint: str) -> nn.Module:
    """The model of ``cfg`` with the weights of ``checkpoint``, in eval mode.

    Raises:
        CheckpointError: the checkpoint cannot be read or its weights do not fit the model.
    """
    model = build_model(cfg)
    load_model_weights(model, load_state(checkpoint), source=f"checkpoint {checkpoint}")
    return model.eval()


def _evaluate_shard(
    cfg: Mapping[str, Any],
    checkpoint: str,
    indices: list[int],
    num_examples: int,
    fingerprints: Mapping[str, str] | None = None,
) -> tuple[list[dict[str, Any]], list[Any]]:
    """One Ray task: evaluate ``indices`` and return the metric states and the picture examples
    (the driver built the index: only opened here, and it must carry ``fingerprints``' one)."""
    torch.set_num_threads(1)
    evaluator = evaluator_from_config(cfg)
    result = evaluator.evaluate(
        model_from_checkpoint(cfg, checkpoint),
        build_eval_dataset(cfg, fingerprints),
        indices=indices,
        num_examples=num_examples,
    )
    return evaluator.states(), result.examples


def run_evaluation(
    cfg: Mapping[str, Any],
    checkpoint: str,
    *,
    out_dir: str | Path | None = None,
    print_fn: Callable[[str], None] = print,
) -> tuple[dict[str, float], Path]:
    """Evaluate the weights ``checkpoint`` on ``evaluation.database`` and write the reports.

    Writes ``metrics.json``, ``metrics_summary.csv``, ``metrics_per_crop.csv``,
    ``metrics_vs_iou.png`` and ``mip_<crop>.png`` pictures into the output folder
    (``evaluation.output_dir``, default ``<runs_root>/<run_name>/evaluation``), prints the
    metrics table and the folder. With at least ``evaluation.ray_min_crops`` crops the crops are
    spread over ``evaluation.ray_num_tasks`` Ray tasks (on the cluster of ``cluster.address``, or a
    local Ray instance).

    Returns:
        ``(summary, output folder)``.
    """
    ev = evaluation_config(cfg)
    tr = trainer_config(cfg)
    if ev.database is None:
        raise ConfigError("evaluation.database is not set: ls-evaluate needs the held-out dataset")
    out = Path(out_dir or ev.output_dir or Path(tr.runs_root) / str(tr.run_name) / "evaluation").resolve()
    model = model_from_checkpoint(cfg, checkpoint)  # a checkpoint that does not fit fails first
    _, fingerprint = prepare_dataset(ev.database, "evaluation.database")  # its index built once, here
    fingerprints = {} if fingerprint is None else {"evaluation.database": fingerprint}
    dataset = build_eval_dataset(cfg, fingerprints)
    n = len(dataset)
    if n == 0:
        raise ConfigError("evaluation.database: the evaluation dataset has no crops")
    start = time.monotonic()
    evaluator = evaluator_from_config(cfg)
    if n >= ev.ray_min_crops and ev.ray_num_tasks > 1:
        result = _evaluate_with_ray(
            evaluator, cfg, checkpoint, n, ev.ray_num_tasks, ev.num_mip_crops, print_fn, logs_dir=out,
            fingerprints=fingerprints,
        )  # fmt: skip
    else:
        result = _evaluate_here(evaluator, model, dataset, ev.num_mip_crops, print_fn)
    seconds = time.monotonic() - start
    meta = {
        "checkpoint": str(checkpoint),
        "crops": n,
        "seconds": round(seconds, 2),
        "mask_threshold": ev.mask_threshold,
        "score_threshold": ev.score_threshold,
        "min_visible_fraction": ev.min_visible_fraction,
        "precision": precision_name(evaluator.autocast_dtype),
    }
    paths = write_report(out, result.summary, result.per_crop, meta)
    pictures = _write_pictures(result, out, title=str(tr.run_name))
    print_fn(format_table(result.summary))
    print_fn(f"evaluated {n} crops in {seconds:.1f} s ({meta['precision']}); results in {out}")
    print_fn(
        f"  {paths['json'].name}, {paths['summary_csv'].name}, {paths['per_crop_csv'].name}, "
        f"{len(pictures)} pictures ({', '.join(p.name for p in pictures[:4])}"
        f"{', ...' if len(pictures) > 4 else ''})"
    )
    return result.summary, out


def _evaluate_here(
    evaluator: Evaluator, model: nn.Module, dataset: Any, num_examples: int, print_fn: Callable[[str], None]
) -> EvaluationResult:
    """All crops in this process, with a progress line every tenth of them."""
    step = max(1, len(dataset) // 10)

    def report(done: int, total: int) -> None:
        if done % step == 0 or done == total:
            print_fn(f"evaluated {done}/{total} crops")

    return evaluator.evaluate(model, dataset, num_examples=num_examples, progress=report)


def _evaluate_with_ray(
    evaluator: Evaluator,
    cfg: Mapping[str, Any],
    checkpoint: str,
    n: int,
    num_tasks: int,
    num_examples: int,
    print_fn: Callable[[str], None],
    *,
    logs_dir: Path,
    fingerprints: Mapping[str, str],
) -> EvaluationResult:
    """The ``n`` crops dealt round-robin to ``num_tasks`` Ray tasks (:func:`_evaluate_shard`), their
    metric states merged into ``evaluator``; the first task draws the picture examples."""
    import ray  # seconds to import: only for a dataset this large

    with ray_session(cfg, logs_dir=logs_dir):
        task = ray.remote(num_cpus=1)(_evaluate_shard)
        shards = [list(range(k, n, num_tasks)) for k in range(num_tasks)]
        shards = [s for s in shards if s]
        print_fn(f"evaluating {n} crops in {len(shards)} Ray tasks")
        refs = [
            task.remote(
                dict(cfg),
                str(Path(checkpoint).resolve()),
                s,
                num_examples if k == 0 else 0,
                dict(fingerprints),
            )
            for k, s in enumerate(shards)
        ]
        outputs = ray.get(refs)
    evaluator.merge([o[0] for o in outputs])
    result = evaluator.result()
    result.examples = outputs[0][1]
    return result


def _write_pictures(result: EvaluationResult, out: Path, *, title: str) -> list[Path]:
    """``metrics_vs_iou.png`` (when a metric has curves against the IoU threshold) and one
    ``mip_<crop>.png`` per example crop."""
    # matplotlib loads only when pictures are drawn (ls-predict imports this module for its model)
    from ls_train.evaluation.plots import plot_crop_projections, plot_metrics_vs_threshold, threshold_curves

    pictures = []
    if threshold_curves(result.summary):  # a coco_ap-only evaluation has no curve against the threshold
        curve = out / "metrics_vs_iou.png"
        pictures.append(plot_metrics_vs_threshold(result.summary, curve, title=title))
    for crop_id, image, gt, pred, spacing in result.examples:
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in crop_id)
        pictures.append(
            plot_crop_projections(image, gt, pred, out / f"mip_{safe}.png", spacing=spacing, title=crop_id)
        )
    return pictures
