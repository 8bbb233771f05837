"""The results API: ``load(path) -> pandas.DataFrame``, one row per cell (docs/results-schema.md).

The reader itself lives in ``reports.store`` because the reports depend on the store and nothing
else; this is the harness's name for it.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd


def load(path: str | Path) -> pd.DataFrame:
    """Every ``*/result.json`` under ``path`` as one tidy table (missing values are NaN)."""
    from reports.store import read_results

    return read_results(path)
