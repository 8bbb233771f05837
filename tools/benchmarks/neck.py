"""Micro-benchmark: where the SEPC neck's time goes, against the stock head tower it replaces.

    python -m tools.benchmarks.neck [--scale 1.0] [--warmup 1] [--reps 5] [--threads N] [--json F]

On the P3-P7 pyramid of an 800x1344 image (times ``--scale``), width 256, batch 1, forward only
(eval, no grad), all timed interleaved:

- ``tower``: mmdet's RetinaHead cls+reg towers (2 x 4 convs), the baseline's head minus its
  predictors, which SEPC's 4 PConvs + cls/loc convs replace;
- the SEPC variants: ``pconv``; ``ibn`` with iBN as trained and ``ibn fused`` (folded,
  ``SEPC.fuse``); ``sepc_lite fused`` (deformable cls/loc convs); ``sepc fused``.

Differences attribute the overhead: PConv = pconv - tower, iBN = ibn - pconv (and what is left
of it after folding), deformable cls/loc = sepc_lite - ibn (both fused), deformable PConvs =
sepc - sepc_lite. A second table splits one scale-equalizing conv at P4 (deformable use) into
its offset conv, the bilinear gather and the strided conv, against a plain conv.
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from bench.run.benchmark import interleaved, summarise
from sepc.necks import SEPC
from sepc.ops import SEPCConv
from sepc.ops.deform_conv import _bilinear_taps
from tests.fixtures.towers import WIDTH, Tower

PAPER_P3 = (100, 168)  # P3 of 800x1344; P4-P7 halve it (rounding up): 50x84 ... 7x11


def _neck(fuse: bool, **variant) -> SEPC:
    neck = SEPC(out_channels=WIDTH, lcconv_padding=1, **variant).eval()
    with torch.no_grad():  # trained-like offsets of about a pixel, so sampling is not trivial
        for m in neck.modules():
            if isinstance(m, SEPCConv) and m.part_deform:
                m.conv_offset.bias.uniform_(-1.5, 1.5)
    return neck.fuse() if fuse else neck


def pyramid(scale: float, seed: int = 0) -> list[torch.Tensor]:
    """P3-P7 with P3 = the paper's times ``scale``, each level half the one below (ceil), as
    the FPN's stride-2 convs make them."""
    g = torch.Generator().manual_seed(seed)
    h, w = (max(48, round(v * scale)) for v in PAPER_P3)
    feats = []
    for _ in range(5):
        feats.append(torch.randn(1, WIDTH, h, w, generator=g))
        h, w = -(-h // 2), -(-w // 2)
    return feats


def neck_modules() -> dict[str, nn.Module]:
    return {
        "tower": Tower().eval(),
        "pconv": _neck(False),
        "ibn": _neck(False, iBN=True),
        "ibn fused": _neck(True, iBN=True),
        "sepc_lite fused": _neck(True, iBN=True, lcconv_deform=True),
        "sepc fused": _neck(True, iBN=True, lcconv_deform=True, pconv_deform=True),
    }


def conv_parts(x: torch.Tensor) -> dict[str, Callable[[], object]]:
    """One scale-equalizing conv's deformable use, whole and in parts, and a plain conv."""
    conv = SEPCConv(WIDTH, WIDTH, 3, padding=1, part_deform=True).eval()
    with torch.no_grad():
        conv.conv_offset.bias.uniform_(-1.5, 1.5)
    offset = conv.conv_offset(x)
    n, c, h, w = x.shape
    rows, wts = _bilinear_taps(offset, (h, w), (3, 3), (1, 1), (1, 1), (1, 1))
    table = x.permute(0, 2, 3, 1).reshape(n * h * w, c)
    taps = F.embedding_bag(rows, table, per_sample_weights=wts, mode="sum")
    image = taps.view(n, 3 * h, 3 * w, c).permute(0, 3, 1, 2)
    return {
        "plain conv": lambda: F.conv2d(x, conv.weight, conv.bias, padding=1),
        "deformable use (all)": lambda: conv(1, x),
        "  offset conv": lambda: conv.conv_offset(x),
        "  tap rows+weights": lambda: _bilinear_taps(offset, (h, w), (3, 3), (1, 1), (1, 1),
                                                     (1, 1)),
        "  bilinear gather": lambda: F.embedding_bag(rows, table, per_sample_weights=wts,
                                                     mode="sum"),
        "  strided conv": lambda: F.conv2d(image, conv.weight, stride=3),
    }


def run(scale: float = 1.0, warmup: int = 1, reps: int = 5) -> dict:
    device = torch.device("cpu")
    feats = pyramid(scale)
    with torch.no_grad():
        necks = neck_modules()
        t = interleaved({k: (lambda m=m: m(feats)) for k, m in necks.items()}, warmup, reps,
                        device)
        neck = {k: summarise(v) for k, v in t.items()}
        t = interleaved(conv_parts(feats[1]), warmup, reps, device)
        parts = {k: summarise(v) for k, v in t.items()}
    med = {k: v["median_ms"] for k, v in neck.items()}
    attribution = {
        "PConv (pconv - tower)": med["pconv"] - med["tower"],
        "iBN as trained (ibn - pconv)": med["ibn"] - med["pconv"],
        "iBN folded (ibn fused - pconv)": med["ibn fused"] - med["pconv"],
        "deformable cls/loc (sepc_lite - ibn, fused)": med["sepc_lite fused"] - med["ibn fused"],
        "deformable PConvs (sepc - sepc_lite, fused)": med["sepc fused"] - med["sepc_lite fused"],
    }
    return dict(levels=[list(f.shape) for f in feats], threads=torch.get_num_threads(),
                warmup=warmup, reps=reps, neck=neck, attribution_ms=attribution,
                conv_at_p4=parts)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--scale", type=float, default=1.0, help="pyramid size relative to the "
                   "paper's 800x1344 (default 1.0)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--threads", type=int, help="CPU threads (default: torch's)")
    p.add_argument("--json", help="also write the results to this file")
    args = p.parse_args(argv)
    if args.scale <= 0 or args.reps < 1 or args.warmup < 0:
        p.error("--scale must be > 0, --reps >= 1, --warmup >= 0")
    if args.threads:
        torch.set_num_threads(args.threads)
    res = run(args.scale, args.warmup, args.reps)
    tower = res["neck"]["tower"]["median_ms"]
    print(f"torch {torch.__version__}, cpu, {res['threads']} threads, {args.warmup} warm-up + "
          f"{args.reps} interleaved; levels {res['levels']}")
    print(f"{'module':22} {'median ms':>10} {'p10':>8} {'p90':>8} {'x tower':>8}")
    for k, v in res["neck"].items():
        print(f"{k:22} {v['median_ms']:10.1f} {v['p10_ms']:8.1f} {v['p90_ms']:8.1f} "
              f"{v['median_ms'] / tower:8.3f}")
    print("overhead attributed (ms, % of the tower):")
    for k, v in res["attribution_ms"].items():
        print(f"  {k:46} {v:+8.1f} {100 * v / tower:+6.1f}%")
    plain = res["conv_at_p4"]["plain conv"]["median_ms"]
    print(f"one scale-equalizing conv at P4 {res['levels'][1]}:")
    for k, v in res["conv_at_p4"].items():
        print(f"  {k:24} {v['median_ms']:8.1f} ms  {v['median_ms'] / plain:6.2f}x plain")
    if args.json:
        from reports.schema import atomic_write

        atomic_write(Path(args.json), json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
