"""The report's summary: what a reader may conclude from the sweep, and nothing more.

One line per detector x variant against the detector's baseline. A difference is claimed only
where its interval excludes zero:

- AP: the claim rule of reports/stats/claims.py (docs/statistics.md), through
  :func:`reports.compare.compare_cells`, the same call ``bench compare`` makes: the interval
  covers the training's noise (the cells' own seeds, a row's seeds, or the profile's measured
  seed spread) and the evaluation images' sampling (paired image bootstrap). With one seed and
  no measured spread for the recipe, nothing is claimed, and the line says why.
- latency: when both cells were timed in the same interleaved rounds (``latency_group``), the
  p10-p90 of the per-round ratios variant / baseline; otherwise (each job timed on its own) the
  widest ratio the two cells' own p10-p90 spreads allow.

Otherwise the line says "no resolvable difference at this budget", with the interval. A
statistic that cannot be computed says why in place of a claim: a failure is shown, never
turned into silence or a number. The per-cell table keeps every number whatever this says.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from experiments.noise import SeedSpread
from reports.store import DETECTOR_NAMES, VARIANT_NAMES

NO_DIFFERENCE = "no resolvable difference at this budget"
LEVEL = 0.95
N_BOOT = 1000


@dataclass
class Finding:
    """One quantity's difference to the baseline: point, interval and how it was obtained."""

    quantity: str  # "AP" (difference in AP points) or "latency" (ratio - 1, in percent)
    point: float = math.nan
    lo: float = math.nan
    hi: float = math.nan
    method: str = ""
    error: str | None = None  # the statistic failed (shown as such)
    unclaimed: str | None = None  # by design no interval: why (e.g. one seed, no spread)

    @property
    def resolved(self) -> bool:
        """The interval excludes zero: a difference the statistics support."""
        return self.error is None and self.unclaimed is None and (self.lo > 0 or self.hi < 0)

    def _fmt(self, x: float) -> str:
        return f"{x:+.1f}" + ("%" if self.quantity == "latency" else "")

    def _interval(self) -> str:
        return f"{self._fmt(self.point)} [{self._fmt(self.lo)}, {self._fmt(self.hi)}]"

    def short(self) -> str:
        """The claim with its interval, or why there is none; the method is said elsewhere."""
        if self.error is not None:
            return f"interval not available ({self.error})"
        if self.unclaimed is not None:
            return f"no claim ({self._fmt(self.point)}: {self.unclaimed})"
        return self._interval() if self.resolved else f"{NO_DIFFERENCE} ({self._interval()})"

    def text(self) -> str:
        if self.error is not None or self.unclaimed is not None:
            return f"{self.quantity}: {self.short()}"
        if self.resolved:
            return f"{self.quantity} {self._interval()} ({self.method})"
        return f"{self.quantity}: {NO_DIFFERENCE} ({self._interval()}, {self.method})"


@dataclass
class Headline:
    profile: str
    detector: str
    variant: str
    ap: Finding
    latency: Finding
    spread: SeedSpread | None = None  # the profile's seed spread, where the AP rule used it

    def text(self) -> str:
        return (f"{DETECTOR_NAMES.get(self.detector, self.detector)} "
                f"{VARIANT_NAMES.get(self.variant, self.variant)}: {self.ap.text()}; "
                f"{self.latency.text()}")


def _ap_finding(results_dir: Path, var: pd.DataFrame, base: pd.DataFrame,
                spread: SeedSpread | None | bool = True) -> tuple[Finding, SeedSpread | None]:
    """AP difference of ``var`` to ``base`` (done rows of one detector, one variant each, every
    seed), by the claim rule; and the profile spread it used, if it did."""
    from reports.compare import compare_cells

    f = Finding("AP")
    try:
        c = compare_cells(var.to_dict("records"), base.to_dict("records"), results_dir,
                          n_boot=N_BOOT, level=LEVEL, spread=spread)
        iv = c.intervals["AP"]
        f.point, f.lo, f.hi = iv.point, iv.lo, iv.hi
        if iv.rule is None:
            f.unclaimed = iv.why
        f.method = c.method("AP")
        if iv.rule and not all(math.isfinite(x) for x in (f.point, f.lo, f.hi)):
            raise ValueError("the interval is undefined (too few values)")
        return f, (c.spread if iv.rule == "profile" else None)
    except Exception as exc:  # noqa: BLE001 - shown in the summary in place of a claim
        f.error = f"{type(exc).__name__}: {exc}"
    return f, None


