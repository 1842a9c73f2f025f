"""The random number generators of a training process, saved in checkpoints and restored on resume.

Augmentations (ls-data's random transforms on torch's global RNG), the RPN's and RoI heads'
sampling of positives and negatives, and dropout all draw from the process's RNGs. A run resumed
from a checkpoint continues with the states the RNGs had when the checkpoint was written, on
every worker, so a deterministic recipe trains the same weights as an unstopped run.

The states are plain tensors, lists and numbers (what ``torch.load(weights_only=True)`` reads).
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

__all__ = ["gather_rng_states", "restore_rng_state", "rng_state"]


def rng_state() -> dict[str, Any]:
    """The states of torch's CPU (and initialised CUDA) generators, NumPy's and Python's."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Set every generator :func:`rng_state` saved (CUDA only where CUDA is initialised here)."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.set_rng_state_all(state["cuda"])


def gather_rng_states(world: int) -> list[dict[str, Any]]:
    """Every worker's :func:`rng_state`, by rank (a collective: every worker calls it)."""
    mine = rng_state()
    if world == 1:
        return [mine]
    gathered: list[Any] = [None] * world
    dist.all_gather_object(gathered, mine)
    return gathered
