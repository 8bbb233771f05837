"""What a person watching a local sweep sees: the expected time before it starts, the ETA while
it trains, and a report that is rewritten after every finished cell.

The expected time comes from a step time measured on this machine: the smoke warm start's
(its metadata keeps how long its iterations took, one thread, the RetinaNet baseline), times each
cell's relative step cost, laid out over the sweep's parallel slots longest first, as the
executor runs them. While cells train, their own measured seconds per iteration replace the
estimate, so the ETA converges on what this machine does.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bench.cellstore import CellStore
from bench.plan.cells import Cell
from bench.repo import REPO
from reports.schema import read_json

#: One cell's training step relative to the RetinaNet baseline's, by variant and by detector
#: (1 thread, batch 4, smoke sizes, two cells at once on 2 cores: the median seconds per
#: iteration of the 18 cells of a fresh clone's `make table` on an Intel Xeon with AVX-512,
#: docs/performance.md, "Targets of the default table"). For the schedule and the forecast
#: only: the measured rates replace it once cells train.
VARIANT_STEP_COST = {"baseline": 1.0, "pconv": 1.14, "ibn": 1.27, "sepc_lite": 1.42,
                     "sepc": 1.89, "sepc_noibn": 1.75}
DETECTOR_STEP_COST = {"retinanet": 1.0, "freeanchor": 0.97, "fsaf": 0.85, "atss": 1.0,
                      "faster_rcnn": 4.1, "fcos": 0.87}  # the last two: their own sweep
#: A warm-start step in RetinaNet-baseline cell steps: it trains every stage and BN layer, alone
#: (on that machine 0.117 s a warm-start step built with nothing beside it, 0.141-0.166 s with
#: another job on the other core; 0.099 s a RetinaNet baseline cell's, mean of its log).
WARMSTART_STEP_COST = 1.2
#: What a cell costs besides its training steps (start-up, evaluation, FLOPs, per-image
#: records), in steps of that cell: 15-17 s of a baseline cell's wall time there, at 200 and
#: at 1,200 iterations alike.
OVERHEAD_STEPS = 150


def step_cost(cell: Cell) -> float:
    """Relative cost of one training step of ``cell`` (1.0: the RetinaNet baseline)."""
    return (VARIANT_STEP_COST.get(cell.variant, 1.0)
            * DETECTOR_STEP_COST.get(cell.detector, 1.0))


def measured_step_s(profile: str) -> tuple[float, str] | None:
    """Seconds of one baseline training step measured on this machine, and where from: the
    profile's warm start, if this machine has built it (None otherwise)."""
    from bench.plan.settings import load_profile
    from bench.plan.warmstart import cache_root, key

    if load_profile(profile).settings.warmstart is None:
        return None

    try:
        meta = read_json(cache_root() / f"{key(profile)}.json") or {}
    except Exception:  # noqa: BLE001 - a forecast is a courtesy; no warm start, no forecast
        return None
    if not meta.get("train_s") or not meta.get("iters"):
        return None
    return (float(meta["train_s"]) / int(meta["iters"]) / WARMSTART_STEP_COST,
            "the warm start's steps on this machine")


def makespan(running: list[float], pending: list[float], slots: int) -> float:
    """Wall time until ``running`` (their remaining seconds) and then ``pending`` (in the order
    they start) are all done on ``slots`` parallel slots, each pending cell starting on the
    first slot that frees."""
    free = sorted(running + [0.0] * max(0, slots - len(running)))[:max(slots, len(running))]
    for d in pending:
        free.sort()
        free[0] += d
    return max(free, default=0.0)


def fmt_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 90:
        return f"{seconds} s"
    m, s = divmod(seconds, 60)
    return f"{m} min {s:02d} s" if m < 90 else f"{m // 60} h {m % 60:02d} min"


