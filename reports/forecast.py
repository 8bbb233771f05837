"""The sweep forecast: what the pilots (``python -m bench pilot``) measured and what the full
cells will cost, from ``RESULTS/pilot/`` (a store of its own, never mixed into the table).
Rendered for the terminal (``bench pilot``), as ``forecast.md`` and as a block of the HTML
report."""
from __future__ import annotations

import html
import math
import os
from pathlib import Path
from typing import Any

import pandas as pd

from reports.store import DETECTOR_NAMES, VARIANT_NAMES, read_results

PILOT_DIR = "pilot"
HEAD = ("cell", "status", "s/iter", "peak mem MiB", "iterations", "forecast wall", "GPU-h",
        "--time", "note")


def read_pilots(results_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """The pilot rows of a results folder (empty when no pilot ran)."""
    path = Path(results_dir) / PILOT_DIR
    return read_results(path) if path.is_dir() else pd.DataFrame()


def _num(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def _hours(seconds: Any) -> str:
    s = _num(seconds)
    if s is None:
        return ""
    m = int(round(s / 60))
    return f"{m // 60} h {m % 60:02d} min" if m >= 60 else f"{s / 60:.1f} min"


def rows(df: pd.DataFrame) -> list[list[str]]:
    """One display row per pilot (HEAD's columns)."""
    out = []
    for r in df.to_dict("records"):
        st = str(r.get("status"))
        iter_s, mem = _num(r.get("pilot_iter_s")), _num(r.get("train_peak_mem_mb"))
        iters, gpu_h = _num(r.get("forecast_iters")), _num(r.get("forecast_gpu_hours"))
        tmin = _num(r.get("forecast_suggested_time_min"))
        note = r.get("forecast_note") if isinstance(r.get("forecast_note"), str) else ""
        if st != "done":
            note = str(r.get("error") or "") if isinstance(r.get("error"), str) else ""
        out.append([
            str(r.get("cell_key")), st,
            f"{iter_s:.3f}" if iter_s is not None else "",
            f"{mem:.0f}" if mem is not None else "",
            f"{iters:.0f}" if iters is not None else "",
            _hours(r.get("forecast_wall_s")),
            (f"{gpu_h:.1f}" if gpu_h else "— (CPU)") if gpu_h is not None else "",
            f"{tmin:.0f}" if tmin is not None else "",
            note,
        ])
    return out


def totals(df: pd.DataFrame) -> dict[str, float]:
    """Sums over the finished pilots: wall hours of all cells and GPU-hours."""
    done = df[df["status"] == "done"] if len(df) else df
    return dict(
        cells=len(done),
        wall_h=float(pd.to_numeric(done.get("forecast_wall_s"), errors="coerce").sum()) / 3600
        if len(done)
        else 0.0,
        gpu_hours=float(pd.to_numeric(done.get("forecast_gpu_hours"), errors="coerce").sum())
        if len(done)
        else 0.0,
    )


def render_text(df: pd.DataFrame) -> str:
    """The forecast table for a terminal."""
    if df.empty:
        return "no pilot results (run `python -m bench pilot`)"
    body = rows(df)
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(HEAD)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(HEAD, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in body]
    t = totals(df)
    lines.append(f"total of the {t['cells']} forecast cells: {t['wall_h']:.1f} h of wall time, "
                 f"{t['gpu_hours']:.0f} GPU-hours; --time = forecast x 1.25 + 10 min, "
                 "rounded up to 15 min")
    return "\n".join(lines)


def render_markdown(df: pd.DataFrame) -> str:
    if df.empty:
        return ""
    body = rows(df)
    md = ["| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
    md += ["| " + " | ".join(v.replace("|", "\\|") for v in r) + " |" for r in body]
    t = totals(df)
    return ("# Sweep forecast (from the pilots)\n\n" + "\n".join(md) +
            f"\n\nTotal: {t['wall_h']:.1f} h wall time, {t['gpu_hours']:.0f} GPU-hours.\n")


def forecast_html(df: pd.DataFrame) -> str:
    """The "Sweep forecast" block of the HTML report ('' when no pilot ran)."""
    if df.empty:
        return ""
    esc = html.escape
    t = totals(df)
    first = df.iloc[0]
    out = ['<h2 id="forecast">Sweep forecast (<code>python -m bench pilot</code>)</h2>',
           f'<p class="meta">Each cell ran {esc(str(first.get("pilot_iters")))} training '
           f'iterations with its real model, pipeline and batch per device, then '
           f'{esc(str(first.get("pilot_val_images")))} validation images and a short timing; '
           f'the full schedule is forecast from the steady seconds per iteration. Total: '
           f'{t["wall_h"]:.1f} h of wall time, {t["gpu_hours"]:.0f} GPU-hours. Suggested '
           '<code>--time</code>: forecast × 1.25 + 10 min, rounded up to 15 min.</p>',
           '<table class="forecast"><thead><tr>' + "".join(f"<th>{esc(h)}</th>" for h in HEAD)
           + "</tr></thead><tbody>"]
    for r, rec in zip(rows(df), df.to_dict("records")):
        name = (f"{DETECTOR_NAMES.get(rec.get('detector'), rec.get('detector'))} · "
                f"{VARIANT_NAMES.get(rec.get('variant'), rec.get('variant'))}")
        cls = "" if r[1] == "done" else f' class="{esc(r[1])}"'
        out.append(f"<tr{cls}><td title=\"{esc(r[0])}\">{esc(name)}</td>"
                   + "".join(f"<td>{esc(v)}</td>" for v in r[1:]) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)
