"""Reading and writing light-sheet volumes: TIFF (tifffile) and OME-Zarr (TensorStore / zarr).

Images are ``(C, Z, Y, X)``, label volumes ``(Z, Y, X)`` integer with 0 = background, spacing
``(sz, sy, sx)`` in micrometres. Readers read only the requested window; the streaming writers
(:class:`LabelImageWriter`, :class:`ImageWriter`) write volumes larger than memory block by block.
"""

from __future__ import annotations

from ls_data.io.base import LabelReader, VolumeReader, Window, check_same_grid
from ls_data.io.ngff_check import check_ngff_image, check_ngff_labels
from ls_data.io.omezarr import OmeZarrLabelReader, OmeZarrVolumeReader
from ls_data.io.omezarr_stream import ImageWriter, LabelImageWriter, pyramid_factors
from ls_data.io.omezarr_write import write_ome_zarr
from ls_data.io.paths import VolumeFormat, format_of, resolve_uri
from ls_data.io.readers import open_image, open_labels
from ls_data.io.tiff import TiffLabelReader, TiffVolumeReader, classes_sidecar_path, write_tiff_pair

__all__ = [
    "ImageWriter",
    "LabelImageWriter",
    "LabelReader",
    "OmeZarrLabelReader",
    "OmeZarrVolumeReader",
    "TiffLabelReader",
    "TiffVolumeReader",
    "VolumeFormat",
    "VolumeReader",
    "Window",
    "check_ngff_image",
    "check_ngff_labels",
    "check_same_grid",
    "classes_sidecar_path",
    "format_of",
    "open_image",
    "open_labels",
    "pyramid_factors",
    "resolve_uri",
    "write_ome_zarr",
    "write_tiff_pair",
]
