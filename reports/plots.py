"""Plots of the ablation: each a function from the store's DataFrame to a Figure.

Figures are built on matplotlib's object API with the Agg canvas (no pyplot
state, no display needed), so they render the same in a job, a test or a
notebook. Missing data never raises: what exists is drawn, what is missing is
written on the figure (failed, pending, not run, no latency, no scalars).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from reports.breakdown import ERRORS, error_deltas
from reports.comparable import PUBLISHED_AP, PUBLISHED_PROFILES
from reports.schema import URGENCY
from reports.store import DETECTOR_NAMES, VARIANT_NAMES, grid, read_curves
from reports.table import STATUS_TEXT, select_profile

DETECTOR_COLORS = {
    "retinanet": "#1f77b4",
    "freeanchor": "#d62728",
    "fsaf": "#2ca02c",
    "atss": "#9467bd",
}
#: One colour per non-baseline variant, in the matrix's order.
VARIANT_COLORS = ("#fdae6b", "#e6550d", "#74c476", "#31a354", "#756bb1", "#969696")
SIZE_COLORS = {"APs": "#9ecae1", "APm": "#4292c6", "APl": "#08519c"}
MISSING_COLOR = "#777777"
FAILED_COLOR = "#c62828"


def _figure(w: float, h: float, layout: str | None = "constrained") -> Figure:
    fig = Figure(figsize=(w, h), dpi=100, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def figure_png(fig: Figure, dpi: int = 100) -> bytes:
    """PNG bytes of a figure (what the HTML report inlines and the build writes)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, facecolor="white")
    return buf.getvalue()


def _grid(df: pd.DataFrame) -> tuple[list[str], list[str]]:
    dets = grid(df["detector"].dropna().astype(str), "detector")
    vars_ = grid(df["variant"].dropna().astype(str), "variant")
    return dets, vars_


def _why_missing(rows: pd.DataFrame, col: str) -> str:
    """'failed', 'pending', 'not run', 'no latency', ... for a cell without ``col``."""
    if rows.empty:
        return "not run"
    st = rows["status"]
    if (st == "done").any():
        return f"no {col.replace('_ms', '')}"
    for s in URGENCY:
        if (st == s).any():
            return s
    return "no result"


def _missing_note(fig: Figure, items: list[str], prefix: str = "not shown") -> None:
    if not items:
        return
    text = f"{prefix}: " + "; ".join(items)
    # Wrap long lists so the note stays inside the figure.
    words, lines, cur = text.split(" "), [], ""
    for w in words:
        if len(cur) + len(w) > 150:
            lines.append(cur)
            cur = ""
        cur += ("" if not cur else " ") + w
    lines.append(cur)
    fig.supxlabel("\n".join(lines), fontsize=8, color=MISSING_COLOR, ha="left", x=0.01)


def plot_ap_vs_latency(df: pd.DataFrame, profile: str | None = None) -> Figure:
    """AP versus model-step latency, one line per detector from baseline through SEPC.

    Points are seed means (AP) at the seed-median latency, labelled by variant;
    single seeds show faintly when a cell has several. For the COCO profiles the
    published AP is drawn hollow at our latency, to read the gap at a glance.
    """
    d = select_profile(df, profile)
    prof = str(d["profile"].iloc[0]) if len(d) else (profile or "unknown")
    fig = _figure(9.5, 5.2)
    ax = fig.add_subplot()
    dets, vars_ = _grid(d)
    tr = d[d["source"] == "trained"]
    missing: list[str] = []
    drawn = 0
    for det in dets:
        color = DETECTOR_COLORS.get(det, None)
        xs, ys, labels, pub = [], [], [], []
        for v in vars_:
            rows = tr[(tr["detector"] == det) & (tr["variant"] == v)]
            done = rows[
                (rows["status"] == "done") & rows["AP"].notna() & rows["latency_ms"].notna()
            ]
            if done.empty:
                has_ap = rows[(rows["status"] == "done") & rows["AP"].notna()]
                why = "no latency" if len(has_ap) else _why_missing(rows, "AP")
                missing.append(f"{DETECTOR_NAMES.get(det, det)} {VARIANT_NAMES.get(v, v)} ({why})")
                continue
            if len(done) > 1:
                ax.scatter(
                    done["latency_ms"],
                    done["AP"],
                    s=12,
                    color=color,
                    alpha=0.25,
                    linewidths=0,
                    zorder=2,
                )
            x, y = float(done["latency_ms"].median()), float(done["AP"].mean())
            xs.append(x)
            ys.append(y)
            labels.append(VARIANT_NAMES.get(v, v))
            if len(done) > 1:
                ax.errorbar(
                    x, y, yerr=float(done["AP"].std(ddof=1)), color=color, capsize=3, lw=1, zorder=3
                )
            if prof in PUBLISHED_PROFILES and (det, v) in PUBLISHED_AP:
                pub.append((x, PUBLISHED_AP[(det, v)]))
        if not xs:
            continue
        drawn += len(xs)
        ax.plot(
            xs, ys, "-o", color=color, lw=1.8, ms=6, label=DETECTOR_NAMES.get(det, det), zorder=4
        )
        for k, (x, y, lab) in enumerate(zip(xs, ys, labels)):
            # Alternate above/below so that neighbouring variants do not overprint.
            ax.annotate(
                lab,
                (x, y),
                xytext=(6, 5 if k % 2 == 0 else -11),
                textcoords="offset points",
                fontsize=8,
                color=color,
            )
        if pub:
            px, py = zip(*pub)
            ax.plot(px, py, "--o", color=color, mfc="white", lw=1, ms=5, alpha=0.8, zorder=3,
                    label=f"{DETECTOR_NAMES.get(det, det)} published (at our latency)")
    ax.set_xlabel("model-step latency, ms (median over seeds; batch 1, forward + NMS)")
    ax.set_ylabel("COCO box AP (mean over seeds)")
    ax.set_title(f"AP versus latency — profile {prof}", fontsize=11)
    ax.grid(True, alpha=0.3)
    if drawn:
        ax.legend(fontsize=8, loc="best", frameon=False)
    else:
        ax.text(0.5, 0.5, "no cell has both AP and latency yet", ha="center", va="center",
                transform=ax.transAxes, color=MISSING_COLOR)
    _missing_note(fig, missing)
    return fig


