"""The local executor: cells run as submitit local jobs on this machine, ``jobs`` at a time,
each in its own process, with a live progress bar, an ETA and the report rewritten after every
finished cell; Ctrl-C (or SIGTERM) cancels what runs and keeps what finished. Once no cell
trains, the cells of each detector are timed together (bench/run/timing.py).
"""
from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import submitit

from bench.cellstore import CellStore, now
from bench.plan import Plan
from bench.plan.cells import Cell
from bench.run.job import CellJob
from bench.schedule.progress import (
    ReportRefresher,
    SweepClock,
    fmt_duration,
    mark_pending,
    step_cost,
    unmark_pending,
)
from bench.schedule.record import record_jobs, submitit_folder


def run_local(plans: list[Plan], results: Path, jobs: int = 1, progress: bool = True,
              refresh_report: bool = False) -> dict[str, str]:
    """Run the planned cells as local submitit jobs, ``jobs`` at a time; returns cell key ->
    final status. ``refresh_report``: rewrite RESULTS/report after every finished cell (the
    cells not done yet shown as pending)."""
    from tqdm import tqdm

    from bench.run.pretrain import prepare
    from bench.run.timing import time_local

    cells = [p.cell for p in plans]
    pilot = any(p.opts.pilot_iters for p in plans)
    prepare(plans)  # the smoke warm start, once per machine, before any cell starts
    folder = submitit_folder(results)
    executor = submitit.LocalExecutor(folder=folder)
    executor.update_parameters(timeout_min=24 * 60)
    # Longest first (the deformable SEPC cells cost ~2x): the last core is not left idle with
    # one long cell still to run.
    pending = sorted(plans, key=lambda p: -step_cost(p.cell))
    iters = {p.key: p.train_iters for p in plans}
    clock = SweepClock.of(cells, iters, jobs)
    if progress:
        print(clock.headline(", then the interleaved latency timing" if not pilot else ""),
              file=sys.stderr, flush=True)
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
                p = pending.pop(0)
                with _children_stderr_to(Path(folder) / "controllers.err"):
                    job = executor.submit(CellJob(results), p)
                running[p.key] = (p.cell, job)
                record_jobs(results, {p.key: job}, "local")
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
                eta = clock.eta(states, [p.cell for p in pending])
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


@contextmanager
def _children_stderr_to(path: Path) -> Iterator[None]:
    """Processes started inside the block write their stderr to ``path``, not the terminal.

    Why: submitit's local controller (the parent of each job's process) inherits the sweep's
    stderr, and on Ctrl-C prints its own KeyboardInterrupt traceback over the progress line.
    The jobs' own output goes to their log files either way.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as fh:
        os.dup2(fh.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _running_text(results: Path, running: dict) -> str:
    parts = []
    for key, (cell, _) in running.items():
        p = CellStore(results, cell).progress() or {}
        it, mx = p.get("iter"), p.get("max_iters")
        parts.append(f"{key} {p.get('phase', 'starting')}" + (f" {it}/{mx}" if mx else ""))
    return "; ".join(parts)
