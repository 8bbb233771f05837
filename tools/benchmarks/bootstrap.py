"""Benchmark of reports.stats (the paired bootstrap) on a synthetic val2017-sized case.

Why: the paired bootstrap must stay cheap enough to run for every table cell
(target: < 60 s per pair, 1000 resamples, 2 cores). Builds, in memory, COCO-like ground
truth (5000 images, 80 categories with COCO's id gaps, ~7 gt per image, crowd boxes,
images without gt, small/medium/large objects) and two detection sets of 100 boxes per
image (the variant localises and ranks slightly better), then times: COCOeval.evaluate()
per set, the compaction of its records, pycocotools' accumulate() (reference; a naive
bootstrap would call it 2000 times), and the 1000-resample paired bootstrap. It also
checks that the vectorised accumulate equals pycocotools' stats on the full set.

    python -m tools.benchmarks.bootstrap                 # full size
    python -m tools.benchmarks.bootstrap --images 500    # quick
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

COCO_CAT_IDS = [i for i in range(1, 91) if i not in {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}]


def synthetic_gt(n_images: int = 5000, gt_per_image: float = 7.3, seed: int = 0,
                 crowd_frac: float = 0.01, empty_frac: float = 0.01) -> dict[str, Any]:
    """COCO-format ground truth dict with val2017-like statistics."""
    rng = np.random.default_rng(seed)
    cats = COCO_CAT_IDS
    cat_p = 1.0 / np.arange(1, len(cats) + 1) ** 0.8  # skewed: "person" dominates
    cat_p /= cat_p.sum()
    images, anns = [], []
    aid = 1
    for i in range(n_images):
        w, h = 640, int(rng.integers(360, 641))
        images.append({"id": i + 1, "width": w, "height": h, "file_name": f"{i + 1:012d}.jpg"})
        n = 0 if rng.random() < empty_frac else int(rng.poisson(gt_per_image))
        if n == 0:
            continue
        side = np.exp(rng.uniform(np.log(8), np.log(300), n))  # ~38% small, 30% medium
        asp = np.exp(rng.normal(0, 0.4, n))
        bw = np.minimum(side * asp, w - 1)
        bh = np.minimum(side / asp, h - 1)
        x = rng.uniform(0, w - bw)
        y = rng.uniform(0, h - bh)
        c = rng.choice(len(cats), size=n, p=cat_p)
        crowd = rng.random(n) < crowd_frac
        for j in range(n):
            anns.append({"id": aid, "image_id": i + 1, "category_id": cats[c[j]],
                         "bbox": [float(x[j]), float(y[j]), float(bw[j]), float(bh[j])],
                         "area": float(bw[j] * bh[j]), "iscrowd": int(crowd[j])})
            aid += 1
    return {"images": images, "annotations": anns,
            "categories": [{"id": c, "name": f"c{c}"} for c in cats]}


def synthetic_dets(gt: dict[str, Any], quality: float = 0.0, per_image: int = 100,
                   seed: int = 1) -> list[dict[str, Any]]:
    """`per_image` detections per image: jittered copies of the gt (1-3 each, 10% of gt
    missed, 5% with a wrong class) plus low-scored clutter, AP about 35 like a RetinaNet;
    higher `quality` means tighter boxes and better-ranked true positives."""
    rng = np.random.default_rng(seed)
    cats = np.array(COCO_CAT_IDS)
    by_img: dict[int, list] = {}
    for a in gt["annotations"]:
        by_img.setdefault(a["image_id"], []).append(a)
    sigma = 0.06 * np.exp(-quality)  # box jitter relative to the box size
    out: list[dict[str, Any]] = []
    for im in gt["images"]:
        iid, W, H = im["id"], im["width"], im["height"]
        g = by_img.get(iid, [])
        boxes, scores, labels = [], [], []
        if g:
            gb = np.array([a["bbox"] for a in g])
            gc = np.array([a["category_id"] for a in g])
            reps = rng.choice([1, 2, 3], size=len(g), p=[0.75, 0.2, 0.05])  # NMS leftovers
            reps[rng.random(len(g)) < 0.1] = 0  # missed
            src = np.repeat(np.arange(len(g)), reps)
            b = gb[src]
            jit = rng.normal(0, sigma, (len(src), 4)) * np.repeat(b[:, 2:4], 2, axis=1)
            nb = b + jit
            nb[:, 2:] = np.maximum(nb[:, 2:], 1.0)
            err = np.abs(jit).sum(1) / (b[:, 2:].sum(1) + 1e-9)
            s = 1 / (1 + np.exp(-(2.0 + quality - 6 * err + rng.normal(0, 1.0, len(src)))))
            lab = gc[src].copy()
            wrong = rng.random(len(src)) < 0.05
            lab[wrong] = rng.choice(cats, wrong.sum())
            boxes.append(nb), scores.append(s), labels.append(lab)
        n_fp = per_image
        side = np.exp(rng.uniform(np.log(8), np.log(300), n_fp))
        bw, bh = np.minimum(side, W - 1), np.minimum(side, H - 1)
        fb = np.stack([rng.uniform(0, W - bw), rng.uniform(0, H - bh), bw, bh], 1)
        boxes.append(fb)
        scores.append(rng.beta(1.2, 8, n_fp))
        labels.append(rng.choice(cats, n_fp))
        B, S, L = np.concatenate(boxes), np.concatenate(scores), np.concatenate(labels)
        top = np.argsort(-S, kind="stable")[:per_image]
        for j in top:
            out.append({"image_id": iid, "category_id": int(L[j]),
                        "bbox": [round(float(v), 2) for v in B[j]], "score": round(float(S[j]), 5)})
    return out


def _device() -> str:
    try:
        ncpu = len(os.sched_getaffinity(0))
    except AttributeError:
        ncpu = os.cpu_count() or 0
    threads = {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                          "MKL_NUM_THREADS") if k in os.environ}
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"{cpu}; {ncpu} usable cores; numpy single-threaded per process; "
            f"thread env {threads or 'unset'}; python {platform.python_version()}, "
            f"numpy {np.__version__}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.benchmarks.bootstrap", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=5000, help="evaluation images (default 5000)")
    ap.add_argument("--dets", type=int, default=100, help="detections per image (default 100)")
    ap.add_argument("--n-boot", type=int, default=1000, help="resamples (default 1000)")
    ap.add_argument("--metrics", default=None,
                    help="comma list (default: AP,AP50,AP75,AR100), or 'all' (adds "
                         "APs/APm/APl, ARs/ARm/ARl)")
    ap.add_argument("--workers", type=int, default=1,
                    help="processes for evaluate (categories split) and for the resamples "
                         "(default 1)")
    ap.add_argument("--quality", type=float, default=0.05,
                    help="variant's quality over the baseline's 0 (tighter boxes, better "
                         "ranked true positives; default 0.05)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-check", action="store_true",
                    help="skip the reference: plain pycocotools evaluate+accumulate+summarize "
                         "per set and the comparison of its stats with the vectorised ones")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    args = ap.parse_args(argv)

    from pycocotools.cocoeval import COCOeval

    from reports import compare
    from reports import stats as bs
    from reports.stats import records as bsr

    metrics = (bs.DEFAULT_METRICS if args.metrics is None else bs.ALL_METRICS
               if args.metrics == "all" else tuple(args.metrics.split(",")))
    fig: dict[str, Any] = {"device": _device(), "images": args.images,
                           "dets_per_image": args.dets, "n_boot": args.n_boot,
                           "metrics": list(metrics), "workers": args.workers}
    print(f"device: {fig['device']}")
    t0 = time.perf_counter()
    gt = synthetic_gt(args.images, seed=args.seed)
    dets_b = synthetic_dets(gt, quality=0.0, per_image=args.dets, seed=args.seed + 1)
    dets_v = synthetic_dets(gt, quality=args.quality, per_image=args.dets, seed=args.seed + 2)
    coco = bs.load_coco_gt(gt)
    fig["synth_s"] = time.perf_counter() - t0
    fig["gt_boxes"] = len(gt["annotations"])
    fig["dets"] = [len(dets_v), len(dets_b)]
    print(f"synthetic: {args.images} images, {len(gt['annotations'])} gt, "
          f"{len(dets_v)}+{len(dets_b)} dets ({fig['synth_s']:.1f} s)")

    recs = {}
    for name, dets in (("variant", dets_v), ("baseline", dets_b)):
        t = time.perf_counter()
        recs[name] = bs.evaluate_records(coco, dets, metrics=metrics, workers=args.workers)
        fig[f"evaluate_{name}_s"] = time.perf_counter() - t
        t = time.perf_counter()
        mine = bs.accumulate(recs[name], None, metrics)
        fig[f"vector_accumulate_{name}_s"] = time.perf_counter() - t
        first = next(iter(mine))
        print(f"{name}: evaluate_records (COCOeval.evaluate, areas for {','.join(metrics)}, "
              f"workers={args.workers}) {fig[f'evaluate_{name}_s']:.1f} s; vectorised "
              f"accumulate {fig[f'vector_accumulate_{name}_s'] * 1e3:.1f} ms; "
              f"{first} {mine[first] * 100:.2f}")
        if args.no_check:
            continue
        # reference: plain pycocotools on the same set (all area ranges, as usual)
        ev = COCOeval(coco, bsr._load_results(coco, dets), "bbox")
        t = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            ev.evaluate()
        te = time.perf_counter() - t
        t = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            ev.accumulate()
            ev.summarize()
        ta = time.perf_counter() - t
        err = max(abs(mine[m] - ev.stats[bsr._STATS_INDEX[m]]) for m in metrics)
        fig.update({f"pycocotools_evaluate_{name}_s": te,
                    f"pycocotools_accumulate_{name}_s": ta, f"max_abs_err_{name}": err})
        print(f"{name}: reference pycocotools evaluate (4 area ranges, 1 process) {te:.1f} s, "
              f"accumulate+summarize {ta:.2f} s; max |stats diff| {err:.1e}")

    t = time.perf_counter()
    r = bs.paired_bootstrap(recs["variant"], recs["baseline"], n_boot=args.n_boot,
                            seed=args.seed, metrics=metrics, workers=args.workers)
    tb = time.perf_counter() - t
    fig["bootstrap_s"] = tb
    fig["bootstrap_ms_per_resample"] = tb / max(args.n_boot, 1) * 1e3
    fig["deltas"] = r.to_dict()["deltas"]
    print(f"paired bootstrap (workers={args.workers}): {args.n_boot} resamples x 2 sets, "
          f"metrics {','.join(metrics)}: "
          f"{tb:.1f} s ({fig['bootstrap_ms_per_resample']:.1f} ms per resample)")
    for d in r.deltas.values():
        print(f"  {d.metric:6s} {d.variant:6.2f} - {d.baseline:6.2f} = {d.point:+.2f} "
              f"[{d.lo:+.2f}, {d.hi:+.2f}] ({r.level:.0%}, n_valid={d.n_valid})")
    ev_total = fig["evaluate_variant_s"] + fig["evaluate_baseline_s"]
    print(f"per pair: evaluate {ev_total:.1f} s + bootstrap {tb:.1f} s = {ev_total + tb:.1f} s")
    # `bench compare` on two store cells: the job cached each cell's records at evaluation time
    # (eval_records.npz), so a comparison is load + bootstrap.
    with tempfile.TemporaryDirectory() as tmp:
        for name in recs:
            compare.save_records(recs[name], Path(tmp) / f"{name}.npz")
        t = time.perf_counter()
        loaded = {name: compare.load_records(Path(tmp) / f"{name}.npz") for name in recs}
        cached = bs.paired_bootstrap(loaded["variant"], loaded["baseline"], n_boot=args.n_boot,
                                     seed=args.seed, metrics=metrics, workers=args.workers)
        fig["compare_cached_s"] = time.perf_counter() - t
    assert cached.to_dict() == r.to_dict()
    print(f"per pair from cached records (what `bench compare` does): "
          f"{fig['compare_cached_s']:.1f} s (target 60 s)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(fig, f, indent=1, default=float)
    return 0


if __name__ == "__main__":
    sys.exit(main())
