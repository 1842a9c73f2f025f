"""Sparse exact matching against the dense reference: time and peak RSS at 10^4 to 10^6 objects.

The case of issue 16: label volumes of small cubes, the prediction the truth shifted by one
voxel. The truth is a grid of touching 4x4x4 cubes, 100 along x (``(4 nz, 4 ny, 401)``
voxels, int32); the prediction is the same grid shifted by +1 voxel along x, its ids a random
permutation of the truth's. Each predicted cube covers 48 voxels of its own cube (IoU 48/80 =
0.6) and 16 of the next one (IoU 16/112 = 1/7), so at threshold 0.1 the candidates form chains
of 100 objects along x, which the assignment solves exactly; above 1/7 every candidate is
alone. Both implementations run ``match(truth, prediction, thresholds=(0.1, 0.3, 0.5, 0.75,
0.9))`` (IoU):

- sparse: ``ls_train.metrics.matching.match`` (overlapping pairs from one pass over the voxels,
  assignment per connected component);
- dense: ``ls_train.metrics.reference.match_dense`` (the ``n_true x n_pred`` matrices and one
  ``linear_sum_assignment``), only up to ``--dense-max`` objects (about 4 GB at 10^4).

Each case runs in its own process; time is the ``match`` call, peak RSS the process's VmHWM
(reset after the volumes are built, so it counts the two resident label volumes -- the
"inputs" column -- plus the matching). "identical" compares every field of every
``MatchResult`` (counts, sums, ratios, the matched pairs and their IoU) with the dense one.
Goals on 2 cores: 10^5 objects <= 10 s and <= 1 GB; 10^6 objects <= 120 s and <= 4 GB.

    python benchmarks/matching.py                        # 10^4, 10^5, 10^6 objects; dense at 10^4
    python benchmarks/matching.py --quick                # 10^3 and 10^4 objects, dense at both
    python benchmarks/matching.py --objects 2000,100000 --dense-max 2000 --json out.json
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

THRESHOLDS = (0.1, 0.3, 0.5, 0.75, 0.9)
SIDE = 4  # cube side in voxels
ROW = 100  # cubes along x
GOALS = {10**5: (10.0, 1.0), 10**6: (120.0, 4.0)}  # objects -> (seconds, GB)


def grid(n: int) -> tuple[int, int, int]:
    """Cubes along z, y, x holding ``n`` objects (the last z layer may be partial)."""
    nx = min(ROW, n)
    ny = min(ROW, math.ceil(n / nx))
    return math.ceil(n / (nx * ny)), ny, nx


def volumes(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Truth (touching cubes, ids 1..n) and prediction (shifted +1 along x, ids permuted), int32."""
    nz, ny, nx = grid(n)
    cells = np.zeros(nz * ny * nx, dtype=np.int32)
    cells[:n] = np.arange(1, n + 1, dtype=np.int32)
    row = np.repeat(cells.reshape(nz, ny, nx), SIDE, axis=2)
    shape = (SIDE * nz, SIDE * ny, SIDE * nx + 1)
    gt = np.zeros(shape, dtype=np.int32)
    for dz in range(SIDE):
        for dy in range(SIDE):
            gt[dz::SIDE, dy::SIDE, : SIDE * nx] = row
    lut = np.concatenate(([0], np.random.default_rng(seed).permutation(n) + 1)).astype(np.int32)
    pred = np.zeros_like(gt)
    for z in range(shape[0]):  # slab by slab: no full-size temporary
        pred[z, :, 1:] = lut[gt[z, :, :-1]]
    return gt, pred


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


def _digest(results) -> list[dict]:
    out = []
    for r in results:
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(r.pairs, dtype=np.int64).tobytes())
        h.update(np.ascontiguousarray(r.pair_ious, dtype=np.float64).tobytes())
        out.append({**r.as_dict(), "criterion": r.criterion, "pairs_sha256": h.hexdigest()})
    return out


def worker(impl: str, n: int) -> dict:
    """One case in this process: build the volumes, reset the peak, time one ``match``."""
    from ls_train.metrics.matching import match
    from ls_train.metrics.reference import match_dense

    fn = match if impl == "sparse" else match_dense
    gt, pred = volumes(n)
    reset = _reset_peak()
    t0 = time.perf_counter()
    results = fn(gt, pred, THRESHOLDS, "iou")
    seconds = time.perf_counter() - t0
    peak = _vm_hwm() if reset else None
    if peak is None:  # not Linux: the peak of the whole process, volume construction included
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "impl": impl,
        "objects": n,
        "shape": list(gt.shape),
        "inputs_bytes": int(gt.nbytes + pred.nbytes),
        "seconds": seconds,
        "peak_rss_bytes": int(peak),
        "peak_reset": reset,
        "results": _digest(results),
    }


def run_case(impl: str, n: int) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", impl, "--objects", str(n)],
        capture_output=True,
        text=True,
    )
    if proc.returncode:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"{impl} matching of {n} objects failed (exit status {proc.returncode})")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--objects", help="comma-separated object counts (default 10000,100000,1000000)")
    parser.add_argument("--dense-max", type=int, help="largest case the dense reference runs (default 10000)")
    parser.add_argument("--quick", action="store_true", help="1000 and 10000 objects")
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    parser.add_argument("--worker", choices=("sparse", "dense"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, int(args.objects))))
        return

    default = "1000,10000" if args.quick else "10000,100000,1000000"
    counts = [int(float(v)) for v in (args.objects or default).split(",")]
    dense_max = args.dense_max if args.dense_max is not None else 10_000
    print(
        f"matching of touching {SIDE}^3 cubes, prediction shifted by 1 voxel; IoU thresholds "
        f"{', '.join(map(str, THRESHOLDS))}; {os.cpu_count()} CPUs; one process per case"
    )
    header = (
        f"{'objects':>9} {'volume (z, y, x)':>18} {'inputs GB':>9} {'impl':>6} {'time s':>8} "
        f"{'peak RSS GB':>11} {'speed-up':>8} {'identical':>9}  goal"
    )
    print(header)
    print("-" * len(header))
    rows = []
    for n in counts:
        cases = {"sparse": run_case("sparse", n)}
        if n <= dense_max:
            cases["dense"] = run_case("dense", n)
        for impl, r in cases.items():
            dense = cases.get("dense")
            speedup = same = ""
            if impl == "sparse" and dense is not None:
                speedup = f"{dense['seconds'] / r['seconds']:.1f}x"
                same = "yes" if r["results"] == dense["results"] else "NO"
            goal = ""
            if impl == "sparse" and n in GOALS:
                max_s, max_gb = GOALS[n]
                ok = r["seconds"] <= max_s and r["peak_rss_bytes"] / 1e9 <= max_gb
                goal = f"<= {max_s:.0f} s, <= {max_gb:.0f} GB: {'met' if ok else 'MISSED'}"
            shape = "x".join(map(str, r["shape"]))
            print(
                f"{n:>9} {shape:>18} {r['inputs_bytes'] / 1e9:>9.3f} {impl:>6} {r['seconds']:>8.2f} "
                f"{r['peak_rss_bytes'] / 1e9:>11.3f} {speedup:>8} {same:>9}  {goal}",
                flush=True,
            )
            rows.append({k: v for k, v in r.items() if k != "results"} | {"identical": same or None})
        tp = {round(d["threshold"], 2): int(d["tp"]) for d in cases["sparse"]["results"]}
        print(f"{'':>9} TP per threshold: {tp}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
