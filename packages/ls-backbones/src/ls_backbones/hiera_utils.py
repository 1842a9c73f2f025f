"""Token-layout utilities of Hiera: unroll, reroll, query pooling and mask-unit validation.

Hiera keeps its tokens as one flat sequence ``(B, N, C)``. *Unrolling* reorders them so
that every query-pooling window, and every mask unit, is a contiguous run of the sequence:
after unrolling a grid ``(D, H, W)`` with per-level strides ``S_1, ..., S_L``, the token
index reads, from the outermost to the innermost digit::

    (s1_z, s1_y, s1_x, s2_z, s2_y, s2_x, ..., sL_z, sL_y, sL_x, c_z, c_y, c_x)

where a voxel coordinate on an axis is ``((c * S_L + s_L) * S_(L-1) + ...) * S_1 + s_1``.
Max pooling over a ``S_1`` window is then ``x.view(B, prod(S_1), -1, C).max(1)`` (the
outermost digits), and a mask unit of ``prod(S_1 .. S_k)`` tokens is the outermost ``k``
levels, so mask-unit attention is a reshape. *Rerolling* inverts the order to raster
``(B, D, H, W, C)``. Everything here works on any number of spatial axes and on any grid
divisible by the product of the strides; the grid is passed at call time, not fixed at
construction as in the official implementation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor

__all__ = ["do_pool", "mask_unit_levels", "reroll", "unroll"]


def _check_schedule(size: Sequence[int], schedule: Sequence[Sequence[int]], what: str) -> list[int]:
    """Return the coarse grid left after all levels of ``schedule``; raise if ``size`` does not divide."""
    total = [1] * len(size)
    for level, strides in enumerate(schedule):
        if len(strides) != len(size):
            raise ValueError(
                f"{what}: stride {tuple(strides)} of unroll level {level} has {len(strides)} axes but "
                f"the token grid {tuple(size)} has {len(size)}"
            )
        total = [t * s for t, s in zip(total, strides, strict=True)]
    if any(n % t for n, t in zip(size, total, strict=True)):
        raise ValueError(
            f"{what}: token grid {tuple(size)} is not divisible by the product {tuple(total)} of the "
            f"unroll strides {[tuple(s) for s in schedule]}"
        )
    return [n // t for n, t in zip(size, total, strict=True)]


def _unroll_permutation(ndim: int, levels: int) -> list[int]:
    """Permutation from the raster digit layout to the unrolled digit layout.

    Raster digits of one sample, axis-major: axis ``a`` holds ``(c_a, sL_a, ..., s1_a)`` at
    positions ``a * (levels + 1) + j``. The unrolled order is ``s1 (all axes), ..., sL (all
    axes), c (all axes)``.
    """
    perm = [a * (levels + 1) + (levels - level + 1) for level in range(1, levels + 1) for a in range(ndim)]
    perm += [a * (levels + 1) for a in range(ndim)]
    return perm


def _raster_digits(
    size: Sequence[int], schedule: Sequence[Sequence[int]], coarse: Sequence[int]
) -> list[int]:
    """Digit radices of the raster layout, axis-major: ``(c_a, sL_a, ..., s1_a)`` per axis."""
    digits: list[int] = []
    for a in range(len(size)):
        digits.append(coarse[a])
        digits.extend(strides[a] for strides in reversed(schedule))
    return digits


def unroll(x: Tensor, size: Sequence[int], schedule: Sequence[Sequence[int]]) -> Tensor:
    """Reorder raster-ordered tokens so that pooling windows and mask units are contiguous.

    Args:
        x: tokens ``(B, N, C)`` in raster order of the grid ``size`` (``N = prod(size)``).
        size: the token grid, e.g. ``(D, H, W)``.
        schedule: per-level strides ``[S_1, ..., S_L]``, each a tuple with one entry per axis;
            ``S_1`` is the window of the first query pooling.

    Returns:
        ``(B, N, C)`` in unrolled order (see the module docstring). Same result as the
        official ``hiera_utils.Unroll(input_size, patch_stride, schedule)`` on its grid.
    """
    b, n, c = x.shape
    if n != math.prod(size):
        raise ValueError(f"unroll: tokens of shape {tuple(x.shape)} do not fill the token grid {tuple(size)}")
    coarse = _check_schedule(size, schedule, "unroll")
    levels, ndim = len(schedule), len(size)
    perm = _unroll_permutation(ndim, levels)
    x = x.reshape(b, *_raster_digits(size, schedule, coarse), c)
    x = x.permute(0, *(p + 1 for p in perm), len(perm) + 1)
    return x.reshape(b, n, c)


def reroll(x: Tensor, size: Sequence[int], schedule: Sequence[Sequence[int]]) -> Tensor:
    """Undo :func:`unroll`: return the tokens as a channels-last spatial map.

    Args:
        x: tokens ``(B, N, C)`` in the order :func:`unroll` gives for ``size`` and ``schedule``.
        size: the token grid ``(D, H, W)`` that ``x`` covers (after any pooling so far).
        schedule: the unroll levels not yet consumed by pooling.

    Returns:
        ``(B, D, H, W, C)`` in raster order; the official ``Reroll`` gives the same for a
        stage output (it ends with ``undo_windowing``, which this single permutation includes).
    """
    b, n, c = x.shape
    if n != math.prod(size):
        raise ValueError(f"reroll: tokens of shape {tuple(x.shape)} do not fill the token grid {tuple(size)}")
    coarse = _check_schedule(size, schedule, "reroll")
    levels, ndim = len(schedule), len(size)
    perm = _unroll_permutation(ndim, levels)
    raster = _raster_digits(size, schedule, coarse)
    x = x.reshape(b, *(raster[p] for p in perm), c)
    inverse = sorted(range(len(perm)), key=perm.__getitem__)
    x = x.permute(0, *(p + 1 for p in inverse), len(perm) + 1)
    return x.reshape(b, *size, c)


def do_pool(x: Tensor, stride: int) -> Tensor:
    """Max-pool unrolled tokens ``(B, N, C)`` over their outermost ``stride`` (flattened window
    size) digits, giving ``(B, N // stride, C)``: a max-pool-Nd with the window of the next
    unroll level."""
    b, n, c = x.shape
    return x.view(b, stride, n // stride, c).max(dim=1).values


def mask_unit_levels(mask_unit_size: Sequence[int], q_stride: Sequence[int], max_levels: int) -> int:
    """Number of unroll levels a mask unit spans; raise if it is not a block of the unrolled layout.

    Mask-unit attention groups the outermost ``prod(mask_unit_size)`` digits of the unrolled
    index into a window. These form the spatial block ``mask_unit_size`` only when they are
    exactly the outermost unroll digits ``s1_z, s1_y, s1_x, s2_z, ...`` (stride-1 digits
    skipped) and multiply to ``mask_unit_size`` on each axis, e.g. ``q_stride ** k``.

    Args:
        mask_unit_size: mask unit per axis, e.g. ``(1, 8, 8)``.
        q_stride: query-pooling stride per axis (the stride of every unroll level).
        max_levels: number of unroll levels available (``len(stages) - 1`` in Hiera).

    Returns:
        The number ``J`` of unroll levels whose digits make up a mask unit (0 for ``(1, 1, 1)``).

    Raises:
        ValueError: naming ``mask_unit_size`` and ``q_stride``, with the valid choices.
    """
    target = math.prod(mask_unit_size)
    got = [1] * len(mask_unit_size)
    flat, levels = 1, 0
    for level in range(max_levels):
        for axis, s in enumerate(q_stride):
            if s == 1 or flat >= target:
                continue
            got[axis] *= s
            flat *= s
            levels = level + 1
    if tuple(got) != tuple(mask_unit_size):
        choices = sorted({tuple(s**k for s in q_stride) for k in range(1, max_levels + 1)})
        raise ValueError(
            f"mask_unit_size (z, y, x)={tuple(mask_unit_size)} is not a block of the unrolled token "
            f"layout for q_stride={tuple(q_stride)} with {max_levels} unroll level(s) "
            f"(len(stages) - 1): a mask unit must be made of whole query-pooling windows, e.g. "
            f"q_stride**k per axis: one of {choices}"
        )
    return levels
