"""The paired, image-level bootstrap of COCO metric differences (variant minus baseline).

Why: adjacent cells of the SEPC table differ by 0.5-1.2 AP while one recipe's COCO AP moves
0.1-0.3 AP from run to run, so a delta needs an interval. From single runs, the paired
bootstrap resamples the evaluation images with replacement and recomputes BOTH metrics on the
same resample, from the per-image records (:mod:`reports.stats.records`), without evaluating
again. Values in AP points (percent), like the result store.
"""
from __future__ import annotations

import multiprocessing as mp
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from reports.stats.records import (
    DEFAULT_METRICS,
    EvalRecords,
    _area_curves,
    _areas_for,
    _metrics_from_curves,
    evaluate_records,
    load_coco_gt,
)


@dataclass
class MetricDelta:
    """One metric's variant-minus-baseline delta, in AP points (percent)."""

    metric: str
    point: float  # full-set variant - baseline
    lo: float  # bootstrap percentile interval of the difference
    hi: float
    excludes_zero: bool  # lo > 0 or hi < 0
    baseline: float  # full-set values
    variant: float
    se: float  # bootstrap standard deviation of the difference
    n_valid: int  # resamples in which the metric is defined for both sets


@dataclass
class BootstrapResult:
    """Paired image-level bootstrap of variant - baseline (AP points, i.e. percent)."""

    deltas: dict[str, MetricDelta]
    n_boot: int
    seed: int
    level: float
    n_images: int
    samples: dict[str, np.ndarray] = field(repr=False, default_factory=dict)

    def to_frame(self) -> Any:
        """One row per metric (pandas DataFrame)."""
        import pandas as pd

        rows = [dict(vars(d), n_boot=self.n_boot, seed=self.seed, level=self.level,
                     n_images=self.n_images) for d in self.deltas.values()]
        return pd.DataFrame(rows)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (without the bootstrap samples)."""
        return {"n_boot": self.n_boot, "seed": self.seed, "level": self.level,
                "n_images": self.n_images,
                "deltas": {k: vars(v).copy() for k, v in self.deltas.items()}}


def _runs(x: EvalRecords | Sequence[EvalRecords]) -> list[EvalRecords]:
    return [x] if isinstance(x, EvalRecords) else list(x)


def _check_runs(variant: list[EvalRecords], baseline: list[EvalRecords]) -> None:
    if not variant or not baseline:
        raise ValueError("paired bootstrap needs at least one run on each side")
    first = variant[0]
    for rec in (*variant, *baseline):
        if not (np.array_equal(rec.img_ids, first.img_ids)
                and np.array_equal(rec.cat_ids, first.cat_ids)):
            raise ValueError("paired bootstrap needs every detection set evaluated on the same "
                             "ground truth (same image and category ids)")


def _stats(rec: EvalRecords, w: np.ndarray, metrics: tuple[str, ...]) -> dict[str, float]:
    n_thr = len(rec.iou_thrs)
    curves = {a: _area_curves(rec.areas[a], w, n_thr, rec.rec_thrs) for a in _areas_for(metrics)}
    return _metrics_from_curves(curves, metrics)


def full_metrics(rec: EvalRecords, metrics: Sequence[str] = DEFAULT_METRICS) -> dict[str, float]:
    """The metrics of one detection set on every image once, in AP points (NaN: undefined):
    what pycocotools prints for it."""
    stats = _stats(rec, np.ones(rec.n_images, dtype=np.int32), tuple(metrics))
    return {m: v * 100.0 if v >= 0 else np.nan for m, v in stats.items()}


def _mean_stats(runs: list[EvalRecords], w: np.ndarray, metrics: tuple[str, ...]) -> np.ndarray:
    """Per metric, the mean over runs in AP points; NaN where a run leaves it undefined."""
    vals = np.array([[s[m] for m in metrics] for s in (_stats(r, w, metrics) for r in runs)])
    return np.where((vals >= 0).all(axis=0), vals.mean(axis=0) * 100.0, np.nan)


def _diff_rows(variant: list[EvalRecords], baseline: list[EvalRecords], weights: np.ndarray,
               metrics: tuple[str, ...]) -> np.ndarray:
    """(len(weights), len(metrics)) mean variant - mean baseline in AP points; NaN where
    undefined."""
    out = np.empty((len(weights), len(metrics)))
    for i, w in enumerate(weights):
        out[i] = _mean_stats(variant, w, metrics) - _mean_stats(baseline, w, metrics)
    return out


# State handed to forked bootstrap workers (set just before the fork, cleared after).
_BOOT_STATE: tuple[list[EvalRecords], list[EvalRecords], np.ndarray, tuple[str, ...]] | None = None


def _boot_chunk(bounds: tuple[int, int]) -> np.ndarray:
    assert _BOOT_STATE is not None
    variant, baseline, weights, metrics = _BOOT_STATE
    return _diff_rows(variant, baseline, weights[bounds[0]:bounds[1]], metrics)


def resample_weights(n_images: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n_images) image multiplicities: n_images draws with replacement each.

    Why a separate step: the draws depend only on (n_images, n_boot, seed), so results
    do not depend on how the resamples are split over workers.
    """
    rng = np.random.default_rng(seed)
    out = np.empty((n_boot, n_images), dtype=np.int32)
    for i in range(n_boot):
        out[i] = np.bincount(rng.integers(0, n_images, size=n_images), minlength=n_images)
    return out


