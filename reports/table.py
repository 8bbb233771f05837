"""The ablation table: a model (display strings + numbers) and its renderers.

``build_table`` turns the store's DataFrame into a :class:`TableModel` for one
profile: three blocks laid out like the paper (rows = detectors, columns = the
five variants): AP with the difference to the detector's baseline, latency
with the percentage over the baseline, and params/FLOPs. The model holds
strings for people and a tidy numeric frame for machines; the renderers
(terminal text, Markdown, CSV, LaTeX) only format it, so each can be checked
against the same model.

A cell that has not produced a number says why (``—`` not run, ``pending``,
``running``, ``FAILED``, ``cancelled``) and is never shown as zero.
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from reports.published import (
    LATENCY_NOTE,
    NOT_PRINTED,
    PROFILE_NOTES,
    PUBLISHED_AP,
    PUBLISHED_PROFILES,
)
from reports.schema import STATUSES, URGENCY
from reports.store import DETECTOR_NAMES, METRICS, VARIANT_NAMES, grid
from reports.summary import paired_ratios

NOT_RUN = "—"
#: How a cell with no number reads, by the status that explains it.
STATUS_TEXT: dict[str, str] = {
    "failed": "FAILED",
    "running": "running",
    "requeued": "requeued",
    "pending": "pending",
    "cancelled": "cancelled",
    "missing": NOT_RUN,
    "na": "n/a",
}
#: When seeds of one cell disagree, the status shown is the most urgent one.
_STATUS_PRIORITY = (*URGENCY, "done", "unknown")

ROW_OURS = "ours"
ROW_RELEASED = "released"
ROW_PUBLISHED = "published"
ROW_VS_PUBLISHED = "ours − pub."
ROW_RELEASED_VS_PUBLISHED = "released − pub."
SIGNIFICANT = "†"
#: What each ``latency_protocol`` of the store means (docs/results-schema.md).
LATENCY_PROTOCOLS: dict[str, str] = {
    "interleaved": "Latency (interleaved): the cells of a detector timed together after the sweep's training, "
                   "round-robin on one core with nothing else training; the percentage over the baseline is the "
                   "median of the per-round ratios (p10–p90 of the rounds in the details)",
    "per-job": "Latency (per-job): each cell's own job timed its model on its own device after training",
}


@dataclass
class Block:
    """One block of the table: display strings and a state per cell.

    ``display`` and ``states`` share an index of (detector name, row label)
    and one column per variant display name. ``states`` says what a cell is
    (``value``, ``partial``, ``reference``, ``failed``, ``pending``,
    ``running``, ``cancelled``, ``missing``, ``na``) so that a renderer can
    style it without parsing the text.
    """

    key: str
    title: str
    display: pd.DataFrame
    states: pd.DataFrame


@dataclass
class TableModel:
    """The table of one profile: blocks for people, ``numeric`` for machines."""

    profile: str
    blocks: list[Block]
    numeric: pd.DataFrame
    footnotes: list[str] = field(default_factory=list)

    def block(self, key: str) -> Block:
        """The block named ``key`` (``ap``, ``latency``, ``cost``)."""
        for b in self.blocks:
            if b.key == key:
                return b
        raise KeyError(key)


# ----------------------------------------------------------------------------- helpers


def _nan(x: Any) -> bool:
    return x is None or (isinstance(x, (float, np.floating)) and math.isnan(x)) or x is pd.NA


def _f(x: Any) -> float:
    """A float or NaN, whatever pandas handed over (NA, None, numpy scalars)."""
    try:
        return float("nan") if _nan(x) else float(x)
    except (TypeError, ValueError):
        return float("nan")


def _signed(x: float, digits: int = 1, unit: str = "") -> str:
    # "+0.0" for a true zero difference is fine; "-0.0" after rounding is not.
    s = f"{x:+.{digits}f}"
    if float(s) == 0:
        s = f"{0:+.{digits}f}"
    return s + unit


def _delta_intervals(done: pd.DataFrame, metric: str = "AP") -> tuple[dict[tuple[str, str], tuple[float, float]], str | None]:
    """95% Welch intervals of (variant - baseline) over seeds (``reports.stats.seed_deltas``),
    and why they could not be computed, if so: a failure is shown in a footnote, not dropped."""
    if done.empty or not (done.groupby(["detector", "variant"]).size() >= 2).any():
        return {}, None  # no cell has two seeds: nothing to ask for
    from reports import stats

    out: dict[tuple[str, str], tuple[float, float]] = {}
    try:
        res = stats.seed_deltas(done, metric, baseline="baseline", level=0.95, keys=["detector"])
        for r in res.itertuples(index=False):
            lo, hi = _f(r.delta_lo), _f(r.delta_hi)
            if not (math.isnan(lo) or math.isnan(hi)):
                out[(str(r.detector), str(r.variant))] = (lo, hi)
    except Exception as exc:  # noqa: BLE001 - reported in the table's footnotes
        return {}, f"{type(exc).__name__}: {exc}"
    return out, None


# ----------------------------------------------------------------------------- aggregation


def select_profile(df: pd.DataFrame, profile: str | None = None) -> pd.DataFrame:
    """Rows of ``profile`` (default: the first, see :func:`profiles`), normalised.

    Normalised means: missing source is ``trained``, missing profile
    ``unknown``, a missing status ``done`` when an AP exists (else ``unknown``),
    so that the table and the plots group the same rows the same way.
    """
    df = normalise(df)
    if profile is None:
        profs = profiles(df)
        profile = profs[0] if profs else "unknown"
    return df[df["profile"] == profile]


def normalise(df: pd.DataFrame) -> pd.DataFrame:
    """A copy with what the table groups on filled: source, status, profile (see select_profile)."""
    df = df.copy()
    for col in ("profile", "detector", "variant", "source", "status", "seed", *METRICS,
                "latency_ms", "latency_paper_ms", "params", "flops", "wall_s", "error"):
        if col not in df.columns:
            df[col] = np.nan
    df["source"] = df["source"].where(df["source"].notna(), "trained")
    df["profile"] = df["profile"].where(df["profile"].notna(), "unknown")
    status = df["status"].astype(object)
    # A row with no status but with an AP can only be a finished cell.
    df["status"] = status.where(status.notna(), np.where(df["AP"].notna(), "done", "unknown"))
    return df


@dataclass
class _Cell:
    """What the rows of one (detector, variant, source) say, aggregated over seeds."""

    counts: dict[str, int]
    #: per numeric column, the finite values of the finished seeds
    arrays: dict[str, np.ndarray]

    def values(self, col: str) -> np.ndarray:
        return self.arrays.get(col, _EMPTY)

    def mean(self, col: str) -> float:
        v = self.values(col)
        return float(v.mean()) if v.size else float("nan")

    def std(self, col: str) -> float:
        v = self.values(col)
        return float(v.std(ddof=1)) if v.size >= 2 else float("nan")

    def median(self, col: str) -> float:
        v = self.values(col)
        return float(np.median(v)) if v.size else float("nan")

    @property
    def status(self) -> str:
        """``done``; ``partial`` when some seeds finished and others did not; else the most urgent."""
        if self.counts.get("done"):
            return "partial" if self.others() else "done"
        for s in _STATUS_PRIORITY:
            if self.counts.get(s):
                return s
        return "unknown"

    def state_without(self, col: str) -> str:
        """The state of a cell that has no number for ``col``: why it is empty."""
        if self.counts.get("done"):
            return "na"  # finished, but this quantity was not measured
        for s in _STATUS_PRIORITY:
            if self.counts.get(s) and s not in ("done", "unknown"):
                return s
        return "na"

    def others(self) -> str:
        """'1 failed, 1 running' for the seeds that have not finished."""
        parts = [f"{self.counts[s]} {s}" for s in (*URGENCY, "unknown") if self.counts.get(s)]
        return ", ".join(parts)


_EMPTY = np.empty(0)
_NONE = pd.DataFrame()
_NUMERIC = (*METRICS, "latency_ms", "latency_paper_ms", "params", "flops", "wall_s")


def _cells(df: pd.DataFrame) -> dict[tuple[str, str, str], _Cell]:
    """Group once, with numpy: a store of 1,500 rows must not cost 1,500 DataFrame filters."""
    out: dict[tuple[str, str, str], _Cell] = {}
    if df.empty:
        return out
    num = np.column_stack([pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=float) for c in _NUMERIC])
    status = df["status"].astype(str).to_numpy()
    done = status == "done"
    keys = df[["detector", "variant", "source"]].astype(str)
    for key, idx in keys.groupby(list(keys.columns), sort=False).indices.items():
        st, counts = np.unique(status[idx], return_counts=True)
        d = num[idx[done[idx]]]
        arrays = {c: d[~np.isnan(d[:, j]), j] for j, c in enumerate(_NUMERIC)}
        out[tuple(key)] = _Cell(counts={str(a): int(b) for a, b in zip(st, counts)}, arrays=arrays)  # type: ignore[index]
    return out


class _Grid:
    """Cells filled one by one (``g.loc[(det, row), col] = text``), turned into a frame once:
    a DataFrame's .loc setitem costs ~100 us, and a store of many profiles sets thousands."""

    def __init__(self, rows: list[tuple[str, str]], cols: list[str]) -> None:
        self.rows, self.cols = rows, cols
        self.data: dict[tuple[tuple[str, str], str], str] = {}
        self.loc = self

    def __setitem__(self, key: tuple[tuple[str, str], str], value: str) -> None:
        self.data[key] = value

    def __getitem__(self, key: tuple[tuple[str, str], str]) -> str:
        return self.data.get(key, "")

    def frame(self) -> pd.DataFrame:
        idx = pd.MultiIndex.from_tuples(self.rows, names=["Detector", "Row"])
        values = [[self.data.get((r, c), "") for c in self.cols] for r in self.rows]
        return pd.DataFrame(values, index=idx, columns=self.cols, dtype=object)


