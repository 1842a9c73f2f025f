"""The training loop run by every Ray Train worker (or in-process with ``cluster.num_workers=0``).

Per iteration: forward in train mode (bf16 autocast on GPU when ``trainer.amp`` allows), the
five Mask R-CNN losses summed, a non-finite loss skipped and counted (all workers agree), the
gradient accumulated over ``trainer.grad_accum_steps`` iterations, clipped, AdamW stepped and
the warm-up + cosine schedule advanced. Per epoch: validation with the
:class:`~ls_train.evaluation.evaluator.Evaluator` every ``trainer.val_every_epochs`` epochs (crops split over
the workers, metric states merged), then a checkpoint reported with the metrics. A stop request
(SIGTERM / stop file) checkpoints the iteration reached and returns.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, IterableDataset

from ls_train.config import trainer_config
from ls_train.evaluation.evaluator import sample_spacings, spacing_kwargs
from ls_train.precision import autocast, autocast_dtype
from ls_train.storage import StorageFullError
from ls_train.trainer.checkpoint import (
    CONFIG_KEY,
    RANK_KEY,
    UNRANKED,
    LocalCheckpointManager,
    checkpoint_folders,
    checkpoint_rank,
    load_first_readable,
    load_model_weights,
    model_state_dict,
    save_state,
)
from ls_train.trainer.faults import BadStepCounter, NonFiniteLossError, StopRequest, fault_point
from ls_train.trainer.rng import gather_rng_states, restore_rng_state
from ls_train.trainer.schedule import build_scheduler

__all__ = ["STOP_REASON_KEY", "STOP_REQUESTED_KEY", "TrainingStopped", "train_loop_per_worker"]

STOP_REASON_KEY = "stop_reason"
"""Key of the driver's metrics naming why a Ray run stopped early (non-finite losses, a full disk)."""
STOP_REQUESTED_KEY = "stop_requested"
"""Reported metric (1.0) when the run checkpointed and stopped on request (SIGTERM)."""
INDEX_FINGERPRINTS_KEY = "index_fingerprints"
"""Key of the workers' loop config: ``{where: fingerprint}`` of the crop indices the driver built."""


class TrainingStopped(RuntimeError):
    """The run stopped before its last epoch for a reason other than a stop request."""


def _to_device(target: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in target.items()}


