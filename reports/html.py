"""One self-contained HTML report: inline CSS, images as data URIs, no JS, no fetches.

It opens from disk, can be mailed or attached to an issue, and shows the same
table model as the text renderers. Every string that comes from results,
configs or logs goes through :func:`esc` (``html.escape``): an error message
is data, never markup.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from collections import Counter
from collections.abc import Iterable, Sequence
from urllib.parse import quote

import pandas as pd

from reports.forecast import forecast_html, read_pilots
from reports.perf import perf_html, read_perf
from reports.published import PUBLISHED_PROFILES, confirmable_lines
from reports.schema import ACTIVE, ENDED_BAD
from reports.store import DETECTOR_NAMES, VARIANT_NAMES, read_log_tail
from reports.errors import ALL_CLASSES_UP_TO, TOP_K, class_gains, extremes
from reports.summary import NO_DIFFERENCE, Finding, Headline
from reports.table import ROW_RELEASED, Block, Entry, TableModel, entry_parts

#: Cells listed one by one in the sweep-status section before "and N more".
MAX_STATUS_CELLS = 200
#: Per-cell detail rows shown open (more collapse behind <details>).
OPEN_DETAILS_UP_TO = 40

CSS = """
:root { --fg:#1d2330; --muted:#667085; --line:#d9dee7; --bg:#ffffff; --soft:#f5f7fa;
        --ok:#1b7f3b; --bad:#b42318; --warn:#b54708; --accent:#1f4e99; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--fg);
       font:14px/1.45 -apple-system, "Segoe UI", "DejaVu Sans", Roboto, Helvetica, Arial, sans-serif; }
