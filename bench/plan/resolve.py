"""The full config of a cell: bench/plan/config.py's, with its starting weights.

One function, ``resolve``, so that ``plan``, ``run`` and ``config`` all see the same config and
the same hash. It sits above both the config builder and the warm start: the warm start is
trained from a config that knows nothing about starting weights, and a smoke cell's config then
names the warm start by its key (``synthetic://<key>``).
"""
from __future__ import annotations

from bench.plan import warmstart
from bench.plan.cells import Cell
from bench.plan.config import build_config, place
from bench.plan.options import Options
from bench.plan.settings import cell_settings
from bench.plan.weights import NONE, SYNTHETIC, apply_weights


def resolve(cell: Cell, opts: Options = Options(), work_dir: str | None = None,
            results_prefix: str | None = None, data: bool = True):
    """The full mmengine Config of a cell, placed at ``work_dir`` with its detections at
    ``results_prefix`` (bench/plan/config.py::place; neither is hashed).

    ``data=False`` leaves the detector _base_'s data settings (COCO, 80 classes) as they are
    and needs no dataset: for building the model alone (``bench perf``).
    """
    cfg = build_config(cell, opts, data)
    # A released cell's weights all come from its checkpoint: no backbone download.
    spec = None if cell.source == "released" else opts.pretrained or cell_settings(cell).pretrained
    if spec == SYNTHETIC:
        apply_weights(cfg, warmstart.uri(cell.profile), warm_start=True,
                      with_neck=warmstart.fits_neck(cell.profile, cfg))
    else:
        apply_weights(cfg, None if spec in (None, "", NONE) else spec)
    if work_dir or results_prefix:
        place(cfg, cell, opts.log, work_dir, results_prefix)
    return cfg