@dataclass
class SweepClock:
    """Expected and remaining time of a local sweep: ``iters`` per cell, ``slots`` at a time."""

    cells: list[Cell]
    iters: dict[str, int | None]
    slots: int
    step_s: float | None
    where: str = ""
    _seen: dict[str, tuple[float, int]] = field(default_factory=dict)  # first (time, iter)
    _rate: dict[str, float] = field(default_factory=dict)  # measured s / iteration
    _done: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, cells: list[Cell], iters: dict[str, int | None], slots: int) -> SweepClock:
        found = measured_step_s(cells[0].profile) if cells else None
        step, where = found if found else (None, "")
        return cls(cells, iters, slots, step, where)

    def _predicted(self, cell: Cell, factor: float = 1.0) -> float | None:
        it = self.iters.get(cell.key)
        if self.step_s is None or it is None:
            return None
        return self.step_s * factor * step_cost(cell) * (it + OVERHEAD_STEPS)

    def expected(self) -> float | None:
        """Seconds the whole training takes, before any cell ran (None: no measured step)."""
        durations = [self._predicted(c) for c in self.cells]
        if any(d is None for d in durations):
            return None
        return makespan([], sorted(durations, reverse=True), self.slots)  # longest first

    def headline(self, timing_note: str = "") -> str:
        iters = sorted({i for i in self.iters.values() if i is not None})
        what = (f"{len(self.cells)} cells x {iters[0]} iterations" if len(iters) == 1
                else f"{len(self.cells)} cells")
        exp = self.expected()
        when = (f"expected {fmt_duration(exp)} of training on this machine (from "
                f"{self.step_s:.3f} s per baseline step, {self.where}, times each variant's "
                f"step cost){timing_note}") if exp is not None else (
                "expected time: shown once the first cells have trained a few iterations")
        return f"{what}, {self.slots} at a time: {when}"

    def observe(self, key: str, progress: dict | None, now: float) -> None:
        """A running cell's progress.json: its own seconds per iteration."""
        if not progress or progress.get("phase") != "train" or progress.get("iter") is None:
            return
        it = int(progress["iter"])
        first = self._seen.setdefault(key, (now, it))
        if it - first[1] >= 5:
            self._rate[key] = (now - first[0]) / (it - first[1])

    def finish(self, key: str) -> None:
        self._done.add(key)

    def _factor(self) -> float:
        """Measured / predicted seconds per step, over the cells measured so far."""
        if self.step_s is None:
            return 1.0
        ratios = sorted(r / (self.step_s * step_cost(c)) for c in self.cells
                        if (r := self._rate.get(c.key)) is not None)
        return ratios[len(ratios) // 2] if ratios else 1.0

    def eta(self, running: dict[str, dict | None], pending: list[Cell]) -> float | None:
        """Seconds until training ends; None until something was measured."""
        by_key = {c.key: c for c in self.cells}
        factor = self._factor()
        base = self.step_s or next(
            (r / step_cost(by_key[k]) for k, r in self._rate.items()), None)
        if base is None:
            return None
        left = []
        for key, p in running.items():
            cell, it = by_key[key], int((p or {}).get("iter") or 0)
            total = self.iters.get(key) or it
            rate = self._rate.get(key, base * factor * step_cost(cell))
            left.append(rate * (max(0, total - it) + OVERHEAD_STEPS))
        rest = [base * factor * step_cost(c) * ((self.iters.get(c.key) or 0) + OVERHEAD_STEPS)
                for c in pending]
        return makespan(left, rest, self.slots)


class ReportRefresher:
    """Rewrites ``RESULTS/report`` in a background process (niced, so that it takes no core
    from the training) whenever asked; a request while one runs is served once it ends. Every
    file is written atomically by the report itself, so the page can be opened at any time."""

    def __init__(self, results: Path) -> None:
        self.results = results
        self._proc: subprocess.Popen | None = None
        self._wanted = False

    def request(self) -> None:
        self._wanted = True
        self.poll()

    def poll(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            return
        self._proc = None
        if self._wanted:
            self._wanted = False
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "reports", str(self.results), "--quiet",
                 "--format", "html,md,csv"], stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, preexec_fn=lambda: os.nice(10),
                cwd=str(REPO))

    def close(self, wait: float = 0.0) -> None:
        """Let a running rebuild finish (up to ``wait`` seconds), then stop it."""
        if self._proc is None:
            return
        try:
            self._proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc = None


def mark_pending(results: Path, cells: list[Cell]) -> list[Cell]:
    """A ``pending`` row for each cell that has none yet, so that the report shows the whole
    sweep from its start; returns the cells marked (see :func:`unmark_pending`)."""
    marked = []
    for cell in cells:
        store = CellStore(results, cell)
        if store.read() is None:
            store.write(status="pending", executor="local", pid=os.getpid(),
                        host=socket.gethostname(), source=cell.source)
            marked.append(cell)
    return marked


def unmark_pending(results: Path, cells: list[Cell]) -> None:
    """Drop the pending rows of cells that never started (a stopped sweep): they read "not
    run" again, and a rerun trains them."""
    for cell in cells:
        store = CellStore(results, cell)
        row = store.read() or {}
        if row.get("status") == "pending" and row.get("pid") == os.getpid():
            store.result_path.unlink(missing_ok=True)
            try:
                store.dir.rmdir()
            except OSError:
                pass
