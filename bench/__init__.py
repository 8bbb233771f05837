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

from bench.plan import plan
from bench.plan.cells import Cell
from bench.plan.cells import cells as _cells
from bench.plan.options import Options


def cells(profile: str, detectors: list[str] | None = None, variants: list[str] | None = None,
          seeds: list[int] | None = None, baseline_seeds: int | None = None) -> list[Cell]:
    """The profile's cells, as the command line selects them (bench/plan/cells.py): the
    baselines train the profile's ``baseline_seeds`` per seed unless told otherwise."""
    from bench.plan.settings import load_profile

    per_seed = (baseline_seeds if baseline_seeds is not None
                else load_profile(profile).settings.baseline_seeds)
    return _cells(profile, detectors, variants, seeds, per_seed)


def run(cell_list: list[Cell], results: str | Path, opts: Options = Options(),
        executor: str = "local", jobs: int = 1, force: bool = False,
        retry_failed: bool = False, **slurm) -> dict[str, str]:
    """Run (or submit) the cells that are not done yet; returns cell key -> status or job id.
    The command line's flow (bench/flow.py): the same checks, claims and ``force`` handling."""
    from bench.flow import run_cells
    from bench.schedule.slurm import SlurmOptions

    return run_cells(plan(cell_list, opts), Path(results), executor, force=force,
                     retry_failed=retry_failed, jobs=jobs, slurm=SlurmOptions(**slurm),
                     way_out="pass another results folder, or force=True to train them "
                             "again").statuses


def load(path: str | Path):
    """Every ``*/result.json`` under ``path`` as one tidy pandas table, one row per cell
    (docs/results-schema.md; missing values are NaN). The reader is ``reports.store``'s: the
    reports depend on the store and nothing else."""
    from reports.store import read_results

    return read_results(path)


__all__ = ["Cell", "Options", "cells", "load", "plan", "run"]
