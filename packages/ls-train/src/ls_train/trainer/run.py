"""Start a training run: prepare the data, then Ray Train's ``TorchTrainer`` (or the loop in-process).

The run lives in ``<trainer.runs_root>/<trainer.run_name>`` (Ray's ``storage_path`` / ``name``):
Ray's checkpoints and state, ``metrics.csv``, ``tensorboard/`` and, at the end, ``curves.png``.
Starting a run whose folder holds checkpoints resumes from the latest one (model, optimizer,
scheduler, epoch and iteration); a new name starts fresh. ``FailureConfig(max_failures)`` restarts
crashed workers from the latest checkpoint. SIGTERM on the driver asks the workers to
checkpoint and stop; the driver then exits normally.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ls_train.config import ConfigError, check_score_attribute, cluster_config, data_config, trainer_config
from ls_train.ray_session import RayStartError, start_ray
from ls_train.storage import StorageFullError
from ls_train.trainer.checkpoint import RANK_KEY, UNRANKED, checkpoint_rank, remove_stale_writes
from ls_train.trainer.console import CONSOLE_FILE, ConsoleRelay, keep_ray_logs, quiet_ray_logging
from ls_train.trainer.faults import STOP_FILE, NonFiniteLossError, StopReason, fault_point, request_stop
from ls_train.trainer.logging import CSV_FILE, CURVES_FILE, plot_curves
from ls_train.trainer.loop import (
    INDEX_FINGERPRINTS_KEY,
    STOP_REASON_KEY,
    STOP_REQUESTED_KEY,
    TrainingStopped,
    train_loop_per_worker,
)

__all__ = ["TrainResult", "prepare_data", "run_dir_of", "train"]


@dataclass
class TrainResult:
    """The outcome of :func:`train`.

    Attributes:
        run_dir: The run folder.
        best_checkpoint: Folder of the best checkpoint by the score (None when none was scored).
        latest_checkpoint: Folder of the latest checkpoint.
        metrics: The last reported metrics.
        stopped: True when the run checkpointed and stopped on request (SIGTERM) before the end.
        curves: The loss/metric curves PNG (None without any finished epoch).
    """

    run_dir: Path
    best_checkpoint: Path | None
    latest_checkpoint: Path | None
    metrics: dict[str, Any] = field(default_factory=dict)
    stopped: bool = False
    curves: Path | None = None


def run_dir_of(cfg: Mapping[str, Any]) -> Path:
    """``<runs_root>/<run_name>``, absolute."""
    tr = trainer_config(cfg)
    if not tr.run_name:
        raise ConfigError("trainer.run_name is not set")
    return Path(tr.runs_root).expanduser().resolve() / tr.run_name


SYNTHESIZED_FILE = "synthesize.json"
"""The ``data.synthesize`` settings a generated dataset was made with, in its folder."""


def _reuse_note(root: Path, wanted: Mapping[str, Any]) -> str:
    """The line that says a non-empty ``data.root`` is used as it is, and how it differs from
    what ``data.synthesize`` asks for (a dataset of an older recipe, or one's own data)."""
    made = root / SYNTHESIZED_FILE
    base = f"using the data in {root.resolve()} (data.synthesize generates only into an empty folder)"
    if not made.is_file():
        return base
    try:
        before = json.loads(made.read_text())
    except (OSError, json.JSONDecodeError):
        return base
    keys = sorted(set(before) | set(wanted))
    changed = [f"{k}: {before.get(k)!r} there, {wanted.get(k)!r} asked" for k in keys
               if before.get(k) != wanted.get(k)]
    if not changed:
        return base
    return (f"warning: {base}, which was generated with other data.synthesize settings ("
            + "; ".join(changed) + "): empty the folder to generate the data of this recipe")


def prepare_data(cfg: Mapping[str, Any], *, print_fn: Callable[[str], None] = print) -> dict[str, str]:
    """Generate the synthetic dataset when ``data.synthesize`` is set and ``data.root`` is empty,
    then build (or reuse) each crop index once, here in the driver, before any worker starts.

    Returns:
        ``{where: fingerprint}`` of the indices built (``datasets.database``, ``evaluation.database``),
        for the workers, which only open them.
    """
    from ls_train.factory import dataset_sections, prepare_dataset

    _synthesize(cfg, print_fn)
    fingerprints: dict[str, str] = {}
    for where, section in dataset_sections(cfg).items():
        fault_point("train.prepare")  # before each crop index is built (or reused)
        dataset, fingerprint = prepare_dataset(section, where)
        print_fn(f"{where}: {len(dataset)} crops ({dataset!r})")
        if len(dataset) == 0:
            raise ConfigError(f"{where}: the dataset has no crops; check its index / selection")
        if fingerprint is not None:
            fingerprints[where] = fingerprint
    return fingerprints


def _synthesize(cfg: Mapping[str, Any], print_fn: Callable[[str], None]) -> None:
    """Generate the synthetic dataset of ``data.synthesize`` into an empty ``data.root``."""
    data = data_config(cfg)
    if data is None or data.synthesize is None:
        return
    root = Path(data.root).expanduser()
    wanted = json.loads(json.dumps(dict(data.synthesize)))
    if root.exists() and any(root.iterdir()):
        print_fn(_reuse_note(root, wanted))
        return
    from ls_data.synth import synthesize_dataset

    print_fn(f"generating the synthetic dataset in {root.resolve()} ...")
    report = synthesize_dataset(root, **dict(data.synthesize), progress=print_fn)
    (root / SYNTHESIZED_FILE).write_text(json.dumps(wanted, indent=2, sort_keys=True) + "\n")
    print_fn(f"synthetic dataset ready: {len(report.volumes)} volumes in {report.seconds:.1f} s")


def _ray_fit(
    cfg: Mapping[str, Any], run_dir: Path, fingerprints: Mapping[str, str], print_fn: Callable[[str], None]
) -> TrainResult:
    import ray
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    tr = trainer_config(cfg)
    cl = cluster_config(cfg)
    quiet = not tr.verbose
    started = False
    if not ray.is_initialized():
        if quiet:
            quiet_ray_logging()
        quiet_kwargs = {"log_to_driver": False, "logging_level": "WARNING"} if quiet else {}
        try:
            start_ray(cl, **quiet_kwargs)  # keeps this process's SIGTERM handler, not Ray's
        except RayStartError as exc:
            raise TrainingStopped(f"{exc}. The checkpoints on disk are kept: re-run the same command to "
                                  f"resume") from exc
        started = True
    console = run_dir / CONSOLE_FILE if quiet else None
    resources = dict(cl.resources_per_worker) if cl.resources_per_worker else None
    stop_reason = ray.remote(num_cpus=0)(StopReason).remote()
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "cfg": dict(cfg),
            "run_dir": str(run_dir),
            "local": False,
            "console": None if console is None else str(console),
            "stop_reason": stop_reason,
            INDEX_FINGERPRINTS_KEY: dict(fingerprints),
        },
        torch_config=TorchConfig(backend="nccl" if cl.use_gpu else "gloo"),
        scaling_config=ray.train.ScalingConfig(
            num_workers=cl.num_workers, use_gpu=cl.use_gpu, resources_per_worker=resources
        ),
        run_config=ray.train.RunConfig(
            name=tr.run_name,
            storage_path=str(run_dir.parent),
            checkpoint_config=ray.train.CheckpointConfig(
                num_to_keep=tr.num_to_keep,
                checkpoint_score_attribute=RANK_KEY,
                checkpoint_score_order="max",
            ),
            failure_config=ray.train.FailureConfig(max_failures=tr.max_failures),
        ),
    )
    stopper = _DriverStop(run_dir)  # until Ray is shut down: a SIGTERM then is one more stop request
    try:
        terminal = sys.stdout if print_fn is print and sys.stdout.isatty() else None
        relay = ConsoleRelay(console, print_fn=print_fn, stream=terminal) if console is not None else None
        with relay or nullcontext():
            result = trainer.fit()
        reason = ray.get(stop_reason.get.remote())
    except ray.train.TrainingFailedError as exc:
        raise TrainingStopped(_failure_summary(exc, tr.max_failures)) from exc
    finally:
        try:
            ray.kill(stop_reason)
            if started:
                logs = keep_ray_logs(run_dir) if quiet else None
                ray.shutdown()
                if logs is not None:
                    print_fn(f"Ray's logs (every worker's output): {logs}")
        finally:
            stopper.restore()
    metrics = dict(result.metrics or {}, **({STOP_REASON_KEY: reason} if reason else {}))
    latest = Path(result.checkpoint.path) if result.checkpoint is not None else None
    ranked = [
        (rank, Path(ckpt.path))
        for ckpt, m in (result.best_checkpoints or [])
        if (rank := checkpoint_rank(m.get(RANK_KEY), "max")) > UNRANKED
    ]
    best = max(ranked, key=lambda rp: rp[0])[1] if ranked else None
    return TrainResult(run_dir=run_dir, best_checkpoint=best, latest_checkpoint=latest, metrics=metrics)


