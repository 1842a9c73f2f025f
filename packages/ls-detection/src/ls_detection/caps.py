"""Test-time caps that follow the image size: so many proposals and detections per voxel, not per image.

The RPN keeps ``pre_nms_top_n`` anchors per level and ``post_nms_top_n`` proposals per image, and
the RoI heads ``detections_per_img`` detections per image. Given as plain counts, they hold for
the image size they were chosen on: a larger tile of the same tissue holds more objects but gets
the same caps, so recall silently falls as the tile grows (and a whole volume evaluated at once
loses objects a tiled prediction finds). With a ``test_caps_shape``, the caps are the counts for
an image of that shape, and every image at test time gets them scaled by its voxel count.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["check_caps_shape", "scale_cap"]


def check_caps_shape(shape: Sequence[int] | None, where: str) -> tuple[int, int, int] | None:
    """``shape`` as a ``(Z, Y, X)`` tuple of positive ints (None passes through)."""
    if shape is None:
        return None
    values = tuple(shape)
    if len(values) != 3 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
        raise ValueError(
            f"{where}: test_caps_shape must be 3 positive ints (Z, Y, X) or null, got {list(values)}"
        )
    return values  # type: ignore[return-value]


def scale_cap(cap: int, shape: Sequence[int], reference: Sequence[int] | None) -> int:
    """``cap`` for an image of ``shape`` when it is the cap of an image of shape ``reference``:
    scaled by the voxel count and rounded up (``cap`` itself without a reference)."""
    if reference is None:
        return cap
    return max(1, math.ceil(cap * math.prod(int(s) for s in shape) / math.prod(reference)))
