"""Read the result store (docs/results-schema.md) into one tidy DataFrame.

Reports depend on the store and nothing else (benchopt's rule), so this module
imports no part of ``bench`` or ``sepc`` (only the matrix's data, for labels and
order): a copied results folder is enough to rebuild every table and plot.
``bench.load`` is the harness's name for :func:`read_results`.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

from experiments.matrix import DETECTORS as MATRIX_DETECTORS
from experiments.matrix import VARIANTS as MATRIX_VARIANTS
from reports.schema import COLUMNS, METRICS, SCHEMA, SOURCES, STATUSES  # noqa: F401 (re-exported)

#: Canonical order and display names of the table: the matrix's (experiments/matrix.py).
DETECTORS: tuple[str, ...] = tuple(MATRIX_DETECTORS)
VARIANTS: tuple[str, ...] = tuple(MATRIX_VARIANTS)
#: The paper's grid: always shown (a cell with no result reads "not run"); other rows and
#: columns of the matrix appear when the store holds them.
PAPER_DETECTORS: tuple[str, ...] = tuple(k for k, d in MATRIX_DETECTORS.items() if d.paper)
PAPER_VARIANTS: tuple[str, ...] = tuple(k for k, v in MATRIX_VARIANTS.items() if v.paper)
DETECTOR_NAMES: dict[str, str] = {k: d.label for k, d in MATRIX_DETECTORS.items()}
VARIANT_NAMES: dict[str, str] = {k: v.label for k, v in MATRIX_VARIANTS.items()}


def applies(detector: str, variant: str) -> bool:
    """Whether the matrix has that cell: a variant a row does not take (``Detector.variants``)
    reads n/a in the table rather than not run. Names the matrix does not know apply."""
    d = MATRIX_DETECTORS.get(detector)
    return d is None or variant not in MATRIX_VARIANTS or d.takes(variant)


def grid(found: Any, kind: str) -> list[str]:
    """Rows (``kind="detector"``) or columns (``"variant"``) of a table: the paper's, then the
    matrix's others present in ``found``, then unknown names, sorted."""
    paper, order = (
        (PAPER_DETECTORS, DETECTORS) if kind == "detector" else (PAPER_VARIANTS, VARIANTS)
    )
    names = {str(v) for v in found if isinstance(v, str)}
    return [*paper, *(n for n in order if n in names and n not in paper),
            *sorted(names - set(order))]


def _order(values: pd.Series, canonical: tuple[str, ...]) -> pd.Series:
    """Sort key: canonical names first in paper order, unknown names after."""
    rank = {name: i for i, name in enumerate(canonical)}
    return values.map(lambda v: "~" if _isna(v) else f"{rank.get(v, len(rank)):03d}{v}")