def _failure_summary(exc: Exception, max_failures: int) -> str:
    """One paragraph for a Ray Train failure: the last line of each worker's error."""
    failures = getattr(exc, "worker_failures", None) or {}
    causes = [
        f"worker {rank}: {(str(err).strip().splitlines() or [type(err).__name__])[-1]}"
        for rank, err in sorted(failures.items())
    ] or [(str(exc).strip().splitlines() or [type(exc).__name__])[-1]]
    return (
        f"Ray Train failed (after trainer.max_failures={max_failures} restarts from the last "
        f"checkpoint): {'; '.join(causes)}. The checkpoints on disk are kept: fix the cause and "
        f"re-run the same command to resume. The whole error:\n{str(exc).strip()}"
    )


def _precision(cfg: Mapping[str, Any], cl: Any) -> str:
    """The forward pass's precision for the banner."""
    from ls_train.precision import autocast_dtype, precision_name

    device = "cuda" if cl.use_gpu else "cpu"
    return precision_name(autocast_dtype(trainer_config(cfg).amp, device, key="trainer.amp", training=True))


def _local_fit(cfg: Mapping[str, Any], run_dir: Path, fingerprints: Mapping[str, str]) -> TrainResult:
    from ls_train.trainer.checkpoint import LocalCheckpointManager, load_state

    try:
        loop_config = {"cfg": dict(cfg), "run_dir": str(run_dir), "local": True}
        train_loop_per_worker({**loop_config, INDEX_FINGERPRINTS_KEY: dict(fingerprints)})
    except (NonFiniteLossError, StorageFullError) as exc:
        raise TrainingStopped(str(exc)) from exc
    tr = trainer_config(cfg)
    manager = LocalCheckpointManager(
        run_dir,
        num_to_keep=tr.num_to_keep,
        score_attribute=tr.checkpoint_score_attribute,
        score_order=tr.checkpoint_score_order,
    )
    latest = manager.latest()
    metrics = dict(load_state(latest).get("metrics", {})) if latest is not None else {}
    if latest is not None and "_partial" in latest.name:
        metrics[STOP_REQUESTED_KEY] = 1.0
    return TrainResult(
        run_dir=run_dir, best_checkpoint=manager.best(), latest_checkpoint=latest, metrics=metrics
    )


