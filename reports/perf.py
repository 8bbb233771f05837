"""The speed benchmark (``python -m bench perf``) in the report: read ``perf.json`` from the
results folder, render it under the latency block (HTML) or as ``perf.md``. Reads the file
only, like the rest of reports/."""
from __future__ import annotations

import html
import json
import os
from pathlib import Path
from typing import Any

from reports.store import DETECTOR_NAMES, VARIANT_NAMES

PERF_FILE = "perf.json"


def read_perf(results_dir: str | os.PathLike[str]) -> dict | None:
    """The perf document next to the results, or None (absent or not a perf document)."""
    path = Path(results_dir) / PERF_FILE
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and isinstance(doc.get("rows"), list) else None


def _num(x: Any, digits: int) -> str:
    return "" if x is None else f"{x:.{digits}f}"


def _timing(row: dict, proto: str) -> str:
    if f"{proto}_median_ms" not in row:
        return "not run"
    return (f"{row[f'{proto}_median_ms']:.1f} ({row[f'{proto}_p10_ms']:.1f}–"
            f"{row[f'{proto}_p90_ms']:.1f})")


def _ratio(row: dict, proto: str) -> str:
    """Ratio of medians, and the median of per-round ratios in brackets."""
    if row.get(f"{proto}_ratio") is None:
        return ""
    paired = row.get(f"{proto}_ratio_paired")
    return _num(row[f"{proto}_ratio"], 3) + (f" ({paired:.3f})" if paired is not None else "")


def runtimes(doc: dict) -> list[str]:
    """The runtimes the document timed, in its order (rows without one are torch's)."""
    return list(dict.fromkeys(r.get("runtime", "torch") for r in doc["rows"]))


