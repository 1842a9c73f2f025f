"""Joining the configured Ray cluster, or starting a local Ray instance, for a command's duration."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ls_train.config import ClusterConfig, cluster_config, trainer_config

__all__ = ["prepare_ray_auth", "ray_auth_token_source", "ray_init_kwargs", "ray_session"]


def ray_init_kwargs(cluster: ClusterConfig) -> dict[str, Any]:
    """``ray.init`` arguments for ``cluster``: join ``cluster.address`` when one is given, else
    start a new local instance with ``cluster.num_cpus`` CPUs.

    ``address="local"`` rather than None: with None, Ray joins a cluster it finds recorded on the
    machine (another user's ``ray start``) or named by ``RAY_ADDRESS``, so a run could land on
    somebody else's cluster. Joining one is always explicit (``cluster.address=auto`` or HOST:PORT).
    """
    if cluster.address is not None:
        return {"address": cluster.address, "include_dashboard": False}
    return {"address": "local", "num_cpus": cluster.num_cpus, "include_dashboard": False}


def ray_auth_token_source() -> str | None:
    """Where Ray would read its authentication token from, in Ray's order: ``RAY_AUTH_TOKEN``, the
    file named by ``RAY_AUTH_TOKEN_PATH``, ``~/.ray/auth_token``; None when there is none (an
    empty variable or file counts as none)."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return "RAY_AUTH_TOKEN"
    named = os.environ.get("RAY_AUTH_TOKEN_PATH")
    if named:
        return named  # Ray reads this file or fails; it never falls back to the default file
    default = Path.home() / ".ray" / "auth_token"
    try:
        return str(default) if default.stat().st_size > 0 else None
    except OSError:
        return None


def prepare_ray_auth(cluster: ClusterConfig) -> str | None:
    """Before ``ray.init`` joins ``cluster.address``: token authentication on (``RAY_AUTH_MODE=token``
    in this process's environment) when a token is found and ``RAY_AUTH_MODE`` is unset.

    This is the rule ``ray start --head`` follows, while ``ray.init(address=HOST:PORT)`` would not
    send the token on its own: without this, a head started on a machine with ``~/.ray/auth_token``
    refuses the command (``InvalidAuthToken``). A ``RAY_AUTH_MODE`` already set (the SLURM scripts
    export the mode they started the cluster with) is left alone, as is a local instance, which Ray
    itself starts with token authentication. Returns the mode set here, or None.
    """
    if cluster.address is None or os.environ.get("RAY_AUTH_MODE"):
        return None
    if ray_auth_token_source() is None:
        return None
    os.environ["RAY_AUTH_MODE"] = "token"
    return "token"


@contextmanager
def ray_session(cfg: Mapping[str, Any], *, logs_dir: Path | None = None) -> Iterator[None]:
    """Ray for the ``with`` block: the cluster at ``cluster.address`` (``"auto"``: the running one),
    or a local instance with ``cluster.num_cpus`` CPUs when no address is set.

    An instance started here is shut down at the end; one that was already initialised (by the
    caller, or a cluster joined earlier) is left running. The console gets the tasks' output and
    Ray's warnings; ``trainer.verbose=true`` brings back Ray's own notices (level INFO). With
    ``logs_dir``, the log files of a local instance started here are copied into
    ``logs_dir/logs/ray-<time>/`` before it shuts down.
    """
    import ray

    from ls_train.trainer.console import keep_ray_logs, quiet_ray_logging

    cluster = cluster_config(cfg)
    verbose = trainer_config(cfg).verbose
    started = False
    if not ray.is_initialized():
        if not verbose:
            quiet_ray_logging()  # the workers' output still reaches the console; Ray's notices do not
        level = "INFO" if verbose else "WARNING"
        prepare_ray_auth(cluster)
        ray.init(**ray_init_kwargs(cluster), log_to_driver=True, logging_level=level)
        started = True
    try:
        yield
    finally:
        if started:
            if logs_dir is not None and cluster.address is None:
                keep_ray_logs(Path(logs_dir))
            ray.shutdown()