def plot_ap_gain_by_size(df: pd.DataFrame, profile: str | None = None) -> Figure:
    """AP gain over the detector's baseline split by object size (APs, APm, APl).

    Grouped bars per detector x variant (seed means; whiskers = standard error
    of the difference when both cells have several seeds), with the overall AP
    gain as a black tick, so one sees which sizes SEPC's gain comes from.
    """
    d = select_profile(df, profile)
    prof = str(d["profile"].iloc[0]) if len(d) else (profile or "unknown")
    dets, vars_ = _grid(d)
    others = [v for v in vars_ if v != "baseline"]
    tr = d[(d["source"] == "trained")]
    fig = _figure(12.0, 4.2)
    axes = fig.subplots(1, len(dets), sharey=True, squeeze=False)[0]
    width = 0.26
    missing: list[str] = []
    for ax, det in zip(axes, dets):
        rows_d = tr[tr["detector"] == det]
        base = rows_d[(rows_d["variant"] == "baseline") & (rows_d["status"] == "done")]
        for i, v in enumerate(others):
            rows = rows_d[rows_d["variant"] == v]
            done = rows[(rows["status"] == "done") & rows["AP"].notna()]
            if done.empty or base["AP"].notna().sum() == 0:
                why = "no baseline" if not done.empty else _why_missing(rows, "AP")
                color = FAILED_COLOR if why == "failed" else MISSING_COLOR
                ax.text(i, 0.5, STATUS_TEXT.get(why, why), ha="center", va="center", rotation=90,
                        fontsize=9, color=color, transform=ax.get_xaxis_transform())
                missing.append(f"{DETECTOR_NAMES.get(det, det)} {VARIANT_NAMES.get(v, v)} ({why})")
                continue
            for j, m in enumerate(("APs", "APm", "APl")):
                a, b = done[m].dropna(), base[m].dropna()
                if a.empty or b.empty:
                    continue
                gain = a.mean() - b.mean()
                err = None
                if len(a) > 1 and len(b) > 1:
                    err = float(np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)))
                ax.bar(i + (j - 1) * width, gain, width, color=SIZE_COLORS[m], yerr=err, capsize=2,
                       label=m if (i, det) == (0, dets[0]) else None, error_kw={"lw": 0.8})
            g = done["AP"].mean() - base["AP"].mean()
            ax.plot([i - 1.6 * width, i + 1.6 * width], [g, g], color="black", lw=1.6,
                    label="AP" if (i, det) == (0, dets[0]) else None)
        ax.axhline(0, color="black", lw=0.6)
        ax.set_xlim(-0.6, len(others) - 0.4)
        ax.set_xticks(range(len(others)), [VARIANT_NAMES.get(v, v) for v in others], fontsize=8)
        ax.set_title(
            DETECTOR_NAMES.get(det, det), fontsize=10, color=DETECTOR_COLORS.get(det, "black")
        )
        ax.grid(True, axis="y", alpha=0.3)
    axes[0].set_ylabel("AP gain over baseline (points)")
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside upper right", ncols=4, fontsize=8, frameon=False)
    fig.suptitle(
        f"Where the gain comes from: AP by object size — profile {prof}",
        fontsize=11,
        x=0.01,
        ha="left",
    )
    _missing_note(fig, missing)
    return fig


