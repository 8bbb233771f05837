"""The GPU acceptance run behind tools/gpu-check.sh: three steps, one JSON file.

1. deform: mmcv's deformable conv kernel on the device against sepc's exact torch path in
   float64 on the CPU (forward and the three gradients) at smoke and paper (P4) sizes.
2. perf: ``python -m bench perf`` for RetinaNet's five variants in fp32 and fp16, batch-1 model
   step and batch-8 protocol at the paper size (800x1344).
3. pilot: ``python -m bench pilot`` of two paper cells (baseline, SEPC) on one device, on a
   generated COCO-layout folder at 1333x800 with random weights (no download).

A step that fails is recorded with its error and the others still run; the exit status is 1
if any failed. ``--dry-run`` does the same on the CPU at the smoke size (for CI).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _step(name: str, doc: dict, fn) -> None:
    t0 = time.time()
    print(f"[gpu-check] {name} ...", flush=True)
    try:
        doc[name] = dict(status="ok", **fn())
    except Exception as exc:  # noqa: BLE001 - recorded; the other steps still run
        doc[name] = dict(status="failed", error=f"{type(exc).__name__}: {exc}",
                         traceback=traceback.format_exc()[-4000:])
    doc[name]["seconds"] = round(time.time() - t0, 1)
    print(f"[gpu-check] {name}: {doc[name]['status']} ({doc[name]['seconds']} s)", flush=True)


def check_deform(device: str, dry: bool) -> dict:
    """Max relative error (to the largest reference magnitude) of output and gradients."""
    import torch

    from sepc.ops.deform_conv import deform_conv2d

    cases = [(2, 16, 32, 32, 32, 1), (2, 32, 20, 20, 32, 2)]
    if not dry:
        cases.append((1, 256, 50, 84, 256, 1))  # P4 of an 800x1344 input, the paper's width
    rows, worst = [], 0.0
    for i, (n, c, h, w, cout, stride) in enumerate(cases):
        g = torch.Generator().manual_seed(i)
        ho, wo = (h + 2 - 3) // stride + 1, (w + 2 - 3) // stride + 1
        x = torch.randn(n, c, h, w, generator=g, dtype=torch.float64)
        weight = torch.randn(cout, c, 3, 3, generator=g, dtype=torch.float64) * 0.05
        offset = torch.randn(n, 18, ho, wo, generator=g, dtype=torch.float64) * 2
        grad = torch.randn(n, cout, ho, wo, generator=g, dtype=torch.float64)

        def run(impl: str, dev: str, dtype):
            ts = [t.to(dev, dtype).clone().requires_grad_(True) for t in (x, offset, weight)]
            out = deform_conv2d(ts[0], ts[1], ts[2], stride=stride, padding=1, impl=impl)
            out.backward(grad.to(dev, dtype))
            return [t.detach().double().cpu() for t in (out, *(u.grad for u in ts))]

        ref = run("torch", "cpu", torch.float64)
        got = run("mmcv", device, torch.float32)
        errs = {name: float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))
                for name, a, b in zip(("out", "grad_x", "grad_offset", "grad_weight"), got, ref)}
        worst = max(worst, *errs.values())
        rows.append(dict(shape=f"{n}x{c}x{h}x{w}->{cout}/s{stride}", **errs))
    if worst > 1e-3:
        raise AssertionError(f"mmcv's kernel differs from the exact path by {worst:.2e} (> 1e-3)")
    return dict(device=device, cases=rows, max_rel_err=worst)


def _bench(*args: str, timeout: int) -> None:
    proc = subprocess.run([sys.executable, "-m", "bench", *args], cwd=REPO, text=True,
                          capture_output=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"python -m bench {' '.join(args)} exited {proc.returncode}: "
                           + (proc.stderr or proc.stdout).strip()[-1500:])


def run_perf(out: Path, dry: bool) -> dict:
    docs = {}
    for dtype in ("fp32", "fp16"):
        target = out / f"perf-{dtype}"
        if dry:
            args = ["--device", "cpu", "--sizes", "smoke", "--batch-sizes", "smoke", "--warmup",
                    "1", "--reps", "2", "--batch-warmup", "0", "--batch-reps", "1",
                    "--threads", "1"]
            if dtype == "fp16":  # autocast is a CUDA path: the dry run checks fp32 only
                continue
        else:
            args = ["--device", "cuda", "--dtype", dtype, "--sizes", "paper", "--batch-sizes",
                    "paper", "--warmup", "20", "--reps", "50", "--batch-warmup", "5",
                    "--batch-reps", "20"]
        _bench("perf", "--detectors", "retinanet", *args, "--quiet", "--out", str(target),
               timeout=1800)
        docs[dtype] = json.loads((target / "perf.json").read_text())
    return dict(perf=docs)


def run_pilot(out: Path, dry: bool) -> dict:
    results = out / "pilot-results"
    if dry:
        args = ["--profile", "smoke", "--iters", "2", "--val-images", "4"]
    else:
        from bench.data.synthetic import generate

        data = generate(out / "coco-1333x800", n_train=64, n_val=16, image_size=(1333, 800),
                        size_range=(16.0, 500.0), size_jitter=0.1)
        args = ["--profile", "paper", "--data-root", str(data), "--pretrained", "none",
                "--iters", "20", "--val-images", "16", "--tasks-per-node", "1"]
    _bench("pilot", *args, "--detectors", "retinanet", "--variants", "baseline,sepc",
           "--baseline-seeds", "1",
           "--results", str(results), "--quiet", timeout=1800)
    rows = [json.loads(p.read_text()) for p in sorted((results / "pilot").glob("*/result.json"))]
    keep = ("cell_key", "status", "device", "pilot_iter_s", "train_peak_mem_mb", "AP",
            "latency_ms", "latency_paper_ms", "forecast_wall_s", "forecast_gpu_hours",
            "forecast_suggested_time_min", "forecast_layout", "forecast_note", "error")
    rows = [{k: r.get(k) for k in keep} for r in rows]
    bad = [r["cell_key"] for r in rows if r["status"] != "done"]
    if len(rows) != 2 or bad:
        raise RuntimeError(f"pilot cells not done: {bad or [r['cell_key'] for r in rows]}")
    return dict(cells=rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "results" / "gpu-check",
                    help="folder for gpu-check.json and the steps' files "
                    "(default: results/gpu-check)")
    ap.add_argument("--dry-run", action="store_true", help="the same steps on the CPU at the "
                    "smoke size")
    args = ap.parse_args(argv)
    import torch

    if not args.dry_run and not torch.cuda.is_available():
        print("gpu-check: no CUDA device (torch.cuda.is_available() is False); --dry-run runs "
              "the steps on the CPU", file=sys.stderr)
        return 2
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    device = "cpu" if args.dry_run else "cuda"
    doc: dict = dict(dry_run=args.dry_run, torch=torch.__version__, cuda=torch.version.cuda,
                     device=(torch.cuda.get_device_name() if device == "cuda" else "cpu"),
                     started=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    t0 = time.time()
    _step("deform", doc, lambda: check_deform(device, args.dry_run))
    _step("perf", doc, lambda: run_perf(out, args.dry_run))
    _step("pilot", doc, lambda: run_pilot(out, args.dry_run))
    doc["seconds"] = round(time.time() - t0, 1)
    target = out / "gpu-check.json"
    tmp = target.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    os.replace(tmp, target)
    failed = [k for k in ("deform", "perf", "pilot") if doc[k]["status"] != "ok"]
    print(f"[gpu-check] {'FAILED: ' + ', '.join(failed) if failed else 'all steps ok'} in "
          f"{doc['seconds']} s -> {target}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
