"""Joining the configured Ray cluster, or starting a local Ray instance, for a command's duration."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

__all__ = ["ray_session"]


@contextmanager
def ray_session(cfg: Mapping[str, Any]) -> Iterator[None]:
    """Ray for the ``with`` block: the cluster at ``cluster.address`` (``"auto"``: the running one),
    or a local instance with ``cluster.num_cpus`` CPUs when no address is set.

    An instance started here is shut down at the end; one that was already initialised (by the
    caller, or a cluster joined earlier) is left running.
    """
    import ray

    from ls_train.config import cluster_config

    cluster = cluster_config(cfg)
    started = False
    if not ray.is_initialized():
        ray.init(
            address=cluster.address,
            num_cpus=cluster.num_cpus if cluster.address is None else None,
            include_dashboard=False,
            log_to_driver=True,
        )
        started = True
    try:
        yield
    finally:
        if started:
            ray.shutdown()