def _rounds(x) -> list[float] | None:
    if isinstance(x, str):
        x = json.loads(x)
    return [float(t) for t in x] if isinstance(x, list) and x else None


def paired_ratios(var: pd.DataFrame, base: pd.DataFrame) -> list[float]:
    """Per-round model-step ratios variant / baseline, over the seeds whose two cells were timed
    in the same interleaved rounds (``latency_group``); empty when none were."""
    ratios: list[float] = []
    if var.empty or base.empty or "latency_group" not in base:
        return ratios
    for _, v in var.iterrows():
        b = base[base["seed"] == v["seed"]]
        if b.empty:
            continue
        b = b.iloc[0]
        rv, rb = _rounds(v.get("latency_rounds_ms")), _rounds(b.get("latency_rounds_ms"))
        same = (isinstance(v.get("latency_group"), str)
                and v.get("latency_group") == b.get("latency_group"))
        if same and rv and rb and len(rv) == len(rb):
            ratios += [x / y for x, y in zip(rv, rb)]
    return ratios


def _latency_finding(var: pd.DataFrame, base: pd.DataFrame) -> Finding:
    """Latency ratio of ``var`` to ``base`` - 1, in percent."""
    f = Finding("latency")
    try:
        ratios = paired_ratios(var, base)
        if ratios:
            p10, p50, p90 = np.percentile(ratios, [10, 50, 90])
            f.method = f"p10–p90 of {len(ratios)} interleaved rounds"
        else:  # timed apart (per job): only the spreads of the two medians
            v, b = var.iloc[0], base.iloc[0]
            cols = ("latency_ms", "latency_p10_ms", "latency_p90_ms")
            vals = [float(v[c]) for c in cols] + [float(b[c]) for c in cols]
            if not all(math.isfinite(x) and x > 0 for x in vals):
                raise ValueError("no latency measured")
            p50, p10, p90 = vals[0] / vals[3], vals[1] / vals[5], vals[2] / vals[4]
            f.method = "ratio of medians, interval from each cell's own p10–p90 (timed apart)"
        f.point, f.lo, f.hi = (100 * (p50 - 1), 100 * (p10 - 1), 100 * (p90 - 1))
    except Exception as exc:  # noqa: BLE001 - shown in the summary in place of a claim
        f.error = f"{type(exc).__name__}: {exc}"
    return f


def headlines(df: pd.DataFrame, results_dir: str | Path, profile: str,
              spread: SeedSpread | None | bool = True) -> list[Headline]:
    """The summary lines of one profile's trained cells (``df``: the store, normalised).
    ``spread``: True takes the profile's measured seed spread for the recipe
    (experiments/noise.py); None (no spread) or an entry overrides it."""
    results_dir = Path(results_dir)
    done = df[(df["profile"] == profile) & (df["source"] == "trained") & (df["status"] == "done")
              & df["AP"].notna()]
    out = []
    for det in done["detector"].drop_duplicates():
        rows = done[done["detector"] == det]
        base = rows[rows["variant"] == "baseline"]
        if base.empty:
            continue
        for var in rows["variant"].drop_duplicates():
            if var == "baseline":
                continue
            v = rows[rows["variant"] == var]
            ap, used = _ap_finding(results_dir, v, base, spread)
            out.append(Headline(profile, str(det), str(var), ap, _latency_finding(v, base), used))
    return out


def render_summary_text(lines: list[Headline]) -> str:
    """The headlines for the terminal, after the table."""
    if not lines:
        return ""
    from reports.comparable import confirmable_lines

    spreads = dict.fromkeys(h.spread for h in lines if h.spread is not None)
    noise = "".join(f"Training noise of one seed: {s.describe()}.\n" for s in spreads)
    noise += "".join(f"{line}\n" for line in confirmable_lines(lines[0].profile))
    return ("\nSummary (a difference only where its interval, training noise and image sampling "
            f"both, excludes zero; otherwise {NO_DIFFERENCE}):\n"
            + "".join(f"- {h.text()}\n" for h in lines) + noise)
