"""``SkittlezDataset``: the crops of a crop index as detection samples.

Each sample reads only its crop window from the image (selected channels) and the label
volume, builds one binary mask per instance the index lists for the crop, and returns
``(image, target, meta)`` in the package conventions (see ``/shared/DESIGN.md``). The index
connection and the volume readers are opened lazily in each process, so the dataset can be
pickled to DataLoader workers, each of which opens its own SQLite connection and files.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ls_data.errors import DataError
from ls_data.index import CropIndex, CropIndexConfig, CropRecord, IndexedVolume, build_crop_index
from ls_data.io import LabelReader, VolumeReader, open_image, open_labels

__all__ = ["SkittlezDataset"]

Transform = Callable[[torch.Tensor, dict[str, Any], dict[str, Any]], tuple[torch.Tensor, dict, dict]]

_MASK_DTYPES = {"uint8": np.uint8, "bool": np.bool_}


class SkittlezDataset(Dataset):
    """Instance segmentation crops from a crop index (built on the fly from a catalog if asked).

    With ``catalog`` set, the index at ``index_path`` is built or reused with
    :func:`~ls_data.index.build_crop_index` (distributed-aware: rank 0 builds, the other ranks
    wait); without it, ``index_path`` must hold an index.

    Args:
        index_path: The crop index (SQLite).
        transforms: Called as ``transforms(image, target, meta)``, returns the same triple.
        channels: Channel indices to read (None: the channels the index was built with).
        mask_dtype: ``"uint8"`` (default) or ``"bool"``.
        catalog: Catalog URL to build the index from (None: open ``index_path`` as is).
        selection: Which catalog volumes (a :class:`~ls_data.catalog.Selection` or its keyword
            dict, e.g. ``{"splits": ["train"]}``).
        crop_shape: ``(z, y, x)`` crop size (required with ``catalog``).
        stride: ``(z, y, x)`` step between crops (None: ``crop_shape``).
        min_instance_volume: Index criterion, see :func:`~ls_data.index.build_crop_index`.
        min_visible_fraction: Index criterion.
        min_visible_voxels: Index criterion.
        min_instances_per_crop: Index criterion.
        skip_bad_volumes: Skip unreadable volumes while building.
        allow_missing_chunks: OME-Zarr: read absent chunk files as the fill value (zarr-python
            does not store chunks that hold only it) instead of failing. An index built with it
            (``ls-data index build --allow-missing-chunks``) turns it on too.
        roots: Directories catalog paths must stay inside.
        rebuild: Rebuild the index even when its fingerprint matches.
        wait_timeout: Seconds a non-zero rank waits for rank 0's index.

    Raises:
        DataError: A missing index, bad parameters, or (while building) a bad volume.
    """

    def __init__(
        self,
        *,
        index_path: str | Path,
        transforms: Transform | None = None,
        channels: Sequence[int] | None = None,
        mask_dtype: str = "uint8",
        catalog: str | None = None,
        selection: Any = None,
        crop_shape: int | Sequence[int] | None = None,
        stride: int | Sequence[int] | None = None,
        min_instance_volume: int = 1,
        min_visible_fraction: float = 0.0,
        min_visible_voxels: int = 1,
        min_instances_per_crop: int = 1,
        skip_bad_volumes: bool = False,
        allow_missing_chunks: bool = False,
        roots: Sequence[str | Path] = (),
        rebuild: bool = False,
        wait_timeout: float = 3600.0,
    ) -> None:
        grid_and_criteria = {
            "crop_shape": crop_shape,
            "stride": stride,
            "min_instance_volume": min_instance_volume,
            "min_visible_fraction": min_visible_fraction,
            "min_visible_voxels": min_visible_voxels,
            "min_instances_per_crop": min_instances_per_crop,
        }
        self.check_arguments(mask_dtype=mask_dtype, catalog=catalog, channels=channels, **grid_and_criteria)
        if transforms is not None and not callable(transforms):
            raise DataError(
                f"transforms must be callable (image, target, meta), got {type(transforms).__name__}"
            )
        self.transforms = transforms
        self.mask_dtype = _MASK_DTYPES[str(mask_dtype)]
        self.channels = None if channels is None else tuple(int(c) for c in channels)
        if catalog is not None:
            self.index = build_crop_index(
                catalog=str(catalog),
                selection=_selection(selection),
                index_path=index_path,
                channels=self.channels,
                **grid_and_criteria,
                skip_bad_volumes=skip_bad_volumes,
                allow_missing_chunks=allow_missing_chunks,
                roots=roots,
                rebuild=rebuild,
                wait_timeout=wait_timeout,
            )
        else:
            self.index = CropIndex.open(index_path)
        built_with = bool(self.index.params.get("allow_missing_chunks"))
        self.allow_missing_chunks = allow_missing_chunks or built_with
        self._readers: dict[int, tuple[VolumeReader, LabelReader]] = {}
        self._pid = os.getpid()

    @staticmethod
    def check_arguments(
        *,
        mask_dtype: str = "uint8",
        catalog: str | None = None,
        crop_shape: int | Sequence[int] | None = None,
        stride: int | Sequence[int] | None = None,
        channels: Sequence[int] | None = None,
        min_instance_volume: int = 1,
        min_visible_fraction: float = 0.0,
        min_visible_voxels: int = 1,
        min_instances_per_crop: int = 1,
        **others: Any,
    ) -> None:
        """Check the arguments that need no file (the crop shape, the stride, the criteria), so a
        runner can refuse a bad value before any work (ls-train calls this on its config).

        Raises:
            DataError: naming the argument.
        """
        if str(mask_dtype) not in _MASK_DTYPES:
            raise DataError(f"mask_dtype must be one of {sorted(_MASK_DTYPES)}, got {mask_dtype!r}")
        if catalog is None:
            return
        if crop_shape is None:
            raise DataError("SkittlezDataset: crop_shape is required to build an index from a catalog")
        CropIndexConfig(
            crop_shape=crop_shape,
            stride=stride,
            channels=channels,
            min_instance_volume=min_instance_volume,
            min_visible_fraction=min_visible_fraction,
            min_visible_voxels=min_visible_voxels,
            min_instances_per_crop=min_instances_per_crop,
        )

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


def _selection(selection: Any) -> Any:
    if selection is None:
        return None
    from ls_data.catalog import Selection

    if isinstance(selection, Selection):
        return selection
    if isinstance(selection, Mapping):
        try:
            return Selection(**{str(k): v for k, v in selection.items()})
        except TypeError as exc:
            raise DataError(f"SkittlezDataset: bad selection {dict(selection)!r}: {exc}") from None
    raise DataError(
        f"SkittlezDataset: selection must be a Selection or a mapping, got {type(selection).__name__}"
    )


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
