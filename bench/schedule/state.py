"""The state of a sweep's cells: which to run now and why each other one is skipped, what
each one is doing (the store, corrected by the scheduler), and starting one again from zero.

Running is idempotent: a cell whose result is done is skipped (``force`` reruns it from
scratch), a failed one is rerun only with ``retry_failed`` (which then runs only the failed
ones), and a cell that was interrupted resumes from its last checkpoint.
"""
from __future__ import annotations

import os
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

from bench.cellstore import CellStore, Claims
from bench.plan.cells import Cell
from bench.schedule.slurm import queued_cells, scheduler_states
from reports.schema import ACTIVE, ENDED_BAD


def alive_here(row: dict) -> bool:
    """A local job still running on this host (its pid alive and not a zombie)."""
    pid = row.get("pid")
    if row.get("host") != socket.gethostname() or not pid or row.get("executor") == "slurm":
        return False
    try:
        with open(f"/proc/{int(pid)}/status") as fh:
            return not any(line.startswith("State:") and "Z" in line.split()[1] for line in fh)
    except OSError:
        return False


@dataclass(frozen=True)
class Skip:
    """Why a selected cell does not run now: ``kind`` for the caller's choice of what to say
    (queued: the scheduler holds it; claimed: another process runs it here; done; failed;
    status: a --retry-failed request skips every other status), ``why`` the words."""

    kind: str
    why: str


def select(cells: list[Cell], results: Path, claims: Claims, force: bool = False,
           retry_failed: bool = False,
           queued: dict[str, str] | None = None) -> tuple[list[Cell], dict[str, Skip]]:
    """Which cells to run now, and why each other one is skipped: each cell's check and claim
    are one step (its ``claims`` lock is taken first; a cell that does not run is released).

    A cell the scheduler still holds (pending, running, requeued: asked from SLURM by the job
    ids in sweep.json, see :func:`bench.schedule.slurm.queued_cells`) is never run a second time;
    ``force`` runs it again, and its caller cancels the old job first. A cell another process
    claimed (a sweep started beside this one) is skipped, force or not.
    """
    if queued is None:
        queued = queued_cells(results)
    todo, skipped = [], {}
    for cell in cells:
        holder = claims.take(cell)
        if holder is not None:
            skipped[cell.key] = Skip("claimed", f"running (pid {holder})" if holder
                                     else "claimed by another process")
            continue
        row = CellStore(results, cell).read() or {}
        status = row.get("status")
        skip = None
        if cell.key in queued and not force:
            skip = Skip("queued", f"{queued[cell.key]}; --force cancels it and submits it again")
        elif retry_failed:
            if status not in ENDED_BAD:
                skip = Skip("status", status or "not run")
        elif force:
            pass
        elif status == "done":
            skip = Skip("done", "done")
        elif status == "failed":
            skip = Skip("failed", "failed (use --retry-failed)")
        elif status == "running" and alive_here(row):
            skip = Skip("claimed", f"running (pid {row['pid']})")
        if skip is None:
            todo.append(cell)
        else:
            skipped[cell.key] = skip
            claims.release(cell)
    return todo, skipped


def reset(results: Path, cell: Cell) -> None:
    """--force: start the cell from zero (its old folder is removed; its claim stays held)."""
    shutil.rmtree(CellStore(results, cell).dir, ignore_errors=True)


def status_rows(cells: list[Cell], results: Path) -> list[dict]:
    """One line per cell from the store, corrected by the scheduler's view of SLURM jobs."""
    sched = scheduler_states(results)
    rows = []
    for cell in cells:
        store = CellStore(results, cell)
        row = store.read() or {}
        status = row.get("status", "not run")
        state = sched.get(cell.key)
        detail = row.get("error") or ""
        if status in ACTIVE and state:
            if state in ("CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
                         "PREEMPTED", "BOOT_FAIL", "DEADLINE"):
                status = "cancelled" if state == "CANCELLED" else "failed"
                detail = detail or f"SLURM state {state}"
            elif state == "RUNNING":
                status = "running" if status != "requeued" else "running (requeued)"
            elif state == "PENDING":
                status = "pending" if status != "requeued" else "requeued"
        elif status == "running" and row.get("executor") != "slurm" and not alive_here(row):
            status, detail = "interrupted", "local job gone; run again to resume"
        elif status == "pending" and row.get("executor") == "local" and not alive_here(row):
            status, detail = "not run", "its local sweep stopped before it started"
        progress = store.progress() or {}
        if status.startswith("running") and progress.get("max_iters"):
            detail = f"{progress.get('phase')} {progress.get('iter')}/{progress['max_iters']}"
        rows.append(dict(cell=cell.key, status=status, scheduler=state or "",
                         AP=row.get("AP"), requeues=row.get("requeues") or 0,
                         job_id=row.get("job_id") or "", detail=detail))
    return rows


def env_threads() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0))
