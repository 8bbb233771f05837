"""Comparing two cells of a result store: their detections and cached per-image records read
from the cells' folders, then the paired bootstrap and the claim rule (``reports.stats``).
``bench compare`` and the report's summary both decide through :func:`compare_cells`, so they
claim the same things; the job writes the records file with :func:`save_records`."""
from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from experiments.noise import SeedSpread, seed_spread
from reports.schema import DETECTIONS_FILE, RECORDS_FILE, atomic_write, read_json
from reports.stats import (
    DEFAULT_METRICS,
    BootstrapResult,
    EvalRecords,
    covers,
    evaluate_records,
    full_metrics,
    load_coco_gt,
    paired_bootstrap,
    records_from_arrays,
    records_to_arrays,
)
from reports.stats.claims import Interval, Spread, difference_interval


def save_records(records: EvalRecords, path: str | os.PathLike) -> Path:
    """Write records as a plain npz (no pickle), atomically."""
    buf = io.BytesIO()
    np.savez(buf, **records_to_arrays(records))
    return atomic_write(path, buf.getvalue())


def load_records(path: str | os.PathLike) -> EvalRecords:
    with np.load(path, allow_pickle=False) as z:
        return records_from_arrays({k: z[k] for k in z.files})


def _resolve_ann(ann: str, cell: Path) -> Path:
    """The cell's annotation file: as recorded, else next to the cell or its results folder (a
    results folder copied from another machine)."""
    cand = [Path(ann)]
    if not Path(ann).is_absolute():
        cand += [cell / ann, cell.parent / ann]
    for c in cand:
        if c.is_file():
            return c
    tried = [str(c) for c in cand]
    raise FileNotFoundError(f"ann_file {ann!r} of {cell} not found (tried {tried})")


def load_cell(cell_dir: str | os.PathLike) -> tuple[Path, Path]:
    """(detections file, annotation file) of a result-store cell folder."""
    cell = Path(cell_dir)
    res = cell / "result.json"
    dets = cell / DETECTIONS_FILE
    if not res.is_file():
        raise FileNotFoundError(f"{res} missing")
    if not dets.is_file():
        raise FileNotFoundError(f"{dets} missing (cell not evaluated?)")
    ann = read_json(res, required=True).get("ann_file")
    if not ann:
        raise ValueError(f"{res} has no ann_file")
    return dets, _resolve_ann(str(ann), cell)


def cached_records(cell: str | os.PathLike, metrics: Sequence[str]) -> EvalRecords | None:
    """The cell's cached records if they cover the area ranges ``metrics`` need."""
    path = Path(cell) / RECORDS_FILE
    if not path.is_file():
        return None
    try:
        records = load_records(path)
    except (OSError, ValueError, KeyError, TypeError):
        return None  # unreadable cache: evaluate again
    return records if covers(records, metrics) else None


def bootstrap_cells(
    variant_cell: str | os.PathLike,
    baseline_cell: str | os.PathLike,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    metrics: Sequence[str] = DEFAULT_METRICS,
    ann_file: str | os.PathLike | None = None,
    workers: int = 1,
) -> BootstrapResult:
    """Paired image bootstrap of two result-store cells: the evaluation set's sampling only.

    Uses each cell's cached records, else evaluates its detections against result.json's
    ann_file; both cells must have been evaluated on the same annotation file (or pass
    `ann_file` to override). A claim also needs the training's noise: :func:`compare_cells`.
    """
    rv, av = cell_records(variant_cell, metrics, ann_file)
    rb, ab = cell_records(baseline_cell, metrics, ann_file)
    if av.resolve() != ab.resolve():
        raise ValueError(f"cells were evaluated on different annotation files: {av} vs {ab}")
    return paired_bootstrap(rv, rb, n_boot=n_boot, seed=seed, level=level, metrics=metrics,
                            workers=workers)


def cell_records(cell_dir: str | os.PathLike, metrics: Sequence[str] = DEFAULT_METRICS,
                 ann_file: str | os.PathLike | None = None) -> tuple[EvalRecords, Path]:
    """A cell's per-image records (cached by the job, else evaluated from its detections) and
    the annotation file they were evaluated on."""
    dets, ann = load_cell(cell_dir)
    ann = Path(ann_file) if ann_file is not None else ann
    cached = cached_records(cell_dir, metrics)
    if cached is not None:
        return cached, ann
    return evaluate_records(
        load_coco_gt(read_json(ann, required=True)), read_json(dets, required=True), metrics=metrics
    ), ann


def recipe_spread(rows: Sequence[Mapping[str, Any]]) -> SeedSpread | None:
    """The profile's measured seed spread (experiments/noise.py) if every row was trained with
    the recipe it was measured for; None otherwise."""
    profiles = {r.get("profile") for r in rows}
    iters = {_int(r.get("train_iters")) for r in rows}
    own = all(_int(r.get("iters_requested")) is None for r in rows)
    if len(profiles) != 1 or len(iters) != 1:
        return None
    entry = seed_spread(str(profiles.pop()), iters.pop())
    if entry is None or (entry.iters is None and not own):
        return None
    return entry


