#!/usr/bin/env python3
"""End-to-end check of the local SLURM cluster (tools/slurm/up.sh) through sbatch and submitit.

Runs with any Python that has submitit (e.g. .venv/bin/python, or a throwaway venv with
`pip install submitit==1.5.4`). Exits 0 when every check passes, 1 on the first failure.

Checks, each with a deadline (nothing here can hang; a global alarm backs them up):
  1. `sbatch --wrap` job shows COMPLETED in sacct.
  2. submitit AutoExecutor(cluster="slurm", slurm_partition=...): map_array of 4 functions,
     every job.result() returns the right value.
  3. a running job ended with `scancel`: job.done(force_check=True) becomes True, job.state is
     CANCELLED and job.result() raises promptly instead of hanging.
  4. a submitit.helpers.Checkpointable job hit by `scancel --signal USR2` (what preemption or
     the time limit sends) calls checkpoint(), is requeued and runs again to a result.

    python tools/slurm/selfcheck.py [--partition debug] [--folder DIR] [--keep]

The submitit folder is fresh per run (job ids restart at 1 after `down.sh --purge`, so a reused
folder could return stale results); it is deleted on success unless --keep.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

try:
    import submitit
except ImportError:  # pragma: no cover - message for users
    sys.exit(f"selfcheck: submitit is not importable by {sys.executable} (pip install submitit)")


class CheckFailed(Exception):
    pass


# ---- functions run inside the jobs (pickled by value by cloudpickle) --------------------------

def square(x: int) -> tuple[int, str, str]:
    return x * x, os.environ.get("SLURM_JOB_ID", ""), os.environ.get("SLURM_ARRAY_TASK_ID", "")


def sleep_with_marker(marker: str, seconds: float) -> str:
    Path(marker).write_text(os.environ.get("SLURM_JOB_ID", ""))
    time.sleep(seconds)
    return "slept"


class Sleeper(submitit.helpers.Checkpointable):
    """Sleeps on its first run; after a requeue it returns at once."""

    def __call__(self, workdir: str, seconds: float) -> dict:
        restarts = int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0)
        Path(workdir, f"start-{restarts}").write_text(str(os.getpid()))
        if restarts == 0:
            time.sleep(seconds)
        return {
            "restart_count": restarts,
            "checkpointed": Path(workdir, "checkpoint").exists(),
        }

    def checkpoint(self, *args, **kwargs):
        workdir = args[0] if args else kwargs["workdir"]
        Path(workdir, "checkpoint").write_text(str(time.time()))
        return super().checkpoint(*args, **kwargs)


# ---- helpers ------------------------------------------------------------------------------------

def run(cmd: list[str], timeout: float = 30) -> str:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise CheckFailed(f"{cmd[0]} not found: is the SLURM client installed "
                          "(tools/slurm/up.sh)?") from None
    except subprocess.TimeoutExpired:
        raise CheckFailed(f"{' '.join(cmd)} did not answer within {timeout}s") from None
    if p.returncode != 0:
        raise CheckFailed(
            f"{' '.join(cmd)} exited {p.returncode}: {(p.stderr or p.stdout).strip()}"
        )
    return p.stdout


def wait_for(what: str, pred, timeout: float, interval: float = 0.25):
    end = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > end:
            raise CheckFailed(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def sacct_state(jobid: str) -> str:
    out = run(["sacct", "-n", "-X", "-P", "-o", "State", "-j", jobid]).strip().splitlines()
    return out[0].split()[0] if out else ""


def wait_done(job, timeout: float) -> None:
    wait_for(f"job {job.job_id} to finish", lambda: job.done(force_check=True), timeout, 0.5)


def call_with_timeout(fn, timeout: float, what: str):
    box: dict = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - reported to the caller
            box["error"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise CheckFailed(f"{what} still blocked after {timeout:.0f}s (it would hang forever)")
    return box


# ---- checks -------------------------------------------------------------------------------------

def check_sbatch(folder: Path, partition: str) -> str:
    out = folder / "sbatch-%j.out"
    jobid = run(
        ["sbatch", "--parsable", "-p", partition, "-o", str(out), "--wrap", "echo selfcheck"]
    ).strip()
    jobid = jobid.split(";")[0]
    state = wait_for(
        f"sacct to show job {jobid} COMPLETED",
        lambda: (s := sacct_state(jobid)) in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT") and s,
        60,
    )
    if state != "COMPLETED":
        raise CheckFailed(f"sbatch job {jobid} ended {state}")
    return f"job {jobid} COMPLETED in sacct"


def make_executor(folder: Path, partition: str, name: str) -> submitit.AutoExecutor:
    ex = submitit.AutoExecutor(folder=folder / name, cluster="slurm")
    ex.update_parameters(slurm_partition=partition, timeout_min=10, cpus_per_task=1,
                         name=f"selfcheck-{name}")
    return ex


def check_map_array(folder: Path, partition: str) -> str:
    ex = make_executor(folder, partition, "array")
    xs = [1, 2, 3, 4]
    jobs = ex.map_array(square, xs)
    for job in jobs:
        wait_done(job, 90)
    results = [job.result() for job in jobs]
    if [r[0] for r in results] != [x * x for x in xs]:
        raise CheckFailed(f"map_array returned {results}")
    first = jobs[0].job_id.split("_")[0]
    return f"{len(jobs)} array tasks ({first}_[0-3]) returned {[r[0] for r in results]}"


def check_cancel(folder: Path, partition: str) -> str:
    ex = make_executor(folder, partition, "cancel")
    marker = folder / "cancel.started"
    job = ex.submit(sleep_with_marker, str(marker), 600)
    wait_for(f"job {job.job_id} to start running", marker.exists, 60)
    t = time.monotonic()
    run(["scancel", job.job_id])
    wait_done(job, 60)
    took = time.monotonic() - t
    state = job.state
    if not state.startswith("CANCELLED"):
        raise CheckFailed(f"cancelled job {job.job_id} has state {state!r}, expected CANCELLED")
    # submitit waits up to Job._results_timeout_s (15 s) for a late result pickle before raising.
    if hasattr(job, "_results_timeout_s"):
        job._results_timeout_s = 2
    box = call_with_timeout(job.result, 30, f"job.result() of cancelled job {job.job_id}")
    if "error" not in box:
        raise CheckFailed(
            f"job.result() of cancelled job {job.job_id} returned {box.get('value')!r}"
        )
    return (f"job {job.job_id}: done(force_check=True) {took:.1f}s after scancel, state {state}, "
            f"result() raises {type(box['error']).__name__}")


def check_requeue(folder: Path, partition: str) -> str:
    ex = make_executor(folder, partition, "requeue")
    workdir = folder / "requeue"
    workdir.mkdir()
    job = ex.submit(Sleeper(), str(workdir), 600)
    wait_for(f"checkpointable job {job.job_id} to start", (workdir / "start-0").exists, 60)
    time.sleep(1)  # let submitit's signal handlers settle around the running function
    t = time.monotonic()
    run(["scancel", "--signal", "USR2", job.job_id])
    wait_for("checkpoint() to be called after USR2", (workdir / "checkpoint").exists, 30)
    wait_for(
        f"job {job.job_id} to run again after the requeue", (workdir / "start-1").exists, 120, 0.5
    )
    again = time.monotonic() - t
    wait_done(job, 60)
    result = job.result()
    if result != {"restart_count": 1, "checkpointed": True}:
        raise CheckFailed(f"requeued job {job.job_id} returned {result}")
    return (f"job {job.job_id}: USR2 -> checkpoint -> requeued -> running again in {again:.1f}s, "
            f"result {result}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--partition", default="debug")
    ap.add_argument("--folder", help="submitit folder (default: a fresh temporary directory)")
    ap.add_argument("--keep", action="store_true", help="keep the folder even on success")
    ap.add_argument("--timeout", type=int, default=600, help="overall deadline in seconds")
    args = ap.parse_args()

    if args.folder:
        folder = Path(args.folder).resolve()
        if folder.exists() and any(folder.iterdir()):
            print(
                f"selfcheck: {folder} is not empty; use a fresh folder (stale results)",
                file=sys.stderr,
            )
            return 1
        folder.mkdir(parents=True, exist_ok=True)
    else:
        folder = Path(tempfile.mkdtemp(prefix="sepc-slurm-selfcheck-"))

    def on_alarm(signum, frame):
        raise CheckFailed(f"overall deadline of {args.timeout}s exceeded")

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(args.timeout)

    checks = [
        ("sbatch --wrap", check_sbatch),
        ("submitit map_array", check_map_array),
        ("scancel -> CANCELLED", check_cancel),
        ("USR2 -> checkpoint+requeue", check_requeue),
    ]
    t_all = time.monotonic()
    ok = True
    # A check started from inside a SLURM job must not hand its SLURM_* variables to the jobs.
    with submitit.helpers.clean_env():
        for name, fn in checks:
            t = time.monotonic()
            try:
                msg = fn(folder, args.partition)
            except CheckFailed as e:
                print(f"FAIL {name}: {e}", flush=True)
                ok = False
                break
            except Exception as e:  # noqa: BLE001 - any surprise is a failure
                print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)
                ok = False
                break
            print(f"ok   {name} ({time.monotonic() - t:.1f}s): {msg}", flush=True)
    signal.alarm(0)
    total = time.monotonic() - t_all
    if ok:
        print(f"selfcheck passed in {total:.1f}s (submitit {submitit.__version__})")
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
        return 0
    print(f"selfcheck FAILED after {total:.1f}s; jobs' logs are in {folder}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
