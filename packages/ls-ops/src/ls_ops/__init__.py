"""ls-ops: RoIAlign3D and NMS3D for 3-D detection, as compiled PyTorch operators.

Boxes are ``(z1, y1, x1, z2, y2, x2)`` in continuous voxel coordinates (no "+1"); rois for
RoIAlign3D are ``(K, 7)`` with the batch index first, or a list of ``(K_i, 6)`` boxes. The
semantics are torchvision's ``roi_align`` and ``nms`` with one more axis. ``ls_ops.reference``
holds pure-PyTorch implementations of every op, the specification they are tested against.

Importing the package loads the compiled library (``build_info()`` describes it); a missing or
mismatched library raises ``ImportError`` with the command that rebuilds it.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from ls_ops._library import build_info, load_library, parallel_threads

load_library()

from ls_ops.boxes import box_iou3d, box_volume3d  # noqa: E402
from ls_ops.nms import batched_nms3d, nms3d  # noqa: E402
from ls_ops.roi_align import RoIAlign3d, roi_align3d  # noqa: E402

try:
    __version__ = version("ls-ops")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "RoIAlign3d",
    "batched_nms3d",
    "box_iou3d",
    "box_volume3d",
    "build_info",
    "nms3d",
    "parallel_threads",
    "roi_align3d",
]
