"""The ablation table: a model of structured entries, and its renderers.

``build_table`` turns the store's DataFrame into a :class:`TableModel` for one
profile: three blocks laid out like the paper (rows = detectors, columns = the
five variants): AP with the difference to the detector's baseline, latency
with the percentage over the baseline, and params/FLOPs. Each cell is an
:class:`Entry` that carries its numbers (value, spread over seeds, n, the
difference to the baseline and its interval) or the status that explains why
there is none; ``numeric`` is the same table as a tidy frame for machines.
Every renderer (terminal text, Markdown, CSV, LaTeX here, HTML in
reports/html.py) formats entries through :func:`entry_parts`, so the strings
come from one place and none is parsed back into numbers.

A cell that has not produced a number says why (``—`` not run, ``pending``,
``running``, ``FAILED``, ``cancelled``; ``n/a`` where the variant does not apply to the
detector) and is never shown as zero. A published gain without a published AP (the paper's
"~2AP" for its two-stage claim) reads as that gain, marked approximate.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from reports.comparable import (
    LATENCY_NOTE,
    NOT_PRINTED,
    PROFILE_NOTES,
    PUBLISHED_AP,
    PUBLISHED_AP_GAIN,
    PUBLISHED_PROFILES,
)
from reports.schema import LATENCY_INTERLEAVED, LATENCY_PER_JOB, STATUSES, URGENCY
from reports.store import DETECTOR_NAMES, METRICS, VARIANT_NAMES, applies, grid
from reports.summary import paired_ratios

NOT_RUN = "—"
#: How a cell with no number reads, by the status that explains it.
STATUS_TEXT: dict[str, str] = {
    "failed": "FAILED",
    "running": "running",
    "requeued": "requeued",
    "pending": "pending",
    "cancelled": "cancelled",
    "untimed": "to be timed",  # a local sweep times its cells together once none trains
    "missing": NOT_RUN,
    "na": "n/a",
    "inapplicable": "n/a",  # the variant does not apply to the detector (experiments/matrix.py)
}
#: The status of a (detector, variant) the matrix has no cell for, in the numeric table.
INAPPLICABLE = "does not apply"
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
    LATENCY_INTERLEAVED: "Latency (interleaved): the cells of a detector timed together after "
                         "the sweep's training, round-robin on one core with nothing else "
                         "training; the percentage over the baseline is the median of the "
                         "per-round ratios (p10–p90 of the rounds in the details)",
    LATENCY_PER_JOB: "Latency (per-job): each cell's own job timed its model on its own device "
                     "after training",
}


@dataclass(frozen=True)
class Entry:
    """One cell of a block: a number with what qualifies it, or why there is none.

    ``state`` is ``value``, ``partial`` (some seeds without a result, named in
    ``note``), ``reference`` (a published number), or, without a number, the
    status that explains it (a key of :data:`STATUS_TEXT`). Renderers style
    by these fields and format through :func:`entry_parts`.
    """

    state: str
    value: float | None = None
    digits: int = 1  # of the value and of its delta
    unit: str = ""  # after the value: "ms"
    signed: bool = False  # the value is itself a difference ("+0.2")
    mark: str = ""  # footnote mark of a published value ("*")
    approx: bool = False  # a published value given as approximate ("~+2")
    std: float | None = None  # sample std over the n seeds (n >= 2)
    n: int = 0  # seeds behind a mean; 0 where the value is not one (shown from 2 on)
    delta: float | None = None  # difference to the detector's baseline
    delta_unit: str = ""  # "%": relative to the baseline
    delta_lo: float | None = None  # the delta's 95% interval over seeds, where there is one
    delta_hi: float | None = None
    significant: bool = False  # that interval excludes 0
    note: str = ""  # the seeds without a result: "1 failed, 1 running"


class Parts(NamedTuple):
    """An entry's text in the pieces a renderer may style apart (the empty ones absent)."""

    main: str  # "38.6 ± 0.12", "41.3 ms", "35.6*", "+0.1", "FAILED"
    delta: str  # "(+2.8†)", "(+6.3%)"
    n: str  # "n=3"
    note: str  # "[1 failed]"
    negative: bool  # the delta, as printed, is below zero


