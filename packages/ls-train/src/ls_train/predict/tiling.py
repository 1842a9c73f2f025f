"""The tile grid of whole-volume prediction: overlapping tiles, their cores and their neighbours.

Along each axis, tiles of ``tile`` voxels start every ``tile - overlap`` voxels; the last tile is
shifted back to end at the volume's border (so every tile has the full size and the last overlap
can be larger), and a volume smaller than the tile gets one tile of the volume's size.

The *core* of a tile is its share of a partition of the volume: along each axis the boundary
between two neighbouring tiles lies in the middle of their overlap. A voxel is in exactly one
core; the core of a tile is at least ``overlap // 2`` voxels away from each of the tile's cut
faces (the faces that are not the volume's border).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property

__all__ = ["TileGrid", "axis_starts"]

Box = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]


def axis_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Tile starts along one axis (see the module docstring).

    Raises:
        ValueError: ``tile < 1``, ``overlap < 0`` or ``overlap >= tile``.
    """
    if tile < 1 or overlap < 0 or overlap >= tile:
        raise ValueError(f"need tile >= 1 and 0 <= overlap < tile, got tile={tile}, overlap={overlap}")
    if size <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, size - tile, step))
    starts.append(size - tile)
    return starts


@dataclass(frozen=True)
class TileGrid:
    """Overlapping tiles over a ``(Z, Y, X)`` volume.

    Args:
        shape: Volume size ``(Z, Y, X)``.
        tile: Requested tile size per axis (clipped to the volume).
        overlap: Overlap per axis between neighbouring tiles, ``< tile``.
    """

    shape: tuple[int, int, int]
    tile: tuple[int, int, int]
    overlap: tuple[int, int, int]

    def __post_init__(self) -> None:
        for name in ("shape", "tile", "overlap"):
            value = tuple(int(v) for v in getattr(self, name))
            if len(value) != 3:
                raise ValueError(
                    f"TileGrid.{name} must have 3 entries (z, y, x), got {getattr(self, name)!r}"
                )
            object.__setattr__(self, name, value)
        if min(self.shape) < 1:
            raise ValueError(f"TileGrid.shape must be positive, got {self.shape}")
        for axis, (t, o) in zip("zyx", zip(self.tile, self.overlap, strict=True), strict=True):
            if t < 1 or o < 0 or o >= t:
                raise ValueError(
                    f"tile/overlap on axis {axis}: need tile >= 1 and 0 <= overlap < tile, "
                    f"got tile={t}, overlap={o}"
                )

    @cached_property
    def tile_shape(self) -> tuple[int, int, int]:
        """The size every tile has: the requested tile clipped to the volume."""
        return tuple(min(t, s) for t, s in zip(self.tile, self.shape, strict=True))  # type: ignore[return-value]

    @cached_property
    def starts(self) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """Tile starts per axis."""
        return tuple(  # type: ignore[return-value]
            tuple(axis_starts(s, t, min(o, t - 1)))
            for s, t, o in zip(self.shape, self.tile_shape, self.overlap, strict=True)
        )

    @cached_property
    def counts(self) -> tuple[int, int, int]:
        """Number of tiles per axis."""
        return tuple(len(s) for s in self.starts)  # type: ignore[return-value]

    def __len__(self) -> int:
        nz, ny, nx = self.counts
        return nz * ny * nx

    def position(self, index: int) -> tuple[int, int, int]:
        """Grid position ``(iz, iy, ix)`` of tile ``index`` (z-major order)."""
        if not 0 <= index < len(self):
            raise IndexError(f"tile index {index} out of range for {len(self)} tiles")
        _, ny, nx = self.counts
        return index // (ny * nx), (index // nx) % ny, index % nx

    def index(self, position: Sequence[int]) -> int:
        """Tile index of a grid position."""
        _, ny, nx = self.counts
        iz, iy, ix = position
        return (iz * ny + iy) * nx + ix

    def box(self, index: int) -> Box:
        """``((z0, z1), (y0, y1), (x0, x1))`` of tile ``index``."""
        pos = self.position(index)
        return tuple(  # type: ignore[return-value]
            (self.starts[a][pos[a]], self.starts[a][pos[a]] + self.tile_shape[a]) for a in range(3)
        )

    def _core_axis(self, axis: int, i: int) -> tuple[int, int]:
        starts, t = self.starts[axis], self.tile_shape[axis]
        low = 0 if i == 0 else (starts[i] + starts[i - 1] + t) // 2
        high = self.shape[axis] if i == len(starts) - 1 else (starts[i + 1] + starts[i] + t) // 2
        return low, high

    def core(self, index: int) -> Box:
        """The core of tile ``index`` (see the module docstring)."""
        pos = self.position(index)
        return tuple(self._core_axis(a, pos[a]) for a in range(3))  # type: ignore[return-value]

    def cut_faces(self, index: int) -> tuple[tuple[bool, bool], ...]:
        """Per axis ``(low, high)``: whether that face of the tile is inside the volume (a cut)."""
        box = self.box(index)
        return tuple((lo > 0, hi < size) for (lo, hi), size in zip(box, self.shape, strict=True))

    def tiles_overlapping(self, region: Box) -> list[int]:
        """Indices of the tiles whose box intersects ``region`` (half-open per axis)."""
        per_axis = []
        for axis, (lo, hi) in enumerate(region):
            t = self.tile_shape[axis]
            per_axis.append([i for i, s in enumerate(self.starts[axis]) if s < hi and s + t > lo])
        return [self.index(p) for p in itertools.product(*per_axis)]

    def neighbour_pairs(self) -> Iterator[tuple[int, int]]:
        """Every pair ``(a, b)``, ``a < b``, of tiles whose boxes intersect."""
        for a in range(len(self)):
            for b in self.tiles_overlapping(self.box(a)):
                if b > a:
                    yield a, b

    @staticmethod
    def intersection(a: Box, b: Box) -> Box | None:
        """The intersection of two boxes, or None when it is empty."""
        out = tuple((max(p[0], q[0]), min(p[1], q[1])) for p, q in zip(a, b, strict=True))
        if any(lo >= hi for lo, hi in out):
            return None
        return out  # type: ignore[return-value]
