"""Training with Ray Train: the per-worker loop, its schedule, checkpoints, fault handling and logs.

Names are imported lazily, so a module that needs one part does not import the training run:
``ls-predict``'s workers take ``fault_point`` from :mod:`ls_train.trainer.faults`, and the
config validation imports ``ls_train.predict``, while :mod:`ls_train.trainer.run` imports the
validation (``check_score_attribute``).
"""

from __future__ import annotations

from ls_core import lazy_exports

_EXPORTS = {
    "CheckpointError": "checkpoint",
    "load_model_weights": "checkpoint",
    "load_state": "checkpoint",
    "save_state": "checkpoint",
    "BadStepCounter": "faults",
    "NonFiniteLossError": "faults",
    "StopRequest": "faults",
    "TrainingStopped": "loop",
    "train_loop_per_worker": "loop",
    "TrainResult": "run",
    "prepare_data": "run",
    "train": "run",
    "WarmupCosine": "schedule",
    "build_scheduler": "schedule",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)