def _int(x: Any) -> int | None:
    try:
        return None if x is None or x != x else int(x)
    except (TypeError, ValueError):
        return None


@dataclass
class Comparison:
    """The decision for each metric of variant cell(s) minus baseline cell(s)."""

    intervals: dict[str, Interval]
    variant_values: dict[str, list[float]]
    baseline_values: dict[str, list[float]]
    n_images: int
    n_boot: int
    level: float
    spread: SeedSpread | None

    def method(self, metric: str = "AP") -> str:
        """Which rule gave the interval, in words (reports/stats/claims.py)."""
        iv = self.intervals[metric]
        kv, kb = len(self.variant_values[metric]), len(self.baseline_values[metric])
        images = f"paired bootstrap over {self.n_images} images"
        if iv.rule == "seeds":
            train = f"Welch over seeds ({kv} vs {kb})"
        elif iv.rule == "row":
            train = (f"the {'variant' if kv > 1 else 'baseline'}'s seed spread ({max(kv, kb)} "
                     "seeds) for both cells")
        elif iv.rule == "profile" and self.spread is not None:
            train = f"the profile's seed spread ({self.spread.sd[metric]:.2f} {metric})"
            if kv > 1 or kb > 1:
                train += f" over {kv} vs {kb} seeds"
        else:
            return "no interval"
        return f"rule {iv.rule}: {train} + {images}, {self.level:.0%}"


def compare_cells(variant_rows: Sequence[Mapping[str, Any]],
                  baseline_rows: Sequence[Mapping[str, Any]], results_dir: str | os.PathLike,
                  *, metrics: Sequence[str] = ("AP",), n_boot: int = 1000, seed: int = 0,
                  level: float = 0.95, spread: SeedSpread | None | bool = True) -> Comparison:
    """Variant minus baseline over every seed given of each (rows of result.json), by the claim
    rule: both noise sources, training and images. ``spread``: True looks up the profile's
    measured spread for the rows' recipe (experiments/noise.py); None or an entry overrides it.
    Raises ValueError/FileNotFoundError when the cells cannot be compared."""
    results_dir = Path(results_dir)
    if not variant_rows or not baseline_rows:
        raise ValueError("each side needs at least one done cell")
    rows = [*variant_rows, *baseline_rows]
    if spread is True:
        spread = recipe_spread(rows)
    loaded = [cell_records(results_dir / str(r["cell_key"]), metrics) for r in rows]
    anns = {a.resolve() for _, a in loaded}
    if len(anns) > 1:
        raise ValueError(f"cells were evaluated on different annotation files: "
                         f"{', '.join(map(str, sorted(anns)))}")
    recs = [r for r, _ in loaded]
    nv = len(variant_rows)
    boot = paired_bootstrap(recs[:nv], recs[nv:], n_boot=n_boot, seed=seed, level=level,
                            metrics=metrics)
    # every run's own metric from its records: the same numbers the bootstrap resamples
    per_run = [full_metrics(r, metrics) for r in recs]
    values = {side: {m: [p[m] for p in runs] for m in metrics}
              for side, runs in (("v", per_run[:nv]), ("b", per_run[nv:]))}
    intervals = {}
    for m in metrics:
        sp = (Spread(spread.sd[m], spread.dof)
              if isinstance(spread, SeedSpread) and m in spread.sd else None)
        intervals[m] = difference_interval(values["v"][m], values["b"][m], boot.samples[m], sp,
                                           level)
    return Comparison(intervals, values["v"], values["b"], boot.n_images, n_boot, level,
                      spread if isinstance(spread, SeedSpread) else None)


def measured_spread(df: Any, metrics: Sequence[str] = ("AP", "AP50", "AP75", "AR100")
                    ) -> tuple[Any, dict[str, Spread], dict[str, float]]:
    """Seed spread of the done trained cells of ``df`` (a store's rows): one row per cell
    (seeds, mean and sd of each metric), the pooled spread per metric
    (:func:`reports.stats.claims.pooled_spread`), and the largest single cell's sd."""
    import pandas as pd

    from reports.stats.claims import pooled_spread

    done = df[(df["status"] == "done") & (df["source"].fillna("trained") == "trained")]
    rows, groups = [], {m: [] for m in metrics}
    for (det, var), g in done.groupby(["detector", "variant"], sort=False):
        row = dict(detector=det, variant=var, seeds=len(g))
        for m in metrics:
            x = g[m].dropna().to_numpy(float)
            groups[m].append(x)
            row[f"{m}_mean"] = x.mean() if len(x) else np.nan
            row[f"{m}_sd"] = x.std(ddof=1) if len(x) > 1 else np.nan
        rows.append(row)
    per_cell = pd.DataFrame(rows)
    spreads = {m: pooled_spread(groups[m]) for m in metrics}
    worst = {m: float(per_cell[f"{m}_sd"].max()) for m in metrics}
    return per_cell, spreads, worst
