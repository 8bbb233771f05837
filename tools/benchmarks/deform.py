"""Benchmark: mmcv's deformable conv kernel versus the torch path (sepc.ops) on the CPU.

    python -m tools.benchmarks.deform [--repeats 5] [--threads 2] [--train-only]
                                      [--against REV] [--json out.json]

Two tables. Per layer shape, the best-of-N time of forward and forward+backward for both and for
a plain conv, their ratio, and the largest difference between the two outputs (must be <= 1e-5
relative for the fast path to be used). Then the training step at the smoke profile's sizes:
the median fwd+bwd (gradients of input, offset and weight, timed round-robin) at each shape
of the 52 deformable calls of one SEPC smoke step, and their sum per step, with the largest
difference of output and gradients to mmcv's kernel. ``--against REV`` adds the training path of
``sepc/ops/deform_conv.py`` as committed at REV to that table, timed in the same rounds
(before/after in one run; the paper-size layer row takes a minute: ``--train-only`` skips it).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from bench.run.benchmark import interleaved
from sepc.ops import deform_conv2d, deform_conv2d_torch
from tools.benchmarks.revision import module_at

SHAPES = [  # (N, C_in, H, W, C_out, stride)
    (2, 16, 64, 64, 32, 1),
    (4, 32, 20, 20, 32, 1),
    (4, 32, 40, 40, 32, 2),
    (1, 256, 50, 76, 256, 1),  # P4 at 800x1216, paper width
]


#: The deformable calls of one SEPC smoke training step (width 32, batch 4, 256x256 images, so
#: P3-P7 of 32..2 px; output level 0 is a plain conv): (N, C_in, H, W, C_out, stride, calls).
SMOKE_TRAIN = [
    (4, 32, 16, 16, 32, 1, 6), (4, 32, 8, 8, 32, 1, 10), (4, 32, 4, 4, 32, 1, 10),
    (4, 32, 2, 2, 32, 1, 10), (4, 32, 32, 32, 32, 2, 4), (4, 32, 16, 16, 32, 2, 4),
    (4, 32, 8, 8, 32, 2, 4), (4, 32, 4, 4, 32, 2, 4),
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


def _fwd_bwd(fn, x, off, wt, s, go):
    return lambda: torch.autograd.grad(fn(x, off, wt, s, 1), (x, off, wt), go)


def _mmcv(*args):
    return deform_conv2d(*args, impl="mmcv")


def train_run(repeats: int = 5, shapes=SMOKE_TRAIN, against: str | None = None) -> dict:
    """Median fwd+bwd (ms) per smoke training shape, and the sums over one step's calls."""
    impls = {"ours": deform_conv2d_torch}
    if against:
        impls[f"at {against}"] = module_at(against, "sepc/ops/deform_conv.py").deform_conv2d_torch
    rows = []
    for n, c, h, w, co, s, calls in shapes:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(n, c, h, w, generator=g).requires_grad_()
        wt = (torch.randn(co, c, 3, 3, generator=g) * 0.05).requires_grad_()
        ho, wo = (h - 1) // s + 1, (w - 1) // s + 1
        off = torch.randn(n, 18, ho, wo, generator=g).requires_grad_()  # about a pixel
        go = torch.randn(n, co, ho, wo, generator=g)
        fns = {k: _fwd_bwd(f, x, off, wt, s, go) for k, f in impls.items()}
        fns["plain"] = lambda: torch.autograd.grad(F.conv2d(x, wt, stride=s, padding=1),
                                                   (x, wt), go)
        row = dict(shape=f"{n}x{c}x{h}x{w}->{co}/s{s}", calls=calls)
        if min(h, w) >= 3:  # mmcv's kernel refuses maps smaller than the kernel
            fns["mmcv"] = _fwd_bwd(_mmcv, x, off, wt, s, go)
            ref = (_mmcv(x, off, wt, s, 1).detach(),) + fns["mmcv"]()
            ours = (deform_conv2d_torch(x, off, wt, s, 1).detach(),) + fns["ours"]()
            row["max_rel_diff"] = max(float((a - b).abs().max() / b.abs().max())
                                      for a, b in zip(ours, ref))
        times = interleaved(fns, 1, repeats, torch.device("cpu"))
        row.update({f"{k}_fwdbwd_ms": statistics.median(v) for k, v in times.items()})
        rows.append(row)
    totals = {k: sum(r["calls"] * r[f"{k}_fwdbwd_ms"] for r in rows)
              for k in [*impls, "plain"]}
    return dict(rows=rows, per_step_ms=totals)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--train-only", action="store_true",
                   help="only the smoke training table")
    p.add_argument("--against", metavar="REV",
                   help="also time the training path as committed at this git revision")
    p.add_argument("--json", help="also write the results to this file")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, cpu, {torch.get_num_threads()} threads")
    res = {}
    if not args.train_only:
        res["layers"] = rows = run(args.repeats)
        print(f"best of {args.repeats}:")
        print(f"{'layer':28} {'mmcv f+b':>9} {'ours f+b':>9} {'x':>5} {'mmcv fwd':>9} "
              f"{'ours fwd':>9} {'x':>5} {'plain':>7} {'max rel diff':>12}")
        for r in rows:
            print(f"{r['shape']:28} {r['mmcv_fwdbwd_ms']:9.1f} {r['torch_fwdbwd_ms']:9.1f} "
                  f"{r['speedup_fwdbwd']:5.1f} {r['mmcv_fwd_ms']:9.1f} {r['torch_fwd_ms']:9.1f} "
                  f"{r['speedup_fwd']:5.1f} {r['plain_fwd_ms']:7.1f} {r['max_rel_diff']:12.1e}")
    res["smoke_train"] = train = train_run(args.repeats, against=args.against)
    cols = list(train["per_step_ms"])
    print(f"smoke training step, fwd+bwd in ms, median of {args.repeats} interleaved "
          f"(ours = the torch path; mmcv refuses maps under 3x3):")
    print(f"{'layer':24} {'calls':>5} " + " ".join(f"{k:>14}" for k in cols)
          + f" {'mmcv':>8} {'max rel diff':>12}")
    for r in train["rows"]:
        mmcv = f"{r['mmcv_fwdbwd_ms']:8.2f}" if "mmcv_fwdbwd_ms" in r else f"{'-':>8}"
        diff = f"{r['max_rel_diff']:12.1e}" if "max_rel_diff" in r else f"{'-':>12}"
        print(f"{r['shape']:24} {r['calls']:5d} "
              + " ".join(f"{r[f'{k}_fwdbwd_ms']:14.2f}" for k in cols) + f" {mmcv} {diff}")
    print(f"{'per step (sum x calls)':30} "
          + " ".join(f"{train['per_step_ms'][k]:14.1f}" for k in cols))
    if args.against:
        ratio = train["per_step_ms"][f"at {args.against}"] / train["per_step_ms"]["ours"]
        print(f"at {args.against} / ours: {ratio:.2f}x")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
