"""``ls-train``, ``ls-evaluate`` and ``ls-predict``: Hydra applications (see :mod:`ls_train.hydra_app`).

::

    ls-train --config-name=quickstart
    ls-train -cn config_mrcnn_resnet cluster=cpu trainer.epochs=5 trainer.run_name=try1
    ls-train -cn quickstart --cfg job --resolve
    ls-train -cn quickstart -m trainer.lr=1e-3,3e-4
    ls-evaluate checkpoint=runs/quickstart/checkpoint_epoch0020_iter00000160/
    ls-evaluate pred=labels.ome.zarr/labels/instances gt=volume_labels.tif   # whole volumes, no model
    ls-predict checkpoint=runs/quickstart/checkpoint_.../ input=volume.tif output=labels.ome.zarr \
        predict.tile_shape=[32,256,256]

``--config-name`` picks the experiment; ``ls-evaluate`` and ``ls-predict`` may leave it out and take
the config stored in the ``checkpoint=`` folder (see :mod:`ls_train.checkpoint_config`; with
``--config-name`` too, a model that differs from the checkpoint's is refused unless
``accept_config_mismatch=true``); ``ls-evaluate pred=... gt=...`` scores a predicted label volume
against the truth (:mod:`ls_train.evaluate_volume`, the packaged ``evaluate_volume`` config unless
``--config-name`` names another). Every other argument is a Hydra flag or override (``key=value``,
``group=option``, ``+key=value``, ``~key``).

Exit status: 0 done (or stopped on request and resumable), 1 training stopped on an error,
2 bad config, arguments, input or checkpoint.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ls_train.hydra_app import App, metrics_of, run_app, stop_on_sigterm, write_result

__all__ = ["evaluate_main", "main", "predict_main", "train_main"]

_TRAIN_RUN_DIR = (
    "${ls.run_dir:${oc.select:trainer.runs_root,runs},${oc.select:trainer.run_name,null},"
    "${hydra.job.config_name}}"
)
_TRAIN_SWEEP_DIR = "${oc.select:trainer.runs_root,runs}/multirun/${now:%Y-%m-%d}/${now:%H-%M-%S}"


def _train(cfg: dict[str, Any]) -> int:
    """Train (and evaluate when ``evaluation.run_after_training``); ``result.json`` in the run folder."""
    from ls_data.errors import DataError
    from ls_train.config import ConfigError, evaluation_config
    from ls_train.evaluation.run import run_evaluation
    from ls_train.trainer import CheckpointError, TrainingStopped, train
    from ls_train.trainer.faults import fault_point

    try:
        result = train(cfg)
    except TrainingStopped as exc:
        print(f"ls-train: training stopped: {exc}", file=sys.stderr)
        return 1
    except (ConfigError, DataError, CheckpointError) as exc:
        print(f"ls-train: error: {exc}", file=sys.stderr)
        return 2
    if result.stopped:
        print(f"ls-train: stopped on request; re-run with trainer.run_name={result.run_dir.name} to resume")
        return 0
    checkpoint = result.best_checkpoint or result.latest_checkpoint
    summary = None
    if evaluation_config(cfg).run_after_training:
        if checkpoint is None:
            print("ls-train: error: no checkpoint to evaluate", file=sys.stderr)
            return 1
        print(f"evaluating {checkpoint} on the held-out crops ...")
        fault_point("train.evaluation")
        try:
            with stop_on_sigterm():  # the training may have started Ray, which has its own handler
                summary, _ = run_evaluation(cfg, str(checkpoint))
        except (ConfigError, DataError, CheckpointError) as exc:
            print(f"ls-train: error: {exc}", file=sys.stderr)
            return 2
    metrics = metrics_of(summary) if summary is not None else metrics_of(result.metrics)
    write_result(result.run_dir, 0, checkpoint=checkpoint, metrics=metrics)
    return 0


def _given(value: Any) -> bool:
    return value not in (None, "", "???")


def _evaluate_volume(cfg: dict[str, Any]) -> int:
    """``ls-evaluate pred=PATH gt=PATH``: a predicted label volume against the truth, block by block."""
    from ls_data.errors import DataError
    from ls_train.config import ConfigError
    from ls_train.evaluate_volume import run_volume_evaluation

    missing = [key for key in ("pred", "gt") if not _given(cfg.get(key))]
    if missing:
        print(
            f"ls-evaluate: error: give {' and '.join(f'{k}=PATH' for k in missing)}: pred= the predicted "
            f"label volume (e.g. out.ome.zarr/labels/instances), gt= the ground-truth labels "
            f"(OME-Zarr or TIFF)",
            file=sys.stderr,
        )
        return 2
    if _given(cfg.get("checkpoint")):
        print(
            f"ls-evaluate: error: checkpoint={cfg['checkpoint']} and pred=/gt= ask for two evaluations: "
            f"pred= and gt= score label volumes (no model); checkpoint= evaluates weights on held-out crops",
            file=sys.stderr,
        )
        return 2
    try:
        run_volume_evaluation(cfg, str(cfg["pred"]), str(cfg["gt"]))
    except (ConfigError, DataError) as exc:
        print(f"ls-evaluate: error: {exc}", file=sys.stderr)
        return 2
    return 0


def _evaluate(cfg: dict[str, Any]) -> int:
    from ls_data.errors import DataError
    from ls_train.config import ConfigError
    from ls_train.evaluation.run import run_evaluation
    from ls_train.trainer import CheckpointError

    if _given(cfg.get("pred")) or _given(cfg.get("gt")):
        return _evaluate_volume(cfg)
    checkpoint = cfg.get("checkpoint")
    if checkpoint in (None, "", "???"):
        print(
            "ls-evaluate: error: give the weights to evaluate: checkpoint=PATH (a checkpoint folder or "
            "its state.pt)",
            file=sys.stderr,
        )
        return 2
    if not Path(str(checkpoint)).exists():
        print(f"ls-evaluate: error: checkpoint={checkpoint}: no such file or folder", file=sys.stderr)
        return 2
    try:
        run_evaluation(cfg, str(checkpoint))
    except (ConfigError, DataError, CheckpointError) as exc:
        print(f"ls-evaluate: error: {exc}", file=sys.stderr)
        return 2
    return 0


def _predict(cfg: dict[str, Any]) -> int:
    from ls_data.errors import DataError
    from ls_train.config import ConfigError
    from ls_train.predict import run_prediction
    from ls_train.predict.tilestore import PlanMismatchError
    from ls_train.storage import StorageFullError
    from ls_train.trainer import CheckpointError

    for key in ("input", "output"):
        if cfg.get(key) in (None, "", "???"):
            print(f"ls-predict: error: give {key}=PATH", file=sys.stderr)
            return 2
    try:
        run_prediction(
            cfg,
            input=str(cfg["input"]),
            output=str(cfg["output"]),
            checkpoint=cfg.get("checkpoint"),
            overwrite=bool(cfg.get("overwrite")),
        )
    except (ConfigError, DataError, CheckpointError, PlanMismatchError, FileExistsError) as exc:
        print(f"ls-predict: error: {exc}", file=sys.stderr)
        return 2
    except StorageFullError as exc:  # after work started: the finished tiles are kept for a rerun
        print(f"ls-predict: error: {exc}", file=sys.stderr)
        return 1
    return 0


TRAIN = App("ls-train", _train, run_dir=_TRAIN_RUN_DIR, sweep_dir=_TRAIN_SWEEP_DIR, summary=True)
EVALUATE = App("ls-evaluate", _evaluate, from_checkpoint=True, config_by_key=(("pred", "evaluate_volume"),))
PREDICT = App("ls-predict", _predict, from_checkpoint=True)


def train_main(argv: Sequence[str] | None = None) -> int:
    """``ls-train --config-name=NAME [Hydra flags] [overrides]``: train (and evaluate)."""
    return run_app(TRAIN, argv)


def evaluate_main(argv: Sequence[str] | None = None) -> int:
    """``ls-evaluate [--config-name=NAME] checkpoint=PATH [overrides]``: metrics, tables, pictures;
    ``ls-evaluate pred=PATH gt=PATH [overrides]``: the same for a predicted label volume."""
    return run_app(EVALUATE, argv)


def predict_main(argv: Sequence[str] | None = None) -> int:
    """``ls-predict [--config-name=NAME] checkpoint=PATH input=PATH output=PATH.ome.zarr [overrides]``."""
    return run_app(PREDICT, argv)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ls_train.cli {train,evaluate,predict} ...``: ls-train, ls-evaluate, ls-predict."""
    process = argv is None  # the whole process: the SIGTERM handler stays until it exits
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"train": TRAIN, "evaluate": EVALUATE, "predict": PREDICT}
    if not argv or argv[0] not in commands:
        print(
            "usage: python -m ls_train.cli {train,evaluate,predict} --config-name=NAME [overrides]",
            file=sys.stderr,
        )
        return 2
    return run_app(commands[argv[0]], argv[1:], process=process)


if __name__ == "__main__":
    sys.exit(main())