class _Session:
    """Where the loop reports to: Ray Train, or the local checkpoint manager."""

    def __init__(self, *, local: bool, run_dir: Path, cfg: Mapping[str, Any]) -> None:
        tr = trainer_config(cfg)
        self.local = local
        self.run_dir = run_dir
        if local:
            self.rank, self.world = 0, 1
            self.manager = LocalCheckpointManager(
                run_dir,
                num_to_keep=tr.num_to_keep,
                score_attribute=tr.checkpoint_score_attribute,
                score_order=tr.checkpoint_score_order,
            )
        else:
            import ray.train

            ctx = ray.train.get_context()
            self.rank, self.world = ctx.get_world_rank(), ctx.get_world_size()

    def device(self, use_gpu: bool) -> torch.device:
        if not use_gpu:
            return torch.device("cpu")
        if not torch.cuda.is_available():
            raise TrainingStopped(
                f"cluster.use_gpu=true but worker {self.rank} sees no CUDA device; "
                f"use cluster=cpu or cluster=local, or run on a GPU node"
            )
        if self.local:
            return torch.device("cuda")
        import ray.train.torch

        return ray.train.torch.get_device()

    def set_threads(self) -> str | None:
        """A Ray worker computes with as many threads as its CPU allocation (an inherited
        ``OMP_NUM_THREADS``, or torch's default of every core, would oversubscribe the machine
        when several workers share it). Returns the line for the log (None in-process)."""
        if self.local:
            return None
        import ray

        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
        if not cpus:
            return None
        inherited = os.environ.get("OMP_NUM_THREADS")
        threads = max(1, int(cpus))
        torch.set_num_threads(threads)
        os.environ["OMP_NUM_THREADS"] = str(threads)  # for processes this worker starts
        overridden = inherited is not None and inherited != str(threads)
        note = f"; OMP_NUM_THREADS={inherited} from the environment overridden" if overridden else ""
        return f"each worker computes with {threads} thread(s), its CPU allocation{note}"

    def resume_state(self, skipped: list[str]) -> dict[str, Any] | None:
        """The state of the furthest readable checkpoint of the run (None: start afresh).

        In-process: the manager's checkpoints, the latest first. Ray: Ray's latest checkpoint and
        the checkpoint folders in the run folder, the furthest first, so that a checkpoint
        written just before the driver was killed, but never registered in Ray's bookkeeping,
        is not lost. Unreadable ones (truncated) are skipped and named in ``skipped``.
        """
        if self.local:
            found = load_first_readable(self.manager.newest_first(), skipped=skipped)
            return None if found is None else found[1]
        import ray.train

        on_disk = checkpoint_folders(self.run_dir)
        found = load_first_readable(on_disk, skipped=skipped)
        states = [] if found is None else [found[1]]
        checkpoint = ray.train.get_checkpoint()
        if checkpoint is not None and Path(checkpoint.path).resolve() not in {f.resolve() for f in on_disk}:
            with checkpoint.as_directory() as folder:  # a run folder on remote storage
                from_ray = load_first_readable([Path(folder)], skipped=skipped)
            states += [] if from_ray is None else [from_ray[1]]
        return max(states, key=lambda st: int(st["global_iter"])) if states else None

    def report(self, metrics: dict[str, Any], state: dict[str, Any] | None, name: str) -> None:
        """Report ``metrics`` with checkpoint ``name`` holding ``state`` (None: metrics only).

        Raises:
            StorageFullError: on every worker, when the checkpoint could not be written for lack of
                space (nothing was reported: the caller reports why it stops).
        """
        if self.local:
            if state is not None:
                self.manager.save(name, state, metrics)
            return
        import ray.train

        with tempfile.TemporaryDirectory() as tmp:
            checkpoint, upload = None, {}
            if state is not None:
                checkpoint, upload = self._write_checkpoint(state, name, Path(tmp))
            named = name if state is not None else None
            ray.train.report(metrics, checkpoint=checkpoint, checkpoint_dir_name=named, **upload)

    def _write_checkpoint(self, state: dict[str, Any], name: str, tmp: Path) -> tuple[Any, dict[str, Any]]:
        """Rank 0 writes the checkpoint, straight into the run folder where Ray Train (V2) takes it
        without a copy (else into ``tmp``, which Ray copies there); every worker learns whether the
        write failed. Returns the checkpoint (None on other ranks) and ``ray.train.report``'s
        upload argument."""
        import ray.train

        mode = getattr(ray.train, "CheckpointUploadMode", None)
        folder = self.run_dir / name if mode is not None else tmp
        checkpoint, failure = None, None
        if self.rank == 0:
            try:
                save_state(folder, state)
                checkpoint = ray.train.Checkpoint.from_directory(folder)
            except StorageFullError as exc:
                failure = exc
        if _agree([1.0 if failure is not None else 0.0], self.world)[0]:
            raise failure or StorageFullError(f"worker 0 could not write checkpoint {self.run_dir / name}")
        return checkpoint, {} if mode is None else {"checkpoint_upload_mode": mode.NO_UPLOAD}


