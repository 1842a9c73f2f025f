"""Who builds the crop index in a distributed run, and how the others wait for it.

With ``torch.distributed`` initialised, rank 0 builds (or reuses) the index while the other
ranks wait at a barrier, then open it. Without it, the ``RANK`` / ``WORLD_SIZE`` environment
variables (torchrun, SLURM launchers, Ray) decide: rank 0 builds, the others poll until an index
with the expected fingerprint exists. The index path must be on a filesystem every rank sees.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ls_data.errors import DataError
from ls_data.index.reader import CropIndex, read_meta

__all__ = ["RankInfo", "barrier", "rank_info", "wait_for_index"]


@dataclass(frozen=True)
class RankInfo:
    """This process's place in a distributed run.

    Attributes:
        rank: Global rank (0 when not distributed).
        world_size: Number of processes (1 when not distributed).
        torch_distributed: Whether ``torch.distributed`` is initialised (barriers available).
    """

    rank: int
    world_size: int
    torch_distributed: bool


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise DataError(f"environment variable {name}={raw!r} is not an integer") from None


def rank_info() -> RankInfo:
    """Rank and world size from ``torch.distributed`` when initialised, else from the environment."""
    dist = sys.modules.get("torch.distributed")  # not imported yet: cannot be initialised either
    if dist is not None and dist.is_available() and dist.is_initialized():
        return RankInfo(dist.get_rank(), dist.get_world_size(), True)
    rank, world = _env_int("RANK", 0), _env_int("WORLD_SIZE", 1)
    if world < 1 or not 0 <= rank < world:
        raise DataError(
            f"environment RANK={rank} WORLD_SIZE={world} is inconsistent (need 0 <= RANK < WORLD_SIZE)"
        )
    return RankInfo(rank, world, False)


def barrier() -> None:
    """``torch.distributed.barrier()``."""
    import torch.distributed as dist

    dist.barrier()


def wait_for_index(path: Path, fingerprint: str, *, timeout: float, poll_interval: float) -> CropIndex:
    """Poll until ``path`` holds an index with ``fingerprint``, then open it read-only.

    Raises:
        DataError: Nothing matching appeared within ``timeout`` seconds (says what was found).
    """
    deadline = time.monotonic() + timeout
    while True:
        meta = read_meta(path)
        if meta is not None and meta.get("fingerprint") == fingerprint:
            return CropIndex.open(path)
        if time.monotonic() >= deadline:
            found = (
                "no index"
                if meta is None
                else f"an index with fingerprint {meta.get('fingerprint', '?')[:12]}"
            )
            raise DataError(
                f"timed out after {timeout:g} s waiting for rank 0 to build the crop index {str(path)!r} "
                f"(expected fingerprint {fingerprint[:12]}, found {found}); check rank 0's log, or raise "
                "wait_timeout"
            )
        time.sleep(poll_interval)