def plot_error_deltas(df: pd.DataFrame, profile: str | None = None) -> Figure:
    """TIDE error deltas of each variant against its detector's baseline (reports/breakdown.py).

    Per detector, one group of bars per error type (Cls, Loc, Both, Dupe, Bkg, Miss, then the
    FP and FN summaries), one bar per variant: the variant's dAP minus the baseline's. Below
    zero the variant leaves less AP on the table to that error. Cells without detections are
    named under the figure with the reason."""
    d = select_profile(df, profile)
    prof = str(d["profile"].iloc[0]) if len(d) else (profile or "unknown")
    deltas, missing = error_deltas(df, profile)
    dets, vars_ = _grid(d)
    others = [v for v in vars_ if v != "baseline"]
    fig = _figure(12.0, 4.2)
    axes = fig.subplots(1, max(1, len(dets)), sharey=True, squeeze=False)[0]
    width = 0.8 / max(1, len(others))
    for ax, det in zip(axes, dets):
        dd = deltas[deltas["detector"] == det]
        for j, v in enumerate(others):
            dv = dd[dd["variant"] == v].set_index("error")["delta"]
            if dv.empty:
                continue
            x = np.arange(len(ERRORS)) + (j - (len(others) - 1) / 2) * width
            ax.bar(
                x,
                [dv.get(e, np.nan) for e in ERRORS],
                width,
                color=VARIANT_COLORS[j % len(VARIANT_COLORS)],
                label=VARIANT_NAMES.get(v, v) if det == dets[0] else None,
            )
        if dd.empty:
            ax.text(0.5, 0.5, "no error analysis", ha="center", va="center", transform=ax.transAxes,
                    fontsize=9, color=MISSING_COLOR)
        ax.axhline(0, color="black", lw=0.6)
        ax.axvline(len(ERRORS) - 2.5, color="#bbbbbb", lw=0.8, ls=":")  # main errors | FP, FN
        ax.set_xticks(range(len(ERRORS)), list(ERRORS), fontsize=8)
        ax.set_title(
            DETECTOR_NAMES.get(det, det), fontsize=10, color=DETECTOR_COLORS.get(det, "black")
        )
        ax.grid(True, axis="y", alpha=0.3)
    axes[0].set_ylabel("dAP variant − baseline (points)")
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(
            handles, labels, loc="outside upper right", ncols=len(labels), fontsize=8, frameon=False
        )
    fig.suptitle(
        f"Which errors change: TIDE dAP against the baseline, below 0 = fewer — profile {prof}",
        fontsize=11,
        x=0.01,
        ha="left",
    )
    _missing_note(fig, missing)
    return fig


