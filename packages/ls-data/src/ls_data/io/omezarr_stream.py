"""Streaming OME-Zarr writers for volumes larger than memory: label images and images, block by block.

A whole-volume prediction writes its instance labels block by block, possibly from several
processes at once, into ``labels/<name>`` of an OME-Zarr image (:class:`LabelImageWriter`), and
sometimes a copy of the image into a new OME-Zarr group (:class:`ImageWriter`). Both work in four
steps, and nothing is ever held whole in memory:

1. ``create`` makes the Zarr arrays of every multiscale level (metadata only) and stores the
   writer's parameters in a private group attribute (``ls_data_stream``), but no NGFF
   ``multiscales`` metadata: until step 4 the group is not an OME-Zarr image / label image, a label
   image is not listed in ``labels/``, and :func:`ls_data.io.open_labels` refuses it.
2. ``write(offset, block)`` writes level 0, from any number of processes: ``open`` reopens the
   writer, or pickle it (it holds paths and metadata only and opens its TensorStore handles lazily
   in each process, so it can be sent to Ray workers or ``spawn`` processes).
3. ``build_pyramid()`` computes each coarser level from the previous one, block by block
   (labels by stride, images by block means).
4. ``finalize()`` checks that every chunk of every level has been written, then writes the NGFF
   metadata (and, for labels, lists the name in ``labels/``), so that an interrupted run never
   looks complete.

Concurrency: every chunk is one file, which TensorStore writes whole (a temporary file renamed into
place). Processes that write disjoint **chunk-aligned** regions -- each start a multiple of the
chunk shape, each stop a multiple of it or the array end -- never touch the same file, so they are
safe together. A region that covers a chunk only partly makes TensorStore read, modify and rewrite
that chunk: fine within one process, but two processes doing it to the same chunk can lose one
another's data. ``create`` and ``finalize`` must each run once, in one process, before respectively
after all writes.

Layout, matching :func:`ls_data.io.write_ome_zarr`: NGFF 0.4 on Zarr v2, arrays ``0``, ``1``, ...
compressed with Blosc zstd (bit shuffle), fill value 0, ``/`` chunk keys, and every chunk stored,
also all-zero ones, so that a missing chunk means "never written" (readers raise
:class:`~ls_data.errors.VolumeReadError` for it). A label image inside a Zarr v3 (NGFF 0.5) image is
written as Zarr v3 (default chunk keys ``c/z/y/x``, ``dimension_names``) with its NGFF metadata under
the ``ome`` attribute and version ``"0.5"``; :class:`ImageWriter` always writes NGFF 0.4 / Zarr v2.
"""

from __future__ import annotations

from ls_data.io.image_writer import ImageWriter
from ls_data.io.label_writer import LabelImageWriter
from ls_data.io.pyramid import pyramid_factors

__all__ = ["ImageWriter", "LabelImageWriter", "pyramid_factors"]
