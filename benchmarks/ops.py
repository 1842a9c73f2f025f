"""ls-ops CPU kernels against references measured in the same run.

NMS3D: ``ls_ops.nms3d`` against torchvision's ``nms`` on the equivalent 2-D boxes (the 3-D boxes
share one z extent [0, 1), so both keep the same boxes) for N = 1k, 10k, 30k, and against
MONAI's ``non_max_suppression`` on the same 3-D boxes. Goals: <= 1.5x torchvision's time,
>= 30x faster than MONAI.

RoIAlign3D: forward and backward on a 1x256x32x64x64 float32 input with 512 rois of 4-24
voxels per side, output 7^3, sampling_ratio 2, aligned=True; against ``ls_ops.reference``
(goal >= 10x faster), and time per trilinear sample (per channel) against torchvision's
``roi_align`` time per bilinear sample on a comparable 2-D problem (1x256x362x362, 512 rois of
4-24 pixels, 7^2, sampling_ratio 2). Goals: forward <= 300 ms on 2 cores, backward <= 2x forward.

Timed calls are interleaved (ours, reference, ours, ...) and medians reported.

With ``--device cuda`` the same problems run on the GPU: the CUDA kernels against torchvision's
CUDA ``nms`` / ``roi_align`` and against our CPU kernels on the same inputs (no MONAI).

    python benchmarks/ops.py                 # full run
    python benchmarks/ops.py --quick         # fewer repeats, reference measured on 32 rois
    python benchmarks/ops.py --device cuda   # the CUDA kernels
    python benchmarks/ops.py --json out.json # also write the numbers
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch
import torchvision

import ls_ops
from ls_ops import reference


def median_times(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 1) -> dict[str, float]:
    """Median wall time (s) of each function, calls interleaved round-robin (CUDA work included:
    the device is synchronised before the clock is read)."""
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def nms_boxes(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(n, 6)`` 3-D boxes with z extent [0, 1), the same ``(n, 4)`` 2-D boxes (x1, y1, x2, y2), scores.

    Boxes of 8-64 pixels per side, at a density of about 40 boxes per 100x100 pixels, as the
    proposals of a detector on a crowded image.
    """
    g = torch.Generator().manual_seed(seed)
    side = (n / 40) ** 0.5 * 100
    yx = torch.rand(n, 2, generator=g) * side
    hw = torch.rand(n, 2, generator=g) * 56 + 8
    boxes3 = torch.cat([torch.zeros(n, 1), yx, torch.ones(n, 1), yx + hw], dim=1)
    boxes2 = torch.cat([yx[:, 1:], yx[:, :1], (yx + hw)[:, 1:], (yx + hw)[:, :1]], dim=1)
    return boxes3, boxes2, torch.rand(n, generator=g)


