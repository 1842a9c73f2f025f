"""Overrides that shrink the quickstart to a run of a few seconds, for tests of ls-train and of
code built on it (ls-napari's tests, the real-SLURM test, ``bench-faults``): one copy, so that they
all train the same tiny model on the same tiny data.

    from ls_train.testing import tiny_overrides
    cfg = load_config("quickstart", tiny_overrides(tmp_path, "cluster=local"))
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["TINY_DATA", "TINY_MODEL", "TINY_TEST_PROPOSALS", "tiny_overrides"]

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
"""A 2-level model with small heads and few training proposals."""

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
"""3 synthetic volumes of 8x32x32 (2 training crops, 1 validation crop), batches of one."""

TINY_TEST_PROPOSALS = ("models.rpn_pre_nms_top_n_test=50", "models.rpn_post_nms_top_n_test=20")
"""Few proposals at test time."""


def tiny_overrides(root: str | Path, *extra: str) -> list[str]:
    """Data under ``root/data``, runs under ``root/runs``, the tiny data and model, then ``extra``
    (a later override of a key wins)."""
    root = Path(root)
    return [
        f"data.root={root / 'data'}",
        *TINY_DATA,
        *TINY_MODEL,
        *TINY_TEST_PROPOSALS,
        f"trainer.runs_root={root / 'runs'}",
        *extra,
    ]
