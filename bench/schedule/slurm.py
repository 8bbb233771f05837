"""SLURM: one job array per distinct resource request, submitted and returned from at once;
the scheduler's view of the recorded jobs (``squeue``, ``sacct``) and ``scancel``.

Each cell's sbatch parameters come from its Plan (layout) and the profile's ``slurm`` settings,
overridden by the command line; the cell's job is bench/run/job.py.
"""
from __future__ import annotations

import getpass
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import submitit

from bench.cellstore import CellStore, now
from bench.plan import Plan
from bench.run.job import CellJob
from bench.schedule.record import record_jobs, recorded, submitit_folder
from reports.schema import ACTIVE, read_json


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


def slurm_parameters(plan: Plan, sopts: SlurmOptions) -> dict:
    """submitit parameters of one cell: the profile's defaults (a pilot's own ``pilot.slurm``
    ones), overridden by the command line; one task per device of the cell's layout."""
    d = plan.settings.pilot.slurm if plan.opts.pilot_iters else plan.settings.slurm
    lay = plan.layout
    params = dict(
        timeout_min=int(sopts.time_min or d.time_min), nodes=lay.nodes,
        tasks_per_node=lay.tasks_per_node, gpus_per_node=lay.gpus_per_node,
        cpus_per_task=int(sopts.cpus_per_task or d.cpus_per_task),
        mem_gb=float(sopts.mem_gb or d.mem_gb),
        slurm_partition=sopts.partition or d.partition,
        slurm_account=sopts.account or d.account,
        slurm_qos=sopts.qos or d.qos,
        slurm_constraint=sopts.constraint or d.constraint,
        slurm_array_parallelism=sopts.array_parallelism or d.array_parallelism,
        slurm_signal_delay_s=d.signal_delay_s,
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


def plan_slurm(plans: list[Plan], sopts: SlurmOptions) -> list[tuple[dict, list[Plan]]]:
    """Group cells by their sbatch parameters: one job array per group."""
    groups: dict[str, tuple[dict, list[Plan]]] = {}
    for p in plans:
        params = slurm_parameters(p, sopts)
        key = repr(sorted(params.items(), key=lambda kv: kv[0]))
        groups.setdefault(key, (params, []))[1].append(p)
    return list(groups.values())


def submit_slurm(plans: list[Plan], results: Path, sopts: SlurmOptions,
                 name: str = "sepc") -> dict[str, str]:
    """Submit and return at once: cell key -> SLURM job id (``ARRAYID_TASK``)."""
    groups = plan_slurm(plans, sopts)
    for params, _ in groups:
        check_slurm(results, params)
    folder = submitit_folder(results)
    ids: dict[str, str] = {}
    for params, group in groups:
        executor = submitit.AutoExecutor(folder=folder / "%j", cluster="slurm")
        executor.update_parameters(name=f"{name}-{group[0].cell.profile}", **params)
        for p in group:
            CellStore(results, p.cell).write(status="pending", error=None, submitted_at=now())
        try:
            jobs = executor.map_array(CellJob(results), group)
        except Exception as exc:  # noqa: BLE001 - submitit wraps sbatch's own message
            for p in group:
                CellStore(results, p.cell).write(status="failed",
                                                 error=f"submission failed: {exc}")
            raise SchedulerError(f"sbatch failed: {str(exc).strip().splitlines()[-1]}") from None
        for p, job in zip(group, jobs):
            ids[p.key] = job.job_id
            CellStore(results, p.cell).write(job_id=job.job_id)
        record_jobs(results, dict(zip((p.key for p in group), jobs)), "slurm")
    return ids


def scheduler_states(results: Path) -> dict[str, str]:
    """cell key -> SLURM state (RUNNING, PENDING, CANCELLED, ...) for the recorded jobs, one
    ``sacct`` call for all of them. Empty when nothing was sent to SLURM."""
    slurm = recorded(results, "slurm")
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
    slurm = recorded(results, "slurm")
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
    ids = [v["job_id"] for k, v in recorded(results, "slurm").items()
           if keys is None or k in keys]
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
