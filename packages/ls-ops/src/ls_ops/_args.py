"""Argument normalisation and validation shared by the compiled ops and the reference.

Every check raises a ``TypeError`` (wrong type or dtype) or a ``ValueError`` (wrong shape,
device or value) whose message names the offending argument, its shape, dtype and device.
Checks that read tensor values (finite coordinates, batch indices in range, NaN scores) run
in eager mode only: under ``torch.compile`` they would break the graph, and the CPU kernels
repeat the ones that guard memory accesses.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

Triple = tuple[int, int, int]
FloatTriple = tuple[float, float, float]

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def describe(t: Tensor) -> str:
    """``shape (2, 7), dtype torch.float32, device cpu`` for error messages."""
    return f"shape {tuple(t.shape)}, dtype {t.dtype}, device {t.device}"


def eager() -> bool:
    """True outside ``torch.compile`` tracing, where value-dependent checks are allowed."""
    return not torch.compiler.is_compiling()


def int_triple(name: str, value: int | Sequence[int], *, minimum: int | None = None) -> Triple:
    """An int or 3 ints (z, y, x) as a 3-tuple of ints, each ``>= minimum`` when given."""
    values = (value,) * 3 if isinstance(value, int) else tuple(value) if isinstance(value, Sequence) else ()
    if len(values) != 3 or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise TypeError(f"{name} must be an int or a sequence of 3 ints (z, y, x), got {value!r}")
    if minimum is not None and any(v < minimum for v in values):
        raise ValueError(f"{name} must be >= {minimum} on every axis, got {value!r}")
    return values  # type: ignore[return-value]


def float_triple(name: str, value: float | Sequence[float]) -> FloatTriple:
    """A positive finite float or 3 of them (z, y, x) as a 3-tuple of floats."""
    if isinstance(value, int | float):
        values: tuple = (value,) * 3
    else:
        values = tuple(value) if isinstance(value, Sequence) else ()
    if len(values) != 3 or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        raise TypeError(f"{name} must be a float or a sequence of 3 floats (z, y, x), got {value!r}")
    if not all(math.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"{name} must be finite and > 0 on every axis, got {value!r}")
    return tuple(float(v) for v in values)  # type: ignore[return-value]


def check_tensor(name: str, t: object, *, ndim: int, last: int | None = None) -> Tensor:
    """Check that ``t`` is a floating-point tensor with ``ndim`` dims and ``last`` columns."""
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() != ndim or (last is not None and t.shape[-1] != last):
        want = f"{ndim}-D" + (f" with {last} columns" if last is not None else "")
        raise ValueError(f"{name} must be {want}, got {describe(t)}")
    if t.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be a floating-point tensor, got {describe(t)}")
    return t


def check_same(name_a: str, a: Tensor, name_b: str, b: Tensor, *, dtype: bool = True) -> None:
    """Check that two tensors share a device (and a dtype unless ``dtype=False``)."""
    if a.device != b.device:
        raise ValueError(f"{name_a} and {name_b} must be on one device: {name_a} has {describe(a)}, "
                         f"{name_b} has {describe(b)}")
    if dtype and a.dtype != b.dtype:
        raise TypeError(f"{name_a} and {name_b} must have one dtype: {name_a} has {describe(a)}, "
                        f"{name_b} has {describe(b)}")


def check_finite(name: str, t: Tensor) -> None:
    """Eager only: every value of ``t`` is finite."""
    if eager() and t.numel() > 0 and not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or infinite values ({describe(t)})")


def rois_to_tensor(rois: Tensor | Sequence[Tensor], *, reference: Tensor) -> Tensor:
    """``(K, 7)`` rois (batch index first) from a ``(K, 7)`` tensor or a list of ``(K_i, 6)`` boxes.

    ``reference`` is the input volume; list entries must share its device.
    """
    if isinstance(rois, Tensor):
        return check_tensor("rois", rois, ndim=2, last=7)
    if not isinstance(rois, list | tuple):
        raise TypeError(f"rois must be a (K, 7) tensor or a list of (K_i, 6) tensors, "
                        f"got {type(rois).__name__}")
    if len(rois) == 0:
        return reference.new_zeros((0, 7))
    parts = []
    for i, boxes in enumerate(rois):
        check_tensor(f"rois[{i}]", boxes, ndim=2, last=6)
        check_same("input", reference, f"rois[{i}]", boxes, dtype=False)
        index = torch.full((boxes.shape[0], 1), float(i), dtype=boxes.dtype, device=boxes.device)
        parts.append(torch.cat([index, boxes], dim=1))
    dtypes = {p.dtype for p in parts}
    if len(dtypes) > 1:
        raise TypeError(f"rois entries must share one dtype, got {sorted(str(d) for d in dtypes)}")
    return torch.cat(parts, dim=0)


def check_roi_align_args(
    input: Tensor,
    rois: Tensor | Sequence[Tensor],
    output_size: int | Sequence[int],
    spatial_scale: float | Sequence[float],
    sampling_ratio: int | Sequence[int],
) -> tuple[Tensor, Triple, FloatTriple, Triple]:
    """Validate and normalise roi_align3d's arguments; returns (rois (K, 7), sizes, scales, ratios)."""
    check_tensor("input", input, ndim=5)
    roi_tensor = rois_to_tensor(rois, reference=input)
    check_same("input", input, "rois", roi_tensor,
               dtype=not torch.is_autocast_enabled(input.device.type))
    size = int_triple("output_size", output_size, minimum=1)
    scale = float_triple("spatial_scale", spatial_scale)
    ratio = int_triple("sampling_ratio", sampling_ratio)
    if eager() and roi_tensor.shape[0] > 0:
        check_finite("rois", roi_tensor)
        index = roi_tensor[:, 0]
        batch = input.shape[0]
        bad = (index != index.round()) | (index < 0) | (index >= batch)
        if bool(bad.any()):
            first = int(bad.nonzero()[0, 0])
            raise ValueError(f"rois[:, 0] must hold integer batch indices in [0, {batch}) for input of "
                             f"{describe(input)}; roi {first} has {float(index[first])!r}")
    return roi_tensor, size, scale, ratio


def check_boxes(name: str, boxes: object) -> Tensor:
    """Check ``(N, 6)`` floating-point boxes ``(z1, y1, x1, z2, y2, x2)``."""
    return check_tensor(name, boxes, ndim=2, last=6)


def check_nms_args(boxes: Tensor, scores: Tensor, iou_threshold: float) -> None:
    """Validate nms3d's arguments: (N, 6) boxes, (N,) scores of one dtype and device, NaN-free scores."""
    check_boxes("boxes", boxes)
    check_tensor("scores", scores, ndim=1)
    check_same("boxes", boxes, "scores", scores)
    if scores.shape[0] != boxes.shape[0]:
        raise ValueError(f"boxes and scores must have one length: boxes has {describe(boxes)}, "
                         f"scores has {describe(scores)}")
    if not isinstance(iou_threshold, int | float) or isinstance(iou_threshold, bool):
        raise TypeError(f"iou_threshold must be a float, got {iou_threshold!r}")
    if math.isnan(iou_threshold):
        raise ValueError("iou_threshold must not be NaN")
    if eager() and scores.numel() > 0 and bool(torch.isnan(scores).any()):
        raise ValueError(f"scores contains NaN ({describe(scores)}); NaN has no place in a score order")
