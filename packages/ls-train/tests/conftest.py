"""Shared fixtures: the override lists of :mod:`ls_train.testing` that shrink the quickstart config
to a few-second run; real small or read-only file systems (tmpfs mounts)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ls_train.testing import TINY_MODEL
from ls_train.testing import tiny_overrides as _tiny_overrides


@pytest.fixture(scope="session")
def tiny_model() -> list[str]:
    """Overrides shrinking the quickstart model (no data or trainer keys)."""
    return list(TINY_MODEL)


@pytest.fixture(scope="session")
def tiny_overrides() -> Callable[..., list[str]]:
    """:func:`ls_train.testing.tiny_overrides`: ``tiny_overrides(root, *extra)``, data under
    ``root/data``, runs under ``root/runs``, the tiny data and model, then ``extra``."""
    return _tiny_overrides


@pytest.fixture
def mount_tmpfs(tmp_path: Path) -> Iterator[Callable[[str, str], Path]]:
    """``mount_tmpfs(name, options)``: a tmpfs mounted on ``tmp_path/name`` with ``mount -o options``
    (``size=64k``: a small disk that fills up; ``ro``: a read-only folder, which root, who ignores
    permission bits, cannot otherwise have), unmounted at the end. Mounting needs root (or
    CAP_SYS_ADMIN): the test is skipped where it is not permitted."""
    mounted: list[Path] = []

    def mount(name: str, options: str) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        if shutil.which("mount") is None:
            pytest.skip("no mount command")
        argv = ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)]
        made = subprocess.run(argv, capture_output=True)
        if made.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
        mounted.append(folder)
        return folder

    yield mount
    for folder in reversed(mounted):
        subprocess.run(["umount", "-l", str(folder)], check=False)
