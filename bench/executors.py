"""Where cells run: one place that chooses the submitit executor and talks to the scheduler.

``local``: cells run one after another (``--jobs`` at a time) as submitit local jobs, each in its
own process, with a live progress bar; Ctrl-C cancels what runs and keeps what finished. Once no
cell trains, the cells of each detector are timed together (bench/timing.py).
``slurm``: one job array per distinct resource request, submitted and returned from at once;
``sweep.json`` in the results folder records the job ids so that status, cancel and table work
later from any shell.
"""
from __future__ import annotations

import getpass
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import submitit

from reports.schema import ACTIVE

from .configs import Options, cell_profile, layout
from .job import CellJob
from .matrix import Cell, MatrixError
from .store import CellStore, atomic_write_json, now, read_json


class SchedulerError(RuntimeError):
    """The scheduler refused or cannot be reached; the message names what and why."""


@dataclass
class SlurmOptions:
    """sbatch parameters; None means the profile's default (experiments/profiles/*.py). The
    layout (nodes, tasks and GPUs per node) changes the training and lives in ``Options``."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time_min: int | None = None
    cpus_per_task: int | None = None
    mem_gb: float | None = None
    constraint: str | None = None
    array_parallelism: int | None = None
    extra: list[str] = field(default_factory=list)  # --sbatch-arg KEY=VALUE, repeatable


def slurm_parameters(cell: Cell, sopts: SlurmOptions, opts: Options = Options()) -> dict:
    """submitit parameters of one cell: the profile's defaults (a pilot's own ``pilot.slurm``
    ones first), overridden by the command line; one task per device of the cell's layout."""
    profile = cell_profile(cell)
    d = dict(profile.settings.get("slurm", {}))
    if opts.pilot_iters:
        d.update(profile.settings.get("pilot", {}).get("slurm", {}))
    lay = layout(cell, opts)
    params = dict(
        timeout_min=int(sopts.time_min or d.get("time_min", 60)), nodes=lay.nodes,
        tasks_per_node=lay.tasks_per_node, gpus_per_node=lay.gpus_per_node,
        cpus_per_task=int(sopts.cpus_per_task or d.get("cpus_per_task", 2)),
        mem_gb=float(sopts.mem_gb or d.get("mem_gb", 8)),
        slurm_partition=sopts.partition or d.get("partition"),
        slurm_account=sopts.account or d.get("account"),
        slurm_qos=sopts.qos or d.get("qos"),
        slurm_constraint=sopts.constraint or d.get("constraint"),
        slurm_array_parallelism=sopts.array_parallelism or d.get("array_parallelism", 64),
        slurm_signal_delay_s=int(d.get("signal_delay_s", 90)),
    )
    extra = {}
    for item in sopts.extra:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SchedulerError(f"--sbatch-arg {item!r}: expected KEY=VALUE (e.g. exclude=node3)")
        extra[key.lstrip("-").replace("-", "_")] = value
    if extra:
        params["slurm_additional_parameters"] = extra
    return {k: v for k, v in params.items() if v is not None}


def _submitit_folder(results: Path) -> Path:
    return results / ".submitit" / time.strftime("%Y%m%d-%H%M%S")


# -- local ---------------------------------------------------------------------------------------
def _train_iters(cell: Cell, opts: Options) -> int | None:
    """Iterations the cell trains, where the profile's settings say it (an iteration schedule,
    ``--max-iters`` or a pilot); None for an epoch schedule (its length needs the dataset)."""
    s = cell_profile(cell).settings
    iters = opts.pilot_iters or opts.max_iters
    return int(iters or s["max_iters"]) if (iters or s.get("schedule") == "iters") else None


