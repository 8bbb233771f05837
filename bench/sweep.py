"""The harness's verbs over a set of cells: plan, run, status.

``run`` is idempotent: a cell whose result is done is skipped (``force`` reruns it from scratch),
a failed one is rerun only with ``retry_failed`` (which then runs only the failed ones), and a
cell that was interrupted resumes from its last checkpoint.
"""
from __future__ import annotations

import math
import os
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

from reports.schema import ACTIVE, ENDED_BAD

from .configs import (Layout, Options, cell_conventions, cell_profile, config_hash, layout,
                      reference_batch, resolve, scaled_lr)
from .matrix import Cell, MatrixError
from .store import CellStore


@dataclass
class PlannedCell:
    cell: Cell
    config_hash: str
    layout: Layout
    lr: float | None
    lr_note: str | None  # set when the total batch differs from the profile's: lr was scaled
    config: object  # the resolved mmengine Config

    @property
    def gpus(self) -> int:
        return self.layout.nodes * self.layout.gpus_per_node

    def row(self) -> dict:
        train = self.config.train_cfg or {}  # a released cell does not train
        lay, trains = self.layout, self.cell.source != "released"
        return dict(profile=self.cell.profile, cell=self.cell.key, detector=self.cell.detector,
                    variant=self.cell.variant, seed=self.cell.seed,
                    config_hash=self.config_hash,
                    nodes=lay.nodes, tasks_per_node=lay.tasks_per_node, gpus=self.gpus,
                    imgs_per_gpu=lay.imgs_per_device if trains else None,
                    total_batch=lay.total_batch if trains else None, lr=self.lr,
                    max_epochs=train.get("max_epochs"), max_iters=train.get("max_iters"),
                    clip_grad=((self.config.optim_wrapper or {}).get("clip_grad") or {}).get(
                        "max_norm"),
                    head=self.config.model.bbox_head.type, conventions=cell_conventions(self.cell))


def plan(cells: list[Cell], opts: Options = Options()) -> list[PlannedCell]:
    """Resolve every cell's config (this validates data root, names and layout before anything
    runs)."""
    out = []
    for cell in cells:
        cfg = resolve(cell, opts)
        lay = layout(cell, opts)
        if cell.source == "released":  # evaluated only: one image at a time, no optimizer
            out.append(PlannedCell(cell, config_hash(cfg), lay, None, None, cfg))
            continue
        lr = float(cfg.optim_wrapper.optimizer.lr)
        ref = reference_batch(cell_profile(cell))  # the profile's lr is for this batch
        note = scaled_lr(cell, opts, lr * ref / lay.total_batch)[1]
        out.append(PlannedCell(cell, config_hash(cfg), lay, lr, note, cfg))
    return out


def lr_notes(planned: list[PlannedCell]) -> list[str]:
    """One line per cell whose lr was scaled for a total batch other than the profile's."""
    return [p.lr_note for p in planned if p.lr_note]


def _alive_here(row: dict) -> bool:
    """A local job still running on this host (its pid alive and not a zombie)."""
    pid = row.get("pid")
    if row.get("host") != socket.gethostname() or not pid or row.get("executor") == "slurm":
        return False
    try:
        with open(f"/proc/{int(pid)}/status") as fh:
            return not any(line.startswith("State:") and "Z" in line.split()[1] for line in fh)
    except OSError:
        return False


def select(cells: list[Cell], results: Path, force: bool = False, retry_failed: bool = False,
           queued: dict[str, str] | None = None) -> tuple[list[Cell], dict[str, str]]:
    """Which cells to run now, and why each other one is skipped.

    A cell the scheduler still holds (pending, running, requeued: asked from SLURM by the job
    ids in sweep.json, see :func:`bench.executors.queued_cells`) is never run a second time;
    ``force`` runs it again, and its caller cancels the old job first.
    """
    if queued is None:
        from .executors import queued_cells

        queued = queued_cells(results)
    todo, skipped = [], {}
    for cell in cells:
        row = CellStore(results, cell).read() or {}
        status = row.get("status")
        if cell.key in queued and not force:
            skipped[cell.key] = f"{queued[cell.key]}; --force cancels it and submits it again"
        elif retry_failed:
            if status in ENDED_BAD:
                todo.append(cell)
            else:
                skipped[cell.key] = status or "not run"
        elif force:
            todo.append(cell)
        elif status == "done":
            skipped[cell.key] = "done"
        elif status == "failed":
            skipped[cell.key] = "failed (use --retry-failed)"
        elif status == "running" and _alive_here(row):
            skipped[cell.key] = f"running (pid {row['pid']})"
        else:
            todo.append(cell)
    return todo, skipped


def check_recipes(planned: list[PlannedCell], results: Path,
                  way_out: str = "pass --results DIR for this sweep, or --force to train them "
                                 "again") -> None:
    """Refuse a request whose done cells in ``results`` trained another recipe than it asks
    (iterations, total batch, lr): they would be skipped as done and tabulated as if they were
    this request's. Raises MatrixError naming them and the way out."""
    stale = []
    for p in planned:
        row = CellStore(results, p.cell).read() or {}
        if row.get("status") != "done" or p.cell.source == "released":
            continue
        asked, diffs = p.row(), []
        if asked["max_iters"] and row.get("train_iters") not in (None, asked["max_iters"]):
            diffs.append(f"{row['train_iters']} iterations, not {asked['max_iters']}")
        for key in ("total_batch", "lr"):
            had, want = row.get(key), asked.get(key)
            if had is not None and want is not None and not math.isclose(float(had), float(want)):
                diffs.append(f"{key} {had:g}, not {want:g}")
        if diffs:
            stale.append(f"{p.cell.key} ({', '.join(diffs)})")
    if stale:
        more = f" and {len(stale) - 1} more" if len(stale) > 1 else ""
        raise MatrixError(f"{results} holds done cells trained another way than this request: "
                          f"{stale[0]}{more}; {way_out}")


def reset(results: Path, cell: Cell) -> None:
    """--force: start the cell from zero (its old folder is removed)."""
    shutil.rmtree(CellStore(results, cell).dir, ignore_errors=True)


def status_rows(cells: list[Cell], results: Path) -> list[dict]:
    """One line per cell from the store, corrected by the scheduler's view of SLURM jobs."""
    from .executors import scheduler_states

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
        elif status == "running" and row.get("executor") != "slurm" and not _alive_here(row):
            status, detail = "interrupted", "local job gone; run again to resume"
        elif status == "pending" and row.get("executor") == "local" and not _alive_here(row):
            status, detail = "not run", "its local sweep stopped before it started"
        progress = store.progress() or {}
        if status.startswith("running") and progress.get("max_iters"):
            detail = f"{progress.get('phase')} {progress.get('iter')}/{progress['max_iters']}"
        rows.append(dict(cell=cell.key, status=status, scheduler=state or "",
                         AP=row.get("AP"), requeues=row.get("requeues") or 0,
                         job_id=row.get("job_id") or "", detail=detail))
    return rows


def env_threads() -> int:
    return len(os.sched_getaffinity(0))