# ----------------------------------------------------------------------------- model


def profiles(df: pd.DataFrame) -> list[str]:
    """Profiles present, ``paper``, ``paper-modern`` and ``smoke`` first, then the rest by name."""
    if "profile" not in df.columns or df.empty:
        return []
    found = {p if isinstance(p, str) else "unknown" for p in df["profile"]}
    first = [p for p in ("paper", "paper-modern", "smoke") if p in found]
    return [*first, *sorted(found - set(first))]


def build_tables(df: pd.DataFrame) -> list[TableModel]:
    """One :class:`TableModel` per profile in ``df`` (an empty store gives one empty table)."""
    profs = profiles(df)
    if not profs:
        return [build_table(df, profile="unknown")]
    df = normalise(df)
    groups = df.groupby("profile", sort=False).indices
    return [build_table(df.iloc[groups[p]], profile=p) for p in profs]


def build_table(df: pd.DataFrame, profile: str | None = None) -> TableModel:
    """The paper-layout table of ``profile`` (default: the only or first profile).

    Deltas are differences of seed means to the same detector's and source's
    baseline; latency is the median over seeds with the percentage over the
    baseline's median; the COCO profiles (``PUBLISHED_PROFILES``) also get the
    published AP and ours minus published.
    """
    df = normalise(df)
    if profile is None:
        profs = profiles(df)
        profile = profs[0] if profs else "unknown"
    df = df[df["profile"] == profile]
    detectors = grid(df["detector"], "detector")
    variants = grid(df["variant"], "variant")
    cells = _cells(df)
    done_trained = df[(df["source"] == "trained") & (df["status"] == "done")]
    intervals, interval_error = _delta_intervals(done_trained)
    by_variant = dict(iter(done_trained.groupby(["detector", "variant"], sort=False))) if "latency_group" in df else {}
    has_released = {d for (d, _v, s) in cells if s == "released"}
    published = profile in PUBLISHED_PROFILES
    vnames = [VARIANT_NAMES.get(v, v) for v in variants]
    footnotes: list[str] = []
    any_interval = False
    any_partial = False

    def frame(rows: list[tuple[str, str]]) -> _Grid:
        return _Grid(rows, vnames)

    # ---- numbers, one record per detector x variant
    records: list[dict[str, Any]] = []
    for d in detectors:
        base = cells.get((d, "baseline", "trained"))
        base_rel = cells.get((d, "baseline", "released"))
        for v in variants:
            c = cells.get((d, v, "trained"))
            r = cells.get((d, v, "released"))
            rec: dict[str, Any] = {
                "profile": profile,
                "detector": d,
                "variant": v,
                "detector_name": DETECTOR_NAMES.get(d, d),
                "variant_name": VARIANT_NAMES.get(v, v),
                "status": c.status if c else "not run",
                "n_seeds": int(c.values("AP").size) if c else 0,
            }
            for s in STATUSES:
                rec[f"n_{s}"] = int(c.counts.get(s, 0)) if c else 0
            for m in METRICS:
                rec[m] = c.mean(m) if c else np.nan
            rec["AP_std"] = c.std("AP") if c else np.nan
            for m in ("AP", "APs", "APm", "APl"):
                rec[f"{m}_delta"] = (rec[m] - base.mean(m)) if (c and base) else np.nan
            rec["AP_delta_low"] = rec["AP_delta_high"] = np.nan
            rec["AP_delta_significant"] = pd.NA
            if c and base and v != "baseline" and c.values("AP").size >= 2 and base.values("AP").size >= 2:
                ci = intervals.get((d, v))
                if ci:
                    rec["AP_delta_low"], rec["AP_delta_high"] = ci
                    rec["AP_delta_significant"] = bool(ci[0] > 0 or ci[1] < 0)
                    any_interval = True
            lat = c.median("latency_ms") if c else np.nan
            lat_b = base.median("latency_ms") if base else np.nan
            rec["latency_ms"] = lat
            rec["latency_pct"] = (lat / lat_b - 1) * 100 if lat_b > 0 else np.nan
            # Timed in the same interleaved rounds: the median of the per-round ratios, which a
            # load change between rounds cannot move as it moves the two medians.
            ratios = paired_ratios(by_variant.get((d, v), _NONE), by_variant.get((d, "baseline"), _NONE)) if c and base else []
            rec["latency_pct_paired"] = bool(ratios)
            if ratios:
                rec["latency_pct"] = (float(np.median(ratios)) - 1) * 100
            lp = c.median("latency_paper_ms") if c else np.nan
            lp_b = base.median("latency_paper_ms") if base else np.nan
            rec["latency_paper_ms"] = lp
            rec["latency_paper_pct"] = (lp / lp_b - 1) * 100 if lp_b > 0 else np.nan
            rec["params_M"] = c.median("params") / 1e6 if c else np.nan
            rec["flops_G"] = c.median("flops") / 1e9 if c else np.nan
            rec["params_M_delta"] = rec["params_M"] - (base.median("params") / 1e6 if base else np.nan)
            rec["flops_G_delta"] = rec["flops_G"] - (base.median("flops") / 1e9 if base else np.nan)
            rec["wall_s"] = c.mean("wall_s") if c else np.nan
            rec["released_status"] = r.status if r else "not run"
            rec["released_AP"] = r.mean("AP") if r else np.nan
            rec["released_AP_delta"] = (rec["released_AP"] - base_rel.mean("AP")) if (r and base_rel) else np.nan
            for col in ("latency_ms", "latency_paper_ms"):
                val = r.median(col) if r else np.nan
                val_b = base_rel.median(col) if base_rel else np.nan
                rec[f"released_{col}"] = val
                rec[f"released_{col[:-3]}_pct"] = (val / val_b - 1) * 100 if val_b > 0 else np.nan
            pub = PUBLISHED_AP.get((d, v), np.nan) if published else np.nan
            rec["published_AP"] = pub
            rec["published_AP_delta"] = pub - PUBLISHED_AP.get((d, "baseline"), np.nan) if published else np.nan
            rec["published_note"] = NOT_PRINTED[(d, v)][1] if published and (d, v) in NOT_PRINTED else ""
            rec["AP_minus_published"] = rec["AP"] - pub
            rec["released_AP_minus_published"] = rec["released_AP"] - pub
            records.append(rec)
    numeric = pd.DataFrame.from_records(records)
    num = {(r["detector"], r["variant"]): r for r in records}

    # ---- AP block
    ap_rows: list[tuple[str, str]] = []
    for d in detectors:
        dn = DETECTOR_NAMES.get(d, d)
        ap_rows.append((dn, ROW_OURS))
        if d in has_released:
            ap_rows.append((dn, ROW_RELEASED))
        if published:
            ap_rows += [(dn, ROW_PUBLISHED), (dn, ROW_VS_PUBLISHED)]
            if d in has_released:
                ap_rows.append((dn, ROW_RELEASED_VS_PUBLISHED))
    ap, ap_st = frame(ap_rows), frame(ap_rows)

    def ap_text(c: _Cell | None, base: _Cell | None, v: str, rec: dict[str, Any] | None) -> tuple[str, str]:
        nonlocal any_partial
        if c is None:
            return NOT_RUN, "missing"
        vals = c.values("AP")
        if not vals.size:
            st = c.state_without("AP")
            return STATUS_TEXT[st], st
        mean = float(vals.mean())
        text = f"{mean:.1f}"
        if vals.size >= 2:
            text += f" ± {vals.std(ddof=1):.2f}"
        if v != "baseline" and base is not None and base.values("AP").size:
            sig = ""
            if rec is not None and rec.get("AP_delta_significant") is True:
                sig = SIGNIFICANT
            text += f" ({_signed(mean - float(base.values('AP').mean()))}{sig})"
        if vals.size >= 2:
            text += f" n={vals.size}"
        state = "value"
        if c.others():
            text += f" [{c.others()}]"
            state = "partial"
            any_partial = True
        return text, state

    for d in detectors:
        dn = DETECTOR_NAMES.get(d, d)
        for v, vn in zip(variants, vnames):
            rec = num[(d, v)]
            ap.loc[(dn, ROW_OURS), vn], ap_st.loc[(dn, ROW_OURS), vn] = ap_text(
                cells.get((d, v, "trained")), cells.get((d, "baseline", "trained")), v, rec)
            if d in has_released:
                ap.loc[(dn, ROW_RELEASED), vn], ap_st.loc[(dn, ROW_RELEASED), vn] = ap_text(
                    cells.get((d, v, "released")), cells.get((d, "baseline", "released")), v, None)
            if published:
                pub = PUBLISHED_AP.get((d, v))
                if pub is None:
                    ap.loc[(dn, ROW_PUBLISHED), vn], ap_st.loc[(dn, ROW_PUBLISHED), vn] = NOT_RUN, "missing"
                else:
                    mark = NOT_PRINTED.get((d, v), ("", ""))[0]
                    text = f"{pub:.1f}{mark}"
                    pb = PUBLISHED_AP.get((d, "baseline"))
                    if v != "baseline" and pb is not None:
                        text += f" ({_signed(pub - pb)})"
                    ap.loc[(dn, ROW_PUBLISHED), vn], ap_st.loc[(dn, ROW_PUBLISHED), vn] = text, "reference"
                for row, mine, col in ((ROW_VS_PUBLISHED, ROW_OURS, "AP_minus_published"),
                                       (ROW_RELEASED_VS_PUBLISHED, ROW_RELEASED, "released_AP_minus_published")):
                    if row == ROW_RELEASED_VS_PUBLISHED and d not in has_released:
                        continue
                    diff = rec[col]
                    if _nan(diff):  # no number: say why, as the row it is computed from does
                        ap.loc[(dn, row), vn] = ap.loc[(dn, mine), vn] if pub is not None else NOT_RUN
                        ap_st.loc[(dn, row), vn] = ap_st.loc[(dn, mine), vn] if pub is not None else "missing"
                    else:
                        ap.loc[(dn, row), vn] = _signed(diff)
                        ap_st.loc[(dn, row), vn] = "value"

    blocks = [Block("ap", "COCO box AP (difference to the detector's baseline)", ap.frame(), ap_st.frame())]

    # ---- latency block (released checkpoints get rows of their own)
    has_paper_lat = numeric["latency_paper_ms"].notna().any() or numeric["released_latency_paper_ms"].notna().any()
    lat_specs = [("model step", "trained", "latency_ms", "latency_pct")]
    if has_paper_lat:
        lat_specs.append(("paper protocol", "trained", "latency_paper_ms", "latency_paper_pct"))
    lat_specs += [(f"{ROW_RELEASED}: {row}", "released", f"released_{col}", f"released_{pct}")
                  for row, _src, col, pct in list(lat_specs)]
    lat_rows = [(DETECTOR_NAMES.get(d, d), row) for d in detectors for row, src, _c, _p in lat_specs
                if src == "trained" or d in has_released]
    lat, lat_st = frame(lat_rows), frame(lat_rows)
    for d in detectors:
        dn = DETECTOR_NAMES.get(d, d)
        for v, vn in zip(variants, vnames):
            rec = num[(d, v)]
            for row, src, col, pct in lat_specs:
                if src == "released" and d not in has_released:
                    continue
                c = cells.get((d, v, src))
                if c is None:
                    text, st = NOT_RUN, "missing"
                elif _nan(rec[col]):
                    st = c.state_without(col)
                    text = STATUS_TEXT[st]
                else:
                    text = f"{rec[col]:.1f} ms"
                    if v != "baseline" and not _nan(rec[pct]):
                        text += f" ({_signed(rec[pct], 1, '%')})"
                    st = "value"
                lat.loc[(dn, row), vn], lat_st.loc[(dn, row), vn] = text, st
    blocks.append(Block("latency", "Latency, median over seeds (percentage over the baseline; paired per round when timed interleaved)",
                        lat.frame(), lat_st.frame()))

    # ---- cost block
    cost_rows = []
    for d in detectors:
        dn = DETECTOR_NAMES.get(d, d)
        cost_rows += [(dn, "params (M)"), (dn, "FLOPs (G)")]
    cost, cost_st = frame(cost_rows), frame(cost_rows)
    for d in detectors:
        dn = DETECTOR_NAMES.get(d, d)
        for v, vn in zip(variants, vnames):
            c = cells.get((d, v, "trained"))
            rec = num[(d, v)]
            for row, col in (("params (M)", "params_M"), ("FLOPs (G)", "flops_G")):
                digits = 2 if abs(_f(rec[col])) < 100 else 1
                if c is None:
                    text, st = NOT_RUN, "missing"
                elif _nan(rec[col]):
                    st = c.state_without(col)
                    text = STATUS_TEXT[st]
                else:
                    text = f"{rec[col]:.{digits}f}"
                    if v != "baseline" and not _nan(rec[f"{col}_delta"]):
                        text += f" ({_signed(rec[f'{col}_delta'], digits)})"
                    st = "value"
                cost.loc[(dn, row), vn], cost_st.loc[(dn, row), vn] = text, st
    blocks.append(Block("cost", "Parameters (M) and FLOPs (G) of one forward (difference to the baseline)",
                        cost.frame(), cost_st.frame()))

    # ---- footnotes
    if profile in PROFILE_NOTES:
        footnotes.append(PROFILE_NOTES[profile] + ".")
    if (numeric["n_seeds"] >= 2).any():
        footnotes.append("mean ± sample std over seeds, n = number of seeds; differences are differences of means.")
    if any_interval:
        footnotes.append(f"{SIGNIFICANT} the 95% Welch interval over seeds of the difference to the baseline excludes 0.")
    protocols = set(df.loc[df["status"] == "done", "latency_protocol"].dropna()) if "latency_protocol" in df else set()
    for proto in sorted(protocols):
        footnotes.append(LATENCY_PROTOCOLS.get(proto, f"latency protocol {proto!r}") + ".")
    if interval_error:
        footnotes.append(f"The intervals over seeds could not be computed ({interval_error}): no difference is marked.")
    if any_partial:
        footnotes.append("[k failed, ...]: seeds of the cell without a result; the number is over the finished seeds only.")
    if published:
        for (d, v), (mark, note) in NOT_PRINTED.items():
            if d in detectors and v in variants:
                footnotes.append(f"{mark} {DETECTOR_NAMES.get(d, d)} {VARIANT_NAMES.get(v, v)}, published: {note}.")
        footnotes.append("published: COCO val2017 box AP, R-50-FPN, 1x (SEPC, CVPR 2020); "
                         "ours − pub.: our AP minus the published AP.")
        footnotes.append(LATENCY_NOTE + ".")
    if has_released:
        footnotes.append("released: the authors' mmdet-1.1 checkpoints, converted and evaluated by this harness "
                         "with mmdet 1.x's anchors, box coders and NMS (no training); differences to their baseline "
                         "only where a released baseline exists."
                         + (" released − pub.: their AP here minus the published AP." if published else ""))
    footnotes.append(f"{NOT_RUN} not run (no result); pending/running/requeued: not finished; FAILED/cancelled: see the sweep status.")
    return TableModel(profile=profile, blocks=blocks, numeric=numeric, footnotes=footnotes)