def entry_parts(e: Entry) -> Parts:
    """The one formatting of an entry, shared by every renderer."""
    if e.value is None:
        return Parts(STATUS_TEXT[e.state], "", "", "", False)
    main = _signed(e.value, e.digits) if e.signed else f"{e.value:.{e.digits}f}"
    main = ("~" if e.approx else "") + main + (f" {e.unit}" if e.unit else "") + e.mark
    seeds = e.n >= 2 and e.std is not None
    if seeds:
        main += f" ± {e.std:.2f}"
    delta = ""
    if e.delta is not None:
        delta = (
            f"({_signed(e.delta, e.digits, e.delta_unit)}{SIGNIFICANT if e.significant else ''})"
        )
    return Parts(main, delta, f"n={e.n}" if seeds else "", f"[{e.note}]" if e.note else "",
                 e.delta is not None and _rounded(e.delta, e.digits) < 0)


def entry_text(e: Entry) -> str:
    """An entry as plain text: what the text, Markdown and LaTeX tables print."""
    p = entry_parts(e)
    return " ".join(x for x in (p.main, p.delta, p.n, p.note) if x)


@dataclass(frozen=True)
class Block:
    """One block of the table: an :class:`Entry` per cell.

    ``entries`` is indexed by (detector name, row label), one column per
    variant display name. ``display`` and ``states`` are derived views (the
    text of each entry, its state) for readers that want strings.
    """

    key: str
    title: str
    entries: pd.DataFrame

    @property
    def display(self) -> pd.DataFrame:
        """Each entry's text (:func:`entry_text`)."""
        return self.entries.map(entry_text)

    @property
    def states(self) -> pd.DataFrame:
        """Each entry's state: ``value``, ``partial``, ``reference``, ``failed``, ``missing``,
        ..."""
        return self.entries.map(lambda e: e.state)


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


def _num(x: Any) -> float | None:
    """A float, or None for no number (NaN, NA, None); anything else that is not a number raises."""
    return None if _nan(x) else float(x)


def _rounded(x: float, digits: int) -> float:
    """``x`` as printed: "-0.0" after rounding is a zero, not a fall."""
    return float(f"{x:.{digits}f}") + 0.0


def _signed(x: float, digits: int = 1, unit: str = "") -> str:
    return f"{_rounded(x, digits):+.{digits}f}{unit}"


def _delta_intervals(claims: Mapping[tuple[str, str], Any] | None
                     ) -> tuple[dict[tuple[str, str], tuple[float, float, bool]], list[str]]:
    """The summary's AP intervals (reports/summary.py, the claim rule) by (detector, variant):
    (low, high, claimed), and the failures among them. The table marks what the summary claims
    and nothing else; a cell the rule gives no interval (one seed without a measured spread, a
    failed statistic) gets none, and a failure is named in a footnote, never dropped."""
    out: dict[tuple[str, str], tuple[float, float, bool]] = {}
    failed = []
    for (d, v), f in (claims or {}).items():
        if f.error is not None:
            failed.append(f"{DETECTOR_NAMES.get(d, d)} {VARIANT_NAMES.get(v, v)} ({f.error})")
        elif f.unclaimed is None and np.isfinite([f.lo, f.hi]).all():
            out[(d, v)] = (float(f.lo), float(f.hi), bool(f.resolved))
    return out, failed


# ----------------------------------------------------------------------------- aggregation


