"""The result store: one folder per cell, one JSON row per folder, written atomically.

Nothing finished is ever lost: every write goes to a temp file in the same folder and is renamed
over the old one, so a crash leaves the previous complete file, never half a file.
"""
from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from reports.schema import (SCHEMA_VERSION, atomic_write, atomic_write_json,  # noqa: F401
                            check_status)

from . import ddp
from .matrix import Cell

REPO = Path(__file__).resolve().parent.parent


def default_results(profile: str) -> Path:
    return REPO / "results" / profile


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks (checkpoints are hundreds of MiB)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


class CellStore:
    """Paths and rows of one cell in a results folder."""

    def __init__(self, results: str | Path, cell: Cell) -> None:
        self.results = Path(results)
        self.cell = cell
        self.dir = self.results / cell.key

    @property
    def result_path(self) -> Path:
        return self.dir / "result.json"

    @property
    def work_dir(self) -> Path:
        return self.dir / "work_dir"

    @property
    def progress_path(self) -> Path:
        return self.dir / "progress.json"

    @property
    def log_path(self) -> Path:
        return self.dir / "job.log"

    def read(self) -> dict | None:
        return read_json(self.result_path)

    def write(self, **fields: Any) -> dict:
        """Merge ``fields`` into the cell's row and write it atomically.

        Only rank 0 of a distributed job writes the store (the other ranks would race it), and
        only statuses the schema knows reach the disk."""
        rank = ddp.rank()
        if rank != 0:
            raise RuntimeError(f"rank {rank} tried to write {self.result_path}: only rank 0 "
                               "writes the result store")
        if "status" in fields:
            check_status(fields["status"])
        row = self.read() or {}
        row.update(schema=SCHEMA_VERSION, cell_key=self.cell.key, **self.cell.as_dict())
        row.update(fields)
        atomic_write_json(self.result_path, row)
        return row

    def progress(self) -> dict | None:
        return read_json(self.progress_path)

    def log_tail(self, lines: int = 30) -> str:
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                fh.seek(max(0, fh.tell() - 64 * 1024))
                text = fh.read().decode(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])
