"""The result store's vocabulary, defined once: the writer (``bench``) validates against it and
the reader (``reports``) reads by it (docs/results-schema.md).

This module imports nothing from the project, so the harness may import it (``bench`` ->
``reports``) without the reports ever depending on the harness.
"""
from __future__ import annotations

#: Every status a cell's ``result.json`` may hold.
#: pending (submitted, not started) -> running -> done | failed | cancelled; a running SLURM job
#: that was preempted or hit its time limit checkpoints and becomes ``requeued`` until it runs
#: again.
STATUSES: tuple[str, ...] = ("pending", "running", "requeued", "done", "failed", "cancelled")
#: The scheduler still owns these cells: they are neither finished nor to be submitted again.
ACTIVE: tuple[str, ...] = ("running", "requeued", "pending")
#: Ended without a result.
ENDED_BAD: tuple[str, ...] = ("failed", "cancelled")
#: Most urgent first: what a group of cells (the seeds of one table cell) shows when they
#: disagree.
URGENCY: tuple[str, ...] = ("failed", "running", "requeued", "pending", "cancelled")


def check_status(status: str) -> str:
    """``status`` if the schema knows it; the writer calls this before anything reaches disk."""
    if status not in STATUSES:
        raise ValueError(f"unknown cell status {status!r} (the schema knows: {', '.join(STATUSES)})")
    return status