def side_by_side(doc: dict, size: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows of one size's model-step ratio to the baseline, one column per runtime
    (median ms in brackets): what SEPC costs on each runtime, next to each other."""
    rts = runtimes(doc)
    head = ["Detector", "Variant", *(f"{rt}: × baseline (paired), median ms" for rt in rts)]
    by_key = {(r["detector"], r["variant"], r.get("runtime", "torch")): r
              for r in doc["rows"] if r.get("size") == size}
    out = []
    for d, v in dict.fromkeys((d, v) for d, v, _ in by_key):
        cells = [DETECTOR_NAMES.get(d, d), VARIANT_NAMES.get(v, v)]
        for rt in rts:
            r = by_key.get((d, v, rt))
            cells.append("" if r is None or "step_median_ms" not in r else
                         f"{_ratio(r, 'step')}, {r['step_median_ms']:.1f}")
        out.append(cells)
    return head, out


def perf_html(doc: dict) -> str:
    """One table per input size: latency (median, p10–p90), ratio to the baseline, cost."""
    m, esc = doc.get("meta", {}), html.escape
    out = [f'<p class="meta">Speed benchmark, random weights, variants timed interleaved '
           f'(<code>{esc(str(m.get("command", "python -m bench perf")))}</code>): '
           f'{esc(str(m.get("device", "")))}, {esc(str(m.get("dtype", "")))}, torch '
           f'{esc(str(m.get("torch", "")))}, BN folded: {esc(str(m.get("fused_bn", "")))}, '
           f'{esc(str(m.get("date", "")))}. FLOPs: {esc(str(m.get("flops_note", "")))}. '
           f'Peak memory: {esc(str(m.get("memory_note", "")))}.</p>']
    sizes = dict.fromkeys(r.get("size") for r in doc["rows"])
    head = ["Detector", "Variant", "Runtime", "model step ms (p10–p90)", "× baseline (paired)",
            f"batch-{m.get('batch', 8)} ms/image (p10–p90)", "× baseline (paired)", "params (M)",
            "GFLOPs", "peak memory (MiB)"]
    for size in sizes:
        rows = [r for r in doc["rows"] if r.get("size") == size]
        out.append(f'<table class="perf" data-size="{esc(str(size))}"><caption>{esc(str(size))} '
                   f'size, input {esc(str(rows[0].get("input", "")))}</caption><thead><tr>'
                   + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr></thead><tbody>")
        for r in rows:
            flops = r.get("flops")
            cells = [DETECTOR_NAMES.get(r["detector"], r["detector"]),
                     VARIANT_NAMES.get(r["variant"], r["variant"]), r.get("runtime", "torch"),
                     _timing(r, "step"),
                     _ratio(r, "step"), _timing(r, "batch"), _ratio(r, "batch"),
                     _num(r.get("params", 0) / 1e6, 2),
                     _num(flops / 1e9 if flops else None, 2), _num(r.get("peak_mem_mb"), 1)]
            out.append(f'<tr data-detector="{esc(r["detector"])}" data-variant='
                       f'"{esc(r["variant"])}" data-runtime="{esc(r.get("runtime", "torch"))}">'
                       + "".join(f"<td>{esc(c)}</td>" for c in cells) + "</tr>")
        out.append("</tbody></table>")
        if len(runtimes(doc)) > 1:
            h, body = side_by_side(doc, size)
            out.append(f'<table class="perf perf-runtimes" data-size="{esc(str(size))}"><caption>'
                       f'{esc(str(size))} size: model step × baseline by runtime</caption>'
                       '<thead><tr>' + "".join(f"<th>{esc(c)}</th>" for c in h)
                       + "</tr></thead><tbody>" + "".join(
                           "<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>"
                           for row in body) + "</tbody></table>")
    if m.get("onnx_note"):
        out.append(f'<p class="meta">ONNX Runtime: {esc(str(m["onnx_note"]))}.</p>')
    return "\n".join(out)


def _load(meta: dict) -> str:
    load = meta.get("load_avg")
    return "/".join(f"{x:.1f}" for x in load) + " (1/5/15 min) at the end" if load else "n/a"


def perf_markdown(doc: dict) -> str:
    """The results as one Markdown table per size, then the settings."""
    m = doc["meta"]
    out = []
    for size in dict.fromkeys(r["size"] for r in doc["rows"]):
        rows = [r for r in doc["rows"] if r["size"] == size]
        out += [f"### {size} size (input {rows[0]['input']})", "",
                f"| detector | variant | runtime | step ms (p10-p90) | x baseline (paired) | "
                f"batch-{m['batch']} ms/img (p10-p90) | x baseline (paired) | params M | GFLOPs | "
                "peak mem MiB |",
                "|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            flops = r.get("flops")
            out.append(
                f"| {r['detector']} | {VARIANT_NAMES.get(r['variant'], r['variant'])} | "
                f"{r.get('runtime', 'torch')} | {_timing(r, 'step')} | {_ratio(r, 'step')} | "
                f"{_timing(r, 'batch')} | "
                f"{_ratio(r, 'batch')} | {_num(r['params'] / 1e6, 2)} | "
                f"{_num(flops / 1e9 if flops else None, 2)} | {_num(r.get('peak_mem_mb'), 1)} |")
        out.append("")
        if len(runtimes(doc)) > 1:
            h, body = side_by_side(doc, size)
            out += [f"Model step x baseline by runtime, {size} size:", "",
                    "| " + " | ".join(h) + " |", "|" + "---|" * len(h),
                    *("| " + " | ".join(row) + " |" for row in body), ""]
    out += [f"{m['device']}, {m['dtype']}, torch {m['torch']}, deformable conv "
            f"`{m['deform_impl']}`, BN folded: {m['fused_bn']}, channels-last: "
            f"{m['channels_last']}; model step: {m['warmup']} warm-up + {m['reps']} interleaved "
            f"repetitions; batch-{m['batch']} protocol (normalise + pad + forward + NMS, "
            f"no decoding): {m['batch_warmup']} + {m['batch_reps']} at "
            f"{', '.join(m['batch_sizes']) or 'no size'}. FLOPs: {m['flops_note']}. "
            f"Peak memory: {m['memory_note']}. "
            + (f"ONNX Runtime: {m['onnx_note']}. " if m.get("onnx_note") else "")
            + f"`{m['command']}`, {m['date']}, load average {_load(m)}.", ""]
    return "\n".join(out)