def _agree(flags: list[float], world: int) -> list[float]:
    """Sum small per-worker flags over all workers (identity in a single process)."""
    if world == 1:
        return flags
    t = torch.tensor(flags, dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()


def _validate(
    model: nn.Module, cfg: Mapping[str, Any], dataset: Any, session: _Session, device: torch.device, amp: str
) -> dict[str, float]:
    from ls_train.evaluation.run import evaluator_from_config

    evaluator = evaluator_from_config(cfg, device, training_amp=amp)
    indices = list(range(session.rank, len(dataset), session.world))
    evaluator.evaluate(model, dataset, indices=indices)
    if session.world > 1:
        gathered: list[Any] = [None] * session.world
        dist.all_gather_object(gathered, evaluator.states())
        evaluator.reset()
        evaluator.merge(gathered)
    return evaluator.result().summary


def _check_same_resume_point(global_iter: int, world: int) -> None:
    """Every worker must resume from the same iteration (each reads the checkpoints itself)."""
    if world == 1:
        return
    points: list[Any] = [None] * world
    dist.all_gather_object(points, global_iter)
    if len(set(points)) > 1:
        raise TrainingStopped(
            f"the workers found different checkpoints to resume from (iterations by rank: {points}; "
            f"-1: none): is the run folder on a file system that every node sees?"
        )


def _restore_rngs(state: Mapping[str, Any], rank: int, world: int) -> str | None:
    """Set this worker's RNGs from a checkpoint; returns a line for the log where it cannot."""
    states = state.get("rng")
    if not states:
        return ("the checkpoint holds no random-generator states (written by an older version): the "
                "resumed run draws other augmentations and samples than an unstopped run would")
    if len(states) != world:
        return (f"the checkpoint holds the random-generator states of {len(states)} worker(s), this run "
                f"has {world}: the resumed run draws other augmentations and samples than an "
                f"unstopped run would")
    restore_rng_state(states[rank])
    return None


def _zero_backward(model: nn.Module) -> None:
    """A backward pass adding zero to every gradient, so DDP's reducer sees the iteration on all workers."""
    params = [p for p in model.parameters() if p.requires_grad]
    (torch.stack([p.sum() for p in params]).sum() * 0.0).backward()


def train_loop_per_worker(config: Mapping[str, Any]) -> None:
    """Train one worker's share; the Ray Train ``train_loop_per_worker``.

    Args:
        config: ``{"cfg": resolved experiment config, "run_dir": run folder, "local": bool,
            "console": file or None, "stop_reason": actor or None, "index_fingerprints": {where:
            fingerprint} or None}``; ``local`` runs without Ray
            (checkpoints under ``run_dir/checkpoints``); rank 0 writes its console lines to
            ``console`` when given (else to stdout); a Ray run that stops early tells its
            :class:`~ls_train.trainer.faults.StopReason` actor why.

    Raises:
        NonFiniteLossError: after ``trainer.max_bad_steps`` bad iterations in a row (Ray runs with a
            ``stop_reason`` actor tell it why and return, so the run is not retried).
        StorageFullError: a checkpoint that could not be written for lack of space (the same in
            Ray runs: retrying would fill the disk again).
    """
    run = _WorkerRun(config)
    notes = run.resume()
    run.wrap_ddp()
    run.open_log(notes)
    run.train()


class _EpochLosses:
    """The losses of an epoch's counted (finite) iterations, summed for the epoch's means."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.counted = 0

    def add(self, values: Mapping[str, float], total: float) -> None:
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.sums["loss"] = self.sums.get("loss", 0.0) + total
        self.counted += 1

    def means(self) -> dict[str, float]:
        """``loss`` and ``loss_<name>`` per counted iteration (the columns of metrics.csv)."""
        return {
            k if k.startswith("loss") else f"loss_{k}": v / max(1, self.counted) for k, v in self.sums.items()
        }


class _WorkerRun:
    """One worker's run: what it trains, where it stands, and where it reports.

    The steps of :func:`train_loop_per_worker` share this state; they run in a fixed order
    (construction, :meth:`resume`, :meth:`wrap_ddp`, :meth:`open_log`, :meth:`train`) because the
    random draws must happen as in every earlier run of the same config (a resumed run ends with
    the weights of an unstopped one), and DDP must wrap a model that already holds the resumed
    weights.
    """

    def __init__(self, config: Mapping[str, Any]) -> None:
        # imported before set_threads, so that libraries it loads see the environment they always saw
        from ls_train.factory import build_model

        self.config = config
        self.cfg = config["cfg"]
        self.run_dir = Path(config["run_dir"])
        self.local = bool(config.get("local", False))
        self.tr = tr = trainer_config(self.cfg)
        use_gpu = bool(self.cfg["cluster"].get("use_gpu", False))
        self.session = _Session(local=self.local, run_dir=self.run_dir, cfg=self.cfg)
        self.threads_note = self.session.set_threads()
        self.device = self.session.device(use_gpu)
        torch.manual_seed(tr.seed + self.session.rank)

        self.model: nn.Module = build_model(self.cfg).to(self.device)
        self.optimizer = torch.optim.AdamW(
            [p for p in self.model.parameters() if p.requires_grad],
            lr=tr.lr,
            weight_decay=tr.weight_decay,
            betas=tuple(tr.betas),
            # one fused kernel instead of a loop over tensors: ~6x faster steps on CPU (and on GPU)
            fused=True,
        )
        self._open_data()
        self.scheduler = build_scheduler(
            self.optimizer,
            warmup_iters=tr.warmup_iters,
            total_iters=tr.epochs * math.ceil(self.steps_per_epoch / tr.grad_accum_steps),
            min_lr_ratio=tr.min_lr_ratio,
        )
        self.bad = BadStepCounter(max_bad_steps=tr.max_bad_steps)

        self.start_epoch, self.start_epoch_step, self.global_iter = 0, 0, 0
        self.last_metrics: dict[str, Any] = {}
        self.resumed = False
        self.logger: Any = None
        self.console: Any = None

    def _open_data(self) -> None:
        """The training loader, the validation dataset (None: no validation) and the iterations
        per epoch.

        Raises:
            TrainingStopped: the training loader is empty.
        """
        from ls_train.factory import build_eval_dataset, build_train_loaders

        fingerprints = self.config.get(INDEX_FINGERPRINTS_KEY)
        # the driver built the indices: they are only opened here
        loaders = build_train_loaders(self.cfg, fingerprints)
        self.train_loader = loaders["train"]
        self.val_dataset = build_eval_dataset(self.cfg, fingerprints)
        if self.val_dataset is None and "val" in loaders:
            self.val_dataset = loaders["val"].dataset
        self.steps_per_epoch = len(self.train_loader)
        if self.tr.max_steps_per_epoch is not None:
            self.steps_per_epoch = min(self.steps_per_epoch, self.tr.max_steps_per_epoch)
        if self.steps_per_epoch < 1:
            raise TrainingStopped("datasets: the training loader is empty (no crops in the training index?)")

    def resume(self) -> list[str]:
        """Continue from the run's furthest readable checkpoint, if any: weights, optimizer,
        schedule, bad-step count, position and this worker's RNG states.

        Returns:
            Lines for the log: the unreadable checkpoints skipped, and why the RNG states could not
            be restored (the resumed run then draws other samples than an unstopped one).

        Raises:
            TrainingStopped: the workers found different checkpoints.
        """
        skipped: list[str] = []
        state = self.session.resume_state(skipped)
        _check_same_resume_point(-1 if state is None else int(state["global_iter"]), self.session.world)
        if state is None:
            return skipped
        load_model_weights(self.model, state, source="the run's last checkpoint")
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.bad.load_state_dict(state.get("bad_steps", {}))
        self.start_epoch, self.start_epoch_step = int(state["epoch"]), int(state["epoch_step"])
        self.global_iter = int(state["global_iter"])
        self.last_metrics = dict(state.get("metrics", {}))
        rng_note = _restore_rngs(state, self.session.rank, self.session.world)
        if rng_note:
            skipped.append(rng_note)
        self.resumed = True
        return skipped

    def wrap_ddp(self) -> None:
        """With several workers, wrap the model (holding the resumed weights) for DDP."""
        if self.session.world > 1:
            self.model = nn.parallel.DistributedDataParallel(
                self.model,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True,
            )

    def open_log(self, notes: list[str]) -> None:
        """On rank 0, the run's logger (progress, TensorBoard, metrics.csv), writing to the console
        file of a quiet Ray run when given, and the lines that open the log: the thread count,
        ``notes`` and where a resumed run goes on."""
        from ls_train.trainer.logging import RunLogger

        if self.session.rank != 0:
            return
        if self.config.get("console"):  # a quiet Ray run: the driver prints this file's lines
            self.console = Path(self.config["console"]).open("a", buffering=1)  # noqa: SIM115 (closed at the end)
        self.logger = RunLogger(
            self.run_dir,
            epochs=self.tr.epochs,
            steps_per_epoch=self.steps_per_epoch,
            log_every_steps=self.tr.log_every_steps,
            start_iter=self.global_iter,
            stream=self.console,
            mark_partial=self.console is not None,
        )
        for line in [*([self.threads_note] if self.threads_note else []), *notes]:
            self.logger.message(line)
        if self.resumed:
            self.logger.message(
                f"resuming {self.run_dir.name} at epoch {self.start_epoch + 1}, iteration "
                f"{self.start_epoch_step} ({self.global_iter} iterations done)"
            )

    def train(self) -> None:
        """The epochs from where the run stands to the last, or to a stop request.

        A non-finite loss streak or a full disk is logged and raised; in a Ray run with a
        ``stop_reason`` actor, rank 0 tells the actor instead and every worker returns. The SIGTERM
        handler, the logger and the console file are released whatever happens.
        """
        self.stop = StopRequest(self.run_dir, install=self.local)
        self.config_text = json.dumps(self.cfg)
        try:
            for epoch in range(self.start_epoch, self.tr.epochs):
                if self._epoch(epoch):
                    return
        except (NonFiniteLossError, StorageFullError) as exc:
            if self.logger is not None:
                self.logger.message(str(exc))
            if self.local or self.config.get("stop_reason") is None:
                raise
            if self.session.rank == 0:
                import ray

                ray.get(self.config["stop_reason"].set.remote(str(exc)))
            return
        finally:
            self.stop.restore()
            if self.logger is not None:
                self.logger.close()
            if self.console is not None:
                self.console.close()

    def _epoch(self, epoch: int) -> bool:
        """Train ``epoch`` (from the resumed iteration in the first one), then end it.

        Returns:
            True when a stop was requested: the checkpoint is written and the run returns.
        """
        sampler = getattr(self.train_loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        self.model.train()
        first = self.start_epoch_step if epoch == self.start_epoch else 0
        losses = _EpochLosses()
        self.optimizer.zero_grad(set_to_none=True)
        epoch_step = first
        for batch in _rest_of_epoch(self.train_loader, first):
            if epoch_step >= self.steps_per_epoch:
                break
            epoch_step += 1
            if self._step(epoch, epoch_step, batch, losses):
                self._checkpoint_on_request(epoch, epoch_step)
                return True
        self.start_epoch_step = 0
        self._end_epoch(epoch, losses)
        return False

    def _step(self, epoch: int, epoch_step: int, batch: Any, losses: _EpochLosses) -> bool:
        """Iteration ``epoch_step`` (counted from 1) of ``epoch``: the forward pass, and the backward
        pass unless the loss is not finite on some worker (:class:`BadStepCounter` raises
        :class:`NonFiniteLossError` after too many in a row; with DDP a zero backward keeps the
        workers' reducers in step); an optimizer update at the end of each accumulation window and
        of the epoch. Returns whether a stop was requested on any worker, agreed with the loss's
        finiteness in one reduction so that all workers stop at the same iteration."""
        images, targets, metas = batch
        images = [im.to(self.device, non_blocking=True) for im in images]
        targets = [_to_device(t, self.device) for t in targets]
        dtype = autocast_dtype(self.tr.amp, self.device, key="trainer.amp", training=True)
        with autocast(dtype, self.device):
            loss_dict = self.model(images, targets, **spacing_kwargs(self.model, sample_spacings(metas)))
        loss = sum(loss_dict.values())
        values = {k: float(v.detach()) for k, v in loss_dict.items()}
        nonfinite, stop_flag = _agree(
            [0.0 if math.isfinite(float(loss.detach())) else 1.0, 1.0 if self.stop.requested else 0.0],
            self.session.world,
        )
        self.global_iter += 1
        total = float(loss.detach()) if not nonfinite else math.nan
        if self.bad.check(total, step=self.global_iter, losses=values):
            (loss / self.tr.grad_accum_steps).backward()
            losses.add(values, total)
        elif self.session.world > 1:
            _zero_backward(self.model)
        if epoch_step % self.tr.grad_accum_steps == 0 or epoch_step == self.steps_per_epoch:
            self._update()
        if self.logger is not None:
            self.logger.progress(
                epoch=epoch,
                epoch_step=epoch_step,
                global_iter=self.global_iter,
                losses={"loss": total, **values},
                lr=self.scheduler.get_last_lr()[0],
                skipped=self.bad.total,
            )
        return bool(stop_flag)

    def _update(self) -> None:
        """Clip the accumulated gradient, step the optimizer and the schedule, clear the gradient."""
        if self.tr.grad_clip_norm is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.tr.grad_clip_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        fault_point("train.step")

    def _checkpoint_on_request(self, epoch: int, epoch_step: int) -> None:
        """Checkpoint the iteration reached for a resume, unranked (a partial epoch is never the
        best) and without the last score; say on the log how to resume."""
        score_key = self.tr.checkpoint_score_attribute
        metrics = {
            **{k: v for k, v in self.last_metrics.items() if k != score_key},
            "epoch": epoch,
            "iteration": self.global_iter,
            STOP_REQUESTED_KEY: 1.0,
            RANK_KEY: UNRANKED,
        }
        self.session.report(
            metrics,
            self._state(epoch, epoch_step, self.last_metrics),
            self._checkpoint_name(epoch, epoch_step),
        )
        if self.logger is not None:
            self.logger.message(
                f"stop requested: checkpoint written at epoch {epoch + 1}, "
                f"iteration {epoch_step}; "
                f"re-run with trainer.run_name={self.run_dir.name} to resume"
            )

    def _end_epoch(self, epoch: int, losses: _EpochLosses) -> None:
        """The epoch's row (mean losses, learning rate, skipped steps, and the validation metrics
        when validation is due) to the log and metrics.csv, then its checkpoint, ranked by the
        score."""
        tr = self.tr
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "step": self.global_iter,
            **losses.means(),
            "lr": self.scheduler.get_last_lr()[0],
            "skipped_steps": self.bad.total,
        }
        validate = self.val_dataset is not None and (
            (epoch + 1) % tr.val_every_epochs == 0 or epoch + 1 == tr.epochs
        )
        if validate:
            row.update(self._validation(epoch))
        score = row.get(tr.checkpoint_score_attribute)
        metrics = {**row, RANK_KEY: checkpoint_rank(score, tr.checkpoint_score_order)}
        self.last_metrics = {k: v for k, v in row.items() if k not in ("epoch", "step")}
        if self.logger is not None:
            self.logger.epoch_end(row)
        self.session.report(metrics, self._state(epoch + 1, 0, metrics), self._checkpoint_name(epoch + 1, 0))
        fault_point("train.checkpoint")

    def _validation(self, epoch: int) -> dict[str, float]:
        """Validate after ``epoch`` (all workers); rank 0 logs the headline metrics. Returns the
        metrics."""
        fault_point("train.validation")
        summary = _validate(self.model, self.cfg, self.val_dataset, self.session, self.device, self.tr.amp)
        if self.logger is not None:
            headline = (self.tr.checkpoint_score_attribute, "ap@50", "ap@75", "f1@50", "coco_mask_ap")
            shown = ", ".join(f"{k} {v:.4f}" for k, v in summary.items() if k in headline)
            self.logger.message(f"epoch {epoch + 1}/{self.tr.epochs} validation: {shown}")
        return summary

    def _state(self, epoch: int, epoch_step: int, metrics: Mapping[str, Any]) -> dict[str, Any]:
        """The checkpoint of the run at ``epoch_step`` of ``epoch`` (0: its start)."""
        return {
            "model": model_state_dict(self.model),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": epoch,
            "epoch_step": epoch_step,
            "global_iter": self.global_iter,
            "bad_steps": self.bad.state_dict(),
            "rng": gather_rng_states(self.session.world),  # by rank: a resumed run draws what this one would
            "metrics": {k: v for k, v in metrics.items() if isinstance(v, int | float | str)},
            CONFIG_KEY: self.config_text,  # the checkpoint carries the config that trained it
        }

    def _checkpoint_name(self, epoch: int, epoch_step: int) -> str:
        partial = "" if epoch_step == 0 else "_partial"
        return f"checkpoint_epoch{epoch:04d}_iter{self.global_iter:08d}" + partial


def _rest_of_epoch(loader: Iterable[Any], skip: int) -> Iterable[Any]:
    """The batches of an epoch from batch ``skip`` on, for a run resumed in the middle of an epoch.

    The sampler's order for the epoch is drawn as on the first run (DistributedSampler after
    ``set_epoch``, or a sequential one: exactly the same batches; a freshly shuffled one: another
    permutation), and its first ``skip * batch_size`` indices are dropped, so the batches trained
    before the stop are not trained again and those after it are. A map-style DataLoader gets a
    copy over the remaining indices, which never loads the skipped samples; any other iterable
    is advanced past ``skip`` batches.
    """
    if skip == 0:
        return loader
    if (
        not isinstance(loader, DataLoader)
        or isinstance(loader.dataset, IterableDataset)
        or loader.batch_size is None
    ):
        return itertools.islice(loader, skip, None)
    indices = list(loader.sampler)[skip * loader.batch_size :]
    return DataLoader(
        loader.dataset,
        batch_size=loader.batch_size,
        sampler=indices,
        num_workers=loader.num_workers,
        collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory,
        drop_last=loader.drop_last,
        timeout=loader.timeout,
        worker_init_fn=loader.worker_init_fn,
        multiprocessing_context=loader.multiprocessing_context if loader.num_workers else None,
        generator=loader.generator,
        prefetch_factor=loader.prefetch_factor if loader.num_workers else None,
        persistent_workers=loader.persistent_workers if loader.num_workers else False,
    )

