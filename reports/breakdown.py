"""Where a variant's AP comes from, beyond the size split: TIDE error deltas and per-class AP,
each against the detector's baseline, from the store's columns (``tide_*``, ``class_AP``).

Both are seed means of done, trained cells. A cell without the numbers (no detections, an
older row) is left out with the reason, never a crash: the TIDE columns of such a cell are NaN
and its ``tide_note`` says why.
"""
from __future__ import annotations

import json
import math
from collections.abc import Sequence

import pandas as pd

from reports.schema import TIDE_COLUMNS
from reports.store import grid
from reports.table import select_profile

#: The error types of the chart, in TIDE's order: the six main errors, then FP and FN.
ERRORS: tuple[str, ...] = tuple(c[len("tide_"):] for c in TIDE_COLUMNS if c != "tide_AP")
#: A per-class view lists every class up to this many, else the top and bottom ``TOP_K``.
ALL_CLASSES_UP_TO = 8
TOP_K = 3


class UnknownClassError(ValueError):
    """A class filter names a class no cell has."""


def _done(df: pd.DataFrame, profile: str | None) -> pd.DataFrame:
    d = select_profile(df, profile)
    d = d.reindex(
        columns=[*d.columns, *(c for c in (*TIDE_COLUMNS, "tide_note", "class_AP") if c not in d)]
    )
    return d[(d["source"] == "trained") & (d["status"] == "done")]


def error_deltas(df: pd.DataFrame, profile: str | None = None) -> tuple[pd.DataFrame, list[str]]:
    """Per detector x variant x error type: the variant's TIDE dAP minus its baseline's (AP
    points; below zero, the variant makes fewer errors of that type), and the cells left out
    with why."""
    d = _done(df, profile)
    rows, missing = [], []
    for det in grid(d["detector"], "detector"):
        rd = d[d["detector"] == det]
        base = rd[rd["variant"] == "baseline"]
        base_ok = base[base["tide_AP"].notna()]
        for v in grid(rd["variant"], "variant"):
            cells = rd[rd["variant"] == v]
            if v == "baseline" or cells.empty:
                continue
            ok = cells[cells["tide_AP"].notna()]
            if ok.empty or base_ok.empty:
                lacking = cells if ok.empty else base
                note = next((str(n) for n in lacking["tide_note"] if isinstance(n, str) and n),
                            "no error analysis in the row")
                who = det + "/" + (v if ok.empty else "baseline")
                missing.append(f"{who} ({note})")
                continue
            for e in ERRORS:
                rows.append(dict(detector=det, variant=v, error=e,
                                 delta=float(ok[f"tide_{e}"].mean() - base_ok[f"tide_{e}"].mean()),
                                 n=len(ok), n_baseline=len(base_ok)))
    return pd.DataFrame(
        rows, columns=["detector", "variant", "error", "delta", "n", "n_baseline"]
    ), missing


def _class_ap(x: object) -> dict[str, float]:
    if isinstance(x, str) and x:
        x = json.loads(x)
    return {str(k): float(v) for k, v in x.items()} if isinstance(x, dict) else {}


def class_names(df: pd.DataFrame) -> list[str]:
    """Every class some row has a per-class AP for, in first-seen order."""
    seen: dict[str, None] = {}
    for x in df.get("class_AP", pd.Series(dtype=object)):
        seen.update(dict.fromkeys(_class_ap(x)))
    return list(seen)


def check_classes(df: pd.DataFrame, classes: Sequence[str] | None,
                  also_known: Sequence[str] = ()) -> list[str] | None:
    """The filter, checked against the store's classes and ``also_known`` (the dataset's, where
    the caller has them): an unknown name is a one-line error."""
    if not classes:
        return None
    known = list(dict.fromkeys([*class_names(df), *also_known]))
    unknown = [c for c in classes if c not in known]
    if unknown:
        shown = ", ".join(known[:12]) + (f", ... ({len(known)} in all)" if len(known) > 12 else "")
        raise UnknownClassError(
            f"unknown class {', '.join(map(repr, unknown))} in the class filter "
            f"(known: {shown or 'none yet'})"
        )
    return list(classes)


def class_gains(df: pd.DataFrame, profile: str | None = None,
                classes: Sequence[str] | None = None) -> tuple[pd.DataFrame, list[str]]:
    """Per detector x variant x class: seed-mean AP, its baseline's, and the difference (AP
    points), and the cells left out with why."""
    d = _done(df, profile)
    rows, missing = [], []
    for det in grid(d["detector"], "detector"):
        rd = d[d["detector"] == det]

        def mean_ap(cells: pd.DataFrame) -> dict[str, float]:
            per = pd.DataFrame([_class_ap(x) for x in cells["class_AP"]]).dropna(axis=1, how="all")
            return per.mean().to_dict() if len(per.columns) else {}

        base = mean_ap(rd[rd["variant"] == "baseline"])
        for v in grid(rd["variant"], "variant"):
            cells = rd[rd["variant"] == v]
            if v == "baseline" or cells.empty:
                continue
            ap = mean_ap(cells)
            if not ap or not base:
                missing.append(f"{det}/{v if not ap else 'baseline'} (no per-class AP in the row)")
                continue
            for c in classes or [c for c in ap if c in base]:
                if c in ap and c in base and not (math.isnan(ap[c]) or math.isnan(base[c])):
                    rows.append(dict(detector=det, variant=v, cls=c, AP=ap[c], baseline_AP=base[c],
                                     delta=ap[c] - base[c]))
    return pd.DataFrame(
        rows, columns=["detector", "variant", "cls", "AP", "baseline_AP", "delta"]
    ), missing


def extremes(gains: pd.DataFrame, k: int = TOP_K) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One detector x variant's classes that gain most (descending) and lose most (ascending):
    all of them in the first frame when there are at most ``ALL_CLASSES_UP_TO``."""
    g = gains.sort_values(["delta", "cls"], ascending=[False, True], kind="stable")
    if len(g) <= ALL_CLASSES_UP_TO:
        return g, g.iloc[0:0]
    return g.head(k), g.tail(k).iloc[::-1]
