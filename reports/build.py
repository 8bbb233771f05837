"""Build every report output from a results folder: ``python -m reports RESULTS_DIR``.

Reads the store only, so a report can be rebuilt anywhere from a copied
results folder. Each output is written to a temporary file in the target
folder and renamed into place, so a reader (a browser tab, CI collecting
artifacts, a concurrent rebuild) never sees half a file.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from reports.breakdown import UnknownClassError, check_classes, class_gains
from reports.forecast import read_pilots
from reports.forecast import render_markdown as forecast_markdown
from reports.schema import atomic_write
from reports.store import read_results
from reports.summary import Headline, headlines, render_summary_text
from reports.table import (
    TableModel,
    build_tables,
    normalise,
    profiles,
    render_csv,
    render_latex,
    render_markdown,
    render_text,
)

FORMATS: tuple[str, ...] = ("text", "md", "csv", "tex", "html", "png")
#: Plots are drawn for this many profiles at most (tables cover all of them):
#: a store of a hundred profiles should not cost three hundred figures.
MAX_PLOT_PROFILES = 4

PLOTS: tuple[tuple[str, str], ...] = (
    ("ap_vs_latency", "AP versus latency: one line per detector from Baseline through SEPC"),
    (
        "ap_gain_by_size",
        "AP gain over the baseline by object size (APs, APm, APl); black tick = overall AP gain",
    ),
    (
        "error_deltas",
        "TIDE error deltas against the baseline (dAP of each error type, variant − baseline; "
        "below 0 = fewer such errors)",
    ),
    (
        "training_curves",
        "Training curves per cell: loss per iteration, COCO bbox AP per evaluation",
    ),
)


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", s).strip("-") or "profile"


def _figures(df: pd.DataFrame, results_dir: Path, profile: str) -> list[tuple[str, str, bytes]]:
    """(name, caption, PNG) of the three plots of one profile."""
    # matplotlib is imported only when a plot is wanted (text-only builds stay fast).
    from reports.plots import (
        figure_png,
        plot_ap_gain_by_size,
        plot_ap_vs_latency,
        plot_error_deltas,
        plot_training_curves,
    )

    figs = {
        "ap_vs_latency": lambda: plot_ap_vs_latency(df, profile),
        "ap_gain_by_size": lambda: plot_ap_gain_by_size(df, profile),
        "error_deltas": lambda: plot_error_deltas(df, profile),
        "training_curves": lambda: plot_training_curves(df, results_dir, profile),
    }
    return [(name, caption, figure_png(figs[name]())) for name, caption in PLOTS]


def render_class_csv(
    df: pd.DataFrame, profiles: Sequence[str], classes: Sequence[str] | None = None
) -> str:
    """Per-class AP against the baseline, long form: profile, detector, variant, class, AP,
    baseline AP, difference (seed means, AP points)."""
    frames = []
    for p in profiles:
        g, _missing = class_gains(df, p, classes)
        frames.append(g.rename(columns={"cls": "class"}).assign(profile=p))
    out = pd.concat(frames) if frames else pd.DataFrame()
    cols = ["profile", "detector", "variant", "class", "AP", "baseline_AP", "delta"]
    return out.reindex(columns=cols).round(3).to_csv(index=False)


def build_report(
    results_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str] | None = None,
    formats: Sequence[str] = FORMATS,
    *,
    echo: bool = False,
    classes: Sequence[str] | None = None,
) -> dict[str, Path]:
    """Write the report of ``results_dir`` into ``out_dir`` (default RESULTS_DIR/report).

    Returns the written paths by name: ``md``, ``csv``, ``tex``, ``html`` and
    one per plot (``ap_vs_latency``, ``ap_gain_by_size``, ``training_curves``;
    suffixed ``[profile]`` when the store holds several profiles). ``echo``
    prints the terminal table (the ``text`` format). ``classes`` restricts the per-class view
    (an unknown name raises ``UnknownClassError`` before anything is written).
    """
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise ValueError(f"unknown formats {sorted(unknown)}; choose from {FORMATS}")
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise FileNotFoundError(f"no results folder {results_dir}")
    out = Path(out_dir) if out_dir is not None else results_dir / "report"
    df = read_results(results_dir)
    classes = check_classes(df, classes)
    ndf = normalise(df) if len(df) else df  # once, for the summary, the per-class view and the HTML
    # The summary first: the table marks exactly the differences it claims.
    summary: dict[str, list[Headline]] = (
        {p: headlines(ndf, results_dir, p) for p in profiles(ndf)} if len(df) else {})
    claims = {p: {(h.detector, h.variant): h.ap for h in lines} for p, lines in summary.items()}
    models: list[TableModel] = build_tables(df, claims)
    paths: dict[str, Path] = {}

    if "md" in formats:
        paths["md"] = atomic_write(out / "table.md", "\n".join(render_markdown(m) for m in models))
    if "csv" in formats:
        paths["csv"] = atomic_write(out / "table.csv", render_csv(models))
        if len(df):
            paths["class_ap"] = atomic_write(
                out / "class_ap.csv", render_class_csv(ndf, [m.profile for m in models], classes)
            )
    if "tex" in formats:
        paths["tex"] = atomic_write(out / "table.tex", "\n".join(render_latex(m) for m in models))
    pilots = read_pilots(results_dir)
    if "md" in formats and len(pilots):
        paths["forecast"] = atomic_write(out / "forecast.md", forecast_markdown(pilots))

    plots: dict[str, list[tuple[str, str, bytes]]] = {}
    skipped: list[str] = []
    if "png" in formats or "html" in formats:
        multi = len(models) > 1
        for i, m in enumerate(models):
            if i >= MAX_PLOT_PROFILES:
                skipped.append(m.profile)
                continue
            for name, caption, png in _figures(df, results_dir, m.profile):
                plots.setdefault(m.profile, []).append((name, caption, png))
                if "png" in formats:
                    fname = f"{name}-{_slug(m.profile)}.png" if multi else f"{name}.png"
                    paths[f"{name}[{m.profile}]" if multi else name] = atomic_write(
                        out / fname, png
                    )
    if "html" in formats:
        from reports.html import render_html

        page = render_html(ndf, models, plots, results_dir=results_dir,
                           out_dir=out, skipped_plot_profiles=skipped, summary=summary,
                           classes=classes)
        paths["html"] = atomic_write(out / "report.html", page)
    if echo and "text" in formats:  # last, so that a closed pipe cannot stop the files
        print("\n".join(render_text(m) + render_summary_text(summary.get(m.profile, []))
                        for m in models), end="", flush=True)
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: print the table, write table.{md,csv,tex}, report.html and the PNGs."""
    ap = argparse.ArgumentParser(
        prog="python -m reports",
        description="Build the SEPC ablation report (terminal table, Markdown, CSV, LaTeX, "
        "self-contained HTML, PNG plots) from a result store.",
    )
    ap.add_argument(
        "results_dir",
        metavar="RESULTS_DIR",
        help="the result store: one folder per cell with result.json",
    )
    ap.add_argument(
        "--out", metavar="DIR", help="where to write the outputs (default: RESULTS_DIR/report)"
    )
    ap.add_argument(
        "--format",
        action="append",
        metavar="FMT",
        help=f"output(s) to produce, repeatable or comma-separated, from {', '.join(FORMATS)} "
        "(default: all)",
    )
    ap.add_argument(
        "--classes",
        metavar="NAMES",
        help="comma-separated class names: the per-class view "
        "shows only these (default: every class)",
    )
    ap.add_argument(
        "-q", "--quiet", action="store_true", help="do not print the table or the written paths"
    )
    args = ap.parse_args(argv)
    formats = FORMATS
    if args.format:
        formats = tuple(f.strip() for item in args.format for f in item.split(",") if f.strip())
        bad = sorted(set(formats) - set(FORMATS))
        if bad:
            ap.error(f"unknown format(s) {', '.join(bad)}; choose from {', '.join(FORMATS)}")
    t0 = time.perf_counter()
    try:
        classes = (
            [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
        )
        paths = build_report(
            args.results_dir, args.out, formats, echo=not args.quiet, classes=classes
        )
        if not args.quiet:
            for p in paths.values():
                print(f"wrote {p}")
            print(f"report built in {time.perf_counter() - t0:.1f} s")
    except (FileNotFoundError, UnknownClassError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `python -m reports DIR | head`: the files are written all the same
        sys.stdout = open(os.devnull, "w")
    return 0
