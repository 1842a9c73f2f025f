"""Pure-PyTorch reference implementations: the specification the compiled kernels are tested against.

Same signatures and semantics as the top-level ``ls_ops`` functions, written for clarity rather
than speed. They use only torch operations, so ``roi_align3d`` here is differentiable through
autograd.
"""

from ls_ops.reference.boxes import box_iou3d, box_volume3d
from ls_ops.reference.nms import batched_nms3d, nms3d
from ls_ops.reference.roi_align import roi_align3d

__all__ = ["batched_nms3d", "box_iou3d", "box_volume3d", "nms3d", "roi_align3d"]