# ----------------------------------------------------------------------------- renderers


def _block_rows(block: Block) -> list[list[str]]:
    """Rows as lists of strings, the detector name only on its group's first row."""
    out: list[list[str]] = []
    last = None
    for (det, row), values in block.display.iterrows():
        out.append([det if det != last else "", row, *[str(x) for x in values]])
        last = det
    return out


def render_text(model: TableModel) -> str:
    """A plain aligned text table for the terminal (one section per block)."""
    header = ["Detector", "", *model.blocks[0].display.columns] if model.blocks else []
    sections: list[tuple[str, list[list[str]]]] = [(b.title, _block_rows(b)) for b in model.blocks]
    widths = [len(h) for h in header]
    for _t, rows in sections:
        for r in rows:
            widths = [max(w, len(x)) for w, x in zip(widths, r)]
    total = sum(widths) + 2 * (len(widths) - 1)

    def line(r: list[str]) -> str:
        cells = [x.ljust(w) if i < 2 else x.rjust(w) for i, (x, w) in enumerate(zip(r, widths))]
        return "  ".join(cells).rstrip()

    out = [f"SEPC ablation — profile {model.profile}", "=" * total]
    for title, rows in sections:
        out += ["", title, "-" * total, line(header), "-" * total]
        out += [line(r) for r in rows]
    if model.footnotes:
        out += ["", *model.footnotes]
    return "\n".join(out) + "\n"