def run_local(cells: list[Cell], results: Path, opts: Options, jobs: int = 1,
              progress: bool = True, plan_opts: Options | None = None,
              refresh_report: bool = False) -> dict[str, str]:
    """Run cells as local submitit jobs, ``jobs`` at a time; returns cell key -> final status.
    ``plan_opts``: a pilot's full cells (see ``CellJob``). ``refresh_report``: rewrite
    RESULTS/report after every finished cell (the cells not done yet shown as pending)."""
    from tqdm import tqdm

    from .progress import (ReportRefresher, SweepClock, fmt_duration, mark_pending, step_cost,
                           unmark_pending)
    from .timing import time_local
    from .warmstart import prepare

    prepare(cells, opts)  # the smoke warm start, once per machine, before any cell starts
    folder = _submitit_folder(results)
    executor = submitit.LocalExecutor(folder=folder)
    executor.update_parameters(timeout_min=24 * 60)
    # Longest first (the deformable SEPC cells cost ~2x): the last core is not left idle with
    # one long cell still to run.
    pending = sorted(cells, key=lambda c: -step_cost(c))
    iters = {c.key: _train_iters(c, opts) for c in cells}
    clock = SweepClock.of(cells, iters, jobs)
    if progress:
        print(clock.headline(", then the interleaved latency timing" if not opts.pilot_iters
                             else ""), file=sys.stderr, flush=True)
    refresher = ReportRefresher(results) if refresh_report else None
    marked = mark_pending(results, cells) if refresh_report else []
    if refresher:
        refresher.request()
    running: dict[str, tuple[Cell, submitit.Job]] = {}
    final: dict[str, str] = {}
    # `kill` of the sweep (SIGTERM) cancels its jobs like Ctrl-C does, instead of orphaning them.
    previous_sigterm = signal.signal(signal.SIGTERM, signal.default_int_handler)
    # Started in the background by a shell (`make table &`), the sweep inherits SIGINT ignored,
    # and so would its jobs: submitit cancels a local job with SIGINT, which they would never
    # see. A handler here makes the jobs start with SIGINT's default (an exec resets handlers).
    previous_sigint = signal.signal(signal.SIGINT, signal.default_int_handler)
    tty = sys.stderr.isatty()
    shown = 0.0
    total = sum(i or 0 for i in iters.values())
    bar = tqdm(total=total or len(cells), unit="it" if total else "cell",
               disable=not (progress and tty), dynamic_ncols=True, file=sys.stderr,
               bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]")
    done_iters, interrupted = 0, False
    try:
        while pending or running:
            while pending and len(running) < jobs:
                cell = pending.pop(0)
                job = executor.submit(CellJob(results, opts, plan_opts), cell)
                running[cell.key] = (cell, job)
                _record_jobs(results, {cell.key: job}, "local", folder)
            states = {k: CellStore(results, c).progress() for k, (c, _) in running.items()}
            t = time.time()
            for key, p in states.items():
                clock.observe(key, p, t)
            for key, (cell, job) in list(running.items()):
                if job.done():
                    row = CellStore(results, cell).read() or {}
                    final[key] = row.get("status", "failed")
                    del running[key], states[key]
                    clock.finish(key)
                    done_iters += iters[key] or 0
                    if final[key] != "done":
                        bar.write(f"{key}: {final[key]}: {row.get('error')}")
                    elif progress and not tty:
                        bar.write(f"{key}: done, AP {row.get('AP')}, {row.get('wall_s')} s")
                    if refresher:
                        refresher.request()
            if refresher:
                refresher.poll()
            if time.monotonic() - shown >= (1 if tty else 30):
                shown = time.monotonic()
                eta = clock.eta(states, pending)
                eta_text = f"ETA {fmt_duration(eta)}" if eta is not None else "ETA: measuring"
                now_iters = done_iters + sum(int((p or {}).get("iter") or 0)
                                             for p in states.values())
                if tty:
                    bar.n = now_iters if total else len(final)
                    bar.set_postfix_str(f"{eta_text}; {_running_text(results, running)}")
                elif progress and running:  # a log, not a terminal: one line now and then
                    bar.write(f"[{len(final)}/{len(cells)} done, {eta_text}] "
                              f"{_running_text(results, running)}")
            time.sleep(1.0)  # the cells take minutes: a second is soon enough, and costs no core
    except KeyboardInterrupt:
        interrupted = True
        for key, (cell, job) in running.items():
            job.cancel(check=False)
            store = CellStore(results, cell)
            if (store.read() or {}).get("status") == "done":  # done, its process still exiting
                final[key] = "done"
                continue
            store.write(status="cancelled", error="interrupted (Ctrl-C)", finished_at=now())
            final[key] = "cancelled"
        raise
    finally:
        bar.close()
        signal.signal(signal.SIGTERM, previous_sigterm)
        signal.signal(signal.SIGINT, previous_sigint)
        unmark_pending(results, marked)
        if refresher:  # a stopped sweep's report is rebuilt in the background, not waited for
            refresher.close(wait=0 if interrupted else 60)
            if interrupted:
                refresher.request()
    time_local(results, cells, show_progress=progress)  # no cell trains now: time them together
    return final


