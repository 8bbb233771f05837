"""What a person watching a local sweep sees (bench/schedule/progress.py): the expected time from a
measured step, an ETA that follows what the cells really do, and pending rows."""
from __future__ import annotations

import pytest

from bench.cellstore import CellStore
from bench.plan.cells import Cell
from bench.schedule.progress import (
    OVERHEAD_STEPS,
    SweepClock,
    makespan,
    mark_pending,
    step_cost,
    unmark_pending,
)


def test_makespan_lays_cells_over_the_slots() -> None:
    assert makespan([], [10, 10, 10, 10], 2) == 20
    assert makespan([], [30, 10, 10, 10], 2) == 30  # longest first: the others fill slot 2
    assert makespan([5], [10, 10], 2) == 15  # a slot frees at 5, the other at 0
    assert makespan([50, 2], [], 2) == 50
    assert makespan([], [], 3) == 0


def _clock(step_s: float | None = 0.1) -> SweepClock:
    cells = [Cell("smoke", "retinanet", v) for v in ("sepc", "baseline", "pconv")]
    return SweepClock(cells, {c.key: 1000 for c in cells}, 2, step_s, "a test")


def test_expected_time_is_the_measured_step_times_the_cells_costs() -> None:
    clock = _clock()
    sepc, base, pconv = (0.1 * step_cost(c) * (1000 + OVERHEAD_STEPS) for c in clock.cells)
    assert clock.expected() == pytest.approx(max(sepc, base + pconv))
    line = clock.headline()
    assert line.startswith("3 cells x 1000 iterations, 2 at a time: expected ")
    assert "0.100 s per baseline step, a test" in line
    assert "shown once the first cells" in _clock(None).headline()


def test_the_eta_follows_the_measured_rate() -> None:
    """Cells training twice as slowly as forecast: the ETA doubles, and counts what is left."""
    clock = _clock()
    running = {c.key: c for c in clock.cells[:2]}
    for key, cell in running.items():
        clock.observe(key, dict(phase="train", iter=0), 0.0)
        rate = 2 * 0.1 * step_cost(cell)
        clock.observe(key, dict(phase="train", iter=500), 500 * rate)
    progress = {k: dict(phase="train", iter=500) for k in running}
    sepc, base, pconv = (2 * 0.1 * step_cost(c) for c in clock.cells)  # measured s / iteration
    # sepc and baseline have 500 iterations and their overhead left; pconv starts on the first
    # slot to free, at the forecast rate corrected by the measured factor (2x)
    left, whole = 500 + OVERHEAD_STEPS, 1000 + OVERHEAD_STEPS
    expected = max(sepc * left, base * left + pconv * whole)
    assert clock.eta(progress, [clock.cells[2]]) == pytest.approx(expected, rel=1e-9)
    assert _clock(None).eta({}, clock.cells) is None  # nothing measured yet: no ETA


def test_pending_rows_are_the_sweeps_own(tmp_path) -> None:
    cells = [Cell("smoke", "fsaf", v) for v in ("baseline", "pconv")]
    CellStore(tmp_path, cells[0]).write(status="done", AP=1.0)
    marked = mark_pending(tmp_path, cells)
    assert marked == [cells[1]] and CellStore(tmp_path, cells[1]).read()["status"] == "pending"
    unmark_pending(tmp_path, marked)
    assert not (tmp_path / cells[1].key).exists()  # never started: "not run" again
    assert CellStore(tmp_path, cells[0]).read()["status"] == "done"