def plot_training_curves(
    df: pd.DataFrame, results_dir: str | os.PathLike[str], profile: str | None = None
) -> Figure:
    """Training loss versus iteration (and bbox AP per evaluation) per cell: small multiples.

    Rows = detectors, columns = variants; one thin line per seed, the COCO AP of
    each evaluation in orange on one AP scale for the whole figure (right axis).
    A cell without scalars.json says why.
    """
    d = select_profile(df, profile)
    prof = str(d["profile"].iloc[0]) if len(d) else (profile or "unknown")
    root = Path(results_dir)
    dets, vars_ = _grid(d)
    tr = d[d["source"] == "trained"]
    # Read every curve first: the AP scale is shared by all panels.
    curves: dict[tuple[str, str], tuple[list[np.ndarray], list[np.ndarray]]] = {}
    for (det, v), rows in tr.groupby(["detector", "variant"], sort=False):
        loss_lines, ap_lines = [], []
        for key in rows["cell_key"]:
            cur = read_curves(root / str(key))
            if cur["loss"]:
                loss_lines.append(np.column_stack([cur["loss_step"], cur["loss"]]))
            if cur["ap"]:
                ap_lines.append(np.column_stack([cur["eval_step"], np.asarray(cur["ap"]) * 100]))
        curves[(str(det), str(v))] = (loss_lines, ap_lines)
    ap_top = max(
        (float(np.nanmax(a[:, 1])) for _l, aps in curves.values() for a in aps if a.size),
        default=0.0,
    )
    ap_top = ap_top * 1.08 if ap_top > 0 else 1.0

    # A fixed grid (constrained layout costs seconds with this many axes), and the AP
    # drawn in loss coordinates with one secondary AP axis per row instead of a twin
    # axis per panel: a third of the axes to lay out and draw.
    height = 2.3 * len(dets) + 0.8
    fig = _figure(14.0, height, layout=None)
    fig.subplots_adjust(
        left=0.06, right=0.95, top=1 - 0.55 / height, bottom=0.5 / height, wspace=0.12, hspace=0.12
    )
    axes = fig.subplots(len(dets), len(vars_), sharex=True, sharey="row", squeeze=False)
    any_ap = False
    for r, det in enumerate(dets):
        row_ap: list[tuple[Any, list[np.ndarray], float]] = []
        for c, v in enumerate(vars_):
            ax = axes[r][c]
            ax.tick_params(labelsize=7)
            ax.xaxis.set_major_locator(MaxNLocator(3))
            ax.yaxis.set_major_locator(MaxNLocator(4))
            ax.grid(True, alpha=0.25)
            if r == 0:
                ax.set_title(VARIANT_NAMES.get(v, v), fontsize=10)
            if c == 0:
                ax.set_ylabel(f"{DETECTOR_NAMES.get(det, det)}\nloss", fontsize=9)
            if r == len(dets) - 1:
                ax.set_xlabel("iteration", fontsize=8)
            rows = tr[(tr["detector"] == det) & (tr["variant"] == v)]
            loss_lines, ap_lines = curves.get((det, v), ([], []))
            color = DETECTOR_COLORS.get(det, "#444444")
            alpha = 0.9 if len(rows) <= 1 else max(0.15, 0.9 / np.sqrt(len(rows)))
            if loss_lines:
                # one artist per panel, however many seeds: 100 seeds x 15 cells stays fast
                ax.add_collection(
                    LineCollection(loss_lines, colors=color, linewidths=0.8, alpha=alpha)
                )
                ax.autoscale_view()
            if ap_lines:
                row_ap.append((ax, ap_lines, min(1.0, alpha + 0.1)))
            bad = [s for s in rows["status"] if s in URGENCY]
            if not loss_lines and not ap_lines:
                why = "not run" if rows.empty else (bad[0] if bad else "no scalars.json")
                ax.text(
                    0.5,
                    0.5,
                    STATUS_TEXT.get(why, why),
                    ha="center",
                    va="center",
                    transform=ax.transAxes,
                    fontsize=10,
                    color=FAILED_COLOR if why == "failed" else MISSING_COLOR,
                )
            elif bad:
                label = ", ".join(
                    f"{bad.count(s)} {STATUS_TEXT.get(s, s)}" for s in dict.fromkeys(bad)
                )
                ax.text(0.97, 0.95, label, ha="right", va="top", transform=ax.transAxes, fontsize=8,
                        color=FAILED_COLOR if "failed" in bad else MISSING_COLOR)
            if len(rows) > 1 and loss_lines:
                ax.text(
                    0.97,
                    0.05,
                    f"{len(rows)} seeds",
                    ha="right",
                    va="bottom",
                    transform=ax.transAxes,
                    fontsize=7,
                    color="#555555",
                )
        if not row_ap:
            continue
        any_ap = True
        lo, hi = axes[r][0].get_ylim()
        if not any(curves.get((det, v), ([], []))[0] for v in vars_):
            lo, hi = 0.0, ap_top  # no loss in this row: the AP scale is the row's scale
        span = hi - lo

        def to_loss(ap: Any, lo: float = lo, span: float = span) -> Any:
            return lo + np.asarray(ap) / ap_top * span

        def to_ap(y: Any, lo: float = lo, span: float = span) -> Any:
            return (np.asarray(y) - lo) / span * ap_top

        for ax, ap_lines, a in row_ap:
            mapped = [np.column_stack([x[:, 0], to_loss(x[:, 1])]) for x in ap_lines]
            ax.add_collection(
                LineCollection(mapped, colors="#ff7f0e", linewidths=1, alpha=a), autolim=False
            )
            pts = np.concatenate(mapped)
            ax.scatter(pts[:, 0], pts[:, 1], s=7, color="#ff7f0e", alpha=a, linewidths=0)
        axes[r][0].set_ylim(lo, hi)
        sec = axes[r][-1].secondary_yaxis("right", functions=(to_ap, to_loss))
        sec.yaxis.set_major_locator(MaxNLocator(3))
        sec.tick_params(labelsize=7, colors="#ff7f0e")
        sec.set_ylabel("bbox AP", fontsize=8, color="#ff7f0e")
    title = f"Training curves — profile {prof}: loss (left)"
    title += ", COCO bbox AP per evaluation (orange, right axis)" if any_ap else ""
    fig.suptitle(title, fontsize=11, x=0.01, ha="left")
    return fig