def _running_text(results: Path, running: dict) -> str:
    parts = []
    for key, (cell, _) in running.items():
        p = CellStore(results, cell).progress() or {}
        it, mx = p.get("iter"), p.get("max_iters")
        parts.append(f"{key} {p.get('phase', 'starting')}" + (f" {it}/{mx}" if mx else ""))
    return "; ".join(parts)


# -- slurm ---------------------------------------------------------------------------------------
def check_slurm(results: Path, params: dict) -> None:
    """Fail at submit time, not in the queue: sbatch present, partition/account known, results
    folder writable by the nodes (same path: it must be on a shared file system)."""
    if shutil.which("sbatch") is None:
        raise SchedulerError("sbatch is not on PATH: is this a SLURM submit host? "
                             "(a local cluster: make slurm-up)")
    probe = results / ".write-test"
    try:
        results.mkdir(parents=True, exist_ok=True)
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise SchedulerError(f"results folder {results} is not writable: {exc}") from None
    # sbatch --test-only asks the controller to validate the request without queueing it.
    cmd = ["sbatch", "--test-only", "--wrap", "true", f"--time={params['timeout_min']}",
           f"--nodes={params['nodes']}", f"--ntasks-per-node={params['tasks_per_node']}",
           f"--cpus-per-task={params['cpus_per_task']}", f"--mem={int(params['mem_gb'] * 1024)}M"]
    for key, flag in (("slurm_partition", "--partition"), ("slurm_account", "--account"),
                      ("slurm_qos", "--qos"), ("slurm_constraint", "--constraint")):
        if params.get(key):
            cmd.append(f"{flag}={params[key]}")
    if params.get("gpus_per_node"):
        cmd.append(f"--gpus-per-node={params['gpus_per_node']}")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip().splitlines()
        raise SchedulerError(f"SLURM rejects the request: {msg[-1] if msg else proc.returncode}"
                             f" ({' '.join(cmd[3:])})")


def plan_slurm(cells: list[Cell], sopts: SlurmOptions,
               opts: Options = Options()) -> list[tuple[dict, list[Cell]]]:
    """Group cells by their sbatch parameters: one job array per group."""
    groups: dict[str, tuple[dict, list[Cell]]] = {}
    for cell in cells:
        params = slurm_parameters(cell, sopts, opts)
        key = repr(sorted(params.items(), key=lambda kv: kv[0]))
        groups.setdefault(key, (params, []))[1].append(cell)
    return list(groups.values())


def submit_slurm(cells: list[Cell], results: Path, opts: Options, sopts: SlurmOptions,
                 name: str = "sepc", plan_opts: Options | None = None) -> dict[str, str]:
    """Submit and return at once: cell key -> SLURM job id (``ARRAYID_TASK``)."""
    groups = plan_slurm(cells, sopts, opts)
    for params, _ in groups:
        check_slurm(results, params)
    folder = _submitit_folder(results)
    ids: dict[str, str] = {}
    for params, group in groups:
        executor = submitit.AutoExecutor(folder=folder / "%j", cluster="slurm")
        executor.update_parameters(name=f"{name}-{group[0].profile}", **params)
        for cell in group:
            CellStore(results, cell).write(status="pending", error=None, submitted_at=now())
        try:
            jobs = executor.map_array(CellJob(results, opts, plan_opts), group)
        except Exception as exc:  # noqa: BLE001 - submitit wraps sbatch's own message
            for cell in group:
                CellStore(results, cell).write(status="failed", error=f"submission failed: {exc}")
            raise SchedulerError(f"sbatch failed: {str(exc).strip().splitlines()[-1]}") from None
        for cell, job in zip(group, jobs):
            ids[cell.key] = job.job_id
            CellStore(results, cell).write(job_id=job.job_id)
        _record_jobs(results, dict(zip((c.key for c in group), jobs)), "slurm", folder)
    return ids


def _record_jobs(results: Path, jobs: dict[str, submitit.Job], executor: str,
                 folder: Path) -> None:
    path = results / "sweep.json"
    sweep = read_json(path) or {"cells": {}}
    for key, job in jobs.items():
        sweep["cells"][key] = dict(executor=executor, job_id=str(job.job_id),
                                   folder=str(job.paths.folder), submitted_at=now())
    sweep["updated_at"] = now()
    atomic_write_json(path, sweep)


