"""Loading the compiled library: build_info, and clear ImportErrors for a missing or mismatched build."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import ls_ops
from ls_ops import _library


def test_build_info() -> None:
    info = ls_ops.build_info()
    assert info["cpu"] is True
    assert info["torch"] == torch.__version__
    assert Path(info["library"]).is_file()
    if info["cuda"]:
        assert info["cuda_version"] and info["cuda_architectures"]
    else:
        assert info["cuda_version"] is None and info["cuda_architectures"] is None
    assert ls_ops.__version__


def test_cpu_kernels_run_in_parallel() -> None:
    """at::parallel_for only runs in parallel in code built with the parallel backend's flags."""
    parallel_backend = torch.__config__.parallel_info()
    info = ls_ops.build_info()
    assert info["cpu_parallel"] in ("OpenMP", "native")
    if "ATen parallel backend: OpenMP" in parallel_backend:
        assert info["cpu_parallel"] == "OpenMP"
    threads = torch.get_num_threads()
    try:
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            assert ls_ops.parallel_threads() == n
    finally:
        torch.set_num_threads(threads)


def test_missing_library_names_the_rebuild_command(tmp_path: Path) -> None:
    with pytest.raises(ImportError, match=r"was not found.*\n.*pip install --no-build-isolation"):
        _library.find_library([tmp_path])


def test_library_that_does_not_load(tmp_path: Path) -> None:
    broken = tmp_path / "libls_ops_kernels.so"
    broken.write_bytes(b"not an ELF file")
    assert _library.find_library([tmp_path]) == broken
    with pytest.raises(ImportError, match=r"does not load against torch.*\n.*pip install --no-build-isol"):
        _library.open_library(broken)


def test_mismatched_torch_version() -> None:
    with pytest.raises(ImportError, match=r"built against torch 2.0.0, but torch 2.14.1 is.*\n.*pip install"):
        _library.check_torch_version("2.0.0", "2.14.1")
    _library.check_torch_version(torch.__version__, torch.__version__)
