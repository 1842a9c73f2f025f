"""The Evaluator: model -> predictions -> instance label volumes -> metrics.

For each crop the ground-truth masks become a label volume (instance ``k`` -> label ``k + 1``)
and the predicted masks are merged into one with
:func:`ls_detection.predictions_to_label_volume` (higher scores win overlaps); both go to every
configured metric (``ls.metrics``) together with the score and class of each predicted label
and the detector's boxes. Metric states merge exactly, so crops can be spread over distributed
workers (validation during training) or Ray tasks (``ls-evaluate`` on a large dataset).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ls_detection import paint_instances, visible_ranking
from ls_train.evaluation.report import join_per_crop
from ls_train.precision import autocast
from ls_train.trainer.checkpoint import unwrap_model

__all__ = [
    "EvaluationResult",
    "Evaluator",
    "gt_label_volume",
    "label_scores",
    "sample_spacings",
    "spacing_kwargs",
]


def sample_spacings(metas: Any) -> list[tuple[float, ...]] | None:
    """The voxel spacing ``(sz, sy, sx)`` of each sample's meta, or None when one has none."""
    spacings = [m.get("spacing") if isinstance(m, Mapping) else None for m in metas or ()]
    if not spacings or any(s is None for s in spacings):
        return None
    return [tuple(float(v) for v in s) for s in spacings]


def spacing_kwargs(model: nn.Module, spacings: Sequence[Sequence[float]] | None) -> dict[str, Any]:
    """``{"spacings": spacings}`` for a detector that resizes its input to a target spacing
    (``models.target_spacing``: its ``transform.target_spacing`` is set), else ``{}``, so other
    models keep torchvision's ``model(images[, targets])``.

    Raises:
        ValueError: the detector needs spacings and a sample has none.
    """
    if getattr(getattr(unwrap_model(model), "transform", None), "target_spacing", None) is None:
        return {}
    if spacings is None:
        raise ValueError("the detector resizes to models.target_spacing, but a sample meta has no 'spacing'")
    return {"spacings": spacings}


def gt_label_volume(target: Mapping[str, Tensor]) -> tuple[np.ndarray, dict[int, int]]:
    """Ground-truth ``(Z, Y, X)`` int32 labels (instance ``k`` -> ``k + 1``) and label -> class."""
    masks = target["masks"]
    if masks.dim() != 4:
        raise ValueError(f"target['masks'] must be (N, Z, Y, X), got {tuple(masks.shape)}")
    labels = np.zeros(tuple(masks.shape[1:]), dtype=np.int32)
    for k in range(masks.shape[0]):
        labels[masks[k].cpu().numpy() > 0] = k + 1
    classes = {k + 1: int(c) for k, c in enumerate(target["labels"].tolist())}
    return labels, classes


def _painted_scores(
    prediction: Mapping[str, Tensor], which: Tensor
) -> tuple[dict[int, float], dict[int, int]]:
    """Score and class of labels 1..N painted from detections ``which`` (``paint_instances``)."""
    scores = prediction["scores"].detach().float().cpu()[which].tolist()
    classes = prediction.get("labels")
    kinds = classes.detach().cpu()[which].tolist() if classes is not None else [1] * len(scores)
    return (
        {k + 1: float(v) for k, v in enumerate(scores)},
        {k + 1: int(v) for k, v in enumerate(kinds)},
    )


