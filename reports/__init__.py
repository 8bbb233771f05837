"""Tables, plots and the HTML report of the SEPC ablation, built from the result store only.

    python -m reports RESULTS_DIR [--out DIR] [--format md,csv,tex,html,png,text]

Public API (each a function of the store's DataFrame, see docs/results-schema.md):
``read_results`` (the store), ``build_table``/``build_tables`` (the table model),
``render_text``/``render_markdown``/``render_csv``/``render_latex``, the plots in
``reports.plots``, ``render_html`` in ``reports.html``, and ``build_report``.
"""

from reports.build import build_report
from reports.store import read_results, read_scalars
from reports.table import (
    TableModel,
    build_table,
    build_tables,
    render_csv,
    render_latex,
    render_markdown,
    render_text,
)

__all__ = [
    "TableModel",
    "build_report",
    "build_table",
    "build_tables",
    "read_results",
    "read_scalars",
    "render_csv",
    "render_latex",
    "render_markdown",
    "render_text",
]
