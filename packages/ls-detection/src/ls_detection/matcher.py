"""Assign each candidate box (anchor or proposal) the ground-truth box it matches best.

torchvision's detection ``Matcher`` (a private module there), which is independent of the
number of axes: it reads only the ``(M ground truth, N candidates)`` quality matrix, here 3-D IoU.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["Matcher"]


class Matcher:
    """Best ground-truth index per candidate, or a negative code for a weak match.

    Args:
        high_threshold: Quality ``>= high_threshold`` is a match.
        low_threshold: Quality in ``[low_threshold, high_threshold)`` gives
            :attr:`BETWEEN_THRESHOLDS` (ignored in training), below it :attr:`BELOW_LOW_THRESHOLD`
            (background).
        allow_low_quality_matches: Also match, for every ground truth, the candidates of highest
            quality with it (ties included) even when that quality is low, so no object goes
            without a positive candidate (the RPN's setting).
    """

    BELOW_LOW_THRESHOLD = -1
    BETWEEN_THRESHOLDS = -2

    def __init__(
        self, high_threshold: float, low_threshold: float, allow_low_quality_matches: bool = False
    ) -> None:
        if low_threshold > high_threshold:
            raise ValueError(
                f"Matcher: low_threshold ({low_threshold}) must be <= high_threshold ({high_threshold})"
            )
        self.high_threshold = high_threshold
        self.low_threshold = low_threshold
        self.allow_low_quality_matches = allow_low_quality_matches

    def __call__(self, match_quality_matrix: Tensor) -> Tensor:
        """``(N,)`` int64: the matched ground-truth index in ``[0, M)`` or a negative code.

        Args:
            match_quality_matrix: ``(M, N)`` quality (IoU) of M ground-truth and N candidate boxes.

        Raises:
            ValueError: the matrix is empty (no ground truth, or no candidate).
        """
        if match_quality_matrix.numel() == 0:
            what = "ground-truth" if match_quality_matrix.shape[0] == 0 else "proposal"
            raise ValueError(f"No {what} boxes available for one of the images during training")
        matched_vals, matches = match_quality_matrix.max(dim=0)
        all_matches = matches.clone() if self.allow_low_quality_matches else None
        matches[matched_vals < self.low_threshold] = self.BELOW_LOW_THRESHOLD
        between = (matched_vals >= self.low_threshold) & (matched_vals < self.high_threshold)
        matches[between] = self.BETWEEN_THRESHOLDS
        if all_matches is not None:
            best_per_gt = match_quality_matrix.max(dim=1).values
            candidates = torch.where(match_quality_matrix == best_per_gt[:, None])[1]
            matches[candidates] = all_matches[candidates]
        return matches