def label_scores(
    prediction: Mapping[str, Tensor],
    labels: np.ndarray,
    *,
    mask_threshold: float,
    score_threshold: float,
    min_visible_fraction: float = 0.0,
) -> tuple[dict[int, float], dict[int, int]]:
    """Score and class of each label of ``predictions_to_label_volume(prediction, ...)``, for a
    label volume painted elsewhere (the :class:`Evaluator` takes them from ``paint_instances``).

    A label's voxels belong to the best-scored painted detection covering them, so any one voxel
    of the label identifies it: the first detection of ``ls_detection.visible_ranking`` whose mask
    exceeds ``mask_threshold`` there.
    """
    ids, first = np.unique(labels.ravel(), return_index=True)
    keep = ids > 0
    ids, first = ids[keep], first[keep]
    if ids.size == 0:
        return {}, {}
    scores = prediction["scores"].detach().float().cpu()
    order = visible_ranking(
        prediction, mask_threshold=mask_threshold, score_threshold=score_threshold,
        min_visible_fraction=min_visible_fraction,
    ).cpu()  # fmt: skip
    masks = prediction["masks"].detach()[order, 0].flatten(1).cpu()
    inside = masks[:, torch.from_numpy(first)] > mask_threshold  # (K, L)
    which = inside.to(torch.uint8).argmax(dim=0)
    det = order[which]
    classes = prediction.get("labels")
    return (
        {int(i): float(scores[d]) for i, d in zip(ids, det.tolist(), strict=True)},
        {
            int(i): int(classes[d]) if classes is not None else 1
            for i, d in zip(ids, det.tolist(), strict=True)
        },
    )


@dataclass
class EvaluationResult:
    """What :meth:`Evaluator.evaluate` returns.

    Attributes:
        summary: Merged metric values (``ap@50``, ..., ``coco_mask_ap``) plus ``n_crops``.
        per_crop: One row per crop (``crop_id`` and every metric's per-crop values).
        examples: ``(crop_id, image, gt_labels, pred_labels, spacing)`` of the first crops, for pictures.
        seconds: Wall time of the evaluation.
    """

    summary: dict[str, float]
    per_crop: list[dict[str, Any]] = field(default_factory=list)
    examples: list[tuple[str, np.ndarray, np.ndarray, np.ndarray, Any]] = field(default_factory=list)
    seconds: float = 0.0


