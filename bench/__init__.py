"""sepc-bench's harness: the cells of the matrix, run locally or on SLURM, results in pandas.

    from bench import cells, plan, run, load
    run(cells("smoke"), results="results/smoke")
    df = load("results/smoke")
"""
from __future__ import annotations

from pathlib import Path

# submitit configures logging when first imported (logging.config.dictConfig), which closes every
# handler that exists at that moment, mmengine's log files included. Imported before anything
# can build a Runner, it closes none of ours, whatever a caller imports next.
import submitit  # noqa: F401

from .configs import Options
from .matrix import Cell, cells
from .results import load
from .sweep import plan


def run(cell_list: list[Cell], results: str | Path, opts: Options = Options(),
        executor: str = "local", jobs: int = 1, force: bool = False,
        retry_failed: bool = False, **slurm) -> dict[str, str]:
    """Run (or submit) the cells that are not done yet; returns cell key -> status or job id."""
    from .executors import SlurmOptions, run_local, submit_slurm
    from .sweep import check_recipes, plan, reset, select

    results = Path(results)
    if not force:
        check_recipes(plan(cell_list, opts), results,
                      "pass another results folder, or force=True to train them again")
    todo, _ = select(cell_list, results, force=force, retry_failed=retry_failed)
    if force:
        for cell in todo:
            reset(results, cell)
    if executor == "local":
        return run_local(todo, results, opts, jobs=jobs, progress=False)
    return submit_slurm(todo, results, opts, SlurmOptions(**slurm))


__all__ = ["Cell", "Options", "cells", "plan", "run", "load"]