def _isna(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _coerce(df: pd.DataFrame) -> pd.DataFrame:
    for col, dtype in SCHEMA.items():
        s = df[col]
        if dtype == "float":
            df[col] = pd.to_numeric(s, errors="coerce").astype("float64")
        elif dtype == "Int64":
            num = pd.to_numeric(s, errors="coerce")
            # Keep a fractional value (a writer's bug) visible rather than truncating it.
            whole = num.dropna()
            df[col] = num.astype("Int64") if (whole == whole.round()).all() else num
        else:
            # Strings stay strings; anything else (a list, a dict) is stored as JSON text.
            df[col] = s.map(
                lambda v: v if isinstance(v, str) or _isna(v) else json.dumps(v)
            ).astype(object)
    return df


def read_results(results_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """One row per ``*/result.json`` under ``results_dir``, exactly per the schema.

    Missing keys are NaN (NA for integer columns), extra keys are kept as extra
    columns after the schema's, and rows are sorted by detector, variant (paper
    order), seed, source. A result.json that cannot be parsed is skipped with a
    warning and its path is listed in ``df.attrs["unreadable"]`` so that a
    report can say so instead of silently dropping a cell.
    """
    root = Path(results_dir)
    records: list[dict[str, Any]] = []
    unreadable: list[str] = []
    for path in sorted(root.glob("*/result.json")):
        try:
            with open(path, encoding="utf-8") as fh:
                rec = json.load(fh)
            if not isinstance(rec, dict):
                raise ValueError("result.json is not a JSON object")
        except (OSError, ValueError) as exc:  # JSONDecodeError is a ValueError
            warnings.warn(f"skipping unreadable {path}: {exc}", stacklevel=2)
            unreadable.append(str(path))
            continue
        rec.setdefault("cell_key", path.parent.name)
        records.append(rec)
    df = pd.DataFrame.from_records(records) if records else pd.DataFrame()
    extra = [c for c in df.columns if c not in SCHEMA]
    df = df.reindex(columns=[*COLUMNS, *extra])
    df = _coerce(df)
    if len(df):
        df = df.sort_values(
            ["detector", "variant", "seed", "source", "cell_key"],
            key=lambda s: _order(s, DETECTORS)
            if s.name == "detector"
            else _order(s, VARIANTS)
            if s.name == "variant"
            else _order(s, SOURCES)
            if s.name == "source"
            else s,
            na_position="last",
            kind="stable",
        ).reset_index(drop=True)
    df.attrs["results_dir"] = str(root)
    df.attrs["unreadable"] = unreadable
    return df


def read_scalars(cell_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """mmengine's ``scalars.json`` (JSON lines) of one cell as a DataFrame.

    Tolerates a half-written last line (a running job) and blank lines; returns
    an empty frame when the file is absent, so curves of unfinished cells draw
    what exists.
    """
    path = Path(cell_dir) / "scalars.json"
    rows: list[dict[str, Any]] = []
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if isinstance(rec, dict):
                    rows.append(rec)
    except OSError:
        return pd.DataFrame()
    return pd.DataFrame.from_records(rows)


def read_log_tail(
    path: str | os.PathLike[str], lines: int = 20, max_bytes: int = 64_000
) -> str | None:
    """Last ``lines`` lines of a (possibly huge) log, reading only its end."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            data = fh.read()
    except OSError:
        return None
    text = data.decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def read_curves(
    cell_dir: str | os.PathLike[str], metric: str = "coco/bbox_mAP"
) -> dict[str, list[float]]:
    """Loss per iteration and ``metric`` per evaluation from one cell's scalars.json.

    Plain lists, no DataFrame: the curves plot reads one file per cell and a
    sweep of 1,500 cells must stay quick. mmengine logs epoch-based evaluations
    at the epoch number, so such a step is mapped to the last logged iteration
    of that epoch (``eval_step``); iteration-based ones are iterations already.
    """
    loss_step: list[float] = []
    loss: list[float] = []
    eval_step: list[float] = []
    ap: list[float] = []
    epoch_end: dict[float, float] = {}
    try:
        fh = open(Path(cell_dir) / "scalars.json", encoding="utf-8", errors="replace")
    except OSError:
        return {"loss_step": loss_step, "loss": loss, "eval_step": eval_step, "ap": ap}
    with fh:
        for line in fh:
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # blank or half-written line
            if not isinstance(rec, dict) or not isinstance(rec.get("step"), (int, float)):
                continue
            step = float(rec["step"])
            if isinstance(rec.get("loss"), (int, float)):
                loss_step.append(step)
                loss.append(float(rec["loss"]))
                if isinstance(rec.get("epoch"), (int, float)):
                    epoch_end[float(rec["epoch"])] = max(
                        step, epoch_end.get(float(rec["epoch"]), step)
                    )
            elif isinstance(rec.get(metric), (int, float)):
                eval_step.append(step)
                ap.append(float(rec[metric]))
    if (
        epoch_end
        and eval_step
        and loss_step
        and max(eval_step) <= max(epoch_end)
        and max(eval_step) < max(loss_step) / 2
    ):
        eval_step = [epoch_end.get(e, math.nan) for e in eval_step]
    return {"loss_step": loss_step, "loss": loss, "eval_step": eval_step, "ap": ap}