main { max-width: 1280px; margin: 0 auto; padding: 20px 28px 48px; }
h1 { font-size: 24px; margin: 0 0 2px; }
h2 { font-size: 19px; margin: 30px 0 10px; padding-bottom: 4px; border-bottom: 2px solid var(--line); }
h3 { font-size: 15px; margin: 18px 0 6px; color: #2a3447; }
.meta { color: var(--muted); margin: 0 0 12px; }
.meta code, td code { font-size: 12px; }
.badges { display:flex; flex-wrap:wrap; gap:8px; margin: 10px 0 4px; }
.badge { border-radius: 12px; padding: 2px 11px; font-size: 13px; border:1px solid var(--line); background: var(--soft); }
.badge.done { color: var(--ok); border-color:#abdcbb; background:#eefaf1; }
.badge.failed, .badge.cancelled { color: var(--bad); border-color:#f3b8b2; background:#fdf0ef; }
.badge.pending, .badge.running, .badge.requeued { color: var(--warn); border-color:#f5d0a9; background:#fff7ed; }
.finding { font-size: 13px; }
.finding.claim { font-weight: 600; }
.finding.nodiff { color: var(--muted); font-size: 12px; }
.finding.error { color: var(--bad); font-size: 12px; }
.finding .rule { color: var(--muted); font-size: 11px; font-weight: 400; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
table.ablation { width: 100%; margin: 4px 0 6px; table-layout: fixed; }
table.ablation th, table.ablation td { padding: 5px 10px; border-bottom: 1px solid var(--line); }
table.ablation thead th { background: var(--soft); text-align: right; font-weight: 600; border-bottom: 2px solid #b8c0cc; }
table.ablation thead th.lab { text-align: left; }
table.ablation th.det { text-align: left; vertical-align: top; font-weight: 600; white-space: nowrap; }
table.ablation td.rowlabel { color: var(--muted); font-size: 12px; white-space: nowrap; }
table.ablation td.cell { text-align: right; white-space: nowrap; }
table.ablation tr.group-start > * { border-top: 1.5px solid #b8c0cc; }
table.ablation.summary td.cell { white-space: normal; vertical-align: top; }
table.ablation.summary th.det { width: 13%; }
table.perf { margin: 4px 0 10px; }
table.perf caption { text-align: left; color: var(--muted); font-size: 12px; }
table.perf th, table.perf td { padding: 4px 8px; border-bottom: 1px solid var(--line); text-align: right; white-space: nowrap; }
table.perf thead th { background: var(--soft); }
table.forecast { margin: 4px 0 10px; }
table.forecast th, table.forecast td { padding: 4px 8px; border-bottom: 1px solid var(--line); text-align: right; white-space: nowrap; }
table.forecast td:first-child, table.forecast td:last-child, table.forecast th:first-child { text-align: left; }
table.forecast td:last-child { white-space: normal; color: var(--muted); font-size: 12px; }
table.forecast thead th { background: var(--soft); }
table.forecast tr.failed td { color: var(--bad); }
table.perf td:nth-child(-n+2) { text-align: left; }
td.value, td.partial { font-weight: 500; }
td.reference { color: #475467; background: #f7f8fa; }
tr.released td.cell { background: #f2f6fd; }
tr.released td.rowlabel { color: var(--accent); font-weight: 600; }
td.failed, td.cancelled { color: var(--bad); font-weight: 700; background: #fdf0ef; }
td.pending, td.running, td.requeued, td.untimed { color: var(--warn); font-style: italic; }
td.missing, td.na { color: #98a2b3; }
.delta { font-size: 12px; color: var(--muted); }
table[data-block="ap"] .delta.pos { color: var(--ok); }
table[data-block="ap"] .delta.neg { color: var(--bad); }
.n { font-size: 11px; color: var(--muted); }
.partialnote { font-size: 11px; color: var(--bad); }
ul.notes { color: var(--muted); font-size: 12px; margin: 4px 0 12px; padding-left: 18px; }
figure { margin: 14px 0 22px; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 4px; }
figcaption { color: var(--muted); font-size: 12px; margin-top: 4px; }
.pair { display: flex; gap: 12px; align-items: flex-start; }
.pair figure { flex: 1 1 0; min-width: 0; }
table.classes td { white-space: nowrap; }
table.details { font-size: 12px; width: 100%; }
table.details th, table.details td { padding: 3px 7px; border-bottom: 1px solid var(--line); text-align: left;
                                     vertical-align: top; white-space: nowrap; }
table.details th { background: var(--soft); position: sticky; top: 0; }
table.details td.num { text-align: right; }
.st-failed, .st-cancelled { color: var(--bad); font-weight: 600; }
.st-pending, .st-running, .st-requeued { color: var(--warn); }
.st-done { color: var(--ok); }
.cellstatus { border-left: 4px solid var(--warn); background: #fffaf3; padding: 6px 12px; margin: 10px 0; }
.cellstatus.failed, .cellstatus.cancelled { border-color: var(--bad); background: #fff6f5; }
.cellstatus h4 { margin: 2px 0 4px; font-size: 14px; }
.reason { margin: 2px 0 6px; }
pre { background: #111827; color: #e5e7eb; padding: 8px 10px; border-radius: 4px; overflow-x: auto;
      font-size: 12px; line-height: 1.35; max-height: 320px; margin: 4px 0; white-space: pre-wrap; word-break: break-word; }
details > summary { cursor: pointer; color: var(--accent); margin: 6px 0; }
footer { color: var(--muted); font-size: 12px; margin-top: 36px; border-top: 1px solid var(--line); padding-top: 8px; }
"""


def esc(x: Any) -> str:
    """HTML-escape any value from the store (NaN/None -> empty string)."""
    if x is None or x is pd.NA or (isinstance(x, float) and math.isnan(x)):
        return ""
    return html.escape(str(x), quote=True)


_KEY_BY_DETECTOR_NAME = {v: k for k, v in DETECTOR_NAMES.items()}
_KEY_BY_VARIANT_NAME = {v: k for k, v in VARIANT_NAMES.items()}


def entry_html(e: Entry) -> str:
    """An entry's text (:func:`reports.table.entry_parts`) with its delta, n= and unfinished
    seeds in spans of their own, built from the entry's fields."""
    p = entry_parts(e)
    out = esc(p.main)
    if p.delta:
        out += f' <span class="delta {"neg" if p.negative else "pos"}">{esc(p.delta)}</span>'
    if p.n:
        out += f' <span class="n">{esc(p.n)}</span>'
    if p.note:
        out += f' <span class="partialnote">{esc(p.note)}</span>'
    return out


def block_html(block: Block, profile: str) -> str:
    """One block as an HTML table; rows carry data-detector/data-row, cells data-variant."""
    cols = list(block.entries.columns)
    width = f"{70 / max(1, len(cols)):.2f}%"
    out = [f'<table class="ablation" data-block="{esc(block.key)}" data-profile="{esc(profile)}">',
           '<colgroup><col style="width:13%"><col style="width:17%">'
           + "".join(f'<col style="width:{width}">' for _ in cols) + "</colgroup>",
           "<thead><tr><th class=\"lab\">Detector</th><th class=\"lab\"></th>"]
    out += [f'<th data-variant="{esc(_KEY_BY_VARIANT_NAME.get(c, c))}">{esc(c)}</th>' for c in cols]
    out.append("</tr></thead><tbody>")
    groups = Counter(det for det, _row in block.entries.index)
    seen: set[str] = set()
    for (det, row), entries in zip(block.entries.index, block.entries.to_numpy()):
        first = det not in seen
        classes = (["group-start"] if first else []) + (["released"] if row.startswith(ROW_RELEASED) else [])
        cls = f' class="{" ".join(classes)}"' if classes else ""
        out.append(f'<tr{cls} data-detector="{esc(_KEY_BY_DETECTOR_NAME.get(det, det))}" data-row="{esc(row)}">')
        if first:
            out.append(f'<th class="det" rowspan="{groups[det]}">{esc(det)}</th>')
            seen.add(det)
        out.append(f'<td class="rowlabel">{esc(row)}</td>')
        for c, e in zip(cols, entries):
            out.append(f'<td class="cell {esc(e.state)}" data-variant="{esc(_KEY_BY_VARIANT_NAME.get(c, c))}">'
                       f"{entry_html(e)}</td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def _png_tag(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{esc(alt)}">'


def _fmt_s(x: Any) -> str:
    try:
        s = float(x)
    except (TypeError, ValueError):
        return ""
    if math.isnan(s):
        return ""
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def _fmt_num(x: Any, digits: int = 1) -> str:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return ""
    return "" if math.isnan(v) else f"{v:.{digits}f}"


def _versions(x: Any) -> str:
    if not isinstance(x, str) or not x:
        return ""
    try:
        v = json.loads(x)
    except ValueError:
        return x
    if isinstance(v, dict):
        return ", ".join(f"{k} {val}" for k, val in v.items())
    return x


def _log_href(results_dir: Path, out_dir: Path, cell_key: str) -> str | None:
    log = results_dir / cell_key / "job.log"
    if not log.is_file():
        return None
    rel = os.path.relpath(log, out_dir)
    return quote(Path(rel).as_posix())


def _finding_html(f: Finding) -> str:
    cls = "error" if f.error is not None else "claim" if f.resolved else "nodiff"
    rule = f.method.split(":", 1)[0] if f.method.startswith("rule ") else ""
    tag = f' <span class="rule">{esc(rule)}</span>' if rule and f.error is None else ""
    return (f'<div class="finding {cls}" data-quantity="{esc(f.quantity)}" title="{esc(f.method)}">'
            f"{esc(f.quantity)}{' ' if cls == 'claim' else ': '}{esc(f.short())}{tag}</div>")


def _summary(summary: dict[str, list[Headline]]) -> str:
    """The headlines as the paper's grid (reports/summary.py): each variant against its
    detector's baseline, a difference only where its interval excludes zero."""
    out = []
    for profile, lines in summary.items():
        if not lines:
            continue
        variants = list(dict.fromkeys(h.variant for h in lines))
        by = {(h.detector, h.variant): h for h in lines}
        methods = []
        for quantity in ("ap", "latency"):
            used = dict.fromkeys(getattr(h, quantity).method for h in lines if getattr(h, quantity).method)
            if used:
                methods.append(f"{'AP' if quantity == 'ap' else quantity}: {'; '.join(used)}")
        out.append(f'<table class="ablation summary" data-profile="{esc(profile)}"><thead><tr>'
                   '<th class="lab">' + (esc(profile) if len(summary) > 1 else "Detector") + "</th>"
                   + "".join(f'<th data-variant="{esc(v)}">{esc(VARIANT_NAMES.get(v, v))}</th>' for v in variants)
                   + "</tr></thead><tbody>")
        for det in dict.fromkeys(h.detector for h in lines):
            out.append(f'<tr data-detector="{esc(det)}"><th class="det">{esc(DETECTOR_NAMES.get(det, det))}</th>')
            for v in variants:
                h = by.get((det, v))
                out.append(f'<td class="cell" data-variant="{esc(v)}">'
                           + (_finding_html(h.ap) + _finding_html(h.latency) if h else "—") + "</td>")
            out.append("</tr>")
        out.append("</tbody></table>")
        if methods:
            out.append(f'<p class="meta">Intervals — {esc(" · ".join(methods))}.</p>')
        confirm = confirmable_lines(profile)
        if confirm:
            out.append(f'<p class="meta confirmable">{esc(confirm[0])}</p><ul class="meta confirmable">'
                       + "".join(f"<li>{esc(line.strip())}</li>" for line in confirm[1:]) + "</ul>")
        for spread in dict.fromkeys(h.spread for h in lines if h.spread is not None):
            out.append(f'<p class="meta noise">Training noise of one seed (rule profile): '
                       f'{esc(spread.describe())}.</p>')
    if not out:
        return ""
    return ('<h2 id="summary">Summary</h2><p class="meta">Each variant against its detector\'s baseline. '
            "A difference is claimed only where its interval excludes zero, an interval that covers the "
            "training's own noise (seeds) and the sampling of the evaluation images "
            "(docs/statistics.md; each line says which rule it used); otherwise: "
            f"<i>{esc(NO_DIFFERENCE)}</i>, with the interval. The tables below keep every number.</p>"
            + "".join(out))


def _status_counts(df: pd.DataFrame, models: list[TableModel]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for s in df["status"].fillna("unknown") if "status" in df.columns else []:
        counts[str(s)] = counts.get(str(s), 0) + 1
    not_run = sum(int((m.numeric["status"] == "not run").sum()) for m in models)
    if not_run:
        counts["not run"] = not_run
    order = ["done", *ACTIVE, *ENDED_BAD, "not run"]
    return {k: counts[k] for k in [*order, *sorted(set(counts) - set(order))] if k in counts}


def _when(x: Any) -> str:
    """'2025-11-26 04:10' from an ISO 8601 stamp (the raw text if it is not one)."""
    if not isinstance(x, str) or not x:
        return ""
    m = re.match(r"(\d{4}-\d\d-\d\d)[T ](\d\d:\d\d)", x)
    return f"{m.group(1)} {m.group(2)}" if m else x


#: Provenance columns shown once above the table when every result file agrees.
_COMMON = (("device", "device", str), ("versions", "versions", _versions), ("git_commit", "commit", lambda x: str(x)[:12]),
           ("host", "host", str))


def _details_table(df: pd.DataFrame, results_dir: Path, out_dir: Path) -> str:
    common, varying = [], []
    for col, label, fmt in _COMMON:
        vals = df[col].dropna().unique() if col in df.columns else []
        if len(vals) <= 1:
            if len(vals):
                common.append(f"{label}: <code>{esc(fmt(vals[0]))}</code>")
        else:
            varying.append((col, label, fmt))
    out = []
    if common:
        out.append('<p class="meta">Same for every result file — ' + " · ".join(common) + "</p>")
    cols = ["cell", "seed", "source", "status", "AP", "latency", "timed", "wall time", "iters", "requeues",
            *[label for _c, label, _f in varying], "config", "job", "finished", "log"]
    out.append('<table class="details"><thead><tr>' + "".join(f"<th>{c}</th>" for c in cols) + "</tr></thead><tbody>")
    for r in df.itertuples(index=False):
        d = r._asdict()
        st = str(d.get("status") or "unknown")
        href = _log_href(results_dir, out_dir, str(d.get("cell_key")))
        log = f'<a href="{esc(href)}">job.log</a>' if href else "—"
        iters = ""
        if not pd.isna(d.get("iters_run")) or not pd.isna(d.get("train_iters")):
            iters = f"{esc(d.get('iters_run'))}/{esc(d.get('train_iters'))}"
        lat = _fmt_num(d.get("latency_ms"), 1)
        lo, hi = _fmt_num(d.get("latency_p10_ms"), 1), _fmt_num(d.get("latency_p90_ms"), 1)
        lat = f"{lat} ms ({lo}–{hi})" if lat and lo and hi else f"{lat} ms" if lat else ""
        extra = "".join(f"<td>{esc(fmt(d.get(c)) if isinstance(d.get(c), str) else d.get(c))}</td>"
                        for c, _l, fmt in varying)
        out.append(
            "<tr>"
            f"<td><code>{esc(d.get('cell_key'))}</code></td>"
            f'<td class="num">{esc(d.get("seed"))}</td>'
            f"<td>{esc(d.get('source'))}</td>"
            f'<td class="st-{esc(st)}">{esc(st)}</td>'
            f'<td class="num">{_fmt_num(d.get("AP"), 2)}</td>'
            f'<td class="num">{esc(lat)}</td>'
            f"<td>{esc(d.get('latency_protocol'))}</td>"
            f'<td class="num">{esc(_fmt_s(d.get("wall_s")))}</td>'
            f'<td class="num">{iters}</td>'
            f'<td class="num">{esc(d.get("requeues"))}</td>'
            f"{extra}"
            f"<td><code>{esc(d.get('config_hash'))}</code></td>"
            f"<td>{esc(d.get('job_id'))}</td>"
            f"<td>{esc(_when(d.get('finished_at')))}</td>"
            f"<td>{log}</td>"
            "</tr>"
        )
    out.append("</tbody></table>")
    return "\n".join(out)


def _sweep_lines(results_dir: Path) -> list[str]:
    """What sweep.json says was submitted, and the submitted cells that wrote no result.json."""
    try:
        sweep = json.loads((results_dir / "sweep.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    cells = sweep.get("cells") if isinstance(sweep, dict) else None
    if not isinstance(cells, dict):
        return []
    by_exec: dict[str, int] = {}
    orphans = []
    for key, info in cells.items():
        info = info if isinstance(info, dict) else {}
        ex = str(info.get("executor", "?"))
        by_exec[ex] = by_exec.get(ex, 0) + 1
        if not (results_dir / str(key) / "result.json").is_file():
            orphans.append(f"{key} (job {info.get('job_id', '?')}, submitted {info.get('submitted_at', '?')})")
    execs = ", ".join(f"{n} via {e}" for e, n in by_exec.items())
    out = [f'<p class="meta">sweep.json: {len(cells)} cells submitted ({esc(execs)}), '
           f"last update {esc(sweep.get('updated_at', '?'))}.</p>"]
    if orphans:
        out.append(f'<p class="reason st-failed">Submitted but no result.json ({len(orphans)}): the job died '
                   "before writing one, or the folder was not copied.</p><pre>" + esc("\n".join(orphans)) + "</pre>")
    return out


def _status_section(df: pd.DataFrame, models: list[TableModel], results_dir: Path, out_dir: Path) -> str:
    counts = _status_counts(df, models)
    out = ['<h2 id="status">Sweep status</h2>', '<div class="badges">']
    out += [f'<span class="badge {esc(k.replace(" ", "-"))}">{esc(k)}: {v}</span>' for k, v in counts.items()]
    out.append("</div>")
    out += _sweep_lines(results_dir)
    unreadable = df.attrs.get("unreadable") or []
    if unreadable:
        out.append(f'<p class="reason st-failed">{len(unreadable)} result.json could not be read:</p><pre>'
                   + esc("\n".join(unreadable)) + "</pre>")
    for m in models:
        nr = m.numeric[m.numeric["status"] == "not run"]
        if len(nr):
            names = ", ".join(f"{a} {b}" for a, b in zip(nr["detector_name"], nr["variant_name"]))
            prefix = f"{m.profile}: " if len(models) > 1 else ""
            out.append(f'<p class="reason"><b>Not run</b> (no result in the store): {esc(prefix + names)}</p>')
    if "status" not in df.columns:
        return "\n".join(out)
    order = {s: i for i, s in enumerate((*ENDED_BAD, *ACTIVE))}
    bad = df[df["status"].isin(list(order))]
    bad = bad.assign(_o=bad["status"].map(order)).sort_values("_o", kind="stable")
    if bad.empty and not any((m.numeric["status"] == "not run").any() for m in models):
        out.append('<p class="reason st-done">Every cell finished.</p>')
    for i, r in enumerate(bad.itertuples(index=False)):
        if i >= MAX_STATUS_CELLS:
            out.append(f'<p class="reason">… and {len(bad) - MAX_STATUS_CELLS} more unfinished cells '
                       "(see the per-cell details).</p>")
            break
        d = r._asdict()
        st = str(d["status"])
        key = str(d.get("cell_key"))
        title = (f"{DETECTOR_NAMES.get(d.get('detector'), d.get('detector'))} · "
                 f"{VARIANT_NAMES.get(d.get('variant'), d.get('variant'))} · seed {d.get('seed')}")
        if d.get("source") == "released":
            title += " · released"
        reason = d.get("error")
        tail = d.get("log_tail")
        if not isinstance(tail, str) or not tail.strip():
            tail = read_log_tail(results_dir / key / "job.log", lines=15)
        href = _log_href(results_dir, out_dir, key)
        progress = ""
        if not pd.isna(d.get("iters_run")) and not pd.isna(d.get("train_iters")) and st in ("running", "requeued", *ENDED_BAD):
            progress = f" — {esc(d.get('iters_run'))}/{esc(d.get('train_iters'))} iterations"
        out.append(f'<div class="cellstatus {esc(st)}" data-cell="{esc(key)}">')
        out.append(f'<h4><span class="st-{esc(st)}">{esc(st.upper() if st == "failed" else st)}</span> '
                   f"{esc(title)} <code>{esc(key)}</code>{progress}</h4>")
        if isinstance(reason, str) and reason:
            out.append(f'<p class="reason">Reason: <code>{esc(reason)}</code></p>')
        elif st in ENDED_BAD:
            out.append('<p class="reason">Reason: (none recorded)</p>')
        if isinstance(tail, str) and tail.strip():
            out.append(f"<pre>{esc(tail)}</pre>")
        if href:
            out.append(f'<a href="{esc(href)}">full job.log</a>')
        out.append("</div>")
    return "\n".join(out)


def class_gains_html(df: pd.DataFrame, profile: str, classes: Sequence[str] | None = None) -> str:
    """Per detector and variant, the classes that gain and lose most against the baseline
    (every class when there are few, reports/errors.py), with the baseline's AP beside."""
    gains, missing = class_gains(df, profile, classes)
    head = (f'<h3>Per-class AP against the baseline</h3><p class="meta">Seed means, AP points: '
            f'class Δ (baseline AP → variant AP). Every class when there are at most '
            f'{ALL_CLASSES_UP_TO}, else the {TOP_K} that gain and the {TOP_K} that lose most; '
            f'all of them in <code>class_ap.csv</code>.</p>')
    if gains.empty:
        why = "; ".join(missing) or "no finished trained cell"
        return head + f'<p class="reason">No per-class AP: {esc(why)}.</p>'

    def item(r: Any) -> str:
        sign = "pos" if r.delta > 0 else "neg" if r.delta < 0 else ""
        return (f'<span data-class="{esc(r.cls)}">{esc(r.cls)} <span class="delta {sign}">{r.delta:+.1f}</span> '
                f'<span class="n">({r.baseline_AP:.1f} → {r.AP:.1f})</span></span>')

    compact = gains.groupby(["detector", "variant"]).size().max() > ALL_CLASSES_UP_TO
    out = [head, f'<table class="ablation classes" data-profile="{esc(profile)}"><thead><tr>'
           '<th class="lab">Detector</th><th class="lab">Variant</th>'
           + ("<th>gain most</th><th>lose most</th>" if compact else "<th>every class, by gain</th>")
           + "</tr></thead><tbody>"]
    for (det, var), g in gains.groupby(["detector", "variant"], sort=False):
        top, bottom = extremes(g)
        cells = [top] + ([bottom] if compact else [])
        out.append(f'<tr data-detector="{esc(det)}" data-variant="{esc(var)}"><th class="det">'
                   f'{esc(DETECTOR_NAMES.get(det, det))}</th><td class="rowlabel">{esc(VARIANT_NAMES.get(var, var))}</td>'
                   + "".join("<td>" + ", ".join(item(r) for r in c.itertuples()) + "</td>" for c in cells)
                   + "</tr>")
    out.append("</tbody></table>")
    if missing:
        out.append(f'<p class="meta">Not shown: {esc("; ".join(missing))}.</p>')
    return "\n".join(out)


def render_html(
    df: pd.DataFrame,
    models: list[TableModel],
    plots: dict[str, list[tuple[str, str, bytes]]],
    *,
    results_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    generated_at: datetime | None = None,
    skipped_plot_profiles: Iterable[str] = (),
    summary: dict[str, list[Headline]] | None = None,
    classes: Sequence[str] | None = None,
) -> str:
    """The whole report as one HTML string.

    ``plots`` maps a profile to (name, caption, PNG bytes), inlined as data
    URIs (the error-delta chart beside the size chart); ``out_dir`` is where the file will live, so that links to each cell's
    job.log are relative and survive copying the results folder; ``summary`` holds
    each profile's headlines (reports/summary.py); ``classes`` restricts the per-class view.
    """
    results_dir, out_dir = Path(results_dir).resolve(), Path(out_dir).resolve()
    when = (generated_at or datetime.now(timezone.utc)).strftime("%Y-%m-%d %H:%M UTC")
    profs = [m.profile for m in models]
    title = "SEPC ablation — profile " + ", ".join(profs[:4]) + (f" (+{len(profs) - 4} more)" if len(profs) > 4 else "")
    n_files = len(df)
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title>",
        f"<style>{CSS}</style>",
        "</head><body><main>",
        f"<h1>{esc(title)}</h1>",
        f'<p class="meta">Generated {esc(when)} from <code>{esc(results_dir)}</code> '
        f"({n_files} result file{'s' if n_files != 1 else ''}). Scale-equalizing Pyramid Convolution "
        "(SEPC, CVPR 2020) ablation: three detectors × five variants, COCO box AP, latency and cost. "
        '<a href="#status">Sweep status</a> · <a href="#details">per-cell details</a></p>',
    ]
    counts = _status_counts(df, models)
    out.append('<div class="badges">' + "".join(
        f'<span class="badge {esc(k.replace(" ", "-"))}">{esc(k)}: {v}</span>' for k, v in counts.items()) + "</div>")
    out.append(_summary(summary or {}))
    skipped = list(skipped_plot_profiles)
    perf = read_perf(results_dir)  # `bench perf` output beside the results: under latency, once
    for m in models:
        out.append(f'<h2 id="profile-{esc(m.profile)}">Profile <code>{esc(m.profile)}</code></h2>')
        released = any(r.startswith(ROW_RELEASED) for _d, r in m.block("ap").entries.index)
        if m.profile in PUBLISHED_PROFILES or released:
            shown = ["published values (SEPC, CVPR 2020, R-50-FPN 1x)"] if m.profile in PUBLISHED_PROFILES else []
            shown += ["the authors' released checkpoints evaluated here (shaded <i>released</i> rows)"] if released else []
            out.append(f'<p class="meta">Shown beside ours: {" and ".join(shown)}.</p>')
        for b in m.blocks:
            out.append(f"<h3>{esc(b.title)}</h3>")
            out.append(block_html(b, m.profile))
            if b.key == "latency" and perf:
                out.append('<h3 id="perf">Speed benchmark (<code>python -m bench perf</code>)</h3>')
                out.append(perf_html(perf))
                perf = None
        out.append('<ul class="notes">' + "".join(f"<li>{esc(f)}</li>" for f in m.footnotes) + "</ul>")
        figs = {name: f"<figure>{_png_tag(png, caption)}<figcaption>{esc(caption)}</figcaption></figure>"
                for name, caption, png in plots.get(m.profile, [])}
        for name, fig in figs.items():
            if name == "error_deltas" and "ap_gain_by_size" in figs:
                continue  # drawn beside the size chart
            if name == "ap_gain_by_size" and "error_deltas" in figs:
                fig = f'<div class="pair" data-profile="{esc(m.profile)}">{fig}{figs["error_deltas"]}</div>'
            out.append(fig)
        if len(df):
            out.append(class_gains_html(df, m.profile, classes))
    if skipped:
        out.append(f'<p class="meta">Plots omitted for {len(skipped)} more profiles: {esc(", ".join(skipped))}.</p>')
    out.append(forecast_html(read_pilots(results_dir)))
    out.append(_status_section(df, models, results_dir, out_dir))
    out.append('<h2 id="details">Per-cell details</h2>')
    if len(df):
        opened = " open" if len(df) <= OPEN_DETAILS_UP_TO else ""
        out.append(f"<details{opened}><summary>{len(df)} result files: config hash, seed, wall time, device, "
                   "versions, requeues, job.log</summary>")
        out.append(_details_table(df, results_dir, out_dir))
        out.append("</details>")
    else:
        out.append('<p class="reason">The store holds no result.json yet.</p>')
    out.append("<footer>Built by <code>python -m reports</code> from the result store only "
               "(docs/results-schema.md); the same numbers are in table.csv.</footer>")
    out.append("</main></body></html>")
    return "\n".join(out) + "\n"
