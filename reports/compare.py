"""Comparing two cells of a result store: their detections and cached per-image records read
from the cells' folders, then the paired bootstrap (``reports.stats``). ``bench compare`` and
the report's headlines read cells through here; the job writes the records file with
:func:`save_records`."""
from __future__ import annotations

import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from reports.schema import DETECTIONS_FILE, RECORDS_FILE, atomic_write
from reports.stats import (DEFAULT_METRICS, BootstrapResult, EvalRecords, bootstrap_detections,
                           covers, paired_bootstrap, records_from_arrays, records_to_arrays)


def save_records(records: EvalRecords, path: str | os.PathLike) -> Path:
    """Write records as a plain npz (no pickle), atomically."""
    buf = io.BytesIO()
    np.savez(buf, **records_to_arrays(records))
    return atomic_write(path, buf.getvalue())


def load_records(path: str | os.PathLike) -> EvalRecords:
    with np.load(path, allow_pickle=False) as z:
        return records_from_arrays({k: z[k] for k in z.files})


def read_json(path: str | os.PathLike) -> Any:
    with open(path) as fh:
        return json.load(fh)


def _resolve_ann(ann: str, cell: Path) -> Path:
    """The cell's annotation file: as recorded, else next to the cell or its results folder (a
    results folder copied from another machine)."""
    cand = [Path(ann)]
    if not Path(ann).is_absolute():
        cand += [cell / ann, cell.parent / ann]
    for c in cand:
        if c.is_file():
            return c
    tried = [str(c) for c in cand]
    raise FileNotFoundError(f"ann_file {ann!r} of {cell} not found (tried {tried})")


def load_cell(cell_dir: str | os.PathLike) -> tuple[Path, Path]:
    """(detections file, annotation file) of a result-store cell folder."""
    cell = Path(cell_dir)
    res = cell / "result.json"
    dets = cell / DETECTIONS_FILE
    if not res.is_file():
        raise FileNotFoundError(f"{res} missing")
    if not dets.is_file():
        raise FileNotFoundError(f"{dets} missing (cell not evaluated?)")
    ann = read_json(res).get("ann_file")
    if not ann:
        raise ValueError(f"{res} has no ann_file")
    return dets, _resolve_ann(str(ann), cell)


def cached_records(cell: str | os.PathLike, metrics: Sequence[str]) -> EvalRecords | None:
    """The cell's cached records if they cover the area ranges ``metrics`` need."""
    path = Path(cell) / RECORDS_FILE
    if not path.is_file():
        return None
    try:
        records = load_records(path)
    except (OSError, ValueError, KeyError, TypeError):
        return None  # unreadable cache: evaluate again
    return records if covers(records, metrics) else None


def bootstrap_cells(
    variant_cell: str | os.PathLike,
    baseline_cell: str | os.PathLike,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    metrics: Sequence[str] = DEFAULT_METRICS,
    ann_file: str | os.PathLike | None = None,
    workers: int = 1,
) -> BootstrapResult:
    """Paired bootstrap of two result-store cells (for `bench compare A B`).

    Uses each cell's cached records, else evaluates its detections against result.json's
    ann_file; both cells must have been evaluated on the same annotation file (or pass
    `ann_file` to override).
    """
    dv, av = load_cell(variant_cell)
    db, ab = load_cell(baseline_cell)
    if ann_file is None:
        if av.resolve() != ab.resolve():
            raise ValueError(f"cells were evaluated on different annotation files: {av} vs {ab}")
        ann_file = av
    rv = cached_records(variant_cell, metrics)
    rb = cached_records(baseline_cell, metrics)
    if rv is None or rb is None:
        return bootstrap_detections(read_json(ann_file), read_json(dv), read_json(db),
                                    n_boot=n_boot, seed=seed, level=level, metrics=metrics,
                                    workers=workers)
    return paired_bootstrap(rv, rb, n_boot=n_boot, seed=seed, level=level, metrics=metrics,
                            workers=workers)
