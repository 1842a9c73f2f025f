"""Shared fixtures: override lists that shrink the quickstart config to a few-second run; real
small or read-only file systems (tmpfs mounts)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# a 2-level model with small heads and few proposals
TINY_MODEL = (
    "models.backbones.out_features=[p2]",
    "models.backbones.fpn.out_channels=8",
    "models.rpn_anchor_generator.sizes=[[8,16],[16,32]]",
    "models.mask_layers=[8]",
    "models.mask_dim_reduced=8",
    "models.box_representation_size=32",
    "models.rpn_pre_nms_top_n_train=100",
    "models.rpn_post_nms_top_n_train=50",
)

# 3 synthetic volumes of 8x32x32 (2 training crops, 1 validation crop), batches of one
TINY_DATA = (
    "data.synthesize.num_volumes=3",
    "data.synthesize.shape=[8,32,32]",
    "data.synthesize.num_objects=6",
    "data.synthesize.val_fraction=0.34",
    "datasets.database.crop_shape=[8,32,32]",
    "datasets.database.stride=[8,32,32]",
    "evaluation.database.crop_shape=[8,32,32]",
    "datasets.batch_size=1",
)

TINY_TEST_PROPOSALS = ("models.rpn_pre_nms_top_n_test=50", "models.rpn_post_nms_top_n_test=20")


@pytest.fixture(scope="session")
def tiny_model() -> list[str]:
    """Overrides shrinking the quickstart model (no data or trainer keys)."""
    return list(TINY_MODEL)


@pytest.fixture(scope="session")
def tiny_overrides() -> Callable[..., list[str]]:
    """``tiny_overrides(root, *extra)``: data under ``root/data``, runs under ``root/runs``, the tiny
    data and model, then ``extra`` (later overrides of a key win)."""

    def make(root: Path, *extra: str) -> list[str]:
        return [
            f"data.root={root / 'data'}",
            *TINY_DATA,
            *TINY_MODEL,
            *TINY_TEST_PROPOSALS,
            f"trainer.runs_root={root / 'runs'}",
            *extra,
        ]

    return make


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
