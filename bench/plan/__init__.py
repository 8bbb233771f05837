"""Planning: a cell of the matrix becomes a :class:`Plan`, the one object that travels on.

A Plan holds everything decided about a cell before anything runs: its settings, layout, lr,
resolved config and config hash. The job, the executors, the forecast and the warm start's
preparation take a Plan instead of deriving any of it again from ``(cell, options)`` (the
interleaved timing works on the store's done cells of a detector, with their profile's parsed
settings). Planning builds
no model and runs nothing; resolving every cell up front checks names, data and layouts before
anything runs.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from bench.plan.cells import Cell
from bench.plan.config import config_hash, head_type, place, plain_text
from bench.plan.layout import Layout, layout, reference_batch, scaled_lr
from bench.plan.options import Options
from bench.plan.resolve import resolve
from bench.plan.settings import Settings, cell_conventions, cell_settings


@dataclass(frozen=True)
class Plan:
    """One cell as it will run. ``full``: a pilot's plan of the full cell it forecasts."""

    cell: Cell
    opts: Options
    settings: Settings
    layout: Layout
    lr: float | None  # None: a released cell, which does not train
    lr_note: str | None  # set when the total batch differs from the profile's: lr was scaled
    config: Any  # the resolved mmengine Config, placed at work_dirs/<profile>/<key>
    config_hash: str
    full: Plan | None = None

    @property
    def key(self) -> str:
        return self.cell.key

    @property
    def gpus(self) -> int:
        return self.layout.nodes * self.layout.gpus_per_node

    @property
    def trains(self) -> bool:
        return self.cell.source != "released"

    @property
    def train_iters(self) -> int | None:
        """Iterations the cell trains, where the settings say it (an iteration schedule,
        ``--max-iters`` or a pilot); None for an epoch schedule (its length needs the data)."""
        return self.settings.train_iters(self.opts.pilot_iters or self.opts.max_iters)

    def job_config(self, work_dir: str, results_prefix: str):
        """The config a job runs: this plan's, placed in the cell's folder, and not formatted
        again by mmengine (bench/plan/config.py::plain_text). Its hash is the plan's."""
        cfg = copy.deepcopy(self.config)
        place(cfg, self.cell, self.opts.log, work_dir, results_prefix)
        return plain_text(cfg)

    def row(self) -> dict:
        """What ``bench plan`` shows of the cell."""
        train = self.config.train_cfg or {}  # a released cell does not train
        lay, trains = self.layout, self.trains
        return dict(profile=self.cell.profile, cell=self.cell.key, detector=self.cell.detector,
                    variant=self.cell.variant, seed=self.cell.seed,
                    config_hash=self.config_hash,
                    nodes=lay.nodes, tasks_per_node=lay.tasks_per_node, gpus=self.gpus,
                    imgs_per_gpu=lay.imgs_per_device if trains else None,
                    total_batch=lay.total_batch if trains else None, lr=self.lr,
                    max_epochs=train.get("max_epochs"), max_iters=train.get("max_iters"),
                    clip_grad=((self.config.optim_wrapper or {}).get("clip_grad") or {}).get(
                        "max_norm"),
                    head=head_type(self.config.model), conventions=cell_conventions(self.cell))


def plan_cell(cell: Cell, opts: Options = Options(), full: Plan | None = None) -> Plan:
    """The cell's Plan under ``opts`` (``full``: the full cell a pilot forecasts)."""
    cfg = resolve(cell, opts)
    lay = layout(cell, opts)
    settings = cell_settings(cell)
    if cell.source == "released":  # evaluated only: one image at a time, no optimizer
        return Plan(cell, opts, settings, lay, None, None, cfg, config_hash(cfg), full)
    lr = float(cfg.optim_wrapper.optimizer.lr)
    ref = reference_batch(settings)  # the profile's lr is for this batch
    note = scaled_lr(cell, opts, lr * ref / lay.total_batch)[1]
    return Plan(cell, opts, settings, lay, lr, note, cfg, config_hash(cfg), full)


def plan(cells: list[Cell], opts: Options = Options()) -> list[Plan]:
    """Every cell's Plan (this validates data root, names and layout before anything runs)."""
    return [plan_cell(cell, opts) for cell in cells]


def lr_notes(plans: list[Plan]) -> list[str]:
    """One line per cell whose lr was scaled for a total batch other than the profile's."""
    return [p.lr_note for p in plans if p.lr_note]


__all__ = ["Plan", "Options", "lr_notes", "plan", "plan_cell"]