class _DriverStop:
    """SIGTERM on the driver of a Ray run: write the stop file the workers poll (Ray's own handler
    would kill the local Ray processes and exit at once, with no stop checkpoint; :func:`start_ray`
    keeps the one before ``ray.init()``, which :meth:`restore` puts back)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        request_stop(self.run_dir)

    def restore(self) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)


def _remove_stale_writes(run_dir: Path, print_fn: Callable[[str], None]) -> None:
    """Remove the temporary files of checkpoint (and other) writes that a killed run left, in one line."""
    removed = remove_stale_writes(run_dir)
    if removed:
        shown = ", ".join(removed[:4]) + (f", ... ({len(removed)} in all)" if len(removed) > 4 else "")
        print_fn(f"removed what a killed write left in {run_dir} (its writer no longer runs): {shown}")


def train(cfg: Mapping[str, Any], *, print_fn: Callable[[str], None] = print) -> TrainResult:
    """Prepare the data and train ``cfg`` (a resolved, validated config) to the end, or until stopped.

    Returns:
        A :class:`TrainResult`.

    Raises:
        TrainingStopped: the run stopped early on non-finite losses or a checkpoint that a full disk
            refused (the message says why; the checkpoints on disk are kept).
        ConfigError: the data or the model cannot be built from the config.
    """
    check_score_attribute(cfg)
    cl = cluster_config(cfg)
    if cl.use_gpu and cl.address is None:
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(
                "cluster.use_gpu=true but this machine has no CUDA device (Ray would wait for a GPU "
                "forever); use cluster=cpu (Ray on CPUs) or cluster=local, or join a GPU cluster with "
                "cluster.address=auto"
            )
    run_dir = run_dir_of(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / STOP_FILE).unlink(missing_ok=True)
    _remove_stale_writes(run_dir, print_fn)
    fingerprints = prepare_data(cfg, print_fn=print_fn)
    mode = (
        "in-process (cluster.num_workers=0)"
        if cl.num_workers == 0
        else (f"Ray Train, {cl.num_workers} worker(s), {'GPU' if cl.use_gpu else 'CPU (gloo)'}")
    )
    print_fn(f"training run {run_dir.name} in {run_dir.parent} — {mode}, {_precision(cfg, cl)}")
    if cl.num_workers == 0:
        result = _local_fit(cfg, run_dir, fingerprints)
    else:
        try:
            result = _ray_fit(cfg, run_dir, fingerprints, print_fn)
        finally:
            (run_dir / STOP_FILE).unlink(missing_ok=True)
    result.stopped = bool(result.metrics.get(STOP_REQUESTED_KEY))
    result.curves = plot_curves(run_dir / CSV_FILE, run_dir / CURVES_FILE)
    reason = result.metrics.get(STOP_REASON_KEY)
    if reason:
        raise TrainingStopped(str(reason))
    print_fn(f"run folder: {run_dir}")
    if result.curves is not None:
        print_fn(f"loss and metric curves: {result.curves}")
    print_fn(f"TensorBoard: tensorboard --logdir {run_dir / 'tensorboard'}")
    if result.best_checkpoint is not None:
        print_fn(f"best checkpoint: {result.best_checkpoint}")
    if result.latest_checkpoint is not None:
        print_fn(f"latest checkpoint: {result.latest_checkpoint}")
    return result
