"""``sweep.json``: which job runs or ran each cell of a results folder, so that status, cancel
and table work later from any shell; and the folder submitit keeps a submission's files in."""
from __future__ import annotations

import time
from pathlib import Path

import submitit

from bench.cellstore import now
from reports.schema import atomic_write_json, read_json

SWEEP_FILE = "sweep.json"


def submitit_folder(results: Path) -> Path:
    """A new folder for one submission's submitit files."""
    return results / ".submitit" / time.strftime("%Y%m%d-%H%M%S")


def recorded(results: Path, executor: str | None = None) -> dict[str, dict]:
    """cell key -> its job record (executor, job_id, folder, submitted_at), of one executor."""
    cells = (read_json(results / SWEEP_FILE) or {}).get("cells", {})
    return {k: v for k, v in cells.items() if executor is None or v.get("executor") == executor}


def record_jobs(results: Path, jobs: dict[str, submitit.Job], executor: str) -> None:
    """Record the jobs just submitted for these cells."""
    path = results / SWEEP_FILE
    sweep = read_json(path) or {"cells": {}}
    for key, job in jobs.items():
        sweep["cells"][key] = dict(executor=executor, job_id=str(job.job_id),
                                   folder=str(job.paths.folder), submitted_at=now())
    sweep["updated_at"] = now()
    atomic_write_json(path, sweep)