def bench_nms(n: int, repeats: int, threshold: float = 0.5) -> dict:
    """Times of nms3d, torchvision's nms and MONAI's non_max_suppression on N boxes."""
    from monai.data.box_utils import non_max_suppression  # CPU comparison only

    boxes3, boxes2, scores = nms_boxes(n)
    keep = ls_ops.nms3d(boxes3, scores, threshold)
    assert torch.equal(keep, torchvision.ops.nms(boxes2, scores, threshold)), "nms3d != torchvision nms"
    t = median_times({
        "nms3d": lambda: ls_ops.nms3d(boxes3, scores, threshold),
        "torchvision": lambda: torchvision.ops.nms(boxes2, scores, threshold),
    }, repeats)
    monai_repeats = max(1, repeats // 5) if n > 5000 else repeats
    t.update(median_times({"monai": lambda: non_max_suppression(boxes3, scores, threshold)},
                          monai_repeats, warmup=0 if n > 5000 else 1))
    monai_keep = torch.as_tensor(non_max_suppression(boxes3, scores, threshold))
    same = torch.equal(monai_keep.sort().values, keep.sort().values)
    return {"n": n, "kept": int(keep.numel()), "monai_same": same, **t}


def roi_align_case(num_rois: int = 512, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """1x256x32x64x64 input and ``(num_rois, 7)`` rois of 4-24 voxels per side inside it."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 256, 32, 64, 64, generator=g)
    extent = torch.tensor([32.0, 64.0, 64.0])
    size = torch.rand(num_rois, 3, generator=g) * 20 + 4
    size = torch.minimum(size, extent)
    lo = torch.rand(num_rois, 3, generator=g) * (extent - size)
    return x, torch.cat([torch.zeros(num_rois, 1), lo, lo + size], dim=1)


def roi_align_2d_case(num_rois: int = 512, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """1x256x362x362 input (as many pixels as the 3-D input has voxels) and 2-D rois of 4-24 pixels."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 256, 362, 362, generator=g)
    size = torch.rand(num_rois, 2, generator=g) * 20 + 4
    lo = torch.rand(num_rois, 2, generator=g) * (362 - size)
    return x, torch.cat([torch.zeros(num_rois, 1), lo, lo + size], dim=1)


def bench_roi_align(repeats: int, reference_rois: int) -> dict:
    out_size, ratio = (7, 7, 7), 2
    x, rois = roi_align_case()
    fwd = lambda: ls_ops.roi_align3d(x, rois, out_size, 1.0, ratio, True)
    x_cl = x.to(memory_format=torch.channels_last_3d)  # what a channels-last backbone hands over
    fwd_cl = lambda: ls_ops.roi_align3d(x_cl, rois, out_size, 1.0, ratio, True)
    xg = x.clone().requires_grad_()
    out = ls_ops.roi_align3d(xg, rois, out_size, 1.0, ratio, True)
    grad = torch.randn_like(out)
    bwd = lambda: torch.autograd.grad(out, xg, grad, retain_graph=True)
    x2, rois2 = roi_align_2d_case()
    tv = lambda: torchvision.ops.roi_align(x2, rois2, (7, 7), 1.0, ratio, True)
    t = median_times({"forward": fwd, "forward_channels_last": fwd_cl, "backward": bwd, "torchvision_2d": tv},
                     repeats)

    # the reference is slow: time it on the first `reference_rois` rois and scale to 512
    sub = rois[:reference_rois]
    ref_fwd = lambda: reference.roi_align3d(x, sub, out_size, 1.0, ratio, True)
    torch.testing.assert_close(ref_fwd(), ls_ops.roi_align3d(x, sub, out_size, 1.0, ratio, True),
                               rtol=1e-4, atol=1e-5)
    ours_sub = lambda: ls_ops.roi_align3d(x, sub, out_size, 1.0, ratio, True)
    t_ref = median_times({"reference": ref_fwd, "ours_same_rois": ours_sub}, max(1, repeats // 3))

    channels, k = x.shape[1], rois.shape[0]
    samples_3d = k * channels * 7**3 * ratio**3
    samples_2d = k * channels * 7**2 * ratio**2
    return {
        **t,
        "reference_forward": t_ref["reference"],
        "ours_forward_same_rois": t_ref["ours_same_rois"],
        "reference_rois": reference_rois,
        "ns_per_trilinear_sample": t["forward"] / samples_3d * 1e9,
        "ns_per_bilinear_sample_torchvision": t["torchvision_2d"] / samples_2d * 1e9,
    }


def bench_nms_cuda(n: int, repeats: int, threshold: float = 0.5) -> dict:
    """nms3d's CUDA kernel against torchvision's CUDA nms and our CPU kernel, same boxes."""
    boxes3, boxes2, scores = nms_boxes(n)
    b3, b2, sc = boxes3.cuda(), boxes2.cuda(), scores.cuda()
    keep = ls_ops.nms3d(b3, sc, threshold)
    assert torch.equal(keep.cpu(), ls_ops.nms3d(boxes3, scores, threshold)), "CUDA nms3d != CPU nms3d"
    t = median_times({
        "nms3d_cuda": lambda: ls_ops.nms3d(b3, sc, threshold),
        "torchvision_cuda": lambda: torchvision.ops.nms(b2, sc, threshold),
        "nms3d_cpu": lambda: ls_ops.nms3d(boxes3, scores, threshold),
    }, repeats)
    return {"n": n, "kept": int(keep.numel()), **t}


def bench_roi_align_cuda(repeats: int) -> dict:
    """The RoIAlign3D problem of bench_roi_align on the GPU, with our CPU kernel on the same input."""
    out_size, ratio = (7, 7, 7), 2
    x, rois = roi_align_case()
    xc, rc = x.cuda(), rois.cuda()
    torch.testing.assert_close(ls_ops.roi_align3d(xc, rc, out_size, 1.0, ratio, True).cpu(),
                               ls_ops.roi_align3d(x, rois, out_size, 1.0, ratio, True), rtol=1e-4, atol=1e-5)
    xg = xc.clone().requires_grad_()
    out = ls_ops.roi_align3d(xg, rc, out_size, 1.0, ratio, True)
    grad = torch.randn_like(out)
    x2, rois2 = roi_align_2d_case()
    x2c, r2c = x2.cuda(), rois2.cuda()
    t = median_times({
        "forward": lambda: ls_ops.roi_align3d(xc, rc, out_size, 1.0, ratio, True),
        "backward": lambda: torch.autograd.grad(out, xg, grad, retain_graph=True),
        "torchvision_2d": lambda: torchvision.ops.roi_align(x2c, r2c, (7, 7), 1.0, ratio, True),
    }, repeats)
    t.update(median_times({"cpu_forward": lambda: ls_ops.roi_align3d(x, rois, out_size, 1.0, ratio, True)},
                          max(1, repeats // 3)))
    channels, k = x.shape[1], rois.shape[0]
    t["ns_per_trilinear_sample"] = t["forward"] / (k * channels * 7**3 * ratio**3) * 1e9
    t["ns_per_bilinear_sample_torchvision"] = t["torchvision_2d"] / (k * channels * 7**2 * ratio**2) * 1e9
    return t


def main_cuda(args: argparse.Namespace, repeats: int) -> None:
    if not (torch.cuda.is_available() and ls_ops.build_info()["cuda"]):
        raise SystemExit("--device cuda needs a CUDA device and ls_ops built with its CUDA kernels "
                         f"(device: {torch.cuda.is_available()}, build_info: {ls_ops.build_info()})")
    print(f"CUDA timings on {torch.cuda.get_device_name()}, medians of {repeats}")
    rows = [bench_nms_cuda(int(n), repeats) for n in args.sizes.split(",")]
    print("\nNMS3D (IoU 0.5) on CUDA")
    print(f"{'N':>7} {'kept':>6} {'cuda ms':>8} {'tv cuda ms':>11} {'ratio':>6} {'our cpu ms':>11}")
    for r in rows:
        ours, theirs = r["nms3d_cuda"], r["torchvision_cuda"]
        print(f"{r['n']:>7} {r['kept']:>6} {ours * 1e3:>8.2f} {theirs * 1e3:>11.2f} {ours / theirs:>6.2f} "
              f"{r['nms3d_cpu'] * 1e3:>11.2f}")
    ra = bench_roi_align_cuda(repeats)
    print("\nRoIAlign3D on CUDA  1x256x32x64x64, 512 rois of 4-24 voxels, 7^3, sampling_ratio 2, aligned")
    print(f"  forward                      {ra['forward'] * 1e3:9.2f} ms   "
          f"(our CPU kernel: {ra['cpu_forward'] * 1e3:.1f} ms, {ra['cpu_forward'] / ra['forward']:.0f}x)")
    print(f"  backward                     {ra['backward'] * 1e3:9.2f} ms   "
          f"= {ra['backward'] / ra['forward']:.2f}x forward")
    print(f"  per trilinear sample         {ra['ns_per_trilinear_sample']:9.4f} ns   (per channel)")
    print(f"  torchvision 2-D per bilinear {ra['ns_per_bilinear_sample_torchvision']:9.4f} ns   "
          f"({ra['torchvision_2d'] * 1e3:.2f} ms)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"nms": rows, "roi_align": ra, "build_info": ls_ops.build_info(),
                       "device": torch.cuda.get_device_name()}, f, indent=2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="3 repeats, reference on 32 rois")
    parser.add_argument("--sizes", default="1000,10000,30000", help="NMS box counts")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    args = parser.parse_args()
    repeats = 3 if args.quick else args.repeats
    if args.device == "cuda":
        main_cuda(args, repeats)
        return
    info = ls_ops.build_info()
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, "
          f"threads {torch.get_num_threads()}, ls_ops CUDA kernels: {info['cuda']}; "
          f"CPU timings, medians of {repeats}")

    nms_rows = [bench_nms(int(n), repeats) for n in args.sizes.split(",")]
    print("\nNMS3D (IoU 0.5)  goal: <= 1.5x torchvision, >= 30x faster than MONAI")
    print(f"{'N':>7} {'kept':>6} {'nms3d ms':>9} {'tv nms ms':>10} {'ratio':>6} {'MONAI ms':>10} "
          f"{'MONAI/ours':>10} {'same':>5}")
    for r in nms_rows:
        print(f"{r['n']:>7} {r['kept']:>6} {r['nms3d'] * 1e3:>9.2f} {r['torchvision'] * 1e3:>10.2f} "
              f"{r['nms3d'] / r['torchvision']:>6.2f} {r['monai'] * 1e3:>10.1f} "
              f"{r['monai'] / r['nms3d']:>10.0f} {'yes' if r['monai_same'] else 'NO':>5}")

    ra = bench_roi_align(repeats, 32 if args.quick else 64)
    scale = 512 / ra["reference_rois"]
    print("\nRoIAlign3D  1x256x32x64x64, 512 rois of 4-24 voxels, 7^3, sampling_ratio 2, aligned")
    print(f"  forward                      {ra['forward'] * 1e3:9.1f} ms   (goal <= 300 ms)")
    print(f"  forward, channels_last_3d    {ra['forward_channels_last'] * 1e3:9.1f} ms   "
          f"(no layout copy of the input)")
    print(f"  backward                     {ra['backward'] * 1e3:9.1f} ms   "
          f"= {ra['backward'] / ra['forward']:.2f}x forward (goal <= 2x)")
    print(f"  reference forward            {ra['reference_forward'] * scale * 1e3:9.1f} ms   "
          f"(measured on {ra['reference_rois']} rois, x{scale:.0f}); ours on the same rois "
          f"{ra['reference_forward'] / ra['ours_forward_same_rois']:.0f}x faster (goal >= 10x)")
    print(f"  per trilinear sample         {ra['ns_per_trilinear_sample']:9.3f} ns   (per channel)")
    print(f"  torchvision 2-D per bilinear {ra['ns_per_bilinear_sample_torchvision']:9.3f} ns   "
          f"(1x256x362x362, 512 rois, 7^2, sr 2: {ra['torchvision_2d'] * 1e3:.1f} ms); "
          f"ratio {ra['ns_per_trilinear_sample'] / ra['ns_per_bilinear_sample_torchvision']:.2f} "
          f"(a trilinear sample reads 8 values, a bilinear one 4)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"nms": nms_rows, "roi_align": ra, "build_info": info}, f, indent=2)


if __name__ == "__main__":
    main()
