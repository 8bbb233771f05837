"""How a cell trains: its devices, images per device and total batch, and the lr for that batch.

The profile gives the layout (the paper's 8 GPUs x 2 images, or 4 x 4 with iBN; one device with
a fixed batch for smoke and released cells), the command line may override it; the lr is scaled
linearly from the batch the profile's lr was set for.
"""
from __future__ import annotations

from dataclasses import dataclass

from bench.plan.cells import VARIANTS, Cell, MatrixError
from bench.plan.options import Options
from bench.plan.settings import Settings, cell_settings


@dataclass(frozen=True)
class Layout:
    """How one cell trains: ``nodes`` x ``tasks_per_node`` processes (DDP, one per device), each
    with ``imgs_per_device`` images; ``gpus_per_node`` is what the job asks SLURM for (0: CPU)."""

    nodes: int
    tasks_per_node: int
    gpus_per_node: int
    imgs_per_device: int

    @property
    def world_size(self) -> int:
        return self.nodes * self.tasks_per_node

    @property
    def total_batch(self) -> int:
        return self.world_size * self.imgs_per_device

    def describe(self) -> str:
        per_node = "GPUs" if self.gpus_per_node else "processes"
        return (f"{self.nodes} x {self.tasks_per_node} x {self.imgs_per_device}: nodes x "
                f"{per_node} per node x images per device")


def reference_batch(settings: Settings) -> int:
    """The total batch the profile's learning rate was set for."""
    return settings.fixed_batch or settings.total_batch


def layout(cell: Cell, opts: Options = Options()) -> Layout:
    """The cell's training layout: the profile's (the paper's 8 GPUs x 2 images, or 4 x 4 with
    iBN; one device with a fixed batch for smoke and released cells), overridden by ``opts``.
    One task per GPU: asking for GPUs or for tasks sets the other to match."""
    s = cell_settings(cell)
    if s.fixed_batch:
        per_device, tasks, gpus = s.fixed_batch, 1, s.slurm.gpus_per_node
    else:
        per_device = VARIANTS[cell.variant].imgs_per_gpu
        tasks = gpus = s.total_batch // per_device
    nodes = opts.nodes or s.slurm.nodes
    if cell.source == "released":
        if (opts.nodes or 1) > 1 or (opts.tasks_per_node or 1) > 1 or (opts.gpus_per_node or 1) > 1:
            raise MatrixError("released checkpoints are evaluated on one device: --nodes, "
                              "--tasks-per-node and --gpus-per-node above 1 do not apply")
        return Layout(1, 1, gpus, per_device)
    for flag, value in (("--nodes", opts.nodes), ("--tasks-per-node", opts.tasks_per_node),
                        ("--gpus-per-node", opts.gpus_per_node)):
        if value is not None and value < (0 if flag == "--gpus-per-node" else 1):
            raise MatrixError(f"{flag} {value}: must be at least "
                              f"{0 if flag == '--gpus-per-node' else 1}")
    t, g = opts.tasks_per_node, opts.gpus_per_node
    if t is not None and g is not None:
        if g and t != g:
            raise MatrixError(f"--tasks-per-node {t} with --gpus-per-node {g}: DDP runs one task "
                              "per GPU (give one of the two, or equal values)")
        tasks, gpus = t, g
    elif g is not None:
        tasks, gpus = (g if g else tasks), g
    elif t is not None:
        tasks, gpus = t, (t if gpus else 0)
    return Layout(nodes, tasks, gpus, per_device)


def scaled_lr(cell: Cell, opts: Options, base_lr: float) -> tuple[float, str | None]:
    """The learning rate for the cell's total batch, scaled linearly from the batch the profile's
    lr was set for, and a sentence saying so when it changed (None when it did not)."""
    lay, ref = layout(cell, opts), reference_batch(cell_settings(cell))
    if lay.total_batch == ref or cell.source == "released":
        return base_lr, None
    lr = base_lr * lay.total_batch / ref
    return lr, (f"{cell.key}: total batch {lay.total_batch} ({lay.describe()}) instead of the "
                f"profile's {ref}: lr scaled linearly {base_lr:g} -> {lr:g}")


