"""Crop index: every valid crop of a set of volumes with its instances, in a local SQLite file.

Build with :func:`build_crop_index` (atomic, fingerprinted, distributed-aware), read with
:class:`CropIndex`. The building blocks (streaming instance statistics, crop grid, selection
criteria, fingerprint) are public for reuse and testing.
"""

from __future__ import annotations

from ls_data.index.build import CropIndexConfig, SkippedVolumeWarning, VolumeSource, build_crop_index
from ls_data.index.criteria import CropCriteria, CropInstances, select_instances
from ls_data.index.fingerprint import compute_fingerprint, source_state
from ls_data.index.grid import as_triple, axis_starts, crop_origins
from ls_data.index.reader import CropIndex, CropRecord, IndexedVolume, InstanceRecord
from ls_data.index.stats import InstanceStats, label_stats, merge_stats, stream_instance_stats

__all__ = [
    "CropCriteria",
    "CropIndex",
    "CropIndexConfig",
    "CropInstances",
    "CropRecord",
    "IndexedVolume",
    "InstanceRecord",
    "InstanceStats",
    "SkippedVolumeWarning",
    "VolumeSource",
    "as_triple",
    "axis_starts",
    "build_crop_index",
    "compute_fingerprint",
    "crop_origins",
    "label_stats",
    "merge_stats",
    "select_instances",
    "source_state",
    "stream_instance_stats",
]
