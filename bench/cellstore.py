"""The result store's writer: one folder per cell, one JSON row per folder, written atomically;
the config each cell trained; and the per-cell claim that lets one process at a time run it.

Nothing finished is ever lost: every write goes to a temp file in the same folder and is renamed
over the old one, so a crash leaves the previous complete file, never half a file. The format
itself is reports/schema.py's; the reader is reports/store.py.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from bench.plan.cells import Cell
from reports.schema import SCHEMA_VERSION, atomic_write_json, check_status, read_json
from reports.store import read_log_tail

#: The resolved config a cell trained, as its config hash hashes it (bench/plan/config.py).
CONFIG_FILE = "config.json"
#: One lock file per cell, beside the cells: held by the process that runs or submits the cell.
CLAIMS_DIR = ".claims"


def now() -> str:
    """The time, as every row stamps it (UTC, ISO 8601, seconds)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks (checkpoints are hundreds of MiB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
    def config_path(self) -> Path:
        return self.dir / CONFIG_FILE

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
        from bench.run import ddp

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

    def stored_config(self) -> dict | None:
        """The config the cell's job ran (written when it started), if it recorded one."""
        return read_json(self.config_path)

    def progress(self) -> dict | None:
        return read_json(self.progress_path)

    def log_tail(self, lines: int = 30) -> str:
        return read_log_tail(self.log_path, lines=lines) or ""


class Claims:
    """This process's claims on cells of one results folder: an exclusive ``flock`` per cell,
    taken without waiting and held until released (or the process ends, which releases it).

    Whoever holds a cell's claim decides alone whether to run it, so two sweeps started in the
    same second cannot both train it into the same folder."""

    def __init__(self, results: str | Path) -> None:
        self.results = Path(results)
        self._held: dict[str, IO] = {}

    def take(self, cell: Cell) -> int | None:
        """Claim ``cell``: None when it is now ours, else the pid of the process holding it."""
        if cell.key in self._held:
            return None
        folder = self.results / CLAIMS_DIR
        folder.mkdir(parents=True, exist_ok=True)
        fh = open(folder / f"{cell.key}.lock", "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip()
            fh.close()
            return int(holder) if holder.isdigit() else 0
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._held[cell.key] = fh
        return None

    def release(self, cell: Cell) -> None:
        fh = self._held.pop(cell.key, None)
        if fh is not None:
            fh.truncate(0)
            fh.close()  # closing the file drops the lock

    def release_all(self) -> None:
        for fh in self._held.values():
            fh.truncate(0)
            fh.close()
        self._held.clear()

    def __enter__(self) -> Claims:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release_all()
