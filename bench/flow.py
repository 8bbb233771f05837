"""The one run flow: planned cells to running (or submitted) cells, for ``bench run``,
``bench table --run-missing``, ``bench spread --run-missing`` and ``bench.run()`` alike.

In order, before anything runs: the store is checked against the request (a done cell that
trained another config is refused, never skipped as done nor tabulated as the request's), the
local executor refuses layouts of several devices, and each cell is claimed and selected in one
step (bench/schedule/state.py). Then ``--force`` cancels the queued jobs it replaces and resets
their folders, and the cells run here or are submitted to SLURM.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.cellstore import CellStore, Claims
from bench.plan import Plan
from bench.plan.cells import MatrixError
from bench.plan.config import digest, hashed_config
from bench.schedule.slurm import SlurmOptions, cancel, plan_slurm, queued_cells, submit_slurm
from bench.schedule.state import Skip, reset, select

#: What a refused request may do instead (the CLI's words; ``bench.run()`` names its own).
WAY_OUT = "pass --results DIR for this sweep, or --force to train them again"


@dataclass
class Outcome:
    """What the flow did: the cells it ran or would run, those it skipped and why, the SLURM
    groups (one job array each), the cells left for a cluster, the queued jobs ``force``
    cancelled, and each run cell's final status (local) or job id (SLURM)."""

    todo: list[Plan]
    skipped: dict[str, Skip]
    groups: list[tuple[dict, list[Plan]]] = field(default_factory=list)
    several_devices: list[Plan] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    statuses: dict[str, str] = field(default_factory=dict)


def first_difference(had: object, want: object, path: str = "") -> str | None:
    """``field had, not want`` for the first field (in sorted order) where two configs differ."""
    if isinstance(had, dict) and isinstance(want, dict):
        for k in sorted(set(had) | set(want), key=str):
            if k not in had or k not in want:
                where = f"{path}.{k}" if path else str(k)
                return f"{where} {'absent' if k not in had else _short(had[k])}, not " \
                       f"{'absent' if k not in want else _short(want[k])}"
            found = first_difference(had[k], want[k], f"{path}.{k}" if path else str(k))
            if found:
                return found
        return None
    if isinstance(had, list) and isinstance(want, list) and len(had) == len(want):
        for i, (a, b) in enumerate(zip(had, want)):
            found = first_difference(a, b, f"{path}.{i}")
            if found:
                return found
        return None
    return None if had == want else f"{path} {_short(had)}, not {_short(want)}"


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def stale_reason(p: Plan, row: dict, stored_config: dict | None) -> str | None:
    """Why the cell in the store is not what ``p`` asks for (None: it is): another recipe
    (iterations, total batch, lr: said in those words), else the first config field that
    differs, else (a row that predates the stored config) its data root if that differs, else
    the two config hashes."""
    if p.trains and row.get("status") == "done":
        asked, diffs = p.row(), []
        if asked["max_iters"] and row.get("train_iters") not in (None, asked["max_iters"]):
            diffs.append(f"{row['train_iters']} iterations, not {asked['max_iters']}")
        for key in ("total_batch", "lr"):
            had, want = row.get(key), asked.get(key)
            if had is not None and want is not None and not math.isclose(float(had), float(want)):
                diffs.append(f"{key} {had:g}, not {want:g}")
        if diffs:
            return ", ".join(diffs)
    had = row.get("config_hash") or (digest(stored_config) if stored_config else None)
    if had is None or had == p.config_hash:
        return None
    if stored_config is not None:
        found = first_difference(stored_config, hashed_config(p.config))
        if found:
            return found
    where = p.config.val_dataloader.dataset.data_root if p.config.get("val_dataloader") else None
    if row.get("data_root") and where and row["data_root"] != where:  # the hash covers where
        return f"data root {row['data_root']}, not {where}"  # the data is: another checkout
    return f"config {had}, not {p.config_hash}"