def paired_bootstrap(
    variant: EvalRecords | Sequence[EvalRecords],
    baseline: EvalRecords | Sequence[EvalRecords],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    metrics: Sequence[str] = DEFAULT_METRICS,
    workers: int = 1,
) -> BootstrapResult:
    """Paired image-level bootstrap interval of variant - baseline COCO metrics.

    Why: one draw of images (with replacement, numpy default_rng(seed)) is applied to
    BOTH sets, so image difficulty cancels and the interval reflects the variant's
    effect on this image population. Either side may be several runs (seeds) of its cell:
    the difference is then of the means over runs, every run on the same resample, which is
    the image-sampling part of a multi-seed comparison (``reports.stats.claims``); it says
    nothing about the training's own noise. Interval: (1-level)/2 and (1+level)/2 percentiles
    of the resampled differences; resamples where a metric is undefined (e.g. no small
    gt drawn) are dropped for that metric (n_valid says how many remain). `workers` > 1
    splits the resamples over forked processes (same numbers as workers=1).
    """
    global _BOOT_STATE
    variant, baseline = _runs(variant), _runs(baseline)
    _check_runs(variant, baseline)
    if not 0 < level < 1:
        raise ValueError("level must be in (0, 1)")
    metrics = tuple(metrics)
    for rec in (*variant, *baseline):
        if any(a not in rec.areas for a in _areas_for(metrics)):
            raise ValueError("records were evaluated without the area ranges these metrics need")
    n_img = variant[0].n_images
    ones = np.ones(n_img, dtype=np.int32)
    full_v = dict(zip(metrics, _mean_stats(variant, ones, metrics)))
    full_b = dict(zip(metrics, _mean_stats(baseline, ones, metrics)))
    weights = resample_weights(n_img, n_boot, seed)
    workers = max(1, min(int(workers), n_boot))
    if workers == 1 or "fork" not in mp.get_all_start_methods():
        rows = _diff_rows(variant, baseline, weights, metrics)
    else:
        edges = np.linspace(0, n_boot, 4 * workers + 1).astype(int)
        _BOOT_STATE = (variant, baseline, weights, metrics)
        try:
            with mp.get_context("fork").Pool(workers) as pool:
                parts = pool.map(_boot_chunk, list(zip(edges[:-1], edges[1:])))
        finally:
            _BOOT_STATE = None
        rows = np.concatenate(parts) if parts else np.empty((0, len(metrics)))
    diffs = {m: rows[:, j].copy() for j, m in enumerate(metrics)}
    q_lo, q_hi = 100 * (1 - level) / 2, 100 * (1 + level) / 2
    deltas: dict[str, MetricDelta] = {}
    for m in metrics:
        d = diffs[m][~np.isnan(diffs[m])]
        lo, hi = (np.percentile(d, [q_lo, q_hi]) if len(d) else (np.nan, np.nan))
        fv, fb = full_v[m], full_b[m]
        deltas[m] = MetricDelta(
            metric=m, point=float(fv - fb), lo=float(lo), hi=float(hi),
            excludes_zero=bool(lo > 0 or hi < 0), baseline=float(fb), variant=float(fv),
            se=float(d.std(ddof=1)) if len(d) > 1 else np.nan, n_valid=int(len(d)))
    return BootstrapResult(deltas=deltas, n_boot=n_boot, seed=seed, level=level,
                           n_images=n_img, samples=diffs)


def bootstrap_detections(
    coco_gt: Any,
    variant_dets: Sequence[Mapping[str, Any]],
    baseline_dets: Sequence[Mapping[str, Any]],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    metrics: Sequence[str] = DEFAULT_METRICS,
    workers: int = 1,
) -> BootstrapResult:
    """evaluate_records on both detection sets (same ground truth), then paired_bootstrap."""
    gt = load_coco_gt(coco_gt)
    rv = evaluate_records(gt, variant_dets, metrics=metrics, workers=workers)
    rb = evaluate_records(gt, baseline_dets, metrics=metrics, workers=workers)
    return paired_bootstrap(rv, rb, n_boot=n_boot, seed=seed, level=level, metrics=metrics,
                            workers=workers)
