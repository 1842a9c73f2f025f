"""Stitching at scale: ``plan_stitch`` and painting, time and peak RSS from 10^4 to 10^6 objects.

The volume is a lattice of 2x2x2 cubes one voxel apart (one object per 27 voxels, about 8 times
the density of ls-predict's 128x1024x1024 benchmark volume), cut into the tiles of a
``TileGrid``. Every tile sees exactly the cubes inside its box, numbered 1..n in raster order,
with scores in 19 steps (ties) drawn per object: the label tiles and their ``TileMeta`` are
computed from the lattice, never from a volume in memory, and the label tiles are written into a
real ``TileStore`` (the TensorStore Zarr work folder that ls-predict's stitch pass reads, in a
temporary folder). Cubes in the overlaps are seen by up to 8 tiles, so the merge graph holds
about two instances per object.

Per case, in a fresh process each (the inputs are built, then the peak RSS is reset, so "peak
GB" counts the resident inputs -- the "inputs GB" column: interpreter, libraries and the tiles'
metadata -- plus the measured pass: the first plan, then the paint pass):

- ``new``: ``ls_train.predict.stitch.plan_stitch`` (tiles read once, pairs and geometry as
  arrays); then the paint pass: ``paint_block`` over ls-predict's chunk-aligned blocks (chunks
  32x128x128), every label voxel painted, nothing written;
- ``reference``: ``ls_train.predict.stitch_reference.plan_stitch_reference`` (the implementation
  ``plan_stitch`` replaced: both tiles' shared region read for every tile pair), up to
  ``--reference-max`` objects.

Times are medians of ``--repeats`` runs in the process (imports done before): wall ("plan s")
and CPU time of the process, all threads ("cpu s": steadier on a shared machine); "reads" counts
``TileStore.read`` calls of one plan; "identical" compares every array of the two ``StitchPlan``
(SHA-256); "speed-up" and "cpu" are the reference's medians over the new one's. Goal (issue 16):
near-linear in objects and tile pairs, 10^6 objects bounded in memory.

    python benchmarks/stitch.py                       # 10^4, 10^5, 10^6 objects; ls-predict's tiles
    python benchmarks/stitch.py --tile 16 64 64 --overlap 4 16 16     # 7x as many tiles
    python benchmarks/stitch.py --objects 10000,100000 --repeats 1 --json out.json
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SIDE, PERIOD = 2, 3  # cube side and lattice period (voxels)
CHUNKS = (32, 128, 128)  # ls-predict's default output chunks: the paint blocks


class Lattice:
    """The cubes of ``n`` (rounded up to a full box of cells) objects and a tile grid over them."""

    def __init__(self, n: int, tile: tuple[int, ...], overlap: tuple[int, ...], seed: int = 0) -> None:
        from ls_train.predict.tiling import TileGrid

        nz = max(1, round(n ** (1 / 3) / 2))  # flatter along z, as light-sheet volumes are
        ny = max(1, math.ceil(math.sqrt(n / nz)))
        nx = max(1, math.ceil(n / (nz * ny)))
        self.cells = (nz, ny, nx)
        self.objects = nz * ny * nx
        self.grid = TileGrid(tuple(PERIOD * c for c in self.cells), tile, overlap)
        rng = np.random.default_rng(seed)
        self.scores = (rng.integers(1, 20, self.objects) / 20).astype(np.float32)

    def _cells(self, t: int, axis: int) -> tuple[int, int, int]:
        """Tile start and the first and last cell with voxels in tile ``t`` along ``axis``."""
        start = self.grid.box(t)[axis][0]
        end = start + self.grid.tile_shape[axis]
        first = max(0, (start - SIDE) // PERIOD + 1)
        last = min(self.cells[axis] - 1, -(-end // PERIOD) - 1)
        return start, first, last

    def meta(self, t: int):
        """The ``TileMeta`` of tile ``t`` (boxes and voxel counts of its clipped cubes)."""
        from ls_train.predict.tilestore import TileMeta

        lows, highs, cells = [], [], []
        for axis in range(3):
            start, first, last = self._cells(t, axis)
            k = np.arange(first, last + 1)
            lows.append(np.maximum(k * PERIOD, start) - start)
            highs.append(np.minimum(k * PERIOD + SIDE, start + self.grid.tile_shape[axis]) - start)
            cells.append(k)

        def mesh(arrays):
            return [m.ravel() for m in np.meshgrid(*arrays, indexing="ij")]

        boxes = np.stack(mesh(lows) + mesh(highs), axis=1).astype(np.int64)
        kz, ky, kx = mesh(cells)
        scores = self.scores[(kz * self.cells[1] + ky) * self.cells[2] + kx]
        return TileMeta(
            scores=scores,
            classes=np.ones(scores.shape[0], np.int32),
            boxes=boxes,
            counts=np.prod(boxes[:, 3:] - boxes[:, :3], axis=1),
        )

    def labels(self, t: int) -> np.ndarray:
        """The label tile ``t``, uint32."""
        index, extent = [], []
        for axis in range(3):
            start, first, last = self._cells(t, axis)
            v = np.arange(self.grid.tile_shape[axis]) + start
            k = v // PERIOD
            index.append(np.where(((v % PERIOD) < SIDE) & (k <= last), k - first, -1))
            extent.append(last - first + 1)
        z, y, x = index[0][:, None, None], index[1][None, :, None], index[2][None, None, :]
        inside = (z >= 0) & (y >= 0) & (x >= 0)
        return np.where(inside, (z * extent[1] + y) * extent[2] + x + 1, 0).astype(np.uint32)


def _vm_hwm() -> int | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return None


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak() -> int:
    peak = _vm_hwm()
    if peak is None:  # not Linux: the whole process's peak
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return int(peak)


def _digest(plan) -> str:
    import dataclasses

    h = hashlib.sha256()
    for field in dataclasses.fields(plan):
        array = np.ascontiguousarray(getattr(plan, field.name))
        h.update(f"{field.name}:{array.dtype}:{array.shape}".encode())
        h.update(array.tobytes())
    return h.hexdigest()


def _blocks(shape: tuple[int, ...]) -> list[tuple[tuple[int, int], ...]]:
    ranges = [[(lo, min(lo + c, s)) for lo in range(0, s, c)] for s, c in zip(shape, CHUNKS, strict=True)]
    return [(z, y, x) for z in ranges[0] for y in ranges[1] for x in ranges[2]]


def worker(impl: str, n: int, tile: list[int], overlap: list[int], repeats: int) -> dict:
    """One case in this process: write the tiles, reset the peak, time the plan (and painting)."""
    from ls_train.predict.stitch import paint_block, plan_stitch
    from ls_train.predict.stitch_reference import plan_stitch_reference
    from ls_train.predict.tilestore import TileStore

    lattice = Lattice(n, tuple(tile), tuple(overlap))
    grid = lattice.grid
    with tempfile.TemporaryDirectory(prefix="bench-stitch-") as tmp:
        plan = {"benchmark": "stitch"}
        store = TileStore.open_or_create(Path(tmp) / "work", plan, len(grid), grid.tile_shape)
        for t in range(len(grid)):
            store.array[t].write(lattice.labels(t)).result()
        metas = [lattice.meta(t) for t in range(len(grid))]
        reads = [0]

        def read(t, region):
            reads[0] += 1
            return store.read(t, region)

        plan_fn = plan_stitch if impl == "new" else plan_stitch_reference
        import scipy.sparse.csgraph  # noqa: F401  (the plan's lazy import, not timed)

        store.read(0, ((0, 1),) * 3)  # TensorStore's first open, not timed
        inputs = _vm_hwm() or 0
        reset = _reset_peak()
        seconds, cpu, plan_peak = [], [], 0
        for k in range(repeats):
            reads[0] = 0
            plan = None
            start, start_cpu = time.perf_counter(), time.process_time()
            plan = plan_fn(grid, metas, read)
            seconds.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
            if k == 0:
                plan_peak = _peak()  # of one plan
        out = {
            "impl": impl,
            "objects": lattice.objects,
            "shape": list(grid.shape),
            "tiles": len(grid),
            "pairs": sum(1 for _ in grid.neighbour_pairs()),
            "instances": int(plan.gid.shape[0]),
            "inputs_bytes": int(inputs),
            "plan_seconds": statistics.median(seconds),
            "plan_cpu_seconds": statistics.median(cpu),
            "plan_peak_bytes": plan_peak,
            "peak_reset": reset,
            "reads": reads[0],
            "digest": _digest(plan),
        }
        if impl == "new":
            _reset_peak()
            start = time.perf_counter()
            painted = 0
            for block in _blocks(grid.shape):
                painted += int(np.count_nonzero(paint_block(grid, plan, read, block)))
            out |= {"paint_seconds": time.perf_counter() - start, "paint_peak_bytes": _peak()}
            out["paint_voxels"] = painted
            out["paint_voxels_expected"] = lattice.objects * SIDE**3
    return out


def run_case(impl: str, n: int, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--worker", impl, "--objects", str(n)]
    command += ["--repeats", str(args.repeats), "--tile", *map(str, args.tile)]
    command += ["--overlap", *map(str, args.overlap)]
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"{impl} stitch of {n} objects failed (exit status {proc.returncode})")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _row(r: dict, ref: dict | None) -> str:
    speedup = cpu_speedup = same = ""
    if r["impl"] == "new" and ref is not None:
        speedup = f"{ref['plan_seconds'] / r['plan_seconds']:.1f}x"
        cpu_speedup = f"{ref['plan_cpu_seconds'] / r['plan_cpu_seconds']:.1f}x"
        same = "yes" if r["digest"] == ref["digest"] else "NO"
    paint = paint_peak = ""
    if "paint_seconds" in r:
        paint = f"{r['paint_seconds']:.2f}"
        paint_peak = f"{r['paint_peak_bytes'] / 1e9:.3f}"
    return (
        f"{r['objects']:>9} {r['tiles']:>6} {r['pairs']:>6} {r['instances']:>9} "
        f"{r['inputs_bytes'] / 1e9:>9.3f} "
        f"{r['impl']:>9} {r['reads']:>6} {r['plan_seconds']:>7.2f} {r['plan_cpu_seconds']:>6.2f} "
        f"{r['plan_peak_bytes'] / 1e9:>8.3f} {speedup:>8} {cpu_speedup:>7} {same:>9} "
        f"{paint:>8} {paint_peak:>8}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--objects", help="comma-separated object counts (default 10000,100000,1000000)")
    parser.add_argument("--tile", type=int, nargs=3, default=[32, 128, 128], help="tile shape (z y x)")
    parser.add_argument("--overlap", type=int, nargs=3, default=[8, 32, 32], help="tile overlap (z y x)")
    parser.add_argument("--repeats", type=int, default=3, help="plan runs per case (median)")
    parser.add_argument("--reference-max", type=int, default=10**6, help="largest case the reference runs")
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    parser.add_argument("--worker", choices=("new", "reference"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    counts = [int(float(v)) for v in (args.objects or "10000,100000,1000000").split(",")]
    if args.worker:
        print(json.dumps(worker(args.worker, counts[0], args.tile, args.overlap, args.repeats)))
        return

    print(
        f"stitch of a lattice of {SIDE}^3 cubes {PERIOD - SIDE} voxel apart; tiles {tuple(args.tile)} "
        f"overlapping {tuple(args.overlap)}, read from a TileStore; plan time: median of {args.repeats}; "
        f"paint: blocks of {CHUNKS}; {os.cpu_count()} CPUs; one process per case"
    )
    header = (
        f"{'objects':>9} {'tiles':>6} {'pairs':>6} {'instances':>9} {'inputs GB':>9} {'impl':>9} "
        f"{'reads':>6} "
        f"{'plan s':>7} {'cpu s':>6} {'peak GB':>8} {'speed-up':>8} {'cpu':>7} {'identical':>9} "
        f"{'paint s':>8} {'peak GB':>8}"
    )
    print(header)
    print("-" * len(header))
    rows = []
    for n in counts:
        new = run_case("new", n, args)
        ref = run_case("reference", n, args) if n <= args.reference_max else None
        if new["paint_voxels"] != new["paint_voxels_expected"]:
            raise SystemExit(
                f"{n} objects: painted {new['paint_voxels']} voxels, expected {new['paint_voxels_expected']}"
            )
        for r in (new, ref):
            if r is not None:
                print(_row(r, ref), flush=True)
                rows.append({k: v for k, v in r.items() if k != "digest"})
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