def check_store(plans: list[Plan], results: Path, way_out: str = WAY_OUT) -> None:
    """Refuse a request whose cells in ``results`` trained (or started training) another config
    than it asks: a done one would be skipped as done and tabulated as this request's, an
    interrupted one would resume from another training's checkpoint. One MatrixError line
    naming the first such cell, its first difference, and the way out."""
    stale = []
    for p in plans:
        store = CellStore(results, p.cell)
        why = stale_reason(p, store.read() or {}, store.stored_config())
        if why:
            stale.append(f"{p.key} ({why})")
    if stale:
        more = f" and {len(stale) - 1} more" if len(stale) > 1 else ""
        raise MatrixError(f"{results} holds cells trained another way than this request: "
                          f"{stale[0]}{more}; {way_out}")


def check_local(plans: list[Plan]) -> None:
    """The local executor runs each cell as one process: refuse a layout of several devices
    (before anything runs) instead of silently training with another total batch."""
    for p in plans:
        lay = p.layout
        if lay.world_size > 1:
            raise MatrixError(
                f"profile {p.cell.profile!r} trains {p.key} on {lay.world_size} devices "
                f"({lay.describe()}); the local executor runs one process: submit with "
                f"--executor slurm, or pass --tasks-per-node 1 to train on one device (total "
                f"batch {lay.imgs_per_device}, lr scaled linearly)")


def run_cells(plans: list[Plan], results: Path, executor: str = "local", *,
              force: bool = False, retry_failed: bool = False, jobs: int = 1,
              slurm: SlurmOptions | None = None, dry_run: bool = False,
              progress: bool = False, refresh_report: bool = False,
              leave_several_devices: bool = False, way_out: str = WAY_OUT,
              on_skip: Callable[[str, Skip], None] | None = None,
              on_go: Callable[[Outcome], None] | None = None) -> Outcome:
    """Run (``executor="local"``) or submit (``"slurm"``) the planned cells that are not done.

    ``on_skip`` hears each skipped cell as it is decided; ``on_go`` hears the outcome so far
    once every check has passed, right before the cells run or are submitted (or, with
    ``dry_run``, instead of that). ``leave_several_devices``: a local run leaves the cells that
    need several devices to a cluster (``Outcome.several_devices``) instead of refusing them.
    """
    if not force:
        check_store(plans, results, way_out)
    if executor == "local" and not leave_several_devices:
        check_local(plans)
    queued = queued_cells(results)
    by_key = {p.key: p for p in plans}
    with Claims(results) as claims:
        cells, skipped = select([p.cell for p in plans], results, claims, force=force,
                                retry_failed=retry_failed, queued=queued)
        for key, skip in skipped.items():
            if on_skip:
                on_skip(key, skip)
        out = Outcome([by_key[c.key] for c in cells], skipped)
        if executor == "local" and leave_several_devices:
            out.several_devices = [p for p in out.todo if p.layout.world_size > 1]
            out.todo = [p for p in out.todo if p.layout.world_size == 1]
        if executor == "slurm":
            out.groups = plan_slurm(out.todo, slurm or SlurmOptions())
        if dry_run or not out.todo:
            if dry_run and on_go:
                on_go(out)
            return out
        if force:
            replaced = [p.key for p in out.todo if p.key in queued]
            if replaced:  # --force replaces a queued cell: its old job must not train on beside
                out.cancelled = cancel(results, replaced, wait_s=120)
            for p in out.todo:
                reset(results, p.cell)
        results.mkdir(parents=True, exist_ok=True)
        if on_go:
            on_go(out)
        if executor == "slurm":
            out.statuses = submit_slurm(out.todo, results, slurm or SlurmOptions())
        else:
            from bench.schedule.local import run_local

            out.statuses = run_local(out.todo, results, jobs=jobs, progress=progress,
                                     refresh_report=refresh_report)
    return out