def scheduler_states(results: Path) -> dict[str, str]:
    """cell key -> SLURM state (RUNNING, PENDING, CANCELLED, ...) for the recorded jobs, one
    ``sacct`` call for all of them. Empty when nothing was sent to SLURM."""
    sweep = read_json(results / "sweep.json") or {}
    slurm = {k: v for k, v in sweep.get("cells", {}).items() if v.get("executor") == "slurm"}
    if not slurm or shutil.which("sacct") is None:
        return {}
    ids = sorted({v["job_id"].split("_")[0] for v in slurm.values()})
    proc = subprocess.run(["sacct", "-n", "-P", "-X", "-o", "JobID,State", "-j", ",".join(ids)],
                          capture_output=True, text=True, timeout=60)
    states = {}
    for line in proc.stdout.splitlines():
        jid, _, state = line.partition("|")
        states[jid] = state.split()[0] if state else "UNKNOWN"
    return {k: states.get(v["job_id"], "UNKNOWN") for k, v in slurm.items()}


def _squeue() -> dict[str, str] | None:
    """job id (``ARRAY_TASK`` for array tasks) -> state of every job of this user that the
    scheduler still holds; None when squeue cannot be asked (not a SLURM host, controller down).
    All of the user's jobs are listed rather than the recorded ids: squeue fails as a whole when
    one of the ids it is given has left the controller's memory."""
    if shutil.which("squeue") is None:
        return None
    try:
        proc = subprocess.run(["squeue", "-h", "-r", "-u", getpass.getuser(), "-o", "%i|%T"],
                              capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0:
        return None
    return dict(line.split("|", 1) for line in proc.stdout.split() if "|" in line)


def queued_cells(results: Path) -> dict[str, str]:
    """cell key -> why the scheduler still owns it, for the cells sweep.json records as SLURM
    jobs that squeue still lists (pending, running, requeued, ...). Where squeue cannot be asked,
    a recorded job whose row is still pending/running/requeued counts as queued: a duplicate
    training into the same folder costs more than a cell left for later."""
    sweep = read_json(results / "sweep.json") or {}
    slurm = {k: v for k, v in sweep.get("cells", {}).items() if v.get("executor") == "slurm"}
    if not slurm:
        return {}
    live = _squeue()
    out = {}
    for key, rec in slurm.items():
        jid = str(rec["job_id"])
        if live is None:
            status = (read_json(results / key / "result.json") or {}).get("status")
            if status in ACTIVE:
                out[key] = (f"recorded as SLURM job {jid} ({status}) and squeue cannot be asked "
                            "here")
        elif jid in live:
            out[key] = f"queued on SLURM as job {jid} ({live[jid]})"
    return out


def cancel(results: Path, keys: list[str] | None = None, wait_s: float = 0) -> list[str]:
    """scancel the recorded SLURM jobs (all, or those cells); returns the cancelled job ids.
    ``wait_s``: wait that long for them to leave the queue (``--force`` submits again after)."""
    sweep = read_json(results / "sweep.json") or {}
    ids = [v["job_id"] for k, v in sweep.get("cells", {}).items()
           if v.get("executor") == "slurm" and (keys is None or k in keys)]
    if not ids:
        return ids
    proc = subprocess.run(["scancel", *ids], capture_output=True, text=True, check=False,
                          timeout=60)
    if proc.returncode != 0 and wait_s:
        raise SchedulerError(f"scancel {' '.join(ids)} failed: {proc.stderr.strip()}")
    deadline = time.monotonic() + wait_s
    while wait_s:
        live = _squeue() or {}
        left = [i for i in ids if i in live]
        if not left:
            break
        if time.monotonic() > deadline:
            raise SchedulerError(f"cancelled jobs still in the queue after {wait_s:.0f} s: "
                                 f"{' '.join(left)}")
        time.sleep(1)
    return ids


def check_local(cells: list[Cell], opts: Options) -> None:
    """The local executor runs each cell as one process: refuse a layout of several devices
    (before anything runs) instead of silently training with another total batch."""
    for cell in cells:
        lay = layout(cell, opts)
        if lay.world_size > 1:
            raise MatrixError(
                f"profile {cell.profile!r} trains {cell.key} on {lay.world_size} devices "
                f"({lay.describe()}); the local executor runs one process: submit with "
                f"--executor slurm, or pass --tasks-per-node 1 to train on one device (total "
                f"batch {lay.imgs_per_device}, lr scaled linearly)")


__all__ = ["SlurmOptions", "SchedulerError", "run_local", "submit_slurm", "plan_slurm",
           "slurm_parameters", "scheduler_states", "queued_cells", "cancel", "check_local"]
