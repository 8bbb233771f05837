"""Benchmark: one smoke training step per variant on the CPU, timed round-robin.

    python -m tools.benchmarks.train_step [--variants baseline,sepc_lite,sepc] [--rounds 11]
                                          [--threads 1] [--against REV] [--channels-last]
                                          [--json out.json]

Each variant's RetinaNet is built from the smoke profile's resolved config (random init, no
pretrained weights) with a batch of 4 from its synthetic training set; one step is the data
preprocessor, the loss, backward and an AdamW step (the weights move between rounds, as in
training). After two warm-up steps each, every round times each variant once with each code, the
codes back to back in alternating order, and the medians and each variant's ratio to the
baseline (timed with the same code) are printed.
``--against REV`` also times every variant with a deformable conv (``deform_conv2d_torch``
of ``sepc/ops/deform_conv.py`` as committed at REV) swapped in for its steps: before and after
in the same process and rounds, so that the machine's load hits both alike.
``--channels-last`` also times every variant trained in channels-last memory (a second copy of
the model, as ``sepc.engine.ChannelsLastHook`` makes it), in the same rounds.
"""
from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from collections.abc import Callable

import torch

DETECTOR = "retinanet"


def build_step(variant: str, seed: int = 0, channels_last: bool = False) -> Callable[[], None]:
    """A closure running one training step of the smoke RetinaNet ``variant``."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.dataset import pseudo_collate
    from mmengine.logging import MMLogger
    from mmengine.registry import DATASETS

    import sepc  # noqa: F401  (registers the SEPC neck and heads)
    from bench.plan.cells import Cell
    from bench.plan.options import Options
    from bench.plan.resolve import resolve

    register_all_modules(init_default_scope=True)
    cfg = resolve(Cell("smoke", DETECTOR, variant, seed), Options(pretrained="none"))
    torch.manual_seed(seed)
    model = MODELS.build(cfg.model)
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)  # init_weights logs every parameter's initialiser
    try:
        model.init_weights()
    finally:
        logger.setLevel(level)
    model.train()
    if channels_last:
        model.to(memory_format=torch.channels_last)
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    batch = pseudo_collate([dataset[i] for i in range(4)])
    optim = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step() -> None:
        data = model.data_preprocessor(batch, True)
        loss, _ = model.parse_losses(model(**data, mode="loss"))
        optim.zero_grad()
        loss.backward()
        optim.step()

    return step


def run(variants: list[str], rounds: int, against: str | None = None,
        channels_last: bool = False) -> dict:
    """Median ms per step of each (variant, code) pair; code is ``ours``, ``at REV`` (the
    deformable conv of REV) or ``channels-last`` (ours, the model in channels-last memory)."""
    import sepc.ops.deform_conv as dc

    impls = {"ours": dc.deform_conv2d_torch}
    if against:
        from tools.benchmarks.revision import module_at

        impls[f"at {against}"] = module_at(against, "sepc/ops/deform_conv.py").deform_conv2d_torch
    if channels_last:
        impls["channels-last"] = dc.deform_conv2d_torch
    plain = {v: build_step(v) for v in variants}
    cl = {v: build_step(v, channels_last=True) for v in variants} if channels_last else {}
    times: dict[tuple[str, str], list[float]] = {(v, k): [] for v in variants for k in impls}
    try:
        for r in range(2 + rounds):
            for variant in variants:  # each variant's codes back to back, which first alternating
                for impl in list(impls)[::1 if r % 2 == 0 else -1]:
                    dc.deform_conv2d_torch = impls[impl]  # what deform_conv2d calls
                    step = cl[variant] if impl == "channels-last" else plain[variant]
                    t0 = time.perf_counter()
                    step()
                    if r >= 2:
                        times[(variant, impl)].append((time.perf_counter() - t0) * 1e3)
    finally:
        dc.deform_conv2d_torch = impls["ours"]
    med = {f"{v} {k}": statistics.median(t) for (v, k), t in times.items()}
    out = dict(threads=torch.get_num_threads(), rounds=rounds, median_ms=med)
    if "baseline" in variants:
        out["x_baseline"] = {key: m / med[f"baseline {key.split(' ', 1)[1]}"]
                             for key, m in med.items()}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--variants", default="baseline,sepc_lite,sepc")
    p.add_argument("--rounds", type=int, default=11)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--against", metavar="REV",
                   help="also time the deformable conv as committed at this git revision")
    p.add_argument("--channels-last", action="store_true",
                   help="also time each variant trained in channels-last memory")
    p.add_argument("--json", help="also write the results to this file")
    args = p.parse_args(argv)
    if args.rounds < 1:
        p.error("--rounds must be >= 1")
    torch.set_num_threads(args.threads)
    res = run(args.variants.split(","), args.rounds, args.against, args.channels_last)
    print(f"torch {torch.__version__}, cpu, {res['threads']} threads, smoke {DETECTOR} batch 4, "
          f"median of {args.rounds} interleaved rounds")
    for key, m in res["median_ms"].items():
        ratio = res.get("x_baseline", {}).get(key)
        print(f"  {key:24} {m:8.1f} ms" + (f"  {ratio:5.2f}x baseline" if ratio else ""))
    if args.against:
        for v in args.variants.split(","):
            old, new = res["median_ms"][f"{v} at {args.against}"], res["median_ms"][f"{v} ours"]
            print(f"  {v}: at {args.against} / ours = {old / new:.2f}")
    if args.channels_last:
        for v in args.variants.split(","):
            nchw, cl = res["median_ms"][f"{v} ours"], res["median_ms"][f"{v} channels-last"]
            print(f"  {v}: NCHW / channels-last = {nchw / cl:.2f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
