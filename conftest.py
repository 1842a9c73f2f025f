"""Suite-wide pytest hooks: tests marked ``slow`` run first, the longest first.

``hatch run test`` spreads the suite over two pytest-xdist workers with work stealing. A few tests
take minutes (a real SLURM job waits on its time limit, Ray runs are stopped and resumed); when
one of them starts last, one worker runs it alone while the other idles. Collected longest first,
they start at once and the short tests fill the other worker around them. ``seconds`` is the
test's measured time on 2 cores (an ordering hint, never asserted). ``last=True`` keeps a test at
the end instead: the real-SLURM test, whose jobs start token-protected Ray heads beside the local
Ray instances of other tests (run first, five Ray tests met those heads, InvalidAuthToken; its
ports now come from outside the range where a local Ray picks its own, and it stays last, when
the fewest Ray tests run beside it). ``hatch run test-fast``
leaves the slow tests out (``-m "not slow"``) for the edit-test loop.
"""

from __future__ import annotations

import pytest


def _order(item: pytest.Item) -> tuple[bool, float]:
    """Sort key: ``slow(..., last=True)`` tests at the end, the others longest first."""
    marker = item.get_closest_marker("slow")
    if marker is None:
        return False, 0.0
    seconds = float(marker.kwargs.get("seconds", marker.args[0] if marker.args else 1.0))
    return bool(marker.kwargs.get("last", False)), -seconds


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items.sort(key=_order)  # stable: the rest keeps its collection order
