"""Joining the configured Ray cluster, or starting a local Ray instance, for a command's duration."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from ls_train.config import ClusterConfig, cluster_config, trainer_config

__all__ = [
    "RayStartError",
    "prepare_ray_auth",
    "ray_auth_token_source",
    "ray_init_kwargs",
    "ray_session",
    "start_ray",
]


class RayStartError(RuntimeError):
    """``ray.init`` failed: no Ray answered at ``cluster.address``, or a local instance did not start
    in time. The message names the address (or the local instance), Ray's reason and what to do."""


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


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    return lines[0] if type(exc) is Exception else f"{type(exc).__name__}: {lines[0]}"


def ray_start_error(cluster: ClusterConfig, exc: BaseException) -> RayStartError:
    """The :class:`RayStartError` for ``ray.init`` on ``cluster`` that raised ``exc``."""
    cause = _first_line(exc)
    if cluster.address is None:
        cpus = "all CPUs" if cluster.num_cpus is None else f"cluster.num_cpus={cluster.num_cpus}"
        return RayStartError(
            f"Ray could not start ({cause}) as a local instance with {cpus}. Ray gives its processes "
            f"30 s to start, which an overloaded machine can exceed: re-run the same command when the "
            f"machine is less busy, or join a running cluster with cluster.address=HOST:PORT"
        )
    auth = os.environ.get("RAY_AUTH_MODE") or "unset"
    return RayStartError(
        f"Ray could not join the cluster at cluster.address={cluster.address} ({cause}). Check that a "
        f"cluster runs there (ray status --address={cluster.address}), that this machine can reach it "
        f"and that its token authentication matches this one's (RAY_AUTH_MODE={auth}), or leave "
        f"cluster.address unset to start a local Ray; then re-run the same command"
    )


def start_ray(cluster: ClusterConfig, **init_kwargs: Any) -> None:
    """``ray.init`` for ``cluster`` (see :func:`ray_init_kwargs`, :func:`prepare_ray_auth`), with
    ``init_kwargs`` added, keeping the SIGTERM handler of the caller: ``ray.init`` installs Ray's,
    which exits at once (status 15, no "stopped on request"). A SIGTERM that Ray's handler gets
    while ``ray.init`` runs is handed to the caller's handler once what Ray started is shut down.

    Raises:
        RayStartError: ``ray.init`` failed (a start timeout, no cluster at the address, a refused
            token, a SIGTERM that the caller's handler let pass); what Ray had started is shut down.
    """
    import ray

    main = threading.current_thread() is threading.main_thread()
    handler = signal.getsignal(signal.SIGTERM) if main else None
    prepare_ray_auth(cluster)
    try:
        ray.init(**ray_init_kwargs(cluster), **init_kwargs)
    except Exception as exc:  # Ray raises a bare Exception when its processes start too slowly
        with suppress(Exception):
            ray.shutdown()
        raise ray_start_error(cluster, exc) from exc
    except SystemExit as exc:  # Ray's SIGTERM handler: sys.exit(SIGTERM)
        if exc.code != signal.SIGTERM or not callable(handler):
            raise
        with suppress(Exception):
            ray.shutdown()
        signal.signal(signal.SIGTERM, handler)
        handler(signal.SIGTERM, None)  # the caller's answer: StopRequested, a stop flag, ...
        raise ray_start_error(cluster, RuntimeError("SIGTERM while Ray was starting")) from exc
    finally:
        if main and handler is not None:
            signal.signal(signal.SIGTERM, handler)


@contextmanager
def ray_session(cfg: Mapping[str, Any], *, logs_dir: Path | None = None) -> Iterator[None]:
    """Ray for the ``with`` block: the cluster at ``cluster.address`` (``"auto"``: the running one),
    or a local instance with ``cluster.num_cpus`` CPUs when no address is set.

    An instance started here is shut down at the end; one that was already initialised (by the
    caller, or a cluster joined earlier) is left running. The console gets the tasks' output and
    Ray's warnings; ``trainer.verbose=true`` brings back Ray's own notices (level INFO). With
    ``logs_dir``, the log files of a local instance started here are copied into
    ``logs_dir/logs/ray-<time>/`` before it shuts down. The caller's SIGTERM handler stays (see
    :func:`start_ray`).

    Raises:
        RayStartError: Ray could not be started or joined (the message says why and what to do).
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
        start_ray(cluster, log_to_driver=True, logging_level=level)
        started = True
    try:
        yield
    finally:
        if started:
            if logs_dir is not None and cluster.address is None:
                keep_ray_logs(Path(logs_dir))
            ray.shutdown()
