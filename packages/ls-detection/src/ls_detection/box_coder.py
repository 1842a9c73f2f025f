"""Encoding of 3-D boxes as regression deltas relative to reference boxes (anchors or proposals).

The parametrisation is torchvision's ``BoxCoder`` with one more axis: for a reference box with
centre ``(cz, cy, cx)`` and extents ``(d, h, w)`` and a target box with centre ``(gz, gy, gx)``
and extents ``(gd, gh, gw)``, the deltas are::

    (wz * (gz - cz) / d, wy * (gy - cy) / h, wx * (gx - cx) / w,
     wd * log(gd / d),   wh * log(gh / h),   ww * log(gw / w))

where ``weights = (wz, wy, wx, wd, wh, ww)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from ls_detection.boxes import coordinate_dtype


def _check_boxes_arg(name: str, t: object) -> Tensor:
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a Tensor, got {type(t).__name__}")
    if t.dim() != 2 or t.shape[-1] != 6:
        raise ValueError(f"{name} must have shape (N, 6), got {tuple(t.shape)}")
    return t


class BoxCoder3D:
    """Encodes ``(z1, y1, x1, z2, y2, x2)`` boxes into 6 deltas and decodes them back.

    Args:
        weights: ``(wz, wy, wx, wd, wh, ww)`` multipliers of the centre and log-extent deltas.
        bbox_xform_clip: upper bound on the decoded log-extent deltas (after dividing by the
            weights), which keeps ``exp`` finite.
    """

    def __init__(
        self, weights: Sequence[float], bbox_xform_clip: float = math.log(1000.0 / 16)
    ) -> None:
        weights = tuple(float(w) for w in weights)
        if len(weights) != 6:
            raise ValueError(f"BoxCoder3D weights must hold 6 floats (wz, wy, wx, wd, wh, ww), got {weights}")
        if any(not w > 0 for w in weights):
            raise ValueError(f"BoxCoder3D weights must all be > 0, got {weights}")
        self.weights: tuple[float, float, float, float, float, float] = weights  # type: ignore[assignment]
        self.bbox_xform_clip = float(bbox_xform_clip)

    def encode(self, reference_boxes: list[Tensor], proposals: list[Tensor]) -> tuple[Tensor, ...]:
        """Encode per-image target boxes relative to per-image proposals.

        Args:
            reference_boxes: per image, ``(N_i, 6)`` target (ground-truth) boxes.
            proposals: per image, ``(N_i, 6)`` boxes the targets are encoded against.

        Returns:
            Per image, ``(N_i, 6)`` deltas.
        """
        if len(reference_boxes) != len(proposals):
            raise ValueError(f"encode got {len(reference_boxes)} reference box tensors but "
                             f"{len(proposals)} proposal tensors")
        counts = [len(b) for b in reference_boxes]
        deltas = self.encode_single(torch.cat(list(reference_boxes), dim=0),
                                    torch.cat(list(proposals), dim=0))
        return deltas.split(counts, dim=0)

    def encode_single(self, reference_boxes: Tensor, proposals: Tensor) -> Tensor:
        """Encode ``(N, 6)`` target boxes relative to ``(N, 6)`` proposals; returns ``(N, 6)`` deltas."""
        _check_boxes_arg("reference_boxes", reference_boxes)
        _check_boxes_arg("proposals", proposals)
        if reference_boxes.shape[0] != proposals.shape[0]:
            raise ValueError(f"reference_boxes {tuple(reference_boxes.shape)} and proposals "
                             f"{tuple(proposals.shape)} must have one length")
        proposals = proposals.to(reference_boxes.dtype)
        weights = torch.as_tensor(self.weights, dtype=reference_boxes.dtype, device=reference_boxes.device)
        ex_size = proposals[:, 3:] - proposals[:, :3]
        ex_ctr = proposals[:, :3] + 0.5 * ex_size
        gt_size = reference_boxes[:, 3:] - reference_boxes[:, :3]
        gt_ctr = reference_boxes[:, :3] + 0.5 * gt_size
        d_ctr = weights[:3] * (gt_ctr - ex_ctr) / ex_size
        d_size = weights[3:] * torch.log(gt_size / ex_size)
        return torch.cat((d_ctr, d_size), dim=1)

    def decode(self, rel_codes: Tensor, boxes: list[Tensor]) -> Tensor:
        """Decode deltas against per-image reference boxes.

        Args:
            rel_codes: ``(N, 6 * K)`` deltas (or any shape with ``N * 6 * K`` elements), ``N`` the
                total number of boxes over all images.
            boxes: per image, ``(N_i, 6)`` reference boxes, ``sum(N_i) == N``.

        Returns:
            ``(N, K, 6)`` decoded boxes.
        """
        if not isinstance(boxes, list | tuple):
            raise TypeError(f"decode expects boxes as a list of (N_i, 6) tensors, got {type(boxes).__name__}")
        reference = torch.cat(list(boxes), dim=0)
        total = reference.shape[0]
        if total > 0:
            rel_codes = rel_codes.reshape(total, -1)
        elif rel_codes.dim() != 2:
            rel_codes = rel_codes.reshape(0, 6)
        decoded = self.decode_single(rel_codes, reference)
        return decoded.reshape(total, decoded.shape[1] // 6, 6)

    def decode_single(self, rel_codes: Tensor, boxes: Tensor) -> Tensor:
        """Decode ``(N, 6 * K)`` deltas against ``(N, 6)`` reference boxes; returns ``(N, 6 * K)`` boxes."""
        _check_boxes_arg("boxes", boxes)
        if rel_codes.dim() != 2 or rel_codes.shape[1] % 6 != 0 or rel_codes.shape[0] != boxes.shape[0]:
            raise ValueError(f"rel_codes must have shape (N, 6 * K) with N = {boxes.shape[0]} boxes, "
                             f"got {tuple(rel_codes.shape)}")
        dtype = coordinate_dtype(rel_codes.dtype, boxes.dtype)  # never the half of an autocast head
        boxes, rel_codes = boxes.to(dtype), rel_codes.to(dtype)
        n = rel_codes.shape[0]
        codes = rel_codes.reshape(n, rel_codes.shape[1] // 6, 6)
        weights = torch.as_tensor(self.weights, dtype=rel_codes.dtype, device=rel_codes.device)
        codes = codes / weights
        size = (boxes[:, 3:] - boxes[:, :3])[:, None, :]
        ctr = boxes[:, None, :3] + 0.5 * size
        d_size = torch.clamp(codes[..., 3:], max=self.bbox_xform_clip)
        pred_ctr = codes[..., :3] * size + ctr
        half = 0.5 * torch.exp(d_size) * size
        return torch.cat((pred_ctr - half, pred_ctr + half), dim=2).reshape(n, rel_codes.shape[1])