def select_profile(df: pd.DataFrame, profile: str | None = None) -> pd.DataFrame:
    """Rows of ``profile`` (default: the first, see :func:`profiles`), normalised.

    Normalised means: missing source is ``trained``, missing profile
    ``unknown``, a missing status ``done`` when an AP exists (else ``unknown``),
    so that the table and the plots group the same rows the same way.
    """
    df = normalise(df)
    profile = profile if profile is not None else (profiles(df) or ["unknown"])[0]
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
    #: finished seeds of a local sweep whose interleaved timing is still to come
    untimed: int = 0

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
        """``done``; ``partial`` when some seeds finished and others did not; else the most
        urgent."""
        if self.counts.get("done"):
            return "partial" if self.others() else "done"
        for s in _STATUS_PRIORITY:
            if self.counts.get(s):
                return s
        return "unknown"

    def state_without(self, timed: bool = False) -> str:
        """The state of this cell in a row that has no number for it: why it is empty
        (``timed``: a latency row, which a local sweep fills once no cell trains)."""
        if self.counts.get("done"):
            return "untimed" if timed and self.untimed else "na"  # else: not measured
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
    num = np.column_stack(
        [pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=float) for c in _NUMERIC]
    )
    status = df["status"].astype(str).to_numpy()
    done = status == "done"
    keys = df[["detector", "variant", "source"]].astype(str)
    local = (df["executor"] == "local").to_numpy() if "executor" in df else np.zeros(len(df), bool)
    untimed = done & local & pd.to_numeric(df["latency_ms"], errors="coerce").isna().to_numpy()
    for key, idx in keys.groupby(list(keys.columns), sort=False).indices.items():
        st, counts = np.unique(status[idx], return_counts=True)
        d = num[idx[done[idx]]]
        arrays = {c: d[~np.isnan(d[:, j]), j] for j, c in enumerate(_NUMERIC)}
        out[tuple(key)] = _Cell(counts={str(a): int(b) for a, b in zip(st, counts)}, arrays=arrays,  # type: ignore[index]
                                untimed=int(untimed[idx].sum()))
    return out


# ----------------------------------------------------------------------------- model


def profiles(df: pd.DataFrame) -> list[str]:
    """Profiles present, ``paper``, ``paper-modern`` and ``smoke`` first, then the rest by name."""
    if "profile" not in df.columns or df.empty:
        return []
    found = {p if isinstance(p, str) else "unknown" for p in df["profile"]}
    first = [p for p in ("paper", "paper-modern", "smoke") if p in found]
    return [*first, *sorted(found - set(first))]


def build_tables(
    df: pd.DataFrame, claims: Mapping[str, Mapping[tuple[str, str], Any]] | None = None
) -> list[TableModel]:
    """One :class:`TableModel` per profile in ``df`` (an empty store gives one empty table);
    ``claims``: per profile, the summary's AP findings (see :func:`build_table`)."""
    profs = profiles(df)
    if not profs:
        return [build_table(df, profile="unknown")]
    df = normalise(df)
    groups = df.groupby("profile", sort=False).indices
    return [build_table(df.iloc[groups[p]], profile=p, claims=(claims or {}).get(p)) for p in profs]


@dataclass(frozen=True)
class _Row:
    """One row of a block: how each variant's :class:`Entry` is read off its numeric record."""

    label: str
    value: str  # column of the record
    delta: str = ""  # column of the difference to the baseline, shown in brackets
    #: whose cells explain a missing value; ``released`` rows exist only where checkpoints do
    source: str = "trained"
    #: ``measured``; ``published`` (the paper's number); ``vs published`` (a value minus it)
    kind: str = "measured"
    unit: str = ""
    delta_unit: str = ""
    digits: int = 1  # 0: two below 100, else one (params, FLOPs)
    seeds: str = ""  # the cell column the value is a mean of: ± std, n= and the unfinished seeds
    interval: bool = False  # the delta's interval over seeds (``<delta>_low/_high/_significant``)
    of: str = ""  # ``vs published``: the row that says why there is no difference


