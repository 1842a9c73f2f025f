"""Backbone presets on CPU: parameters, forward and forward+backward time, peak memory.

For each preset it prints parameters, median forward time, median forward+backward time and
the peak resident memory that one forward+backward adds (each preset is measured in its own
process, so the figures do not mix). It then times ResNet3D-50 against MONAI's 3-D ResNet-50
(same block counts, stem, and projection shortcuts), interleaving the two in the same process,
and prints the ratio of medians: the goal is <= 1.05.

    python benchmarks/backbones.py                         # every built-in preset
    python benchmarks/backbones.py --presets resnet3d_50,hiera3d_t --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

DEFAULT_PRESETS = (
    "resnet3d_18", "resnet3d_50", "resnet3d_18_fpn", "resnet3d_50_fpn",
    "vitdet3d_s", "vitdet3d_b", "vitdet3d_s_sfp", "vitdet3d_b_sfp",
    "hiera3d_t", "hiera3d_s", "hiera3d_b", "hiera3d_t_fpn", "hiera3d_b_fpn",
)  # fmt: skip


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _time(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def _loss(out) -> object:
    return sum(v.float().mean() for v in out.values())


def measure_preset(name: str, shape: tuple[int, ...], repeats: int) -> dict:
    """Run in a fresh process: one preset's parameters, times and peak memory."""
    import torch

    import ls_backbones

    torch.manual_seed(0)
    net = ls_backbones.create_backbone(name, in_channels=shape[1])
    params = sum(p.numel() for p in net.parameters())
    x = torch.randn(*shape)
    net.train()
    base = _rss_bytes()
    net.zero_grad(set_to_none=True)
    _loss(net(x)).backward()  # warm-up; its peak is the peak of one forward+backward
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base

    def fwd():
        with torch.no_grad():
            net(x)

    def fwd_bwd():
        net.zero_grad(set_to_none=True)
        _loss(net(x)).backward()

    fwd()
    return {
        "name": name,
        "params": params,
        "fwd": statistics.median(_time(fwd, repeats)),
        "fwd_bwd": statistics.median(_time(fwd_bwd, repeats)),
        "peak_mb": peak / 2**20,
    }


def measure_monai(shape: tuple[int, ...], repeats: int) -> dict:
    """ResNet3D-50 vs MONAI ResNet-50, same architecture, timed alternately in one process."""
    import torch
    from monai.networks.nets import ResNet

    import ls_backbones

    torch.manual_seed(0)
    ours = ls_backbones.create_backbone("resnet3d_50", in_channels=shape[1])
    monai = ResNet(
        block="bottleneck", layers=[3, 4, 6, 3], block_inplanes=[64, 128, 256, 512], spatial_dims=3,
        n_input_channels=shape[1], conv1_t_size=7, conv1_t_stride=2, no_max_pool=False,
        shortcut_type="B", bias_downsample=False, feed_forward=False,
    )  # fmt: skip
    n_ours = sum(p.numel() for p in ours.parameters())
    n_monai = sum(p.numel() for p in monai.parameters())
    if n_ours != n_monai:
        raise SystemExit(f"architectures differ: ResNet3D-50 has {n_ours} parameters, MONAI {n_monai}")
    x = torch.randn(*shape)

    def step(net, key):
        def run():
            net.zero_grad(set_to_none=True)
            out = net(x)
            (out[key] if key else out).mean().backward()

        return run

    runs = {"ours": step(ours, "p5"), "monai": step(monai, None)}
    for run in runs.values():
        run()  # warm-up
    times: dict[str, list[float]] = {"ours": [], "monai": []}
    order = list(runs)
    for _ in range(repeats):
        for key in order:
            times[key] += _time(runs[key], 1)
        order.reverse()  # neither model always runs right after the other's backward
    return {
        "params": n_ours,
        "ours": statistics.median(times["ours"]),
        "monai": statistics.median(times["monai"]),
    }


def _subprocess(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", default=",".join(DEFAULT_PRESETS), help="comma-separated names")
    parser.add_argument("--shape", default="1,1,64,128,128", help="input B,C,D,H,W")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--monai-repeats", type=int, default=10, help="pairs timed against MONAI")
    parser.add_argument("--skip-monai", action="store_true")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    shape = tuple(int(v) for v in args.shape.split(","))

    if args.worker == "monai":
        print(json.dumps(measure_monai(shape, args.repeats)))
        return
    if args.worker:
        print(json.dumps(measure_preset(args.worker, shape, args.repeats)))
        return

    import torch

    print(f"input {shape}, CPU, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"median of {args.repeats}")
    header = f"{'preset':<18} {'params (M)':>10} {'fwd (s)':>9} {'fwd+bwd (s)':>12} {'peak (MiB)':>11}"
    print(header)
    print("-" * len(header))
    common = ["--shape", args.shape, "--repeats", str(args.repeats)]
    for name in args.presets.split(","):
        r = _subprocess(["--worker", name, *common])
        print(f"{name:<18} {r['params'] / 1e6:>10.2f} {r['fwd']:>9.3f} {r['fwd_bwd']:>12.3f} "
              f"{r['peak_mb']:>11.0f}", flush=True)
    if args.skip_monai:
        return
    r = _subprocess(["--worker", "monai", "--shape", args.shape, "--repeats", str(args.monai_repeats)])
    print()
    print(f"ResNet3D-50 vs MONAI ResNet-50 ({r['params'] / 1e6:.2f} M parameters each), forward+backward")
    print(f"{'ls_backbones (s)':>17} {'MONAI (s)':>10} {'ratio':>7}   goal <= 1.05")
    print(f"{r['ours']:>17.3f} {r['monai']:>10.3f} {r['ours'] / r['monai']:>7.3f}")


if __name__ == "__main__":
    main()
