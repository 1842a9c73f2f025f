"""Whether a process still runs: the owner check of temporary files left by killed writers."""

from __future__ import annotations

import os

__all__ = ["pid_alive"]


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (True when that cannot be told).

    Its own process, ``pid <= 0`` and Windows (where ``os.kill`` would terminate the process) count
    as alive, so a caller never removes what a live writer may still hold.
    """
    if os.name == "nt" or pid <= 0 or pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, owned by another user
        return True
    return True
