"""Benchmark: mmcv's deformable conv kernel versus the gather + strided-conv path (sepc.ops).

    python -m tools.benchmarks.deform [--repeats 5] [--threads 2] [--json out.json]

Prints, per layer shape, the best-of-N time of forward and forward+backward for both and for a
plain conv, their ratio, and the largest difference between the two outputs (must be <= 1e-5
relative for the fast path to be used).
"""
from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F

from sepc.ops import deform_conv2d

SHAPES = [  # (N, C_in, H, W, C_out, stride)
    (2, 16, 64, 64, 32, 1),
    (4, 32, 20, 20, 32, 1),
    (4, 32, 40, 40, 32, 2),
    (1, 256, 50, 76, 256, 1),  # P4 at 800x1216, paper width
]


def _best(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times) * 1e3


def run(repeats: int = 5, shapes=SHAPES, device: str = "cpu") -> list[dict]:
    rows = []
    for n, c, h, w, co, s in shapes:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(n, c, h, w, generator=g).to(device).requires_grad_()
        wt = (torch.randn(co, c, 3, 3, generator=g) * 0.05).to(device).requires_grad_()
        ho, wo = (h + 2 - 3) // s + 1, (w + 2 - 3) // s + 1
        off = (torch.randn(n, 18, ho, wo, generator=g) * 2).to(device).requires_grad_()
        row = dict(shape=f"{n}x{c}x{h}x{w}->{co}/s{s}")
        outs = {}
        for impl in ("mmcv", "torch"):
            def fwd(impl=impl):
                with torch.no_grad():
                    outs[impl] = deform_conv2d(x, off, wt, s, 1, impl=impl)

            def fwd_bwd(impl=impl):
                deform_conv2d(x, off, wt, s, 1, impl=impl).sum().backward()

            row[f"{impl}_fwd_ms"] = _best(fwd, repeats)
            row[f"{impl}_fwdbwd_ms"] = _best(fwd_bwd, repeats)
        with torch.no_grad():
            row["plain_fwd_ms"] = _best(lambda: F.conv2d(x, wt, stride=s, padding=1), repeats)
        ref = outs["mmcv"]
        row["max_rel_diff"] = float((outs["torch"] - ref).abs().max() / ref.abs().max())
        row["speedup_fwd"] = row["mmcv_fwd_ms"] / row["torch_fwd_ms"]
        row["speedup_fwdbwd"] = row["mmcv_fwdbwd_ms"] / row["torch_fwdbwd_ms"]
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", help="also write the rows to this file")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = run(args.repeats)
    print(f"torch {torch.__version__}, cpu, {torch.get_num_threads()} threads, best of "
          f"{args.repeats}")
    print(f"{'layer':28} {'mmcv f+b':>9} {'ours f+b':>9} {'x':>5} {'mmcv fwd':>9} {'ours fwd':>9}"
          f" {'x':>5} {'plain':>7} {'max rel diff':>12}")
    for r in rows:
        print(f"{r['shape']:28} {r['mmcv_fwdbwd_ms']:9.1f} {r['torch_fwdbwd_ms']:9.1f} "
              f"{r['speedup_fwdbwd']:5.1f} {r['mmcv_fwd_ms']:9.1f} {r['torch_fwd_ms']:9.1f} "
              f"{r['speedup_fwd']:5.1f} {r['plain_fwd_ms']:7.1f} {r['max_rel_diff']:12.1e}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