def _md_escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace("|", "\\|").replace("*", "\\*").replace("_", "\\_").replace("\n", " ")


def render_markdown(model: TableModel) -> str:
    """GitHub Markdown: one pipe table per block, footnotes as a list."""
    out = [f"## SEPC ablation — profile `{model.profile.replace('`', '')}`", ""]
    for b in model.blocks:
        cols = ["Detector", "", *b.display.columns]
        out += [f"**{_md_escape(b.title)}**", ""]
        out.append("| " + " | ".join(_md_escape(c) for c in cols) + " |")
        out.append("|" + "|".join([":---", ":---", *["---:"] * (len(cols) - 2)]) + "|")
        for r in _block_rows(b):
            out.append("| " + " | ".join(_md_escape(x) for x in r) + " |")
        out.append("")
    out += [f"- {_md_escape(f)}" for f in model.footnotes]
    return "\n".join(out) + "\n"


def render_csv(models: TableModel | list[TableModel]) -> str:
    """Tidy CSV: one row per profile x detector x variant, numbers as numbers."""
    ms = [models] if isinstance(models, TableModel) else models
    frame = pd.concat([m.numeric for m in ms], ignore_index=True) if ms else pd.DataFrame()
    buf = io.StringIO()
    frame.to_csv(buf, index=False, float_format="%.6g", lineterminator="\n")
    return buf.getvalue()


