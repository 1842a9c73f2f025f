"""``ls-train``, ``ls-evaluate`` and ``ls-predict``: Hydra-style command lines.

::

    ls-train --config-name=quickstart
    ls-train --config-name=config_mrcnn_resnet cluster=cpu trainer.epochs=5 trainer.run_name=try1
    ls-evaluate --config-name=skittlez_evaluation_resnet checkpoint=runs/mrcnn_resnet/checkpoint_.../
    ls-predict --config-name=quickstart checkpoint=runs/quickstart/checkpoint_.../ \
        input=volume.ome.zarr output=volume_labels.ome.zarr predict.tile_shape=[32,256,256]
    ls-predict checkpoint=runs/quickstart/checkpoint_.../ input=volume.tif output=labels.ome.zarr

``--config-name`` picks the experiment; ``ls-evaluate`` and ``ls-predict`` may leave it out and take
the config stored in the ``checkpoint=`` folder (see :mod:`ls_train.checkpoint_config`; with
``--config-name`` too, a model that differs from the checkpoint's is refused unless
``accept_config_mismatch=true``). ``--config-dir`` (repeatable) adds a folder searched
before ``./configs`` and the packaged configs, and every other argument is a Hydra override
(``key=value``, ``group=option``, ``+key=value``, ``~key``). ``--print-config`` prints the resolved
config and exits. Nothing is written to Hydra's output folders; the run folder is
``<trainer.runs_root>/<trainer.run_name>``.

Exit status: 0 done (or stopped on request and resumable), 1 training stopped on an error,
2 bad config, arguments, input or checkpoint.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["evaluate_main", "main", "predict_main", "train_main"]


def _parser(prog: str, description: str, *, config_from_checkpoint: bool = False) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument(
        "--config-name",
        "-cn",
        required=not config_from_checkpoint,
        help="experiment config, e.g. quickstart"
        + (" (default: the config stored in the checkpoint=DIR given)" if config_from_checkpoint else ""),
    )
    parser.add_argument(
        "--config-dir",
        "-cd",
        action="append",
        default=[],
        help="extra config folder searched first (repeatable); ./configs and the packaged configs follow",
    )
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.add_argument(
        "overrides", nargs="*", help="Hydra overrides: key=value, group=option, +key=value, ~key"
    )
    return parser


def _checkpoint_override(overrides: Sequence[str]) -> str | None:
    values = [o.split("=", 1)[1] for o in overrides if o.startswith(("checkpoint=", "+checkpoint="))]
    return values[-1] if values else None


def _load(prog: str, args: argparse.Namespace) -> dict[str, Any] | None:
    """The config of ``--config-name`` (checked against the checkpoint's own config when a
    checkpoint is given), or without it the config stored in ``checkpoint=``, with the overrides."""
    from omegaconf import OmegaConf

    from ls_train.checkpoint_config import check_against_checkpoint, config_from_checkpoint
    from ls_train.config import ConfigError, load_config
    from ls_train.trainer import CheckpointError

    checkpoint = _checkpoint_override(args.overrides)
    try:
        if args.config_name is None:
            if checkpoint in (None, "", "???"):
                raise ConfigError(
                    "give --config-name=NAME, or checkpoint=DIR to use the config stored in the checkpoint"
                )
            cfg = config_from_checkpoint(checkpoint, args.overrides)
        else:
            cfg = load_config(args.config_name, args.overrides, config_dirs=args.config_dir)
            if checkpoint not in (None, "", "???"):
                check_against_checkpoint(cfg, checkpoint)
    except (ConfigError, CheckpointError, ValueError, LookupError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return None
    if args.print_config:
        print(OmegaConf.to_yaml(OmegaConf.create(cfg)))
    return cfg


def train_main(argv: Sequence[str] | None = None) -> int:
    """``ls-train --config-name=NAME [--config-dir DIR] [overrides]``: train (and evaluate when
    ``evaluation.run_after_training``)."""
    args = _parser("ls-train", "Train a 3-D instance segmentation model with Ray Train.").parse_args(argv)
    cfg = _load("ls-train", args)
    if cfg is None:
        return 2
    if args.print_config:
        return 0
    from ls_data.errors import DataError
    from ls_train.config import ConfigError, evaluation_config
    from ls_train.evaluate import run_evaluation
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
    if evaluation_config(cfg).run_after_training:
        checkpoint = result.best_checkpoint or result.latest_checkpoint
        if checkpoint is None:
            print("ls-train: error: no checkpoint to evaluate", file=sys.stderr)
            return 1
        print(f"evaluating {checkpoint} on the held-out crops ...")
        fault_point("train.evaluation")
        try:
            run_evaluation(cfg, str(checkpoint))
        except (ConfigError, DataError, CheckpointError) as exc:
            print(f"ls-train: error: {exc}", file=sys.stderr)
            return 2
    return 0


def evaluate_main(argv: Sequence[str] | None = None) -> int:
    """``ls-evaluate --config-name=NAME checkpoint=PATH [overrides]``: metrics, tables and pictures."""
    args = _parser(
        "ls-evaluate", "Evaluate a trained model on held-out crops.", config_from_checkpoint=True
    ).parse_args(argv)
    cfg = _load("ls-evaluate", args)
    if cfg is None:
        return 2
    if args.print_config:
        return 0
    from ls_data.errors import DataError
    from ls_train.config import ConfigError
    from ls_train.evaluate import run_evaluation
    from ls_train.trainer import CheckpointError

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


def predict_main(argv: Sequence[str] | None = None) -> int:
    """``ls-predict --config-name=NAME checkpoint=PATH input=PATH output=PATH.ome.zarr [overrides]``."""
    args = _parser(
        "ls-predict",
        "Segment a whole volume tile by tile into a stitched OME-Zarr label image.",
        config_from_checkpoint=True,
    ).parse_args(argv)
    cfg = _load("ls-predict", args)
    if cfg is None:
        return 2
    if args.print_config:
        return 0
    from ls_data.errors import DataError
    from ls_train.config import ConfigError
    from ls_train.predict import run_prediction
    from ls_train.predict.tilestore import PlanMismatchError
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
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ls_train.cli {train,evaluate,predict} ...``: ls-train, ls-evaluate, ls-predict."""
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"train": train_main, "evaluate": evaluate_main, "predict": predict_main}
    if not argv or argv[0] not in commands:
        print(
            "usage: python -m ls_train.cli {train,evaluate,predict} --config-name=NAME [overrides]",
            file=sys.stderr,
        )
        return 2
    return commands[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