class Evaluator:
    """Run a detector over a dataset and feed the metrics.

    Args:
        metrics: Metric objects (``ls.metrics`` interface: update / compute / per_crop / state / merge).
        mask_threshold: Mask probability above which a voxel belongs to a predicted instance.
        score_threshold: Detections below this score are not painted into the label volume.
        min_visible_fraction: Detections that keep less than this fraction of their mask beside
            better-scored ones are not painted (``ls_detection.predictions_to_label_volume``).
        batch_size: Crops per forward pass.
        device: Where the model runs (default: the model's device).
        autocast_dtype: Autocast dtype for the forward pass (e.g. ``torch.bfloat16`` on GPU), or None.
    """

    def __init__(
        self,
        *,
        metrics: Sequence[Any],
        mask_threshold: float = 0.5,
        score_threshold: float = 0.5,
        min_visible_fraction: float = 0.0,
        batch_size: int = 1,
        device: torch.device | str | None = None,
        autocast_dtype: torch.dtype | None = None,
    ) -> None:
        if not metrics:
            raise ValueError("Evaluator needs at least one metric")
        self.metrics = list(metrics)
        self.mask_threshold = float(mask_threshold)
        self.score_threshold = float(score_threshold)
        self.min_visible_fraction = float(min_visible_fraction)
        self.batch_size = int(batch_size)
        self.device = None if device is None else torch.device(device)
        self.autocast_dtype = autocast_dtype

    def reset(self) -> None:
        """Forget every crop."""
        for m in self.metrics:
            m.reset()

    @torch.no_grad()
    def predict(
        self, model: nn.Module, images: Sequence[Tensor], spacings: Sequence[Sequence[float]] | None = None
    ) -> list[dict[str, Tensor]]:
        """Eval-mode predictions of ``model`` for ``images`` (each ``(C, Z, Y, X)``, voxel spacing
        ``spacings``), on CPU, float32."""
        net = unwrap_model(model)
        was_training = net.training
        net.eval()
        device = self.device or next(net.parameters()).device
        try:
            with autocast(self.autocast_dtype, device):
                out = net([im.to(device) for im in images], **spacing_kwargs(net, spacings))
        finally:
            net.train(was_training)
        return [
            {
                k: (v.detach().float().cpu() if v.is_floating_point() else v.detach().cpu())
                for k, v in p.items()
            }
            for p in out
        ]

    def add(
        self,
        prediction: Mapping[str, Tensor],
        target: Mapping[str, Tensor],
        *,
        crop_id: str,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Add one crop's prediction; returns its ``(gt_labels, pred_labels)``."""
        gt, gt_classes = gt_label_volume(target)
        painted, which = paint_instances(
            prediction, mask_threshold=self.mask_threshold, score_threshold=self.score_threshold,
            min_visible_fraction=self.min_visible_fraction,
        )  # fmt: skip
        pred = painted.cpu().numpy().astype(np.int32)
        if pred.shape != gt.shape:
            raise ValueError(
                f"crop {crop_id}: predicted label volume {pred.shape} and ground truth {gt.shape} "
                f"differ in shape"
            )
        scores, classes = _painted_scores(prediction, which.cpu())
        keep = prediction["scores"] >= self.score_threshold
        meta = {
            "crop_id": crop_id,
            "gt_classes": gt_classes,
            "pred_classes": classes,
            "gt_boxes": target["boxes"].detach().cpu().numpy().reshape(-1, 6),
            "pred_boxes": prediction["boxes"][keep].numpy().reshape(-1, 6),
            "pred_box_scores": prediction["scores"][keep].numpy(),
            "gt_box_classes": target["labels"].detach().cpu().numpy().reshape(-1),
            "pred_box_classes": prediction["labels"][keep].numpy().reshape(-1),
        }
        for m in self.metrics:
            m.update(gt, pred, pred_scores=scores, meta=meta)
        return gt, pred

    def evaluate(
        self,
        model: nn.Module,
        dataset: Any,
        *,
        indices: Sequence[int] | None = None,
        num_examples: int = 0,
        progress: Callable[[int, int], None] | None = None,
    ) -> EvaluationResult:
        """Evaluate ``model`` on the crops ``indices`` of ``dataset`` (default: all); keeps the metric
        states (so several calls, or :meth:`merge`, accumulate) and returns the summary so far."""
        start = time.monotonic()
        order = list(range(len(dataset))) if indices is None else list(indices)
        examples = []
        for b in range(0, len(order), self.batch_size):
            chunk = order[b : b + self.batch_size]
            samples = [dataset[i] for i in chunk]
            metas = [s[2] if len(s) > 2 else {} for s in samples]
            predictions = self.predict(model, [s[0] for s in samples], sample_spacings(metas))
            for i, sample, meta, prediction in zip(chunk, samples, metas, predictions, strict=True):
                crop_id = (
                    f"{meta.get('volume_name', 'crop')}@{tuple(int(v) for v in meta.get('origin', (i,)))}"
                )
                gt, pred = self.add(prediction, sample[1], crop_id=crop_id)
                if len(examples) < num_examples:
                    examples.append((crop_id, sample[0].cpu().numpy(), gt, pred, meta.get("spacing")))
            if progress is not None:
                progress(min(b + self.batch_size, len(order)), len(order))
        result = self.result()
        result.examples = examples
        result.seconds = time.monotonic() - start
        return result

    def states(self) -> list[dict[str, Any]]:
        """The metrics' picklable states (one per metric)."""
        return [m.state() for m in self.metrics]

    def merge(self, states: Sequence[Sequence[Mapping[str, Any]]]) -> None:
        """Add other evaluators' :meth:`states` (same metrics, same order)."""
        for k, m in enumerate(self.metrics):
            m.merge([s[k] for s in states])

    def result(self) -> EvaluationResult:
        """The merged summary and per-crop rows of everything seen so far."""
        summary: dict[str, float] = {}
        for m in self.metrics:
            summary.update({k: float(v) for k, v in m.compute().items()})
        per_crop = join_per_crop(*(m.per_crop() for m in self.metrics))
        summary["n_crops"] = float(len(per_crop))
        return EvaluationResult(summary=summary, per_crop=per_crop)
