"""ls-data: light-sheet volumes for 3-D instance segmentation.

- ``ls_data.synth``: synthetic light-sheet data (the embedded default dataset);
- ``ls_data.io``: TIFF (tifffile) and OME-Zarr (TensorStore) readers that read only a window,
  and writers;
- ``ls_data.catalog``: the volume catalog (SQLite file or PostgreSQL server);
- ``ls_data.index``: the local SQLite crop index built from a catalog selection;
- ``ls_data.dataset``: ``SkittlezDataset`` (``skittlez`` in the ``ls.datasets`` registry), which
  opens an index that ``build_crop_index`` built;
- ``ls_data.dataset_entry``: a dataset entry ``{name | _target_, **arguments}`` as typed calls
  (``parse_dataset_entry``: the ``IndexBuild`` to run first, then the dataset to open);
- ``ls_data.transforms``: joint image / target transforms (``ls.transforms`` registry);
- ``ls_data.loader``: ``build_dataloaders``, the detection collate, and ``gather_dataset`` (the
  original system's entry, an adapter over the functions above).

The command line is ``ls-data`` (``synth``, ``catalog``, ``index``). Submodules are imported on
first use, so ``import ls_data`` stays cheap.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from ls_core import lazy_exports
from ls_data.errors import DataError, PathOutsideRootsError, VolumeReadError

try:
    __version__ = version("ls-data")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

# public name -> module that defines it (imported lazily by __getattr__)
_LAZY = {
    "open_image": "io",
    "open_labels": "io",
    "write_ome_zarr": "io",
    "write_tiff_pair": "io",
    "synthesize_volume": "synth",
    "synthesize_dataset": "synth",
    "Catalog": "catalog",
    "Selection": "catalog",
    "VolumeRecord": "catalog",
    "CatalogError": "catalog",
    "CropIndex": "index",
    "CropIndexConfig": "index",
    "DatasetEntry": "dataset_entry",
    "IndexBuild": "dataset_entry",
    "parse_dataset_entry": "dataset_entry",
    "build_crop_index": "index",
    "SkittlezDataset": "dataset",
    "Compose": "transforms",
    "build_transforms": "transforms",
    "boxes_from_masks": "transforms",
    "gather_dataset": "loader",
    "build_dataloaders": "loader",
    "loader_options": "loader",
    "collate_detection": "loader",
    "list_datasets": "registry",
    "list_transforms": "registry",
    "create_dataset": "registry",
    "create_transform": "registry",
}

__all__ = [
    "Catalog",
    "CatalogError",
    "Compose",
    "CropIndex",
    "CropIndexConfig",
    "DataError",
    "DatasetEntry",
    "IndexBuild",
    "PathOutsideRootsError",
    "Selection",
    "SkittlezDataset",
    "VolumeReadError",
    "VolumeRecord",
    "__version__",
    "boxes_from_masks",
    "build_crop_index",
    "build_dataloaders",
    "build_transforms",
    "collate_detection",
    "create_dataset",
    "create_transform",
    "gather_dataset",
    "list_datasets",
    "list_transforms",
    "loader_options",
    "open_image",
    "open_labels",
    "parse_dataset_entry",
    "synthesize_dataset",
    "synthesize_volume",
    "write_ome_zarr",
    "write_tiff_pair",
]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
