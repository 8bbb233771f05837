"""The result store's format, defined once: the cell key, the statuses, the metric columns and
their dtypes, and the atomic write. The writer (``bench``) writes and validates with it, the
reader (``reports``) reads by it (docs/results-schema.md).

It imports nothing of the project but the statistics room's names (a leaf), so the harness may
import it (``bench`` -> ``reports``) without the reports ever depending on the harness.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from reports.stats.tide import MAIN_ERRORS, SPECIAL_ERRORS

#: Version of the row layout (``schema`` in every result.json).
SCHEMA_VERSION = 1

#: Where a cell's numbers come from: trained by the harness, or an authors' checkpoint evaluated.
SOURCES: tuple[str, ...] = ("trained", "released")

_KEY = re.compile(r"^(?P<detector>[a-z0-9_]+?)__(?P<variant>[a-z0-9_]+?)__s(?P<seed>\d+)"
                  r"(?:__(?P<source>[a-z]+))?$")


def cell_key(detector: str, variant: str, seed: int = 0, source: str = "trained") -> str:
    """The folder name of a cell in the store: ``<detector>__<variant>__s<seed>[__<source>]``
    (the suffix only for sources other than ``trained``)."""
    return f"{detector}__{variant}__s{seed}" + ("" if source == "trained" else f"__{source}")


def parse_cell_key(key: str) -> dict[str, Any]:
    """detector, variant, seed and source of a :func:`cell_key`."""
    m = _KEY.match(key)
    if not m or (m["source"] or "trained") not in SOURCES:
        raise ValueError(f"not a cell key: {key!r} (detector__variant__s<seed>[__released])")
    return dict(detector=m["detector"], variant=m["variant"], seed=int(m["seed"]),
                source=m["source"] or "trained")


#: The TIDE error decomposition of a cell's detections (reports.stats.tide), in AP points.
TIDE_COLUMNS: tuple[str, ...] = tuple(f"tide_{k}" for k in ("AP", *MAIN_ERRORS, *SPECIAL_ERRORS))
#: How many errors of each main type (reports.stats.tide's counts).
TIDE_COUNT_COLUMNS: tuple[str, ...] = tuple(f"tide_n_{k}" for k in MAIN_ERRORS)

#: How a row's latency was measured (``latency_protocol``): a local sweep's cells timed together
#: after training (bench/run/timing.py), or each job timing itself on its own device.
LATENCY_INTERLEAVED = "interleaved"
LATENCY_PER_JOB = "per-job"

#: Files a cell's folder holds besides result.json (docs/results-schema.md).
DETECTIONS_FILE = "detections.bbox.json"  # COCO-format detections on the evaluation split
RECORDS_FILE = "eval_records.npz"         # their per-image COCOeval records (reports.stats)

#: COCO box metrics of a row, in percent (0-100), pycocotools' numbers.
METRICS: tuple[str, ...] = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR100")
#: mmdet's CocoMetric item (``coco/bbox_<item>``) of each metric.
COCO_METRIC_ITEMS: dict[str, str] = {"mAP": "AP", "mAP_50": "AP50", "mAP_75": "AP75",
                                     "mAP_s": "APs", "mAP_m": "APm", "mAP_l": "APl",
                                     "AR@100": "AR100"}

#: Every status a cell's ``result.json`` may hold.
#: pending (submitted, not started) -> running -> done | failed | cancelled; a running SLURM job
#: that was preempted or hit its time limit checkpoints and becomes ``requeued`` until it runs
#: again.
STATUSES: tuple[str, ...] = ("pending", "running", "requeued", "done", "failed", "cancelled")
#: The scheduler still owns these cells: they are neither finished nor to be submitted again.
ACTIVE: tuple[str, ...] = ("running", "requeued", "pending")
#: Ended without a result.
ENDED_BAD: tuple[str, ...] = ("failed", "cancelled")
#: Most urgent first: what a group of cells (the seeds of one table cell) shows when they
#: disagree.
URGENCY: tuple[str, ...] = ("failed", "running", "requeued", "pending", "cancelled")


def check_status(status: str) -> str:
    """``status`` if the schema knows it; the writer calls this before anything reaches disk."""
    if status not in STATUSES:
        raise ValueError(
            f"unknown cell status {status!r} (the schema knows: {', '.join(STATUSES)})"
        )
    return status


#: Columns of the store, in the schema's order, with their dtype.
SCHEMA: dict[str, str] = {
    "schema": "Int64",
    "cell_key": "str",
    "profile": "str",
    "detector": "str",
    "variant": "str",
    "seed": "Int64",
    "source": "str",
    "status": "str",
    "error": "str",
    "log_tail": "str",
    **dict.fromkeys(METRICS, "float"),
    "latency_ms": "float",
    "latency_p10_ms": "float",
    "latency_p90_ms": "float",
    "latency_paper_ms": "float",
    "latency_input": "str",
    "latency_protocol": "str",  # LATENCY_INTERLEAVED or LATENCY_PER_JOB
    "latency_group": "str",  # cells timed in the same interleaved rounds share it
    "latency_rounds_ms": "str",  # JSON list: the model step of each interleaved round
    "params": "Int64",
    "flops": "float",
    "wall_s": "float",
    "train_iters": "Int64",
    "iters_requested": "Int64",  # --max-iters; null: the profile's own schedule
    "iters_run": "Int64",
    "requeues": "Int64",
    "world_size": "Int64",
    "imgs_per_device": "Int64",
    "total_batch": "Int64",
    "lr": "float",
    "eval_images": "Int64",
    "train_peak_mem_mb": "float",
    "config_hash": "str",
    "device": "str",
    "host": "str",
    "git_commit": "str",
    "versions": "str",
    "job_id": "str",
    "started_at": "str",
    "finished_at": "str",
    "ann_file": "str",
    "checkpoint": "str",
    "checkpoint_sha256": "str",
    **dict.fromkeys(TIDE_COLUMNS, "float"),
    **dict.fromkeys(TIDE_COUNT_COLUMNS, "Int64"),
    "tide_note": "str",
    "class_AP": "str",  # JSON object: class name -> COCO AP (percent) of that class
}
COLUMNS: tuple[str, ...] = tuple(SCHEMA)


def atomic_write(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write ``data`` through a temporary file in the same folder, fsync, rename: a reader (or a
    crash) sees the old complete file or the new one, never half of one. Mode 0644, so that a
    report or a row is readable by whoever reads the results folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_json(path: str | os.PathLike, data: Any) -> Path:
    return atomic_write(path, json.dumps(data, indent=1, sort_keys=True, default=str) + "\n")


def read_json(path: str | os.PathLike, required: bool = False) -> Any:
    """A JSON file's content. A file that is absent or not (yet) JSON reads as None: rows and
    progress files are read while jobs write them. ``required``: it raises instead."""
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        if required:
            raise
        return None