_TEX_MAP = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "±": r"$\pm$",
    "—": "---",
    "−": "$-$",
    "Δ": r"$\Delta$",
    "†": r"$^\dagger$",
    "\n": " ",
}
_TEX_RE = re.compile("|".join(re.escape(k) for k in _TEX_MAP))


def latex_escape(s: str) -> str:
    """Escape LaTeX's special characters and map the table's Unicode signs."""
    return _TEX_RE.sub(lambda m: _TEX_MAP[m.group(0)], str(s))


def render_latex(model: TableModel) -> str:
    """A booktabs ``table`` (needs ``\\usepackage{booktabs}``), all strings escaped."""
    ncol = len(model.blocks[0].display.columns) if model.blocks else 0
    cols = ["Detector", "", *(model.blocks[0].display.columns if model.blocks else [])]
    out = [
        r"\begin{table}[t]",
        r"\centering",
        r"\small",
        r"\begin{tabular}{ll" + "r" * ncol + "}",
        r"\toprule",
        " & ".join(latex_escape(c) for c in cols) + r" \\",
    ]
    for b in model.blocks:
        out.append(r"\midrule")
        out.append(rf"\multicolumn{{{ncol + 2}}}{{l}}{{\emph{{{latex_escape(b.title)}}}}} \\")
        out.append(r"\midrule")
        for r in _block_rows(b):
            out.append(" & ".join(latex_escape(x) for x in r) + r" \\")
    out.append(r"\bottomrule")
    out.append(r"\end{tabular}")
    notes = " ".join(latex_escape(f) for f in model.footnotes)
    out.append(rf"\caption{{SEPC ablation, profile {latex_escape(model.profile)}. {notes}}}")
    out.append(rf"\label{{tab:sepc-{re.sub(r'[^A-Za-z0-9-]', '-', model.profile)}}}")
    out.append(r"\end{table}")
    return "\n".join(out) + "\n"
