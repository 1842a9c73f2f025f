"""RoIAlign3D: the ``ls_ops::roi_align3d`` op with its autograd and fake kernels, and a module."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ls_ops._args import check_roi_align_args


@torch.library.register_fake("ls_ops::roi_align3d")
def _roi_align3d_fake(input: Tensor, rois: Tensor, spatial_scale: Sequence[float], output_size: Sequence[int],
                      sampling_ratio: Sequence[int], aligned: bool) -> Tensor:
    torch._check(rois.dim() == 2 and rois.shape[1] == 7, lambda: "rois must be (K, 7)")
    torch._check(input.dim() == 5, lambda: "input must be 5-D")
    return input.new_empty((rois.shape[0], input.shape[1], *output_size))


@torch.library.register_fake("ls_ops::roi_align3d_backward")
def _roi_align3d_backward_fake(grad: Tensor, rois: Tensor, spatial_scale: Sequence[float],
                               output_size: Sequence[int], sampling_ratio: Sequence[int], aligned: bool,
                               batch_size: int, channels: int, depth: int, height: int, width: int) -> Tensor:
    return grad.new_empty((batch_size, channels, depth, height, width))


def _setup_context(ctx: Any, inputs: tuple, output: Tensor) -> None:
    input, rois, spatial_scale, output_size, sampling_ratio, aligned = inputs
    ctx.save_for_backward(rois)
    ctx.args = (spatial_scale, output_size, sampling_ratio, aligned)
    ctx.input_shape = input.shape


def _backward(ctx: Any, grad: Tensor) -> tuple:
    (rois,) = ctx.saved_tensors
    spatial_scale, output_size, sampling_ratio, aligned = ctx.args
    grad_input = torch.ops.ls_ops.roi_align3d_backward(grad, rois, spatial_scale, output_size, sampling_ratio,
                                                        aligned, *ctx.input_shape)
    return grad_input, None, None, None, None, None


def _double_backward(ctx: Any, grad: Tensor) -> tuple:
    raise RuntimeError("ls_ops.roi_align3d: double backward is not supported")


def _backward_setup_context(ctx: Any, inputs: tuple, output: Tensor) -> None:
    pass


torch.library.register_autograd("ls_ops::roi_align3d", _backward, setup_context=_setup_context)
torch.library.register_autograd("ls_ops::roi_align3d_backward", _double_backward,
                                setup_context=_backward_setup_context)


def roi_align3d(
    input: Tensor,
    rois: Tensor | Sequence[Tensor],
    output_size: int | Sequence[int],
    spatial_scale: float | Sequence[float] = 1.0,
    sampling_ratio: int | Sequence[int] = -1,
    aligned: bool = False,
) -> Tensor:
    """RoIAlign in 3-D: trilinear sampling of ``(K, C, od, oh, ow)`` features in every roi.

    torchvision's ``roi_align`` with one more axis (exact rules: ``ls_ops.reference.roi_align``).
    Differentiable with respect to ``input``; half / bfloat16 inputs are computed in float32.

    Args:
        input: ``(B, C, D, H, W)`` feature volume (any memory layout; channels-last is fastest
            on the CPU).
        rois: ``(K, 7)`` rois ``(batch_index, z1, y1, x1, z2, y2, x2)`` in the same dtype, or a list
            of ``(K_i, 6)`` boxes, one per batch element; coordinates before ``spatial_scale``.
        output_size: bins per axis, an int or ``(od, oh, ow)``.
        spatial_scale: roi-to-input factor (1 / feature stride), a float or per axis (z, y, x).
        sampling_ratio: samples per bin per axis; <= 0 means adaptive ``ceil(roi_extent / bins)``.
        aligned: shift rois by -0.5 voxel (torchvision's ``aligned=True``); without it rois
            shorter than one voxel are stretched to one.

    Returns:
        ``(K, C, od, oh, ow)`` tensor in the input's dtype.

    Raises:
        TypeError / ValueError naming the argument for wrong types, shapes, dtypes, devices,
        non-positive sizes or scales, non-finite roi coordinates or batch indices outside
        ``[0, B)`` (value checks are skipped under ``torch.compile``; the CPU kernel repeats them).
    """
    rois, size, scale, ratio = check_roi_align_args(input, rois, output_size, spatial_scale, sampling_ratio)
    return torch.ops.ls_ops.roi_align3d(input, rois, list(scale), list(size), list(ratio), aligned)


class RoIAlign3d(nn.Module):
    """Module form of :func:`roi_align3d` with fixed size, scales, sampling ratio and alignment."""

    def __init__(
        self,
        output_size: int | Sequence[int],
        spatial_scale: float | Sequence[float] = 1.0,
        sampling_ratio: int | Sequence[int] = -1,
        aligned: bool = False,
    ) -> None:
        super().__init__()
        self.output_size = output_size
        self.spatial_scale = spatial_scale
        self.sampling_ratio = sampling_ratio
        self.aligned = aligned

    def forward(self, input: Tensor, rois: Tensor | Sequence[Tensor]) -> Tensor:
        """``(B, C, D, H, W)`` input and ``(K, 7)`` rois (or ``(K_i, 6)`` boxes) -> ``(K, C, od, oh, ow)``."""
        return roi_align3d(input, rois, self.output_size, self.spatial_scale, self.sampling_ratio,
                           self.aligned)

    def extra_repr(self) -> str:
        return (f"output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
                f"sampling_ratio={self.sampling_ratio}, aligned={self.aligned}")
