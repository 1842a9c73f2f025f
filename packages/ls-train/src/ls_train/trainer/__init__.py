"""Training with Ray Train: the per-worker loop, its schedule, checkpoints, fault handling and logs."""

from __future__ import annotations

from ls_train.trainer.checkpoint import CheckpointError, load_model_weights, load_state, save_state
from ls_train.trainer.faults import BadStepCounter, NonFiniteLossError, StopRequest
from ls_train.trainer.loop import TrainingStopped, train_loop_per_worker
from ls_train.trainer.run import TrainResult, prepare_data, train
from ls_train.trainer.schedule import WarmupCosine, build_scheduler

__all__ = [
    "BadStepCounter",
    "CheckpointError",
    "NonFiniteLossError",
    "StopRequest",
    "TrainResult",
    "TrainingStopped",
    "WarmupCosine",
    "build_scheduler",
    "load_model_weights",
    "load_state",
    "prepare_data",
    "save_state",
    "train",
    "train_loop_per_worker",
]
