"""``SkittlezDataset``: the crops of a crop index as detection samples.

Each sample reads only its crop window from the image (selected channels) and the label
volume, builds one binary mask per instance the index lists for the crop, and returns
``(image, target, meta)`` in the package conventions (see ``/shared/DESIGN.md``). The index
connection and the volume readers are opened lazily in each process, so the dataset can be
pickled to DataLoader workers, each of which opens its own SQLite connection and files.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ls_data.errors import DataError
from ls_data.index import CropIndex, CropRecord, IndexedVolume
from ls_data.io import LabelReader, VolumeReader, open_image, open_labels

__all__ = ["SkittlezDataset"]

Transform = Callable[[torch.Tensor, dict[str, Any], dict[str, Any]], tuple[torch.Tensor, dict, dict]]

_MASK_DTYPES = {"uint8": np.uint8, "bool": np.bool_}


class SkittlezDataset(Dataset):
    """Instance segmentation crops from an existing crop index; it never builds one.

    Build the index first with :func:`~ls_data.index.build_crop_index` (or ``ls-data index
    build``); ``ls-train`` builds its indices in the driver before its workers start.

    Args:
        index_path: The crop index (SQLite).
        transforms: Called as ``transforms(image, target, meta)``, returns the same triple.
        channels: Channel indices to read (None: the channels the index was built with).
        mask_dtype: ``"uint8"`` (default) or ``"bool"``.
        allow_missing_chunks: OME-Zarr: read absent chunk files as the fill value (zarr-python
            does not store chunks that hold only it) instead of failing. An index built with it
            (``ls-data index build --allow-missing-chunks``) turns it on too.
        fingerprint: The fingerprint the index must carry (``CropIndex.fingerprint`` of the build
            this dataset belongs to); None: any.

    Raises:
        DataError: The index is missing or stale (a fingerprint other than ``fingerprint``, or
            another schema version), naming its path; a bad ``mask_dtype`` or ``transforms``.
    """

    def __init__(
        self,
        index_path: str | Path,
        *,
        transforms: Transform | None = None,
        channels: Sequence[int] | None = None,
        mask_dtype: str = "uint8",
        allow_missing_chunks: bool = False,
        fingerprint: str | None = None,
    ) -> None:
        if str(mask_dtype) not in _MASK_DTYPES:
            raise DataError(f"mask_dtype must be one of {sorted(_MASK_DTYPES)}, got {mask_dtype!r}")
        if transforms is not None and not callable(transforms):
            raise DataError(
                f"transforms must be callable (image, target, meta), got {type(transforms).__name__}"
            )
        self.transforms = transforms
        self.mask_dtype = _MASK_DTYPES[str(mask_dtype)]
        self.channels = None if channels is None else tuple(int(c) for c in channels)
        self.index = CropIndex.open(index_path, fingerprint=fingerprint)
        built_with = bool(self.index.params.get("allow_missing_chunks"))
        self.allow_missing_chunks = allow_missing_chunks or built_with
        self._readers: dict[int, tuple[VolumeReader, LabelReader]] = {}
        self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self.index)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_readers"] = {}
        return state

    def _open(self, volume: IndexedVolume) -> tuple[VolumeReader, LabelReader]:
        if self._pid != os.getpid():  # forked into a worker: open this process's own files
            self._readers = {}
            self._pid = os.getpid()
        if volume.id not in self._readers:
            missing = {"allow_missing_chunks": self.allow_missing_chunks}
            self._readers[volume.id] = (open_image(volume.image_path, **missing),
                                        open_labels(volume.label_path, **missing))
        return self._readers[volume.id]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, Any], dict[str, Any]]:
        """Sample ``i``.

        Returns:
            ``image`` float32 ``(C, Z, Y, X)``; ``target`` with ``boxes`` float32 ``(N, 6)``
            (crop coordinates), ``labels`` int64 ``(N,)`` (classes), ``masks`` ``(N, Z, Y, X)``
            uint8 (or bool); ``meta`` with ``volume_id`` (index-local), ``catalog_id``,
            ``volume_name``, ``origin`` ``(z, y, x)``, ``spacing`` ``(sz, sy, sx)``,
            ``label_ids`` int64 ``(N,)``, ``crop_index``, ``channels``.
        """
        record = self.index.crop(i)
        image_reader, label_reader = self._open(record.volume)
        channels = self.channels if self.channels is not None else record.channels
        window = record.window
        image = np.asarray(image_reader.read(window, channels=list(channels)))
        labels = np.asarray(label_reader.read(window))
        masks = _instance_masks(labels, record, self.mask_dtype)
        target = {
            "boxes": torch.tensor([inst.box for inst in record.instances], dtype=torch.float32).reshape(
                -1, 6
            ),
            "labels": torch.tensor([inst.class_id for inst in record.instances], dtype=torch.int64),
            "masks": torch.from_numpy(masks),
        }
        meta = {
            "volume_id": record.volume.id,
            "catalog_id": record.volume.catalog_id,
            "volume_name": record.volume.name,
            "origin": record.origin,
            "spacing": record.volume.spacing,
            "label_ids": torch.tensor([inst.label_id for inst in record.instances], dtype=torch.int64),
            "crop_index": record.index,
            "channels": tuple(channels),
        }
        tensor = torch.from_numpy(image.astype(np.float32))  # a writable copy, also for float32 input
        if self.transforms is not None:
            return self.transforms(tensor, target, meta)
        return tensor, target, meta

    def __repr__(self) -> str:
        return f"SkittlezDataset(index_path={str(self.index.path)!r}, crops={len(self)})"


def _instance_masks(labels: np.ndarray, record: CropRecord, dtype: type) -> np.ndarray:
    """``(N, Z, Y, X)`` masks (``dtype`` uint8 or bool) of the listed instances, filled inside their boxes.

    Raises:
        DataError: A mask's voxel count differs from the index (the label file changed after the
            index was built).
    """
    masks = np.zeros((len(record.instances), *labels.shape), dtype=dtype)
    for k, inst in enumerate(record.instances):
        z1, y1, x1, z2, y2, x2 = inst.box
        inside = labels[z1:z2, y1:y2, x1:x2] == inst.label_id
        masks[k, z1:z2, y1:y2, x1:x2] = inside
        if int(inside.sum()) != inst.visible_voxels:
            raise DataError(
                f"crop {record.index} of {record.volume.name!r}: instance {inst.label_id} has "
                f"{int(inside.sum())} voxels in {str(record.volume.label_path)!r} but the index says "
                f"{inst.visible_voxels}; the label file changed since the index was built, rebuild it"
            )
    return masks
