"""Finding and loading the compiled operator library (``libls_ops_kernels.so``).

The library is built by CMake against one torch version and registers the ``ls_ops`` ops with
``TORCH_LIBRARY``. A missing library, one that does not load, or one built against another
torch raises ``ImportError`` with the command that rebuilds it: there is no silent fallback to
the slow reference implementation.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

import torch

LIBRARY_STEM = "libls_ops_kernels"
PACKAGE_DIR = Path(__file__).resolve().parent
REBUILD = "python -m pip install --no-build-isolation --no-deps --force-reinstall {source}"


def rebuild_command() -> str:
    """The command that rebuilds the library against the installed torch."""
    source = PACKAGE_DIR.parent.parent  # packages/ls-ops in a source checkout
    if (source / "CMakeLists.txt").is_file():
        return REBUILD.format(source=f"-e {source}") + "   (in the hatch workspace: hatch run build-ops)"
    return REBUILD.format(source="ls-ops")


def find_library(directories: Iterable[str | os.PathLike[str]]) -> Path:
    """The first ``libls_ops_kernels.*`` shared library in ``directories``; ImportError if none."""
    searched = []
    for directory in directories:
        searched.append(str(directory))
        for candidate in sorted(Path(directory).glob(f"{LIBRARY_STEM}.*")):
            if candidate.suffix in (".so", ".dylib", ".pyd", ".dll"):
                return candidate
    raise ImportError(f"ls_ops: the compiled operator library ({LIBRARY_STEM}.so) was not found in "
                      f"{', '.join(searched)}. Build it against the installed torch with:\n"
                      f"  {rebuild_command()}")


def check_torch_version(built_with: str, running: str) -> None:
    """ImportError unless the library was built against the running torch version."""
    if built_with != running:
        raise ImportError(f"ls_ops: the compiled operator library was built against torch {built_with}, but "
                          f"torch {running} is installed. Rebuild it with:\n  {rebuild_command()}")


def open_library(path: Path) -> None:
    """``torch.ops.load_library(path)``, with an ImportError naming the rebuild command on failure."""
    try:
        torch.ops.load_library(str(path))
    except OSError as error:
        reason = error.__cause__ or error  # torch wraps the loader's message
        raise ImportError(f"ls_ops: the compiled operator library {path} does not load against torch "
                          f"{torch.__version__} ({reason}). Rebuild it with:\n"
                          f"  {rebuild_command()}") from error


def load(path: Path) -> dict[str, Any]:
    """Load the library at ``path`` into torch (once) and return its build information."""
    if not hasattr(torch.ops.ls_ops, "build_info"):
        open_library(path)
    info = json.loads(torch.ops.ls_ops.build_info())
    check_torch_version(info["torch"], torch.__version__)
    info["cpu"] = True
    info["library"] = str(path)
    return info


@cache
def load_library() -> dict[str, Any]:
    """Find and load the library next to this package (once per process)."""
    import ls_ops

    return load(find_library(ls_ops.__path__))


def build_info() -> dict[str, Any]:
    """Which kernels the loaded library has, and what it was built against.

    Returns a dict: ``cpu`` (always True), ``cuda`` (True when the CUDA kernels were compiled),
    ``cuda_version`` and ``cuda_architectures`` (None without CUDA), ``torch`` (the version the
    library was built against, equal to the running one), ``cpu_parallel`` (how the CPU kernels'
    loops are parallelised: ``"OpenMP"`` or torch's ``"native"`` thread pool), ``compiler`` and
    ``library`` (path).
    """
    return dict(load_library())


def parallel_threads() -> int:
    """How many threads the CPU kernels' parallel loops run on now.

    Runs one parallel loop of ``torch.get_num_threads()`` items inside the compiled library and
    counts the threads that took part: equal to ``torch.get_num_threads()`` in a correct build,
    1 when the kernels would run serially.
    """
    load_library()
    return int(torch.ops.ls_ops.parallel_threads())