def _blocks(published: bool, paper_latency: bool) -> list[tuple[str, str, list[_Row]]]:
    """The blocks of a profile's table: (key, title, rows), in the paper's layout."""
    ap = [_Row(ROW_OURS, "AP", "AP_delta", seeds="AP", interval=True),
          _Row(ROW_RELEASED, "released_AP", "released_AP_delta", source="released", seeds="AP")]
    if published:
        ap += [_Row(ROW_PUBLISHED, "published_AP", "published_AP_delta", kind="published"),
               _Row(ROW_VS_PUBLISHED, "AP_minus_published", kind="vs published", of=ROW_OURS),
               _Row(ROW_RELEASED_VS_PUBLISHED, "released_AP_minus_published", source="released",
                    kind="vs published", of=ROW_RELEASED)]
    timed = [("model step", "latency")] + (
        [("paper protocol", "latency_paper")] if paper_latency else []
    )
    latency = [
        _Row(label, f"{col}_ms", f"{col}_pct", unit="ms", delta_unit="%") for label, col in timed
    ]
    latency += [
        _Row(
            f"{ROW_RELEASED}: {r.label}",
            f"released_{r.value}",
            f"released_{r.delta}",
            source="released",
            unit="ms",
            delta_unit="%",
        )
        for r in list(latency)
    ]
    cost = [_Row("params (M)", "params_M", "params_M_delta", digits=0),
            _Row("FLOPs (G)", "flops_G", "flops_G_delta", digits=0)]
    return [
        ("ap", "COCO box AP (difference to the detector's baseline)", ap),
        (
            "latency",
            "Latency, median over seeds (percentage over the baseline; paired per round when timed "
            "interleaved)",
            latency,
        ),
        ("cost", "Parameters (M) and FLOPs (G) of one forward (difference to the baseline)", cost),
    ]


def _entry(row: _Row, rec: dict[str, Any], cell: _Cell | None, of: Entry | None) -> Entry:
    """The entry of ``row`` for the detector x variant of ``rec``; ``of``: that of the row
    ``row.of``."""
    if rec["status"] == INAPPLICABLE:
        return Entry("inapplicable")
    value = _num(rec[row.value])
    delta = _num(rec[row.delta]) if row.delta and rec["variant"] != "baseline" else None
    if row.kind == "published":
        mark = NOT_PRINTED.get((rec["detector"], rec["variant"]), ("", ""))[0]
        if value is None and rec["published_approx"] and delta is not None:
            return Entry("reference", delta, digits=0, signed=True, mark=mark, approx=True)
        if value is None:
            return Entry("missing")
        return Entry("reference", value, mark=mark, delta=delta)
    if row.kind == "vs published":
        if value is not None:
            return Entry("value", value, signed=True)
        # no number: say why, as the row it is computed from does
        return of if of is not None and _num(rec["published_AP"]) is not None else Entry("missing")
    if cell is None:
        return Entry("missing")
    if value is None:
        return Entry(cell.state_without(timed=row.unit == "ms"))
    e = Entry("value", value, digits=row.digits or (2 if abs(value) < 100 else 1), unit=row.unit,
              delta=delta, delta_unit=row.delta_unit)
    if row.seeds:
        n, note = int(cell.values(row.seeds).size), cell.others()
        e = replace(e, state="partial" if note else "value", n=n, note=note,
                    std=cell.std(row.seeds) if n >= 2 else None)
    if row.interval and delta is not None:
        e = replace(
            e,
            delta_lo=_num(rec[f"{row.delta}_low"]),
            delta_hi=_num(rec[f"{row.delta}_high"]),
            significant=rec[f"{row.delta}_significant"] is True,
        )
    return e


def _median(cell: _Cell | None, col: str) -> float:
    return cell.median(col) if cell else np.nan


def _pct(x: float, base: float) -> float:
    """``x`` over ``base`` in percent; NaN without a positive base."""
    return (x / base - 1) * 100 if base > 0 else np.nan


