"""What the command line changes about a profile's cells (``Options``), and the ``--log``
backends."""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from bench.plan.cells import MatrixError


@dataclass(frozen=True)
class Options:
    """What the command line changes about a profile (each part of the config hash), and where
    released cells find their checkpoints (``--from-checkpoints DIR``, ``--manifest FILE``).

    ``nodes``, ``tasks_per_node`` and ``gpus_per_node`` override the profile's training layout
    (one process per device; see :func:`layout`). ``pilot_iters`` makes a pilot of the cell: the
    same model, data pipeline, batch per device and layout, trained that many iterations and
    evaluated on the first ``val_images`` validation images.
    """

    data_root: str | None = None
    pretrained: str | None = None
    lcconv_padding: int | None = None
    max_iters: int | None = None
    checkpoints: str | None = None
    manifest: str | None = None
    nodes: int | None = None
    tasks_per_node: int | None = None
    gpus_per_node: int | None = None
    pilot_iters: int | None = None
    val_images: int | None = None
    log: tuple[str, ...] = ()  # extra training-curve backends (LOG_BACKENDS), off by default


#: ``--log`` names -> mmengine visualisation backend and the package it needs. Offline, into the
#: cell's folder: TensorBoard event files under work_dir/<run>/vis_data, an MLflow SQLite
#: database work_dir/mlflow.db with its artifacts in work_dir/mlruns (mlflow's file store is
#: deprecated).
LOG_BACKENDS: dict[str, tuple[str, str]] = {
    "tensorboard": ("TensorboardVisBackend", "tensorboard"),
    "mlflow": ("MLflowNamedVisBackend", "mlflow"),  # sepc/engine.py: names MLflow accepts
}


def check_log(names: tuple[str, ...]) -> tuple[str, ...]:
    """``--log`` values, each known and importable, else one MatrixError line."""
    for name in names:
        if name not in LOG_BACKENDS:
            raise MatrixError(f"unknown --log backend {name!r} (known: {', '.join(LOG_BACKENDS)})")
        if importlib.util.find_spec(LOG_BACKENDS[name][1]) is None:
            raise MatrixError(f"--log {name} needs the {LOG_BACKENDS[name][1]} package, which is "
                              "not installed (make setup installs it)")
    return names
