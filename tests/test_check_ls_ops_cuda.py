"""scripts/check-ls-ops-cuda.sh and scripts/check-gpu.sh: syntax, shellcheck, and their refusal on
a machine without a GPU.

The CUDA part itself runs only where a GPU is lent; here each script must stop before building
or running anything, with exit code 2 and a message that says why.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "check-ls-ops-cuda.sh"
GPU_CHECK = REPO / "scripts" / "check-gpu.sh"


@pytest.mark.parametrize("script", [SCRIPT, GPU_CHECK], ids=lambda p: p.name)
def test_bash_syntax(script: Path) -> None:
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("script", [SCRIPT, GPU_CHECK], ids=lambda p: p.name)
def test_shellcheck_clean(shellcheck: str, script: Path) -> None:
    result = subprocess.run([shellcheck, "--severity=style", str(script)], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: the script would build and run")
@pytest.mark.slow(seconds=10)
def test_refuses_without_a_gpu(tmp_path: Path) -> None:
    env = {**os.environ, "OUT": str(tmp_path / "out"), "PYTHON": sys.executable}
    result = subprocess.run(["bash", str(SCRIPT)], cwd=REPO, env=env, capture_output=True, text=True,
                            check=False, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "no CUDA device" in result.stderr and "cannot run the CUDA kernels" in result.stderr
    assert "building" not in result.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: the script would build and run")
@pytest.mark.slow(seconds=9)
def test_the_gpu_check_refuses_without_a_gpu(tmp_path: Path) -> None:
    env = {**os.environ, "OUT": str(tmp_path / "out"), "PYTHON": sys.executable}
    result = subprocess.run(["bash", str(GPU_CHECK)], cwd=REPO, env=env, capture_output=True, text=True,
                            check=False, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "no CUDA device" in result.stderr and "cannot run the GPU check" in result.stderr
    assert "building" not in result.stdout and not (tmp_path / "out" / "runs").exists()