def _record(
    d: str,
    v: str,
    profile: str,
    cells: dict[tuple[str, str, str], _Cell],
    intervals: dict[tuple[str, str], tuple[float, float, bool]],
    timed_together: dict[Any, pd.DataFrame],
    published: bool,
) -> dict[str, Any]:
    """The numbers of one detector x variant: a row of ``TableModel.numeric`` (and of table.csv)."""
    c, base = cells.get((d, v, "trained")), cells.get((d, "baseline", "trained"))
    r, base_rel = cells.get((d, v, "released")), cells.get((d, "baseline", "released"))
    rec: dict[str, Any] = {
        "profile": profile,
        "detector": d,
        "variant": v,
        "detector_name": DETECTOR_NAMES.get(d, d),
        "variant_name": VARIANT_NAMES.get(v, v),
        "status": c.status if c else "not run" if applies(d, v) else INAPPLICABLE,
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
    ci = intervals.get((d, v)) if c and base and v != "baseline" else None
    if ci:
        rec["AP_delta_low"], rec["AP_delta_high"], rec["AP_delta_significant"] = ci
    rec["latency_ms"] = lat = _median(c, "latency_ms")
    rec["latency_pct"] = _pct(lat, _median(base, "latency_ms"))
    # Timed in the same interleaved rounds: the median of the per-round ratios, which a
    # load change between rounds cannot move as it moves the two medians.
    ratios = (
        paired_ratios(timed_together.get((d, v), _NONE), timed_together.get((d, "baseline"), _NONE))
        if c and base
        else []
    )
    rec["latency_pct_paired"] = bool(ratios)
    if ratios:
        rec["latency_pct"] = (float(np.median(ratios)) - 1) * 100
    rec["latency_paper_ms"] = lp = _median(c, "latency_paper_ms")
    rec["latency_paper_pct"] = _pct(lp, _median(base, "latency_paper_ms"))
    rec["params_M"], rec["flops_G"] = _median(c, "params") / 1e6, _median(c, "flops") / 1e9
    rec["params_M_delta"] = rec["params_M"] - _median(base, "params") / 1e6
    rec["flops_G_delta"] = rec["flops_G"] - _median(base, "flops") / 1e9
    rec["wall_s"] = c.mean("wall_s") if c else np.nan
    rec["released_status"] = r.status if r else "not run"
    rec["released_AP"] = r.mean("AP") if r else np.nan
    rec["released_AP_delta"] = (
        (rec["released_AP"] - base_rel.mean("AP")) if (r and base_rel) else np.nan
    )
    for col in ("latency_ms", "latency_paper_ms"):
        rec[f"released_{col}"] = val = _median(r, col)
        rec[f"released_{col[:-3]}_pct"] = _pct(val, _median(base_rel, col))
    pub = PUBLISHED_AP.get((d, v), np.nan) if published else np.nan
    rec["published_AP"] = pub
    rec["published_AP_delta"] = (
        pub - PUBLISHED_AP.get((d, "baseline"), np.nan) if published else np.nan
    )
    # a gain published without an AP (approximate): the delta alone, never an AP made of it
    rec["published_approx"] = bool(published and np.isnan(pub) and (d, v) in PUBLISHED_AP_GAIN)
    if rec["published_approx"]:
        rec["published_AP_delta"] = PUBLISHED_AP_GAIN[(d, v)]
    rec["published_note"] = NOT_PRINTED[(d, v)][1] if published and (d, v) in NOT_PRINTED else ""
    rec["AP_minus_published"] = rec["AP"] - pub
    rec["released_AP_minus_published"] = rec["released_AP"] - pub
    return rec


def build_table(df: pd.DataFrame, profile: str | None = None,
                claims: Mapping[tuple[str, str], Any] | None = None) -> TableModel:
    """The paper-layout table of ``profile`` (default: the only or first profile).

    Deltas are differences of seed means to the same detector's and source's
    baseline; latency is the median over seeds with the percentage over the
    baseline's median; the COCO profiles (``PUBLISHED_PROFILES``) also get the
    published AP and ours minus published. ``claims``: the summary's AP findings by
    (detector, variant) (reports/summary.py), whose intervals and marks the table shows.
    """
    profile = profile if profile is not None else (profiles(df) or ["unknown"])[0]
    df = select_profile(df, profile)
    detectors, variants = grid(df["detector"], "detector"), grid(df["variant"], "variant")
    cells = _cells(df)
    done_trained = df[(df["source"] == "trained") & (df["status"] == "done")]
    intervals, failed = _delta_intervals(claims)
    timed_together = (
        dict(iter(done_trained.groupby(["detector", "variant"], sort=False)))
        if "latency_group" in df
        else {}
    )
    has_released = {d for (d, _v, s) in cells if s == "released"}
    published = profile in PUBLISHED_PROFILES
    records = {(d, v): _record(d, v, profile, cells, intervals, timed_together, published)
               for d in detectors for v in variants}
    numeric = pd.DataFrame.from_records(list(records.values()))
    paper_latency = bool(
        numeric["latency_paper_ms"].notna().any()
        or numeric["released_latency_paper_ms"].notna().any()
    )

    # One loop for every block: a detector's rows, each variant's entry read off its record.
    blocks: list[Block] = []
    for key, title, spec in _blocks(published, paper_latency):
        made: dict[tuple[str, str, str], Entry] = {}
        index, values = [], []
        for d in detectors:
            for r in (r for r in spec if r.source == "trained" or d in has_released):
                for v in variants:
                    made[(d, v, r.label)] = _entry(r, records[(d, v)], cells.get((d, v, r.source)),
                                                   made.get((d, v, r.of)))
                index.append((DETECTOR_NAMES.get(d, d), r.label))
                values.append([made[(d, v, r.label)] for v in variants])
        blocks.append(
            Block(
                key,
                title,
                pd.DataFrame(
                    values,
                    columns=[VARIANT_NAMES.get(v, v) for v in variants],
                    index=pd.MultiIndex.from_tuples(index, names=["Detector", "Row"]),
                    dtype=object,
                ),
            )
        )
    partial = any(e.state == "partial" for b in blocks for e in b.entries.to_numpy().ravel())
    footnotes = _footnotes(profile, df, numeric, detectors, variants, bool(has_released), partial,
                           any(c.untimed for c in cells.values()))
    if failed:
        footnotes.append(
            f"The interval could not be computed for {'; '.join(failed)}: no difference "
            "is marked there."
        )
    return TableModel(profile=profile, blocks=blocks, numeric=numeric, footnotes=footnotes)


def _footnotes(
    profile: str,
    df: pd.DataFrame,
    numeric: pd.DataFrame,
    detectors: list[str],
    variants: list[str],
    has_released: bool,
    any_partial: bool,
    any_untimed: bool = False,
) -> list[str]:
    """What a reader needs to read the table: the profile, the spread, the protocols, the marks."""
    published = profile in PUBLISHED_PROFILES
    any_interval = numeric["AP_delta_significant"].notna().any()
    notes: list[str] = []
    if profile in PROFILE_NOTES:
        notes.append(PROFILE_NOTES[profile] + ".")
    if (numeric["n_seeds"] >= 2).any():
        notes.append(
            "mean ± sample std over seeds, n = number of seeds; differences are differences of "
            "means."
        )
    if any_interval:
        notes.append(
            f"{SIGNIFICANT} the summary claims the difference to the baseline: its 95% interval, "
            "training noise and image sampling both, excludes 0 (docs/statistics.md)."
        )
    protocols = (
        set(df.loc[df["status"] == "done", "latency_protocol"].dropna())
        if "latency_protocol" in df
        else set()
    )
    for proto in sorted(protocols):
        notes.append(LATENCY_PROTOCOLS.get(proto, f"latency protocol {proto!r}") + ".")
    if any_partial:
        notes.append(
            "[k failed, ...]: seeds of the cell without a result; the number is over the finished "
            "seeds only."
        )
    if published:
        for (d, v), (mark, note) in NOT_PRINTED.items():
            if d in detectors and v in variants:
                notes.append(
                    f"{mark} {DETECTOR_NAMES.get(d, d)} {VARIANT_NAMES.get(v, v)}, "
                    f"published: {note}."
                )
        notes.append("published: COCO val2017 box AP, R-50-FPN, 1x (SEPC, CVPR 2020); "
                     "ours − pub.: our AP minus the published AP.")
        notes.append(LATENCY_NOTE + ".")
    if has_released:
        notes.append(
            "released: the authors' mmdet-1.1 checkpoints, converted and evaluated by this harness "
            "with mmdet 1.x's anchors, box coders and NMS (no training); differences to their "
            "baseline only where a released baseline exists."
            + (" released − pub.: their AP here minus the published AP." if published else "")
        )
    skipped = {d: [v for v in variants if not applies(d, v)] for d in detectors}
    if any(skipped.values()):
        notes.append("n/a: the variant does not apply to the detector (" + "; ".join(
            f"{DETECTOR_NAMES.get(d, d)}: {', '.join(VARIANT_NAMES.get(v, v) for v in vs)}"
            for d, vs in skipped.items() if vs) + "; experiments/matrix.py).")
    if published and numeric["published_approx"].any():
        notes.append("~: a gain over the baseline published without an AP of its own, "
                     "approximate as published.")
    notes.append(
        f"{NOT_RUN} not run (no result); pending/running/requeued: not finished; "
        "FAILED/cancelled: see the sweep status"
        + ("; to be timed: a local sweep times its finished cells together once none trains."
           if any_untimed else ".")
    )
    return notes


# ----------------------------------------------------------------------------- renderers


def _block_rows(block: Block) -> list[list[str]]:
    """Rows as lists of strings, the detector name only on its group's first row."""
    out: list[list[str]] = []
    last = None
    for (det, row), entries in zip(block.entries.index, block.entries.to_numpy()):
        out.append([det if det != last else "", row, *[entry_text(e) for e in entries]])
        last = det
    return out


def _variant_names(model: TableModel) -> list[str]:
    return list(model.blocks[0].entries.columns) if model.blocks else []


def render_text(model: TableModel) -> str:
    """A plain aligned text table for the terminal (one section per block)."""
    header = ["Detector", "", *_variant_names(model)] if model.blocks else []
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
    return (
        s.replace("\\", "\\\\")
        .replace("|", "\\|")
        .replace("*", "\\*")
        .replace("_", "\\_")
        .replace("\n", " ")
    )


def render_markdown(model: TableModel) -> str:
    """GitHub Markdown: one pipe table per block, footnotes as a list."""
    out = [f"## SEPC ablation — profile `{model.profile.replace('`', '')}`", ""]
    for b in model.blocks:
        cols = ["Detector", "", *b.entries.columns]
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
    "‡": r"$^\ddagger$",
    "§": r"\S{}",
    "¶": r"\P{}",
    "\n": " ",
}
_TEX_RE = re.compile("|".join(re.escape(k) for k in _TEX_MAP))


def latex_escape(s: str) -> str:
    """Escape LaTeX's special characters and map the table's Unicode signs."""
    return _TEX_RE.sub(lambda m: _TEX_MAP[m.group(0)], str(s))


def render_latex(model: TableModel) -> str:
    """A booktabs ``table`` (needs ``\\usepackage{booktabs}``), all strings escaped."""
    cols = ["Detector", "", *_variant_names(model)]
    ncol = len(cols) - 2
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
